package materializer

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync"

	"github.com/patinadb/patina/log"
	sqlite "modernc.org/sqlite"
)

// Capture in one pass. The capture triggers (captureTriggers) hand the old and new values of
// each row a local statement changes straight to Go, through the SQL function
// __patina_capture, instead of inserting them into a temp table that the writer then read
// back with a query after every transaction (issue 14: the read-back was about 4 us of the
// origin's CPU per row, the temp table's insert as much again). The triggers, and so the
// rows they see, are the same as before: AFTER INSERT, UPDATE and DELETE on each user table,
// only while the sink is on (a local transaction's statements, never a fold), and none for
// the implicit delete of INSERT OR REPLACE (rule L5).
//
// Whether the sink is on is asked of Go, through the SQL function __patina_capturing in each
// trigger's WHEN, not read from a temp table's row for every row written, a fold's rows
// too: that read cost a single-row INSERT on the writer about 3-4 us (a quarter of it) and
// each row of a 10-row INSERT about 0.7 us (BenchmarkCaptureWhen). The flag is the
// writer's (captureSink.on): runLocals sets it for a group's local transactions and clears
// it on every way out; nothing else writes it.
//
// The function exists only on the writer's connections (captureDriver); readers and every
// other connection do not know it, and write statements cannot name it
// (checkWrite refuses every __patina identifier). Its first argument picks the
// materializer (captureSinks), the second the table, by its index in the sink.
//
// Events arrive in trigger order, which is statement order. A statement that fails fails
// its transaction (runLocal), and the events of a transaction that failed or rolled back
// are dropped with it: each transaction starts from an empty sink.
const captureFunc = "__patina_capture"

// capturingFunc is __patina_capturing(sink): 1 while the sink is on, else 0.
const capturingFunc = "__patina_capturing"

// captureChunk bounds the row values of one call: SQLite allows 1,000 arguments, and a
// table is allowed up to 2,000 columns (an UPDATE passes twice as many values), so wide
// tables' triggers call the function once per chunk of values.
const captureChunk = 960

// captureSink receives the capture events of one materializer's writer connection. Only the
// writer goroutine touches it (the function runs inside the writer's statements).
type captureSink struct {
	on     bool     // the triggers hand rows to capture (runLocals)
	tables []*table // by the index baked into the triggers; replaced with them
	events []captureEvent
	// arena holds the events' values back to back, reused by the next transaction: one
	// allocation per transaction instead of one per row. Nothing keeps an event's values
	// past the transaction (localRows copies the values it needs).
	arena []log.Value
}

// maxArena bounds the values an idle sink keeps (64 bytes each).
const maxArena = 1 << 16

// take returns n NULL values from the arena.
func (s *captureSink) take(n int) []log.Value {
	if len(s.arena)+n > cap(s.arena) {
		// Events taken so far keep the old array.
		s.arena = make([]log.Value, 0, max(2*cap(s.arena), n, 256))
	}
	start := len(s.arena)
	s.arena = s.arena[:start+n]
	v := s.arena[start : start+n : start+n]
	clear(v)
	return v
}

// reset drops the events (a new local transaction starts).
func (s *captureSink) reset() {
	clear(s.events)
	s.events = s.events[:0]
	clear(s.arena) // the texts and blobs it points to
	if cap(s.arena) > maxArena {
		s.arena = nil
	} else {
		s.arena = s.arena[:0]
	}
}

var captureSinks = struct {
	sync.RWMutex
	m    map[int64]*captureSink
	next int64
}{m: map[int64]*captureSink{}}

func registerSink(s *captureSink) int64 {
	captureSinks.Lock()
	defer captureSinks.Unlock()
	captureSinks.next++
	captureSinks.m[captureSinks.next] = s
	return captureSinks.next
}

func unregisterSink(id int64) {
	captureSinks.Lock()
	delete(captureSinks.m, id)
	captureSinks.Unlock()
}

// captureDriver opens the writer's connections: the global "sqlite" driver with
// __patina_capture. A function registered on a driver lives as long as the program, so
// there is one, shared by every materializer of the process.
var captureDriver = func() *sqlite.Driver {
	d := &sqlite.Driver{}
	// VolatileArgs: text and blob arguments point into SQLite's memory; capture copies
	// what it keeps (and a text value is read to its full length, NULs included, where the
	// copying conversion would stop at the first NUL).
	if err := d.RegisterFunction(captureFunc, &sqlite.FunctionImpl{NArgs: -1, Scalar: capture, VolatileArgs: true}); err != nil {
		panic(err) // only a second registration of the name fails
	}
	// Not deterministic: SQLite must ask again for every row.
	if err := d.RegisterFunction(capturingFunc, &sqlite.FunctionImpl{NArgs: 1, Scalar: capturing}); err != nil {
		panic(err)
	}
	return d
}()

type captureConnector struct{ dsn string }

func (c captureConnector) Connect(context.Context) (driver.Conn, error) {
	return captureDriver.Open(c.dsn)
}
func (c captureConnector) Driver() driver.Driver { return captureDriver }

// openWriterDB opens the writer's database handle (the capture function on its
// connections).
func openWriterDB(dsn string) *sql.DB { return sql.OpenDB(captureConnector{dsn}) }

// sinkOf returns the sink whose id is the SQL value id.
func sinkOf(id driver.Value) *captureSink {
	n, _ := id.(int64)
	captureSinks.RLock()
	s := captureSinks.m[n]
	captureSinks.RUnlock()
	return s
}

// capturing is __patina_capturing(sink): whether the triggers hand rows to the sink now.
func capturing(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	s := sinkOf(args[0])
	if s == nil {
		return nil, fmt.Errorf("%s: no capture for sink %v", capturingFunc, args[0])
	}
	if s.on {
		return int64(1), nil
	}
	return int64(0), nil
}

// capture is __patina_capture(sink, table, op, part, values...): part 0 starts an event of
// op on the sink's table (the old values then the new ones, NULL where the op has none) and
// fills it from the first value on; part k fills the k-th chunk of the op's values.
func capture(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("%s: %d arguments", captureFunc, len(args))
	}
	ti, _ := args[1].(int64)
	op, _ := args[2].(int64)
	part, _ := args[3].(int64)
	s := sinkOf(args[0])
	if s == nil || ti < 0 || ti >= int64(len(s.tables)) {
		return nil, fmt.Errorf("%s: no capture for sink %v table %d", captureFunc, args[0], ti)
	}
	t := s.tables[ti]
	n := len(t.Cols)
	if part == 0 {
		s.events = append(s.events, captureEvent{t: t, op: op, vals: s.take(2 * n)})
	}
	if len(s.events) == 0 {
		return nil, fmt.Errorf("%s: part %d without an event", captureFunc, part)
	}
	ev := &s.events[len(s.events)-1]
	if ev.t != t || ev.op != op {
		return nil, fmt.Errorf("%s: part %d of another event", captureFunc, part)
	}
	// The op's values: both halves for an update, the new half for an insert, the old
	// half for a delete.
	dst := ev.vals
	switch op {
	case opInsert:
		dst = dst[n:]
	case opDelete:
		dst = dst[:n]
	}
	off := int(part) * captureChunk
	if off+len(args)-4 > len(dst) || part < 0 {
		return nil, fmt.Errorf("%s: part %d of %d values overflows %d", captureFunc, part, len(args)-4, len(dst))
	}
	for i, a := range args[4:] {
		v, err := captureValue(a)
		if err != nil {
			return nil, err
		}
		dst[off+i] = v
	}
	return nil, nil
}

// captureValue converts one volatile argument, copying text and blobs out of SQLite's
// memory.
func captureValue(a driver.Value) (log.Value, error) {
	switch x := a.(type) {
	case string:
		return log.Text(strings.Clone(x)), nil
	case []byte:
		return log.FromSQL(x) // copies
	}
	return log.FromSQL(a)
}

// setupCapture (re)creates the capture triggers on the writer connection, feeding the
// materializer's sink. Triggers fire only while the sink is on, that is while a local
// transaction's statements run, never during a fold.
func (m *Materializer) setupCapture(ctx context.Context, q querier, tables map[string]*table) error {
	if err := dropCapture(ctx, q); err != nil {
		return err
	}
	if m.capID == 0 {
		m.capID = registerSink(&m.cap)
	}
	m.cap.reset()
	m.cap.on = false
	m.cap.tables = m.cap.tables[:0]
	stmts := []string{
		"CREATE TEMP TABLE IF NOT EXISTS __patina_aff (t TEXT, n NUMERIC, r REAL)",
		"DELETE FROM temp.__patina_aff",
		"INSERT INTO temp.__patina_aff VALUES (NULL, NULL, NULL)",
	}
	for _, t := range tables {
		stmts = append(stmts, captureTriggers(t, m.capID, len(m.cap.tables))...)
		m.cap.tables = append(m.cap.tables, t)
	}
	for _, s := range stmts {
		if _, err := q.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// closeCapture forgets the sink (the writer connection is closing).
func (m *Materializer) closeCapture() {
	if m.capID != 0 {
		unregisterSink(m.capID)
		m.capID = 0
	}
	m.cap = captureSink{}
}

// dropCapture drops the capture triggers (and the temp capture table of older versions).
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
	_, err = q.ExecContext(ctx, "DROP TABLE IF EXISTS temp.__patina_cap")
	return err
}

const (
	opInsert = 1
	opUpdate = 2
	opDelete = 3
)

// captureTriggers are the three triggers of table t, which is table ti of sink id.
func captureTriggers(t *table, id int64, ti int) []string {
	ref := func(prefix string) []string {
		out := make([]string, len(t.Cols))
		for i, c := range t.Cols {
			out[i] = prefix + quoteIdent(c.Name)
		}
		return out
	}
	// calls are the trigger's statements: one call per chunk of values.
	calls := func(op int, vals []string) string {
		var b strings.Builder
		for part := 0; part == 0 || part*captureChunk < len(vals); part++ {
			chunk := vals[part*captureChunk : min(len(vals), (part+1)*captureChunk)]
			fmt.Fprintf(&b, "SELECT %s(%d, %d, %d, %d", captureFunc, id, ti, op, part)
			for _, v := range chunk {
				b.WriteString(", ")
				b.WriteString(v)
			}
			b.WriteString("); ")
		}
		return b.String()
	}
	mk := func(kind, event string, op int, vals []string) string {
		return fmt.Sprintf("CREATE TEMP TRIGGER %s AFTER %s ON main.%s WHEN %s(%d) BEGIN %sEND",
			quoteIdent("__patina_"+kind+"_"+t.Name), event, t.quoted, capturingFunc, id, calls(op, vals))
	}
	return []string{
		mk("ins", "INSERT", opInsert, ref("NEW.")),
		mk("upd", "UPDATE", opUpdate, append(ref("OLD."), ref("NEW.")...)),
		mk("del", "DELETE", opDelete, ref("OLD.")),
	}
}
