package subs

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// rowCache holds the rows fetched by primary key during one batch of notices, shared by
// every subscription the batch touches.
type rowCache struct {
	rows map[string]map[string]*fetched // table -> packed pk -> row
	// realKeys: the table has a changed key holding a REAL.
	realKeys map[string]bool
	info     map[string]*tableInfo // the changed tables' schemas (nil when not loaded)
}

type fetched struct {
	err   error
	found bool
	vals  []log.Value
	keys  map[int][]string // eqKeys of vals[i], computed at first use
}

// eqKeys returns eqKeys(f.vals[col]), computed once per batch however many subscriptions
// test it.
func (f *fetched) eqKeys(col int) []string {
	if k, ok := f.keys[col]; ok {
		return k
	}
	if f.keys == nil {
		f.keys = map[int][]string{}
	}
	k := eqKeys(f.vals[col])
	f.keys[col] = k
	return k
}

// fetch reads the current row of table with primary key pk.
func (rc *rowCache) fetch(ctx context.Context, src Source, ti *tableInfo, pk log.PK) *fetched {
	byPK := rc.rows[ti.Name]
	if byPK == nil {
		byPK = map[string]*fetched{}
		rc.rows[ti.Name] = byPK
	}
	if f, ok := byPK[string(pk)]; ok {
		return f
	}
	f := &fetched{}
	byPK[string(pk)] = f
	vals, err := log.UnpackPK(pk)
	if err != nil || len(vals) != len(ti.PK) {
		f.err = fmt.Errorf("pk %s does not match the table's key", pk)
		return f
	}
	var b strings.Builder
	// The columns known at analysis, by name: a column added since does not shift them.
	b.WriteString("SELECT ")
	for i, c := range ti.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(" FROM ")
	b.WriteString(quoteIdent(ti.Name))
	b.WriteString(" WHERE ")
	for i, c := range ti.PK {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(quoteIdent(c))
		b.WriteString(" = ")
		b.WriteString(vals[i].Quote())
	}
	rows, err := src.Query(ctx, materializer.Statement{SQL: b.String()})
	if err != nil {
		f.err = err
		return f
	}
	defer rows.Close()
	pkIdx := make([]int, len(ti.PK))
	for i, c := range ti.PK {
		pkIdx[i] = -1
		for j, col := range ti.Columns {
			if col == c {
				pkIdx[i] = j
			}
		}
	}
	for rows.Next() {
		v := rows.Values()
		if len(v) != len(ti.Columns) {
			f.err = fmt.Errorf("table %s changed shape", ti.Name)
			return f
		}
		got := make([]log.Value, len(pkIdx))
		for i, j := range pkIdx {
			if j >= 0 {
				got[i] = v[j]
			}
		}
		// A collation may match other keys; keep only the exact one.
		if p, err := log.PackPK(got...); err == nil && string(p) == string(pk) {
			f.found = true
			f.vals = append([]log.Value(nil), v...)
		}
	}
	f.err = rows.Err()
	return f
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

func shareKey(ka, kb []string) bool {
	for _, x := range ka {
		for _, y := range kb {
			if x == y {
				return true
			}
		}
	}
	return false
}

func eqKeys(v log.Value) []string {
	var out []string
	num := func(f float64) {
		out = append(out, "n"+strconv.FormatFloat(f, 'g', -1, 64))
	}
	text := func(s string) {
		out = append(out, "t"+strings.ToLower(strings.TrimRight(s, " ")))
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			num(f)
		}
	}
	switch v.Type {
	case log.TypeInteger:
		num(float64(v.Int))
		text(strconv.FormatInt(v.Int, 10))
	case log.TypeReal:
		num(v.Real)
		text(strconv.FormatFloat(v.Real, 'g', -1, 64))
	case log.TypeText:
		text(v.Text)
	case log.TypeBlob:
		text(string(v.Blob))
	}
	return out
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
