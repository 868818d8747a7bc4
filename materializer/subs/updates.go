package subs

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// Updates streams the primary keys of changed rows of table (POST /v1/updates/{table}).
func (e *Engine) Updates(ctx context.Context, table string) (*UpdateStream, error) {
	name := ""
	for _, t := range e.src.Tables() {
		if strings.EqualFold(t, table) {
			name = t
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTable, table)
	}
	e.mu.Lock()
	closed := e.closed
	id := e.updateIDs[name]
	if id == "" {
		id = newID()
		e.updateIDs[name] = id
	}
	e.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	// Commit notices, not rows, are buffered here: a notice holds all the rows of a commit.
	ch, cancel := e.src.Notify(min(e.cfg.ClientBuffer, updatesBuffer))
	e.metrics.clients.WithLabelValues("updates").Inc()
	return &UpdateStream{ID: id, e: e, table: name, ch: ch, cancel: cancel}, nil
}

// UpdateStream is one /v1/updates client. Not safe for concurrent use.
type UpdateStream struct {
	// ID is the table's update id (see Engine.updateIDs).
	ID      string
	e       *Engine
	table   string
	ch      <-chan materializer.Notice
	cancel  func()
	pending [][]byte
	once    sync.Once
}

// Next returns the next NDJSON line: {"notify":["update"|"delete",[pk values]]}. It blocks
// until a row of the table changes or ctx ends; ErrSlowClient when the client fell behind.
func (u *UpdateStream) Next(ctx context.Context) ([]byte, error) {
	for len(u.pending) == 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case n, ok := <-u.ch:
			if !ok {
				return nil, ErrClosed
			}
			if n.Lagged {
				u.e.metrics.drops.Inc()
				return nil, ErrSlowClient
			}
			for _, rc := range n.Rows {
				if !strings.EqualFold(rc.Table, u.table) {
					continue
				}
				vals, err := log.UnpackPK(rc.PK)
				if err != nil {
					return nil, fmt.Errorf("notice pk: %w", err)
				}
				kind := "update"
				if rc.CL%2 == 0 {
					kind = "delete"
				}
				u.pending = append(u.pending, notifyLine(kind, vals))
			}
		}
	}
	line := u.pending[0]
	u.pending = u.pending[1:]
	u.e.metrics.events.Inc()
	return line, nil
}

// Buffered reports how many lines Next returns without blocking.
func (u *UpdateStream) Buffered() int { return len(u.pending) + len(u.ch) }

// Close ends the stream.
func (u *UpdateStream) Close() {
	u.once.Do(func() {
		u.cancel()
		u.e.metrics.clients.WithLabelValues("updates").Dec()
	})
}
