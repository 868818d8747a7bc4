package subs

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// changeRetained is the retained form of change id's line: the line itself, or, when it
// passes MaxEventBytes, an error event in its place (kept and stored instead of the line, so
// that neither memory nor subs.db holds it, and a resume meets the same error).
func (s *sub) changeRetained(id uint64, line []byte) retained {
	if max := s.e.cfg.MaxEventBytes; max > 0 && len(line) > max {
		err := fmt.Errorf("%w: change %d of subscription %s is %d bytes, more than the limit of %d (subscriptions.max_event_bytes)",
			ErrEventTooLarge, id, s.id, len(line), max)
		s.e.metrics.tooLarge.Inc()
		s.e.logger.Warn("subscription event too large to send", "id", s.id, "change_id", id, "bytes", len(line), "max", max)
		return retained{id: id, line: ErrorLine(err), tooLarge: err}
	}
	return retained{id: id, line: line}
}

// trimRetainedLocked drops the oldest retained changes beyond RetainBytes (a resume from
// before them gets ErrTooOld, as past RetainChanges).
func (s *sub) trimRetainedLocked() {
	max := s.e.cfg.RetainBytes
	if max <= 0 {
		return
	}
	var total int64
	i := len(s.changes)
	for i > 0 && total+int64(len(s.changes[i-1].line)) <= max {
		i--
		total += int64(len(s.changes[i].line))
	}
	if i > 0 {
		s.changes = append(s.changes[:0:0], s.changes[i:]...)
	}
}

// broadcast sends a line to every client; one whose buffer is full is disconnected.
func (s *sub) broadcast(line []byte) {
	for c := range s.clients {
		if !c.push(line) {
			s.e.metrics.drops.Inc()
			s.e.logger.Info("subscription client too slow, disconnected", "id", s.id)
			s.detachLocked(c, ErrSlowClient)
		}
	}
}

func (s *sub) detachLocked(c *client, err error) {
	if _, ok := s.clients[c]; !ok {
		return
	}
	delete(s.clients, c)
	c.fail(err)
	s.e.metrics.clients.WithLabelValues("subscriptions").Dec()
	if len(s.clients) == 0 {
		s.idleSince = time.Now()
	}
}

func (s *sub) closeClients(err error) {
	for c := range s.clients {
		s.detachLocked(c, err)
	}
}

// attach registers a client: it gets the current result (or the retained changes after
// opts.From) and then every change, with no gap and no duplicate, because both are taken
// under the same lock that orders the changes.
func (s *sub) attach(ctx context.Context, opts Options) (*Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped {
		return nil, ErrDropped
	}
	st := &Stream{ID: s.id, Hash: s.hash, s: s}
	if opts.From != nil && *opts.From == 0 {
		opts.From = nil // from=0: the current result, as Corrosion answers it
	}
	if opts.From != nil {
		from := *opts.From
		oldest := s.changeID + 1 - uint64(len(s.changes)) // first retained id
		switch {
		case from > s.changeID:
			return nil, fmt.Errorf("%w: from %d, latest change is %d", ErrFromAhead, from, s.changeID)
		case from+1 < oldest:
			return nil, fmt.Errorf("%w: from %d, oldest retained change is %d", ErrTooOld, from, oldest)
		}
		for _, c := range s.changes {
			if c.id > from {
				st.pending = append(st.pending, c.line)
			}
		}
	} else {
		if s.needFull || s.dirty && s.plan.ordered && !opts.SkipRows {
			// Re-run so that the rows come in the statement's ORDER BY; any difference is
			// first sent as changes to the other clients. Without ORDER BY any order is
			// the statement's, and the stored rows are current.
			if err := s.refreshLocked(ctx); err != nil {
				return nil, err
			}
		}
		if !opts.SkipRows {
			var err error
			if st.pending, err = s.appendResultLocked(st.pending); err != nil {
				return nil, err
			}
		}
	}
	c := newClient(s.e.cfg.ClientBuffer, s.e.cfg.ClientBufferBytes)
	s.clients[c] = struct{}{}
	s.e.metrics.clients.WithLabelValues("subscriptions").Inc()
	st.c = c
	return st, nil
}

// appendResultLocked appends the current result as events: columns, the rows (in the
// statement's order where it has one), eoq with the latest change id.
func (s *sub) appendResultLocked(lines [][]byte) ([][]byte, error) {
	lines = append(lines, columnsLine(s.columns))
	sent := make(map[string]bool, len(s.rows))
	for _, k := range s.order {
		if r, ok := s.rows[k]; ok {
			l, err := s.rowLineLocked(r)
			if err != nil {
				return nil, err
			}
			lines = append(lines, l)
			sent[k] = true
		}
	}
	if len(sent) < len(s.rows) {
		var rest []*row
		for k, r := range s.rows {
			if !sent[k] {
				rest = append(rest, r)
			}
		}
		slices.SortFunc(rest, func(a, b *row) int { return cmp.Compare(a.rowid, b.rowid) })
		for _, r := range rest {
			l, err := s.rowLineLocked(r)
			if err != nil {
				return nil, err
			}
			lines = append(lines, l)
		}
	}
	return append(lines, eoqLine(s.queryTime, s.changeID)), nil
}

// rowLineLocked is r's row event: shared by every client when large (row.line), refused
// past MaxEventBytes.
func (s *sub) rowLineLocked(r *row) ([]byte, error) {
	max := s.e.cfg.MaxEventBytes
	l, size := r.line, r.tooLarge
	if l == nil && size == 0 {
		l = rowLine(r.rowid, r.cells)
		size = len(l)
	}
	if max > 0 && size > max {
		r.tooLarge = size
		s.e.metrics.tooLarge.Inc()
		return nil, fmt.Errorf("%w: row %d of subscription %s is %d bytes, more than the limit of %d (subscriptions.max_event_bytes)",
			ErrEventTooLarge, r.rowid, s.id, size, max)
	}
	if len(l) >= sharedRowBytes {
		r.line = l
	}
	return l, nil
}
