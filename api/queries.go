package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

const ndjson = "application/x-ndjson"

func (s *Server) handleQueries(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel, timeout, err := requestTimeout(r, defaultQueryTimeout)
	if err != nil {
		return err
	}
	defer cancel()
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	st, err := parseStatement(body)
	if err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	start := time.Now()
	result := "error"
	defer func() {
		s.metrics.queries.WithLabelValues(result).Inc()
		s.metrics.queryDuration.Observe(time.Since(start).Seconds())
	}()
	rows, err := s.cfg.View.Query(ctx, st)
	if err != nil {
		return timeoutError(ctx, timeout, err)
	}
	defer rows.Close()
	// Step to the first row before answering, so that an error SQLite only reports when it
	// runs the statement (or a timeout before the first row) still gets its proper status.
	more := rows.Next()
	if !more {
		if err := rows.Err(); err != nil {
			return timeoutError(ctx, timeout, err)
		}
	}

	w.Header().Set("Content-Type", ndjson)
	w.WriteHeader(http.StatusOK)
	ev := newEventWriter(w)
	b := append(ev.buf[:0], `{"columns":`...)
	cols, _ := json.Marshal(rows.Columns())
	b = append(b, cols...)
	b = append(b, "}\n"...)
	// The first row (if any) is already known: it goes out with the columns in one flush.
	write := ev.write
	if more {
		write = ev.writeNoFlush
	}
	if err := write(b); err != nil {
		return nil // the client is gone; nothing to answer
	}
	var n int64
	for ; more; more = rows.Next() {
		n++
		b = append(ev.buf[:0], `{"row":[`...)
		b = strconv.AppendInt(b, n, 10)
		b = append(b, ",["...)
		for i, v := range rows.Values() {
			if i > 0 {
				b = append(b, ',')
			}
			b = v.AppendJSON(b)
		}
		b = append(b, "]]}\n"...)
		if err := ev.write(b); err != nil {
			return nil
		}
	}
	s.metrics.rowsRead.Add(float64(n))
	if err := rows.Err(); err != nil {
		ev.writeError(timeoutError(ctx, timeout, err))
		return nil
	}
	result = "ok"
	b = append(ev.buf[:0], `{"eoq":{"time":`...)
	b = strconv.AppendFloat(b, time.Since(start).Seconds(), 'g', -1, 64)
	b = append(b, "}}\n"...)
	// The handler returns right after: net/http sends eoq with the end of the chunked body in
	// one write, instead of a flush and then the terminating chunk.
	ev.writeNoFlush(b)
	return nil
}

// eventWriter writes NDJSON (or framed) events and flushes each, so that a reader sees every
// event as soon as it is known. It keeps one buffer for building events.
type eventWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
}

func newEventWriter(w http.ResponseWriter) *eventWriter {
	return &eventWriter{w: w, rc: http.NewResponseController(w), buf: make([]byte, 0, 4096)}
}

// write writes one event and flushes it; an error means the client is gone.
func (e *eventWriter) write(b []byte) error {
	e.buf = b[:0] // keep the grown buffer for the next event
	if _, err := e.w.Write(b); err != nil {
		return err
	}
	return e.rc.Flush()
}

// writeNoFlush writes an event that more events follow at once (a batch read from the log).
func (e *eventWriter) writeNoFlush(b []byte) error {
	e.buf = b[:0]
	_, err := e.w.Write(b)
	return err
}

// writeError ends a started NDJSON stream with {"error": "..."}.
func (e *eventWriter) writeError(err error) {
	b, _ := json.Marshal(errorBody{Error: err.Error()})
	e.write(append(b, '\n'))
}
