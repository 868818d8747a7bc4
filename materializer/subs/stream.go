package subs

import (
	"context"
	"sync"
)

// client is one attached reader of a subscription. The subscription sends it lines without
// ever blocking; when ch is full it fails the client instead.
type client struct {
	ch   chan []byte
	done chan struct{} // closed by fail
	err  error         // why it was failed; set before done is closed
	once sync.Once
}

func (c *client) fail(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.done)
	})
}

// Stream is one client's view of a subscription: first what it asked for at attach time
// (columns, rows and eoq, or the retained changes after From), then every new change. Lines
// are shared between clients and must not be modified. Not safe for concurrent use.
type Stream struct {
	// ID is the subscription's id (the corro-query-id header), Hash the statement's hash
	// (corro-query-hash).
	ID, Hash string

	s       *sub
	c       *client
	pending [][]byte
	once    sync.Once
}

// Next returns the next NDJSON line, blocking until there is one. It fails with
// ErrSlowClient when the client fell behind by more than the client buffer, ErrDropped when
// the subscription was removed, ErrClosed when the engine closed, or ctx's error.
func (st *Stream) Next(ctx context.Context) ([]byte, error) {
	if len(st.pending) > 0 {
		l := st.pending[0]
		st.pending[0] = nil
		st.pending = st.pending[1:]
		return l, nil
	}
	// A failed client stops at once: its buffered lines are dropped with it, and it resumes
	// from the last change id it saw.
	select {
	case <-st.c.done:
		return nil, st.c.err
	default:
	}
	select {
	case l := <-st.c.ch:
		return l, nil
	case <-st.c.done:
		return nil, st.c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Buffered reports how many lines Next returns without blocking, so that a writer can
// flush once per burst rather than once per line.
func (st *Stream) Buffered() int { return len(st.pending) + len(st.c.ch) }

// Close detaches the client. Idempotent.
func (st *Stream) Close() {
	st.once.Do(func() {
		st.s.mu.Lock()
		st.s.detachLocked(st.c, ErrClosed)
		st.s.mu.Unlock()
	})
}
