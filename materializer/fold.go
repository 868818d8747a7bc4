package materializer

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strconv"

	"github.com/patinadb/patina/log"
)

// foldState collects what one SQLite transaction of the writer changed.
type foldState struct {
	rows  []RowChange
	cells int
	buf   []byte
	rc    rowClock
	old   rowClock // the row's clock before the merge (superseded.go)
	mask  []byte   // scratch of bufferRow
	args  []any    // scratch of bufferRow
	pre   clockPreload
	// Scratch of foldRow, reused row after row (a row's fold uses them only until it
	// returns: bufferRow copies the values out): they were a quarter of the bytes the
	// receivers' fold allocated.
	pkArgs  []any
	written []bool
	vals    []log.Value
}

// foldChangeset merges one complete changeset into the view with the rules R1-R9 and of docs/DESIGN.md section 3
// R12. Changes for tables or columns the schema does not have yet are skipped and the
// changeset's seq is recorded in the pending table, to be refolded after a migration.
func (m *Materializer) foldChangeset(ctx context.Context, cs *log.Changeset, st *foldState) (err error) {
	if cs.Kind != log.KindData {
		return nil
	}
	defer func() {
		if err == nil {
			err = m.flush(ctx)
		}
		m.wb.reset()
	}()
	pending := false
	ch := cs.Changes
	if err := m.preloadClocks(ctx, ch, &st.pre); err != nil {
		return err
	}
	for i := 0; i < len(ch); {
		j := i + 1
		for j < len(ch) && ch[j].Table == ch[i].Table && bytes.Equal(ch[j].PK, ch[i].PK) {
			j++
		}
		p, err := m.foldRow(ctx, cs, ch[i:j], st)
		if err != nil {
			return err
		}
		pending = pending || p
		i = j
	}
	st.cells += len(ch)
	if pending && cs.Seq != 0 {
		if _, err := m.w.exec(ctx, "INSERT OR IGNORE INTO "+pendingTable+"(seq) VALUES (?)", int64(cs.Seq)); err != nil {
			return fmt.Errorf("record pending: %w", err)
		}
	}
	return nil
}

func (m *Materializer) lookupTable(name string) *table {
	if t, ok := m.tables[name]; ok {
		return t
	}
	return m.tables[lowerASCII(name)]
}

func (t *table) ordOf(cid string) (int, bool) {
	if o, ok := t.ordByName[cid]; ok {
		return o, true
	}
	o, ok := t.ordByName[lowerASCII(cid)]
	return o, ok
}

// originAfter orders clock records on an exact tie (R12): the greater site id is recorded;
// between records of one site the later version and seq, so that every replica's clock ends
// identical whatever the delivery order.
func originAfter(a, b *cellClock) bool {
	if c := a.Site.Compare(b.Site); c != 0 {
		return c > 0
	}
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	return a.Seq > b.Seq
}

// tieSentinel handles a sentinel change whose cl equals the row's. cr-sqlite ignores it; the
// contents are the same whatever is recorded, so Patina records what makes every replica's
// clock identical in any delivery order: the least origin among the sentinel changes that
// carry this cl. A sentinel that R4 made up from a column change (which overtook the
// sentinel change of its cl) gives way to the real one; a live row known from its columns
// only (cl 1) takes the sentinel an L7 key move sends.
func tieSentinel(rc *rowClock, rec *cellClock) bool {
	s := &rc.Sentinel
	if !s.Present || s.Synthetic || originAfter(s, rec) {
		*s = *rec
		s.Synthetic = false
		return true
	}
	return false
}

// foldRow merges the changes of one row (consecutive in a changeset). It reports whether
// some change was skipped for want of schema.
func (m *Materializer) foldRow(ctx context.Context, cs *log.Changeset, ch []log.Change, st *foldState) (pending bool, err error) {
	t := m.lookupTable(ch[0].Table)
	if t == nil {
		return true, nil
	}
	pkVals, err := log.UnpackPK(ch[0].PK)
	if err != nil || len(pkVals) != len(t.PK) {
		// Validated changesets always unpack; a key of the wrong width cannot be folded into
		// this table. It stays in the log; say so loudly.
		m.logger.Warn("change does not fit the table's primary key; skipped", "table", t.Name,
			"site", cs.Site, "version", cs.Version, "pk", ch[0].PK.String())
		return false, nil
	}
	if n := len(t.NonPK); cap(st.written) < n {
		st.written, st.vals = make([]bool, n), make([]log.Value, n)
	}
	f := rowFold{m: m, t: t, cs: cs, rc: &st.rc, pkArgs: st.pkArgs[:0],
		scratchW: st.written[:len(t.NonPK)], scratchV: st.vals[:len(t.NonPK)]}
	for _, v := range pkVals {
		f.pkArgs = append(f.pkArgs, v.SQL())
	}
	defer func() { st.pkArgs = f.pkArgs[:0] }()
	if err := m.rowClock(ctx, t, ch[0].PK, &st.pre, f.rc); err != nil {
		return false, err
	}
	track := m.sup.on.Load()
	if track {
		recordsOf(&st.old, f.rc)
	}
	for k := range ch {
		if err := f.merge(ctx, &ch[k]); err != nil {
			return false, err
		}
	}
	if track {
		m.markDisplaced(&st.old, f.rc)
		m.markLost(t, cs, ch, f.rc)
	}
	if !f.changed {
		return f.pending, nil
	}
	if err := f.write(ctx, ch[0].PK, st); err != nil {
		return false, err
	}
	return f.pending, nil
}

// rowFold is the merge of one row's changes from one changeset: the row's clock, moved
// change by change by the rules R1-R12 of docs/DESIGN.md, and the writes the view needs.
type rowFold struct {
	m      *Materializer
	t      *table
	cs     *log.Changeset
	rc     *rowClock
	pkArgs []any

	written    []bool      // by clock ordinal: the column takes newVals[ord]
	newVals    []log.Value // by clock ordinal
	nwritten   int
	ensure     bool        // the row must exist (live) after the fold
	needDelete bool        // the stored row goes first (a delete won)
	changed    bool        // the clock moved: store it and notify
	pending    bool        // a change named a column this node's schema lacks yet
	cur        []log.Value // the row's stored values, loaded on the first tie

	scratchW []bool      // written and newVals once the row writes a column (foldState's)
	scratchV []log.Value // (cleared then)
}

// merge applies one change to the row's clock and pending writes.
func (f *rowFold) merge(ctx context.Context, c *log.Change) error {
	rc := f.rc
	local := rc.CL()
	if c.CL < local { // R1
		return nil
	}
	rec := cellClock{Present: true, ColVersion: c.ColVersion, Site: f.cs.Site, Version: f.cs.Version, Seq: c.Ord}
	if c.CL%2 == 0 { // R2: a delete
		if c.CL == local {
			f.changed = tieSentinel(rc, &rec) || f.changed
			return nil
		}
		rec.ColVersion = c.CL
		rc.dropCols()
		rc.Sentinel = rec
		clear(f.written)
		f.nwritten, f.ensure, f.needDelete, f.changed = 0, false, true, true
		return nil
	}
	if c.IsSentinel() { // R3
		rec.ColVersion = c.CL
		if c.CL == local {
			f.changed = tieSentinel(rc, &rec) || f.changed
			return nil
		}
		f.resurrect(rec)
		return nil
	}
	ord, ok := f.t.ordOf(c.CID)
	if !ok {
		if _, isPK := f.t.pkByName[lowerASCII(c.CID)]; !isPK {
			f.pending = true // a column this node's schema lacks yet
		}
		return nil
	}
	win, val := true, c.Val
	if c.CL > local { // R4: resurrect or create; the change wins outright
		if local%2 == 1 || c.CL > 1 {
			srec := rec
			srec.ColVersion = c.CL
			srec.Synthetic = true
			f.resurrect(srec)
		}
	} else {
		var err error
		if win, val, err = f.columnWins(ctx, c, ord, &rec); err != nil {
			return err
		}
	}
	if !win {
		return nil
	}
	*rc.col(ord) = rec
	if f.written == nil {
		f.written, f.newVals = f.scratchW, f.scratchV
		clear(f.written)
		clear(f.newVals)
	}
	if !f.written[ord] {
		f.nwritten++
	}
	f.written[ord], f.newVals[ord] = true, val
	f.ensure, f.changed = true, true
	return nil
}

// resurrect makes the row live again under rec, dropping the column clocks of its past life.
func (f *rowFold) resurrect(rec cellClock) {
	f.rc.dropCols()
	f.rc.Sentinel = rec
	f.ensure = true
	f.changed = true
}

// columnWins decides a column change of the row's current life (R5, R6): the higher column
// version wins; on a tie the greater value (after the column's affinity) wins, and equal
// values keep the least origin (R12), which moves the clock but writes nothing.
func (f *rowFold) columnWins(ctx context.Context, c *log.Change, ord int, rec *cellClock) (bool, log.Value, error) {
	var held cellClock
	if ord < len(f.rc.Cols) {
		held = f.rc.Cols[ord]
	}
	switch {
	case !held.Present || c.ColVersion > held.ColVersion:
		return true, c.Val, nil
	case c.ColVersion < held.ColVersion:
		return false, log.Value{}, nil
	}
	m, aff := f.m, f.t.nonPKCol(ord).aff
	in, err := m.aff.convert(ctx, m.w, aff, c.Val)
	if err != nil {
		return false, log.Value{}, err
	}
	var lv log.Value
	if f.written != nil && f.written[ord] {
		if lv, err = m.aff.convert(ctx, m.w, aff, f.newVals[ord]); err != nil {
			return false, log.Value{}, err
		}
	} else {
		if f.cur == nil {
			if f.cur, err = m.readRow(ctx, f.t, f.pkArgs); err != nil {
				return false, log.Value{}, err
			}
		}
		lv = f.cur[ord]
	}
	switch cmp := log.Compare(in, lv); {
	case cmp > 0:
		return true, in, nil
	case cmp == 0 && originAfter(rec, &held): // R12
		*f.rc.col(ord) = *rec
		f.changed = true
	}
	return false, log.Value{}, nil
}

// write brings the view's row in line with the merged clock and stores the clock.
func (f *rowFold) write(ctx context.Context, pk log.PK, st *foldState) error {
	m, t := f.m, f.t
	cl := f.rc.CL()
	if f.needDelete {
		// Rows are written in fold order: what is buffered goes first.
		if err := m.flush(ctx); err != nil {
			return err
		}
		if _, err := m.w.exec(ctx, t.sqlDelete, f.pkArgs...); err != nil {
			return fmt.Errorf("delete row of %s: %w", t.Name, err)
		}
	}
	if cl%2 == 1 {
		switch {
		case f.nwritten > 0:
			m.bufferRow(f, pk, st)
		case f.ensure:
			if err := m.flush(ctx); err != nil {
				return err
			}
			if _, err := m.w.exec(ctx, t.sqlEnsure, f.pkArgs...); err != nil {
				return fmt.Errorf("create row of %s: %w", t.Name, err)
			}
		}
	}
	if err := m.storeClock(ctx, t, pk, f.rc, st); err != nil {
		return err
	}
	st.rows = append(st.rows, RowChange{Table: t.Name, PK: pk, CL: cl})
	return nil
}

// bufferRow queues the upsert of the row's written columns (writeBuf).
func (m *Materializer) bufferRow(f *rowFold, pk log.PK, st *foldState) {
	t := f.t
	mask := t.maskKey(f.written, st.mask[:0])
	args := append(st.args[:0], f.pkArgs...)
	for i, w := range f.written {
		if w {
			args = append(args, f.newVals[i].SQL())
		}
	}
	m.wb.addRow(t, pk, mask, args...)
	clear(args)
	st.args = args[:0]
}

// clockPreload holds the clocks of the rows of the changeset being folded, read before its
// fold with a few statements (pk IN (...) of 64, 16, 4 and 1 keys) rather than one query a
// row: the per-statement cost of database/sql and modernc was most of the fold's clock
// reads (8.8 us of the 77.5 us of agent CPU per replicated row of 100-row batches), and a
// row a batch creates has no clock to find anyway, which one statement learns for 64 rows.
//
// A preloaded clock is the row's clock at the start of the changeset. It stays exact until
// the changeset writes that row, which only the row's own fold does (a row touches only its
// own row and clock), so each entry is used once, by the row's first run of changes: a row
// that comes back later in the changeset reads its clock as before (loadClock, which
// flushes its buffered writes first).
type clockPreload struct {
	tabs  map[*table]map[string]preClock
	order []preRows // tables in first-seen order, with their keys
	arena []byte    // the clocks read, back to back
	args  []any
}

type preRows struct {
	t   *table
	pks [][]byte
}

// preClock locates one preloaded clock in the arena; n < 0: the row has no clock.
type preClock struct{ off, n int }

// preloadClocks reads the clocks of the rows of ch (a changeset's changes) into p, when
// there are at least two rows.
func (m *Materializer) preloadClocks(ctx context.Context, ch []log.Change, p *clockPreload) error {
	for _, tm := range p.tabs {
		clear(tm)
	}
	for i := range p.order {
		p.order[i].pks = p.order[i].pks[:0]
	}
	p.order, p.arena = p.order[:0], p.arena[:0]
	if m.cfg.noClockPreload || len(ch) < 2 {
		return nil
	}
	rows := 0
	for i := 0; i < len(ch); {
		j := i + 1
		for j < len(ch) && ch[j].Table == ch[i].Table && bytes.Equal(ch[j].PK, ch[i].PK) {
			j++
		}
		if t := m.lookupTable(ch[i].Table); t != nil {
			if p.tabs == nil {
				p.tabs = map[*table]map[string]preClock{}
			}
			tm := p.tabs[t]
			if tm == nil {
				tm = map[string]preClock{}
				p.tabs[t] = tm
			}
			if _, dup := tm[string(ch[i].PK)]; !dup {
				tm[string(ch[i].PK)] = preClock{n: -1}
				p.addKey(t, ch[i].PK)
				rows++
			}
		}
		i = j
	}
	if rows < 2 {
		for _, r := range p.order {
			clear(p.tabs[r.t])
		}
		return nil
	}
	if err := m.flush(ctx); err != nil { // empty between changesets; cheap
		return err
	}
	for _, r := range p.order {
		if err := m.preloadTable(ctx, r.t, r.pks, p); err != nil {
			return err
		}
	}
	m.clockPreloads.Add(int64(rows))
	return nil
}

func (p *clockPreload) addKey(t *table, pk []byte) {
	for i := range p.order {
		if p.order[i].t == t {
			p.order[i].pks = append(p.order[i].pks, pk)
			return
		}
	}
	if len(p.order) < cap(p.order) {
		p.order = p.order[:len(p.order)+1]
		p.order[len(p.order)-1].t = t
		p.order[len(p.order)-1].pks = append(p.order[len(p.order)-1].pks[:0], pk)
		return
	}
	p.order = append(p.order, preRows{t: t, pks: [][]byte{pk}})
}

// preloadTable reads the clocks of t's rows pks into p.
func (m *Materializer) preloadTable(ctx context.Context, t *table, pks [][]byte, p *clockPreload) error {
	tm := p.tabs[t]
	if cap(p.args) < 64 {
		p.args = make([]any, 0, 64)
	}
	return m.scanClocks(ctx, t, pks, p.args, func(pk, raw []byte) error {
		if _, ok := tm[string(pk)]; ok {
			tm[string(pk)] = preClock{off: len(p.arena), n: len(raw)}
			p.arena = append(p.arena, raw...)
		}
		return nil
	})
}

// rowClock reads the clock of t's row pk into rc: from the preload when it holds the row
// (once), else from the clock table.
func (m *Materializer) rowClock(ctx context.Context, t *table, pk log.PK, p *clockPreload, rc *rowClock) error {
	if tm := p.tabs[t]; len(tm) > 0 {
		if e, ok := tm[string(pk)]; ok {
			delete(tm, string(pk)) // the row's fold writes it: the entry is stale after
			if e.n < 0 {
				*rc = rowClock{Cols: rc.Cols[:0]}
				return nil
			}
			if err := decodeClock(p.arena[e.off:e.off+e.n], rc); err != nil {
				return fmt.Errorf("clock of %s %v: %w", t.Name, pk, err)
			}
			return nil
		}
	}
	_, err := m.loadClock(ctx, t, pk, rc)
	return err
}

func (m *Materializer) loadClock(ctx context.Context, t *table, pk log.PK, rc *rowClock) (bool, error) {
	if m.wb.pendingKey(t, pk) {
		// The row's last writes are still buffered: write them before reading it back.
		if err := m.flush(ctx); err != nil {
			return false, err
		}
	}
	if f := m.clockFilter(ctx, t); f != nil && f.absent(pk) {
		m.clockSkips.Add(1)
		*rc = rowClock{Cols: rc.Cols[:0]}
		return false, nil
	}
	s, err := m.w.stmt(ctx, t.sqlClockGet)
	if err != nil {
		return false, err
	}
	rows, err := s.QueryContext(ctx, []byte(pk))
	if err != nil {
		return false, fmt.Errorf("read clock of %s: %w", t.Name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		*rc = rowClock{Cols: rc.Cols[:0]}
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("read clock of %s: %w", t.Name, err)
		}
		return false, nil
	}
	// RawBytes: decoded before the next call on rows, so no copy is needed.
	var raw sql.RawBytes
	if err := rows.Scan(&raw); err != nil {
		return false, fmt.Errorf("read clock of %s: %w", t.Name, err)
	}
	if err := decodeClock(raw, rc); err != nil {
		return false, fmt.Errorf("clock of %s %v: %w", t.Name, pk, err)
	}
	return true, nil
}

func (m *Materializer) storeClock(ctx context.Context, t *table, pk log.PK, rc *rowClock, st *foldState) error {
	st.buf = rc.encode(st.buf)
	m.wb.addClock(t, pk, int64(rc.CL()), st.buf)
	return nil
}

// readRow reads the stored non-pk values of a row (NULLs when it does not exist).
func (m *Materializer) readRow(ctx context.Context, t *table, pkArgs []any) ([]log.Value, error) {
	out := make([]log.Value, len(t.NonPK))
	if len(t.NonPK) == 0 {
		return out, nil
	}
	s, err := m.w.stmt(ctx, t.sqlReadRow)
	if err != nil {
		return nil, err
	}
	rows, err := s.QueryContext(ctx, pkArgs...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if rows.Next() {
		tmp := make([]any, len(t.NonPK))
		if err := scanValues(rows, out, tmp); err != nil {
			return nil, err
		}
	}
	return out, rows.Err()
}

// affinityConv turns an incoming value into the value its column would store (docs/DESIGN.md rule R8),
// so that R6 compares stored values. The common cases are decided in Go; text into numeric
// columns and reals into text columns are converted by SQLite itself through a scratch row.
type affinityConv struct{}

func (affinityConv) convert(ctx context.Context, w *dbconn, aff affinity, v log.Value) (log.Value, error) {
	switch {
	case aff == affBlob, v.Type == log.TypeNull, v.Type == log.TypeBlob:
		return v, nil
	case aff == affText:
		switch v.Type {
		case log.TypeText:
			return v, nil
		case log.TypeInteger:
			return log.Text(strconv.FormatInt(v.Int, 10)), nil
		}
	case aff == affReal:
		switch v.Type {
		case log.TypeReal:
			return v, nil
		case log.TypeInteger:
			return log.Real(float64(v.Int)), nil
		}
	default: // INTEGER, NUMERIC
		if v.Type == log.TypeInteger {
			return v, nil
		}
	}
	s, err := w.stmt(ctx, "UPDATE temp.__patina_aff SET t = ?1, n = ?1, r = ?1 RETURNING t, n, r")
	if err != nil {
		return v, err
	}
	var tv, nv, rv any
	if err := s.QueryRowContext(ctx, v.SQL()).Scan(&tv, &nv, &rv); err != nil {
		return v, fmt.Errorf("affinity: %w", err)
	}
	pick := nv
	switch aff {
	case affText:
		pick = tv
	case affReal:
		pick = rv
	}
	return log.FromSQL(pick)
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 32
				}
			}
			return string(b)
		}
	}
	return s
}
