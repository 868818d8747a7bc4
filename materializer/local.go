package materializer

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/patinadb/patina/log"
)

// Internal tables of the view. Clock tables are __patina_clock_<table>.
const (
	metaTable    = "__patina_meta"
	pendingTable = "__patina_pending"
	failedTable  = "__patina_failed"
	captureTable = "temp.__patina_cap"
	captureOn    = "temp.__patina_on"
)

var internalDDL = []string{
	"CREATE TABLE IF NOT EXISTS " + metaTable + " (key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID",
	// Seqs of changesets that held changes for tables or columns the schema lacked; they are
	// refolded after each migration.
	"CREATE TABLE IF NOT EXISTS " + pendingTable + " (seq INTEGER PRIMARY KEY NOT NULL)",
	// Changesets the view refused (see foldIsolated), for operators.
	"CREATE TABLE IF NOT EXISTS " + failedTable + " (seq INTEGER PRIMARY KEY NOT NULL, site BLOB, version INTEGER, error TEXT)",
}

// setupCapture (re)creates the temp capture table and the capture triggers on the writer
// connection. Triggers fire only while temp.__patina_on says so, that is while a local
// transaction's statements run, never during a fold.
func setupCapture(ctx context.Context, q querier, tables map[string]*table) error {
	if err := dropCapture(ctx, q); err != nil {
		return err
	}
	width := 2
	for _, t := range tables {
		width = max(width, 2*len(t.Cols))
	}
	cols := make([]string, width)
	for i := range cols {
		cols[i] = "c" + strconv.Itoa(i)
	}
	stmts := []string{
		"CREATE TEMP TABLE IF NOT EXISTS __patina_on (v INTEGER NOT NULL)",
		"DELETE FROM " + captureOn,
		"INSERT INTO " + captureOn + " VALUES (0)",
		"CREATE TEMP TABLE IF NOT EXISTS __patina_aff (t TEXT, n NUMERIC, r REAL)",
		"DELETE FROM temp.__patina_aff",
		"INSERT INTO temp.__patina_aff VALUES (NULL, NULL, NULL)",
		"CREATE TEMP TABLE __patina_cap (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, op INTEGER NOT NULL, " + strings.Join(cols, ", ") + ")",
	}
	for _, t := range tables {
		stmts = append(stmts, captureTriggers(t)...)
	}
	for _, s := range stmts {
		if _, err := q.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

func dropCapture(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, "SELECT name FROM temp.sqlite_master WHERE type = 'trigger'")
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if _, err := q.ExecContext(ctx, "DROP TRIGGER temp."+quoteIdent(n)); err != nil {
			return err
		}
	}
	_, err = q.ExecContext(ctx, "DROP TABLE IF EXISTS "+captureTable)
	return err
}

const (
	opInsert = 1
	opUpdate = 2
	opDelete = 3
)

func captureTriggers(t *table) []string {
	n := len(t.Cols)
	cols := make([]string, 2*n)
	for i := range cols {
		cols[i] = "c" + strconv.Itoa(i)
	}
	vals := func(old, new bool) string {
		parts := make([]string, 0, 2*n)
		for _, c := range t.Cols {
			if old {
				parts = append(parts, "OLD."+quoteIdent(c.Name))
			} else {
				parts = append(parts, "NULL")
			}
		}
		for _, c := range t.Cols {
			if new {
				parts = append(parts, "NEW."+quoteIdent(c.Name))
			} else {
				parts = append(parts, "NULL")
			}
		}
		return strings.Join(parts, ", ")
	}
	lit := "'" + strings.ReplaceAll(t.Name, "'", "''") + "'"
	mk := func(kind, event string, op int, old, new bool) string {
		return fmt.Sprintf("CREATE TEMP TRIGGER %s AFTER %s ON main.%s WHEN (SELECT v FROM %s) BEGIN INSERT INTO %s (tbl, op, %s) VALUES (%s, %d, %s); END",
			quoteIdent("__patina_"+kind+"_"+t.Name), event, t.quoted, captureOn, captureTable,
			strings.Join(cols, ", "), lit, op, vals(old, new))
	}
	return []string{
		mk("ins", "INSERT", opInsert, false, true),
		mk("upd", "UPDATE", opUpdate, true, true),
		mk("del", "DELETE", opDelete, true, false),
	}
}

// localRow is the state of one row a local transaction touched.
type localRow struct {
	t           *table
	pk          log.PK
	rc          rowClock
	orig        rowClock // rc as stored before the transaction (superseded.go)
	sentTouched bool
	touched     []bool      // by clock ordinal
	vals        []log.Value // the row's current non-pk values, by clock ordinal
}

// runLocal runs one local transaction inside a savepoint of the writer's SQLite transaction
// and turns what the capture triggers saw into a changeset with the rules L1-L8 of docs/DESIGN.md section 3. The
// changeset (nil when nothing changed) gets version; its clock records are written. The
// user's statements run under user, whose end interrupts them (the rest under ctx). When the
// interrupt made SQLite roll back the whole writer transaction, the error wraps errGroupLost
// around the statement's error.
func (m *Materializer) runLocal(ctx, user context.Context, stmts []Statement, changesRows []bool, version log.Version, st *foldState) (TxResult, *log.Changeset, error) {
	w := m.w
	if _, err := w.exec(ctx, "SAVEPOINT patina_tx"); err != nil {
		return TxResult{}, nil, err
	}
	fail := func(err error) (TxResult, *log.Changeset, error) {
		if _, rerr := w.c.ExecContext(context.Background(), "ROLLBACK TO patina_tx"); rerr != nil {
			// No savepoint left: SQLite rolled the whole transaction back.
			return TxResult{}, nil, &groupLost{err}
		}
		w.c.ExecContext(context.Background(), "RELEASE patina_tx")
		return TxResult{}, nil, err
	}
	res := TxResult{Results: make([]StmtResult, len(stmts))}
	for i := range stmts {
		start := time.Now()
		m.inUser.Store(1)
		n, err := m.execUser(user, &stmts[i])
		m.inUser.Store(0)
		if err != nil {
			if user.Err() != nil {
				// Interrupted: say why (deadline, client gone, closing), not SQLite's
				// "interrupted".
				err = fmt.Errorf("%w: statement interrupted after %v", context.Cause(user), time.Since(start).Round(time.Millisecond))
				m.met.interrupted.Inc()
			}
			return fail(&StmtError{Index: i, Err: m.fault(classify(err))})
		}
		if i < len(changesRows) && !changesRows[i] {
			n = 0 // SQLite's count is an earlier statement's
		}
		res.Results[i] = StmtResult{RowsAffected: n, Time: time.Since(start)}
	}
	cs, err := m.captured(ctx, version, st)
	if err != nil {
		return fail(err)
	}
	if _, err := w.exec(ctx, "RELEASE patina_tx"); err != nil {
		return fail(err)
	}
	return res, cs, nil
}

// groupLost wraps the error of a statement whose interrupt rolled back the writer
// transaction; errors.Unwrap gives the statement's error back.
type groupLost struct{ err error }

func (e *groupLost) Error() string        { return e.err.Error() }
func (e *groupLost) Unwrap() error        { return e.err }
func (e *groupLost) Is(target error) bool { return target == errGroupLost }

func (m *Materializer) execUser(ctx context.Context, st *Statement) (int64, error) {
	if len(st.Params) > 0 && len(st.Named) > 0 {
		return 0, fmt.Errorf("%w: positional and named parameters together", ErrBadStatement)
	}
	args := make([]any, 0, len(st.Params)+len(st.Named))
	for _, v := range st.Params {
		if err := v.Validate(); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrBadStatement, err)
		}
		args = append(args, v.SQL())
	}
	for k, v := range st.Named {
		if err := v.Validate(); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrBadStatement, err)
		}
		args = append(args, sql.Named(strings.TrimLeft(k, ":@$"), v.SQL()))
	}
	if len(m.w.stmts) > 512 {
		// Bound the statement cache; internal statements are re-prepared on demand.
		m.w.resetStmts()
	}
	s, err := m.w.stmt(ctx, st.SQL)
	if err != nil {
		return 0, err
	}
	r, err := s.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

// captured reads the capture rows of the transaction just run, applies L1-L8 in capture
// order and returns the changeset (nil when nothing changed), with the rows' clocks
// written.
func (m *Materializer) captured(ctx context.Context, version log.Version, st *foldState) (*log.Changeset, error) {
	events, err := m.readCapture(ctx)
	if err != nil || len(events) == 0 {
		return nil, err
	}
	rows := &localRows{m: m, byKey: map[string]*localRow{}}
	for _, ev := range events {
		if err := rows.apply(ctx, ev); err != nil {
			return nil, err
		}
	}
	return m.localChangeset(ctx, version, rows.order, st)
}

// captureEvent is one row of the capture table: an insert, update or delete of a row of t,
// with the old values then the new ones (2 x len(t.Cols)).
type captureEvent struct {
	t    *table
	op   int64
	vals []log.Value
}

// readCapture reads the capture rows written since the last call. Capture rows of earlier
// transactions of the group stay until the group ends (one DELETE per group); a
// rolled-back transaction's rows went with its savepoint.
func (m *Materializer) readCapture(ctx context.Context) ([]captureEvent, error) {
	sel, err := m.w.stmt(ctx, "SELECT * FROM "+captureTable+" WHERE id > ? ORDER BY id")
	if err != nil {
		return nil, err
	}
	rows, err := sel.QueryContext(ctx, m.capSeen)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var events []captureEvent
	tmp := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range tmp {
		ptrs[i] = &tmp[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		if id, ok := tmp[0].(int64); ok && id > m.capSeen {
			m.capSeen = id
		}
		name, _ := tmp[1].(string)
		op, _ := tmp[2].(int64)
		t := m.lookupTable(name)
		if t == nil {
			return nil, fmt.Errorf("capture: unknown table %q", name)
		}
		vals := make([]log.Value, 2*len(t.Cols))
		for i := range vals {
			if vals[i], err = log.FromSQL(tmp[3+i]); err != nil {
				return nil, err
			}
		}
		events = append(events, captureEvent{t, op, vals})
	}
	return events, rows.Err()
}

// localRows are the rows one local transaction touched, in first-touch order, each with
// its clock as stored before the transaction and then moved by the rules.
type localRows struct {
	m     *Materializer
	byKey map[string]*localRow
	order []*localRow
}

// get returns the row of t whose primary key is in rowVals, loading its clock the first
// time.
func (lr *localRows) get(ctx context.Context, t *table, rowVals []log.Value) (*localRow, error) {
	pkv := make([]log.Value, len(t.PK))
	for i, c := range t.PK {
		pkv[i] = rowVals[c]
	}
	pk, err := log.PackPK(pkv...)
	if err != nil {
		return nil, fmt.Errorf("%w: table %s: primary key: %w", ErrConstraint, t.Name, err)
	}
	key := t.Name + "\x00" + string(pk)
	if r, ok := lr.byKey[key]; ok {
		return r, nil
	}
	r := &localRow{t: t, pk: pk, touched: make([]bool, len(t.NonPK)), vals: make([]log.Value, len(t.NonPK))}
	if _, err := lr.m.loadClock(ctx, t, pk, &r.rc); err != nil {
		return nil, err
	}
	r.rc = r.rc.clone()
	if lr.m.sup.on.Load() {
		r.orig = r.rc.clone()
	}
	lr.byKey[key] = r
	lr.order = append(lr.order, r)
	return r, nil
}

// setVals records the row's non-pk values from a full row.
func (r *localRow) setVals(rowVals []log.Value) {
	for ord, ci := range r.t.NonPK {
		r.vals[ord] = rowVals[ci]
	}
}

// del is L3: a delete makes the causal length even and drops the column clocks.
func (r *localRow) del() {
	if s := &r.rc.Sentinel; s.Present {
		s.ColVersion++
	} else {
		*s = cellClock{Present: true, ColVersion: 2}
	}
	r.rc.dropCols()
	r.sentTouched = true
	clear(r.touched)
}

// bump moves column ord's version on by one (1 when it had none).
func (r *localRow) bump(ord int) {
	c := r.rc.col(ord)
	if c.Present {
		c.ColVersion++
	} else {
		*c = cellClock{Present: true, ColVersion: 1}
	}
	r.touched[ord] = true
}

// apply moves the clocks of the rows ev touches by the rules L1-L8 of docs/DESIGN.md.
func (lr *localRows) apply(ctx context.Context, ev captureEvent) error {
	t := ev.t
	n := len(t.Cols)
	oldV, newV := ev.vals[:n], ev.vals[n:]
	switch ev.op {
	case opInsert:
		r, err := lr.get(ctx, t, newV)
		if err != nil {
			return err
		}
		r.insert()
		r.setVals(newV)
	case opUpdate:
		ro, err := lr.get(ctx, t, oldV)
		if err != nil {
			return err
		}
		rn, err := lr.get(ctx, t, newV)
		if err != nil {
			return err
		}
		if ro == rn { // L2
			for ord, ci := range t.NonPK {
				if !oldV[ci].Equal(newV[ci]) {
					rn.bump(ord)
				}
			}
		} else {
			moveKey(ro, rn, oldV, newV)
		}
		rn.setVals(newV)
	case opDelete:
		r, err := lr.get(ctx, t, oldV)
		if err != nil {
			return err
		}
		r.del()
	}
	return nil
}

// insert moves the clocks of an inserted row: L1 for a new key, L4 for a key with history
// and no live row, L5 for a REPLACE over a live row.
func (r *localRow) insert() {
	switch cl := r.rc.CL(); {
	case cl == 0: // L1
		if len(r.t.NonPK) == 0 {
			r.rc.Sentinel = cellClock{Present: true, ColVersion: 1}
			r.sentTouched = true
		}
		for ord := range r.t.NonPK {
			*r.rc.col(ord) = cellClock{Present: true, ColVersion: 1}
			r.touched[ord] = true
		}
	case cl%2 == 0: // L4
		r.rc.Sentinel.ColVersion = cl + 1
		r.sentTouched = true
		for ord := range r.t.NonPK {
			r.bump(ord)
		}
	default: // L5: the REPLACE's implicit delete fired no trigger
		if r.rc.Sentinel.Present {
			r.rc.Sentinel.ColVersion += 2
			r.sentTouched = true
		}
		for ord := range r.t.NonPK {
			r.bump(ord)
		}
	}
}

// moveKey is L7: a primary key update is a delete of the old key and a (re)insert of the
// new one that keeps the column versions.
func moveKey(ro, rn *localRow, oldV, newV []log.Value) {
	moved := append([]cellClock(nil), ro.rc.Cols...)
	ro.del()
	switch cl := rn.rc.CL(); {
	case cl == 0:
		rn.rc.Sentinel = cellClock{Present: true, ColVersion: 1}
	case cl%2 == 0:
		rn.rc.Sentinel = cellClock{Present: true, ColVersion: cl + 1}
	default:
		rn.rc.Sentinel = cellClock{Present: true, ColVersion: cl + 2}
	}
	rn.sentTouched = true
	rn.rc.dropCols()
	for ord, ci := range rn.t.NonPK {
		c := rn.rc.col(ord)
		if ord < len(moved) && moved[ord].Present && moved[ord].ColVersion > 0 {
			*c = cellClock{Present: true, ColVersion: moved[ord].ColVersion}
			if !oldV[ci].Equal(newV[ci]) {
				c.ColVersion++
			}
		} else {
			*c = cellClock{Present: true, ColVersion: 1}
		}
		rn.touched[ord] = true
	}
}

// localChangeset turns the touched rows into the transaction's changeset (sentinel first,
// then touched columns, per row in first-touch order), stamps the clocks with their new
// (site, version, ordinal) and writes them. It returns nil when no row changed.
func (m *Materializer) localChangeset(ctx context.Context, version log.Version, order []*localRow, st *foldState) (_ *log.Changeset, err error) {
	defer func() {
		if err == nil {
			err = m.flush(ctx) // the clocks, buffered by storeClock
		}
		m.wb.reset()
	}()
	cs := &log.Changeset{Site: m.site, Version: version, TS: m.hlc.Now(), Kind: log.KindData}
	for _, r := range order {
		start := len(cs.Changes)
		cl := r.rc.CL()
		if r.sentTouched && r.rc.Sentinel.Present {
			r.rc.Sentinel.Site, r.rc.Sentinel.Version, r.rc.Sentinel.Seq = m.site, version, uint64(len(cs.Changes))
			r.rc.Sentinel.Synthetic = false
			cs.Changes = append(cs.Changes, log.Change{Table: r.t.Name, PK: r.pk, CID: log.SentinelCID,
				ColVersion: r.rc.Sentinel.ColVersion, CL: cl, Ord: uint64(len(cs.Changes))})
		}
		for ord, touched := range r.touched {
			if !touched || ord >= len(r.rc.Cols) || !r.rc.Cols[ord].Present {
				continue
			}
			c := &r.rc.Cols[ord]
			c.Site, c.Version, c.Seq = m.site, version, uint64(len(cs.Changes))
			cs.Changes = append(cs.Changes, log.Change{Table: r.t.Name, PK: r.pk, CID: r.t.nonPKCol(ord).Name,
				Val: r.vals[ord], ColVersion: c.ColVersion, CL: cl, Ord: uint64(len(cs.Changes))})
		}
		if len(cs.Changes) == start {
			continue
		}
		if err := m.storeClock(ctx, r.t, r.pk, &r.rc, st); err != nil {
			return nil, err
		}
		m.markDisplaced(&r.orig, &r.rc)
		st.rows = append(st.rows, RowChange{Table: r.t.Name, PK: r.pk, CL: cl})
	}
	if len(cs.Changes) == 0 {
		return nil, nil
	}
	cs.LastOrd = uint64(len(cs.Changes) - 1)
	cs.Span = log.OrdRange{First: 0, Last: cs.LastOrd}
	st.cells += len(cs.Changes)
	return cs, nil
}
