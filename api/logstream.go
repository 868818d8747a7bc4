package api

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/log"
)

// logCopy is what copyLog streams: GET /v1/changes (changes.go) and GET /v1/backup
// (backup.go) both send the log in arrival order, in the same framing.
type logCopy struct {
	after   log.Seq // the stream starts after this seq
	end     log.Seq // and stops at this one, unless follow
	follow  bool    // wait for the log to grow past end instead of stopping
	msgpack bool    // length-prefixed msgpack frames; otherwise NDJSON
	// counted is incremented once per changeset written.
	counted prometheus.Counter
	// failed, when set, is told of an error before it goes to the client.
	failed func(error)
}

// copyLog writes the log's changesets c.after+1 .. c.end (or on and on with c.follow) to ev,
// one flush per batch read so that a follower sees each batch at once. A read or encoding
// error goes to the stream as an error event and ends it; so does the client leaving (ctx,
// or a failed write), silently. It returns how many changesets it wrote, and whether it
// reached c.end (a backup's trailer follows only then).
func (s *Server) copyLog(ctx context.Context, ev *eventWriter, c logCopy) (sent uint64, complete bool) {
	fail := func(err error) {
		if c.failed != nil {
			c.failed(err)
		}
		if !c.msgpack {
			ev.writeError(err)
			return
		}
		// In msgpack framing an error is a frame of JSON: a frame starting with '{'.
		b, _ := json.Marshal(errorBody{Error: err.Error()})
		ev.write(append(binary.BigEndian.AppendUint32(ev.buf[:0], uint32(len(b))), b...))
	}
	after := c.after
	for c.follow || after < c.end {
		if ctx.Err() != nil {
			return sent, false
		}
		batch, err := s.cfg.Log.Read(after, readBatch)
		if err != nil {
			fail(fmt.Errorf("read log after seq %d: %w", after, err))
			return sent, false
		}
		if len(batch) == 0 {
			if !c.follow {
				return sent, true // the log ends before end: cannot happen, but never spin
			}
			if err := s.cfg.Log.Wait(ctx, after); err != nil {
				if ctx.Err() == nil {
					fail(fmt.Errorf("wait for the log: %w", err))
				}
				return sent, false
			}
			continue
		}
		done := false
		for _, cs := range batch {
			if !c.follow && cs.Seq > c.end {
				done = true
				break
			}
			b, err := appendEvent(ev.buf[:0], cs, c.msgpack)
			if err != nil {
				fail(err)
				return sent, false
			}
			if err := ev.writeNoFlush(b); err != nil {
				return sent, false
			}
			after = cs.Seq
			sent++
			c.counted.Inc()
		}
		if err := ev.rc.Flush(); err != nil {
			return sent, false
		}
		if done {
			return sent, true
		}
	}
	return sent, true
}
