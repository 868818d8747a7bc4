package subs

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// sub is one subscription: a statement, its current result keyed by row identity, and the
// retained recent changes. Everything below mu is guarded by it; evaluations hold it, so a
// subscription is evaluated by one goroutine at a time.
type sub struct {
	e    *Engine
	id   string
	hash string
	st   materializer.Statement

	mu        sync.Mutex
	plan      *plan
	columns   []string
	rows      map[string]*row
	order     []string                     // row keys in the order of the last full evaluation
	byInst    []map[string]map[string]*row // pk mode: instance -> packed pk -> rows
	dirty     bool                         // rows changed since the last full evaluation
	needFull  bool                         // the next evaluation must be a full one
	queryTime float64                      // seconds, of the last full evaluation
	nextRowID int64
	changeID  uint64
	changes   []retained // ids changeID-len+1 .. changeID
	clients   map[*client]struct{}
	idleSince time.Time
	dropped   bool
}

type row struct {
	key   string
	rowid int64
	cells []log.Value
	pks   []string // pk mode: packed pk per FROM instance
	// line caches the row's encoded event when it is large (sharedRowBytes or more), so
	// that every client attaching gets the same bytes instead of an encoding of its own;
	// nil when not encoded yet or when the cells changed.
	line []byte
	// tooLarge is the size of the row's encoding once it was found past MaxEventBytes, so
	// that later attaches refuse it without encoding it again (0: not known to be).
	tooLarge int
}

// sharedRowBytes is the size from which a row's encoding is kept on the row: one copy per
// subscription however many clients attach. Smaller rows are encoded per attach, which
// costs less than keeping them twice.
const sharedRowBytes = 4 << 10

// newRow is a row of an evaluation.
type newRow struct {
	key   string
	cells []log.Value
	pks   []string
}

func newSub(e *Engine, id, hash string, st materializer.Statement, p *plan) *sub {
	s := &sub{e: e, id: id, hash: hash, st: st, plan: p, rows: map[string]*row{},
		clients: map[*client]struct{}{}, idleSince: time.Now(), nextRowID: 1}
	s.resetIndex()
	return s
}

func (s *sub) resetIndex() {
	s.byInst = make([]map[string]map[string]*row, len(s.plan.from))
	for i := range s.byInst {
		s.byInst[i] = map[string]map[string]*row{}
	}
}

func (s *sub) index(r *row) {
	for i, pk := range r.pks {
		m := s.byInst[i][pk]
		if m == nil {
			m = map[string]*row{}
			s.byInst[i][pk] = m
			s.e.keys.hold(s, s.plan.from[i].table, pk, true)
		}
		m[r.key] = r
	}
}

// syncHolders tells the key index every key the result holds: the first evaluation of a new
// subscription indexes its rows before the subscription is registered. Called with s.mu
// held, under the evaluation lock.
func (s *sub) syncHolders() {
	for i, m := range s.byInst {
		for pk := range m {
			s.e.keys.hold(s, s.plan.from[i].table, pk, true)
		}
	}
}

func (s *sub) unindex(r *row) {
	for i, pk := range r.pks {
		if m := s.byInst[i][pk]; m != nil {
			delete(m, r.key)
			if len(m) == 0 {
				delete(s.byInst[i], pk)
				s.e.keys.hold(s, s.plan.from[i].table, pk, false)
			}
		}
	}
}

// restore loads a stored subscription; the loop re-evaluates it fully before anything else.
func (s *sub) restore(p *persisted) {
	s.columns = p.columns
	s.changeID = p.changeID
	s.nextRowID = p.nextRowID
	// Keep only the contiguous tail ending at changeID.
	want := p.changeID
	var tail []retained
	for i := len(p.changes) - 1; i >= 0 && p.changes[i].id == want && want > 0; i-- {
		tail = append(tail, p.changes[i])
		want--
	}
	for i, j := 0, len(tail)-1; i < j; i, j = i+1, j-1 {
		tail[i], tail[j] = tail[j], tail[i]
	}
	s.changes = tail
	s.trimRetainedLocked()
	for _, sr := range p.rows {
		r := &row{key: sr.key, rowid: sr.rowid, cells: sr.cells, pks: s.plan.keyPKs(sr.key)}
		s.rows[r.key] = r
		s.order = append(s.order, r.key)
		s.index(r)
	}
	s.dirty = true
	s.setNeedFull(true)
}

// keyPKs recovers the per-instance packed pks from a pk-mode row key.
func (p *plan) keyPKs(key string) []string {
	if p.mode != modePK {
		return nil
	}
	items, err := splitList([]byte(key))
	if err != nil || len(items) != len(p.from) {
		return nil
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = string(it)
	}
	return out
}

// eval runs sql (the plan's statement with hidden columns, maybe restricted) and returns the
// user's columns and the rows with their identities.
func (s *sub) eval(ctx context.Context, sql string) ([]string, []newRow, time.Duration, error) {
	start := time.Now()
	rows, err := s.e.src.Query(ctx, materializer.Statement{SQL: sql, Params: s.st.Params, Named: s.st.Named})
	if err != nil {
		return nil, nil, 0, err
	}
	defer rows.Close()
	elapsed := time.Since(start)
	p := s.plan
	all := rows.Columns()
	ncols := len(all) - p.nhidden
	if ncols < 0 {
		return nil, nil, 0, fmt.Errorf("subscription %s: %d columns, want at least %d", s.id, len(all), p.nhidden)
	}
	cols := append([]string(nil), all[:ncols]...)
	var out []newRow
	seen := map[string]int{}
	for rows.Next() {
		vals := rows.Values()
		if len(vals) != len(all) {
			return nil, nil, 0, fmt.Errorf("subscription %s: row of %d values, want %d", s.id, len(vals), len(all))
		}
		cells := make([]log.Value, ncols)
		copy(cells, vals[:ncols])
		hidden := vals[ncols:]
		nr := newRow{cells: cells}
		switch p.mode {
		case modePK:
			nr.pks = make([]string, len(p.from))
			items := make([][]byte, len(p.from))
			for i, it := range p.from {
				pk, err := log.PackPK(hidden[it.hidden : it.hidden+it.npk]...)
				if err != nil {
					return nil, nil, 0, fmt.Errorf("subscription %s: pk: %w", s.id, err)
				}
				nr.pks[i] = string(pk)
				items[i] = pk
			}
			nr.key = string(appendList(nil, items...))
		case modeGroup:
			ks := make([]log.Value, len(hidden))
			for i, v := range hidden {
				if ref := p.groupRefs[i]; ref > 0 {
					if ref > ncols {
						return nil, nil, 0, fmt.Errorf("%w: GROUP BY term %d out of range", materializer.ErrBadStatement, ref)
					}
					v = cells[ref-1]
				}
				ks[i] = v
			}
			nr.key = string(encodeValues(ks))
		case modeContent:
			nr.key = string(encodeValues(cells))
		case modeOrdinal:
			nr.key = "#" + strconv.Itoa(len(out))
		}
		// Identities must be unique within a result; equal ones (duplicate rows in content
		// mode) get an ordinal.
		if n, dup := seen[nr.key]; dup {
			seen[nr.key] = n + 1
			nr.key += "\x00#" + strconv.Itoa(n+1)
		} else {
			seen[nr.key] = 0
		}
		out = append(out, nr)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, err
	}
	return cols, out, elapsed, nil
}

// evalFull runs the whole statement. When the GROUP BY terms cannot be selected (they name
// a result alias, say) it falls back to content identity for good: the same happens again
// after a restart, where the stored rows carry content keys. Called with s.mu held.
func (s *sub) evalFull(ctx context.Context) ([]string, []newRow, time.Duration, error) {
	cols, rows, elapsed, err := s.eval(ctx, s.plan.hiddenSQL)
	if err != nil && s.plan.mode == modeGroup {
		s.plan.mode, s.plan.hiddenSQL, s.plan.nhidden = modeContent, s.plan.sql, 0
		cols, rows, elapsed, err = s.eval(ctx, s.plan.hiddenSQL)
	}
	return cols, rows, elapsed, err
}

// initLocked evaluates a new subscription for the first time and stores it.
func (s *sub) initLocked(ctx context.Context) error {
	cols, rows, elapsed, err := s.evalFull(ctx)
	if err != nil {
		return err
	}
	s.columns = cols
	s.queryTime = elapsed.Seconds()
	p := &persisted{id: s.id, hash: s.hash, st: s.st, columns: cols}
	for _, nr := range rows {
		r := &row{key: nr.key, rowid: s.nextRowID, cells: nr.cells, pks: nr.pks}
		s.nextRowID++
		s.rows[r.key] = r
		s.order = append(s.order, r.key)
		s.index(r)
		p.rows = append(p.rows, storedRow{key: r.key, rowid: r.rowid, cells: r.cells})
	}
	p.nextRowID = s.nextRowID
	if s.e.store != nil {
		if err := s.e.store.create(ctx, p); err != nil {
			return fmt.Errorf("store subscription: %w", err)
		}
	}
	return nil
}

// refreshLocked re-runs the whole statement and applies the difference.
func (s *sub) refreshLocked(ctx context.Context) error {
	start := time.Now()
	cols, rows, elapsed, err := s.evalFull(ctx)
	s.e.metrics.match.Observe(time.Since(start).Seconds())
	if err != nil {
		s.setNeedFull(true)
		return err
	}
	s.columns = cols
	s.queryTime = elapsed.Seconds()
	scope := make(map[string]*row, len(s.rows))
	for k, r := range s.rows {
		scope[k] = r
	}
	if err := s.applyLocked(ctx, rows, scope); err != nil {
		s.setNeedFull(true)
		return err
	}
	s.order = s.order[:0]
	for _, nr := range rows {
		s.order = append(s.order, nr.key)
	}
	s.dirty = false
	s.setNeedFull(false)
	return nil
}

// update brings the subscription up to date with the rows a batch of commits changed.
func (s *sub) update(ctx context.Context, changed map[string]map[string]log.PK, rc *rowCache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped {
		return
	}
	p := s.plan
	full := s.needFull || p.mode != modePK
	if !full {
		for t := range changed {
			if !p.tables[t] {
				continue
			}
			if _, ok := p.restrict[t]; !ok {
				full = true
				break
			}
			// Keys are matched by SQL literals, and a REAL's literal may not round-trip
			// exactly: such keys take the full re-run.
			if rc.realKeys[t] {
				full = true
			}
		}
	}
	if full {
		if err := s.refreshLocked(ctx); err != nil {
			s.e.logger.Warn("re-evaluate subscription", "id", s.id, "err", err)
		}
		return
	}
	for t, pks := range changed {
		inst, ok := p.restrict[t]
		if !ok {
			continue
		}
		ti := rc.info[t]
		var sel [][]log.Value
		var keys map[string]bool
		for k, pk := range pks {
			if len(s.byInst[inst][k]) == 0 && ti != nil && !s.mayMatch(ctx, rc, ti, inst, pk) {
				continue
			}
			vals, err := log.UnpackPK(pk)
			if err != nil {
				continue
			}
			sel = append(sel, vals)
			if keys == nil {
				keys = map[string]bool{}
			}
			keys[k] = true
		}
		if len(sel) == 0 {
			continue
		}
		start := time.Now()
		_, rows, _, err := s.eval(ctx, p.restricted(inst, sel))
		s.e.metrics.match.Observe(time.Since(start).Seconds())
		if err != nil {
			s.e.logger.Warn("re-evaluate subscription rows", "id", s.id, "err", err)
			s.setNeedFull(true)
			if err := s.refreshLocked(ctx); err != nil {
				s.e.logger.Warn("re-evaluate subscription", "id", s.id, "err", err)
			}
			return
		}
		kept := rows[:0]
		for _, nr := range rows {
			if keys[nr.pks[inst]] {
				kept = append(kept, nr)
			}
		}
		scope := map[string]*row{}
		for k := range keys {
			for rk, r := range s.byInst[inst][k] {
				scope[rk] = r
			}
		}
		if err := s.applyLocked(ctx, kept, scope); err != nil {
			s.e.logger.Warn("apply subscription changes", "id", s.id, "err", err)
			s.setNeedFull(true)
			return
		}
	}
}

// mayMatch reports whether the row of table (instance inst) with primary key pk may now be
// part of the result: false only when it is certainly not (absent, or failing a
// column = constant conjunct of the WHERE clause).
func (s *sub) mayMatch(ctx context.Context, rc *rowCache, ti *tableInfo, inst int, pk log.PK) bool {
	f := rc.fetch(ctx, s.e.src, ti, pk)
	if f.err != nil {
		return true
	}
	if !f.found {
		return false
	}
	for _, pr := range s.plan.preds {
		if pr.inst != inst || pr.col >= len(f.vals) {
			continue
		}
		if f.vals[pr.col].IsNull() || !shareKey(f.eqKeys(pr.col), pr.keys) {
			return false
		}
	}
	return true
}

// applyLocked diffs rows (the new state of the rows in scope) against scope (the stored
// rows they replace), persists the difference and sends it to the clients.
func (s *sub) applyLocked(ctx context.Context, rows []newRow, scope map[string]*row) error {
	type ev struct {
		kind string
		r    *row
		old  *row // update: the stored row
		cell []log.Value
	}
	var evs []ev
	seen := make(map[string]bool, len(rows))
	for _, nr := range rows {
		seen[nr.key] = true
		old, ok := scope[nr.key]
		if !ok {
			old, ok = s.rows[nr.key]
		}
		if ok {
			if !equalCells(old.cells, nr.cells) {
				evs = append(evs, ev{kind: "update", old: old, cell: nr.cells})
			}
			continue
		}
		evs = append(evs, ev{kind: "insert", r: &row{key: nr.key, cells: nr.cells, pks: nr.pks}})
	}
	var dels []ev
	for k, r := range scope {
		if !seen[k] {
			dels = append(dels, ev{kind: "delete", old: r})
		}
	}
	if len(dels) == 0 && len(evs) == 0 {
		return nil
	}
	// Deletes first, in rowid order, so that the stream is deterministic.
	slices.SortFunc(dels, func(a, b ev) int { return cmp.Compare(a.old.rowid, b.old.rowid) })
	evs = append(dels, evs...)

	nextRowID, changeID := s.nextRowID, s.changeID
	ops := make([]rowOp, 0, len(evs))
	lines := make([]retained, 0, len(evs))
	for i := range evs {
		e := &evs[i]
		changeID++
		switch e.kind {
		case "insert":
			e.r.rowid = nextRowID
			nextRowID++
			ops = append(ops, rowOp{key: e.r.key, rowid: e.r.rowid, cells: e.r.cells})
			lines = append(lines, s.changeRetained(changeID, changeLine("insert", e.r.rowid, e.r.cells, changeID)))
		case "update":
			ops = append(ops, rowOp{key: e.old.key, rowid: e.old.rowid, cells: e.cell})
			lines = append(lines, s.changeRetained(changeID, changeLine("update", e.old.rowid, e.cell, changeID)))
		case "delete":
			ops = append(ops, rowOp{key: e.old.key})
			lines = append(lines, s.changeRetained(changeID, changeLine("delete", e.old.rowid, e.old.cells, changeID)))
		}
	}
	var prune uint64
	if retain := uint64(s.e.cfg.RetainChanges); changeID > retain {
		prune = changeID - retain + 1
	}
	if s.e.store != nil {
		if err := s.e.store.apply(ctx, s.id, s.columns, ops, lines, prune, changeID, nextRowID); err != nil {
			return fmt.Errorf("store changes: %w", err)
		}
	}
	// Persisted: now change memory and tell the clients.
	for i := range evs {
		e := &evs[i]
		switch e.kind {
		case "insert":
			s.rows[e.r.key] = e.r
			s.index(e.r)
		case "update":
			e.old.cells, e.old.line, e.old.tooLarge = e.cell, nil, 0
		case "delete":
			delete(s.rows, e.old.key)
			s.unindex(e.old)
		}
	}
	s.nextRowID, s.changeID = nextRowID, changeID
	s.changes = append(s.changes, lines...)
	if over := len(s.changes) - s.e.cfg.RetainChanges; over > 0 {
		s.changes = append(s.changes[:0:0], s.changes[over:]...)
	}
	s.trimRetainedLocked()
	s.dirty = true
	for _, l := range lines {
		if l.tooLarge != nil {
			// Never sent: every client ends with the error, and resumes past it.
			for c := range s.clients {
				s.detachLocked(c, l.tooLarge)
			}
			continue
		}
		s.broadcast(l.line)
	}
	s.e.metrics.events.Add(float64(len(lines)))
	return nil
}

func equalCells(a, b []log.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// hasReal reports whether a packed pk holds a REAL (or cannot be read).
func hasReal(pk log.PK) bool {
	vals, err := log.UnpackPK(pk)
	if err != nil {
		return true
	}
	for _, v := range vals {
		if v.Type == log.TypeReal {
			return true
		}
	}
	return false
}

// setNeedFull records whether the next evaluation must be a full one; the key index makes
// such a subscription a candidate of every batch on its tables, so that a failed
// evaluation is retried at the next commit. Called with s.mu held.
func (s *sub) setNeedFull(v bool) {
	if s.needFull == v {
		return
	}
	s.needFull = v
	s.e.keys.failing(s, v)
}
