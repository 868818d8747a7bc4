package subs

import (
	"context"
	"sync"
)

// client is one attached reader of a subscription. The subscription queues lines for it
// without ever blocking; when the queue holds limit lines it fails the client instead. The
// queue is a slice that grows only while the client is behind, so an idle client costs
// nothing however large the limit.
type client struct {
	mu       sync.Mutex
	q        [][]byte
	limit    int
	bytes    int64 // of the lines in q
	maxBytes int64
	wake     chan struct{} // capacity 1: a line was queued
	done     chan struct{} // closed by fail
	err      error         // why it was failed; set before done is closed
	failed   sync.Once
}

func newClient(limit int, maxBytes int64) *client {
	return &client{limit: limit, maxBytes: maxBytes, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues a line; false when the queue is full: limit lines, or maxBytes bytes (a line
// alone in the queue always fits: MaxEventBytes bounds it). The lines are shared with the
// other clients, so the bytes are what this client keeps alive by falling behind.
func (c *client) push(line []byte) bool {
	c.mu.Lock()
	if len(c.q) >= c.limit || (len(c.q) > 0 && c.bytes+int64(len(line)) > c.maxBytes) {
		c.mu.Unlock()
		return false
	}
	c.bytes += int64(len(line))
	c.q = append(c.q, line)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

func (c *client) pop() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.q) == 0 {
		return nil, false
	}
	l := c.q[0]
	c.q[0] = nil
	c.q = c.q[1:]
	c.bytes -= int64(len(l))
	if len(c.q) == 0 {
		c.q = nil // let the grown array go
	}
	return l, true
}

func (c *client) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.q)
}

func (c *client) fail(err error) {
	c.failed.Do(func() {
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
	for {
		// A failed client stops at once: its queued lines are dropped with it, and it
		// resumes from the last change id it saw.
		select {
		case <-st.c.done:
			return nil, st.c.err
		default:
		}
		if l, ok := st.c.pop(); ok {
			return l, nil
		}
		select {
		case <-st.c.wake:
		case <-st.c.done:
			return nil, st.c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Buffered reports how many lines Next returns without blocking, so that a writer can
// flush once per burst rather than once per line.
func (st *Stream) Buffered() int { return len(st.pending) + st.c.queued() }

// Close detaches the client. Idempotent.
func (st *Stream) Close() {
	st.once.Do(func() {
		st.s.mu.Lock()
		st.s.detachLocked(st.c, ErrClosed)
		st.s.mu.Unlock()
	})
}
