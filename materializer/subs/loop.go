package subs

import (
	"context"
	"strings"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// loop follows the view's commit notices and brings the subscriptions they touch up to
// date, batching the notices that queue up while it works.
func (e *Engine) loop(ctx context.Context) {
	e.evalMu.Lock()
	e.refreshAll(ctx, func(s *sub) bool { return s.needFull })
	e.evalMu.Unlock()
	for {
		var batch []materializer.Notice
		select {
		case <-ctx.Done():
			return
		case n, ok := <-e.notices:
			if !ok {
				return
			}
			batch = append(batch, n)
		}
	drain:
		for len(batch) < 256 {
			select {
			case n, ok := <-e.notices:
				if !ok {
					break drain
				}
				batch = append(batch, n)
			default:
				break drain
			}
		}
		start := time.Now()
		e.evalMu.Lock()
		e.process(ctx, batch)
		e.evalMu.Unlock()
		e.metrics.batch.Observe(time.Since(start).Seconds())
		var top log.Seq
		for _, n := range batch {
			top = max(top, n.Seq)
		}
		e.advance(top)
	}
}

// process applies a batch of notices.
func (e *Engine) process(ctx context.Context, batch []materializer.Notice) {
	e.mu.Lock()
	idle := len(e.byID) == 0 && len(e.recorders) == 0
	e.mu.Unlock()
	if idle {
		// Nothing to bring up to date, and nothing being created to record for: a
		// subscription registered after this looks (its recorder first, then its initial
		// query) reads these commits in its query. Without this, a node with no
		// subscriptions copied every changed key into maps (5% of the bytes the agents
		// allocated in issue 14's batch runs).
		return
	}
	lagged := false
	changed := map[string]map[string]log.PK{}
	for _, n := range batch {
		lagged = lagged || n.Lagged
		for _, rc := range n.Rows {
			t := strings.ToLower(rc.Table)
			m := changed[t]
			if m == nil {
				m = map[string]log.PK{}
				changed[t] = m
			}
			m[string(rc.PK)] = rc.PK
		}
	}
	e.mu.Lock()
	for r := range e.recorders {
		r.add(changed, lagged)
	}
	e.mu.Unlock()
	if lagged {
		e.logger.Warn("subscriptions missed commit notices; re-evaluating all")
		e.refreshAll(ctx, func(*sub) bool { return true })
		return
	}
	rc := e.newRowCache(ctx, changed)
	info := rc.info
	affected := map[*sub]struct{}{}
	for t, pks := range changed {
		keys := make(map[string]struct{}, len(pks))
		for k := range pks {
			keys[k] = struct{}{}
		}
		ti := info[t]
		e.keys.candidates(t, keys, func(k string) (bool, func(int) []string, bool) {
			if ti == nil || rc.realKeys[t] {
				return false, nil, false
			}
			f := rc.fetch(ctx, e.src, ti, pks[k])
			if f.err != nil {
				return false, nil, false
			}
			return f.found, f.eqKeys, true
		}, affected)
	}
	if len(affected) == 0 {
		return
	}
	for s := range affected {
		if ctx.Err() != nil {
			return
		}
		s.update(ctx, changed, rc)
	}
}

func (e *Engine) refreshAll(ctx context.Context, which func(*sub) bool) {
	e.mu.Lock()
	subs := make([]*sub, 0, len(e.byID))
	for _, s := range e.byID {
		subs = append(subs, s)
	}
	e.mu.Unlock()
	for _, s := range subs {
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if which(s) && !s.dropped {
			if err := s.refreshLocked(ctx); err != nil {
				e.logger.Warn("re-evaluate subscription", "id", s.id, "err", err)
			}
		}
		s.mu.Unlock()
	}
}

// janitor drops idle subscriptions and retries evaluations that failed.
func (e *Engine) janitor(ctx context.Context) {
	tick := min(e.cfg.IdleTimeout/4, time.Second)
	t := time.NewTicker(max(tick, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		e.mu.Lock()
		subs := make([]*sub, 0, len(e.byID))
		for _, s := range e.byID {
			subs = append(subs, s)
		}
		e.mu.Unlock()
		for _, s := range subs {
			s.mu.Lock()
			idle := len(s.clients) == 0 && now.Sub(s.idleSince) >= e.cfg.IdleTimeout
			retry := s.needFull && !s.dropped
			s.mu.Unlock()
			switch {
			case idle:
				e.logger.Debug("subscription idle, dropped", "id", s.id)
				e.remove(s, true)
			case retry:
				e.evalMu.Lock()
				s.mu.Lock()
				if err := s.refreshLocked(ctx); err != nil {
					e.logger.Warn("re-evaluate subscription", "id", s.id, "err", err)
				}
				s.mu.Unlock()
				e.evalMu.Unlock()
			}
		}
	}
}
