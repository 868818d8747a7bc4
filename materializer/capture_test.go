package materializer

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
)

// refCaptureTriggers are the capture triggers as they were before capture went through
// __patina_capture: each row change inserted into a temp table, which the writer read back
// after the transaction. TestCaptureEqualsReadBack runs both side by side. They fire when
// the sink id's capture triggers do.
func refCaptureTriggers(t *table, id int64) []string {
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
	mk := func(kind, event string, op int, old, new bool) string {
		return fmt.Sprintf("CREATE TEMP TRIGGER %s AFTER %s ON main.%s WHEN %s(%d) BEGIN INSERT INTO temp.ref_cap (tbl, op, %s) VALUES (%s, %d, %s); END",
			quoteIdent("ref_"+kind+"_"+t.Name), event, t.quoted, capturingFunc, id, strings.Join(cols, ", "), sqlQuote(t.Name), op, vals(old, new))
	}
	return []string{
		mk("ins", "INSERT", opInsert, false, true),
		mk("upd", "UPDATE", opUpdate, true, true),
		mk("del", "DELETE", opDelete, true, false),
	}
}

// writerConn opens a view in a temp dir through the writer's driver (the capture functions
// on it) and returns its one connection, closed with the test.
func writerConn(tb testing.TB) *sql.Conn {
	tb.Helper()
	db := openWriterDB(dsn(filepath.Join(tb.TempDir(), "v.db"), false, 0))
	db.SetMaxOpenConns(1)
	c, err := db.Conn(context.Background())
	if err != nil {
		db.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.Close()
		db.Close()
	})
	return c
}

// setupCaptureOn creates the tables of ddl on c and the capture triggers of a materializer
// whose sink is forgotten with the test, and returns it with c's tables; capture is off.
func setupCaptureOn(tb testing.TB, c *sql.Conn, ddl ...string) (*Materializer, map[string]*table) {
	tb.Helper()
	ctx := context.Background()
	for _, q := range ddl {
		if _, err := c.ExecContext(ctx, q); err != nil {
			tb.Fatal(err)
		}
	}
	tables, err := loadTables(ctx, c)
	if err != nil {
		tb.Fatal(err)
	}
	m := &Materializer{}
	tb.Cleanup(m.closeCapture)
	if err := m.setupCapture(ctx, c, tables); err != nil {
		tb.Fatal(err)
	}
	return m, tables
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// readRefCapture reads the reference capture table, as readCapture did.
func readRefCapture(t *testing.T, c *sql.Conn, tables map[string]*table) []captureEvent {
	t.Helper()
	rows, err := c.QueryContext(context.Background(), "SELECT * FROM temp.ref_cap ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	tmp := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range tmp {
		ptrs[i] = &tmp[i]
	}
	var out []captureEvent
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		name, _ := tmp[1].(string)
		op, _ := tmp[2].(int64)
		tb := tables[strings.ToLower(name)]
		vals := make([]log.Value, 2*len(tb.Cols))
		for i := range vals {
			if vals[i], err = log.FromSQL(tmp[3+i]); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, captureEvent{tb, op, vals})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCaptureEqualsReadBack: the capture function sees exactly the row changes, values and
// storage classes that the read-back of a temp capture table saw, for random statements of
// every kind (INSERT, OR REPLACE, OR IGNORE, UPSERT, UPDATE of values and of keys, DELETE)
// over random values of every class (NUL bytes in text, empty blobs, affinity conversions),
// on a rowid table, a WITHOUT ROWID table with a composite key, a key-only table and a table
// wide enough that its triggers split the values over several calls.
func TestCaptureEqualsReadBack(t *testing.T) {
	ctx := context.Background()
	c := writerConn(t)
	const wide = 520 // 2 x 520 values: an UPDATE's trigger makes two calls
	wideCols := make([]string, wide)
	for i := range wideCols {
		wideCols[i] = "w" + strconv.Itoa(i)
	}
	ddl := []string{
		"CREATE TABLE t1 (id INTEGER PRIMARY KEY, a TEXT, b NUMERIC, c REAL, d BLOB, e, u INTEGER UNIQUE)",
		"CREATE TABLE t2 (k1 TEXT NOT NULL, k2 INTEGER NOT NULL, v, w TEXT DEFAULT 'dflt', PRIMARY KEY (k1, k2)) WITHOUT ROWID",
		"CREATE TABLE t3 (k INTEGER PRIMARY KEY)",
		"CREATE TABLE t4 (id INTEGER PRIMARY KEY, " + strings.Join(wideCols, ", ") + ")",
	}
	m, tables := setupCaptureOn(t, c, ddl...)
	setup := []string{"CREATE TEMP TABLE ref_cap (id INTEGER PRIMARY KEY, tbl TEXT, op INTEGER, " + func() string {
		cs := make([]string, 2*(wide+1))
		for i := range cs {
			cs[i] = "c" + strconv.Itoa(i)
		}
		return strings.Join(cs, ", ")
	}() + ")"}
	for _, tb := range tables {
		setup = append(setup, refCaptureTriggers(tb, m.capID)...)
	}
	for _, q := range setup {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	m.cap.on = true

	rng := rand.New(rand.NewSource(14))
	value := func() any {
		switch rng.Intn(9) {
		case 0:
			return nil
		case 1:
			return int64(rng.Intn(7))
		case 2:
			return rng.Int63() - rng.Int63()
		case 3:
			return float64(rng.Intn(5)) // integral REAL: INTEGER and NUMERIC affinity turn it into an integer
		case 4:
			return rng.NormFloat64()
		case 5:
			return strconv.Itoa(rng.Intn(5)) // numeric text: NUMERIC and INTEGER affinity convert it
		case 6:
			return []string{"", "x", "a\x00b", "héllo", "1.5", "0x10"}[rng.Intn(6)]
		case 7:
			return []byte{}
		default:
			b := make([]byte, rng.Intn(5))
			rng.Read(b)
			return b
		}
	}
	key := func() any { return int64(rng.Intn(12)) }
	stmt := func() (string, []any) {
		switch rng.Intn(16) {
		case 0, 1:
			verb := []string{"INSERT", "INSERT OR REPLACE", "INSERT OR IGNORE", "REPLACE"}[rng.Intn(4)]
			return verb + " INTO t1 (id, a, b, c, d, e, u) VALUES (?, ?, ?, ?, ?, ?, ?)",
				[]any{key(), value(), value(), value(), value(), value(), []any{nil, int64(rng.Intn(4))}[rng.Intn(2)]}
		case 2:
			return "INSERT INTO t1 (id, a, b) VALUES (?, ?, ?), (?, ?, ?) ON CONFLICT (id) DO UPDATE SET a = excluded.a, b = b",
				[]any{key(), value(), value(), key(), value(), value()}
		case 3:
			return "UPDATE t1 SET a = ?, c = ? WHERE id % 3 = ?", []any{value(), value(), int64(rng.Intn(3))}
		case 4:
			return "UPDATE t1 SET id = id + ? WHERE id = ?", []any{int64(rng.Intn(5) - 2), key()}
		case 5:
			return "DELETE FROM t1 WHERE id = ? OR b = ?", []any{key(), value()}
		case 6, 7:
			verb := []string{"INSERT", "INSERT OR REPLACE", "INSERT OR IGNORE"}[rng.Intn(3)]
			if rng.Intn(2) == 0 {
				return verb + " INTO t2 (k1, k2, v) VALUES (?, ?, ?)", []any{[]string{"a", "b", "c"}[rng.Intn(3)], key(), value()}
			}
			return verb + " INTO t2 (k1, k2, v, w) VALUES (?, ?, ?, ?)", []any{[]string{"a", "b", "c"}[rng.Intn(3)], key(), value(), value()}
		case 8:
			return "UPDATE t2 SET k2 = k2 + 1, v = ? WHERE k1 = ?", []any{value(), []string{"a", "b", "c"}[rng.Intn(3)]}
		case 9:
			return "UPDATE t2 SET v = v WHERE k2 < ?", []any{key()}
		case 10:
			return "DELETE FROM t2 WHERE k2 > ?", []any{key()}
		case 11:
			return "INSERT OR IGNORE INTO t3 VALUES (?), (?)", []any{key(), key()}
		case 12:
			return "DELETE FROM t3 WHERE k = ?", []any{key()}
		case 13:
			return "INSERT OR REPLACE INTO t4 (id, w0, w300, w519) VALUES (?, ?, ?, ?)", []any{key(), value(), value(), value()}
		case 14:
			return "UPDATE t4 SET w1 = ?, w518 = ?, id = id WHERE id = ?", []any{value(), value(), key()}
		default:
			return "DELETE FROM t4 WHERE id = ?", []any{key()}
		}
	}
	var fails int
	for i := 0; i < 700; i++ {
		q, args := stmt()
		if _, err := c.ExecContext(ctx, "SAVEPOINT s"); err != nil {
			t.Fatal(err)
		}
		before := len(m.cap.events)
		if _, err := c.ExecContext(ctx, q, args...); err != nil {
			// A failed statement fails its transaction, which drops its events (runLocal);
			// here only the statement goes.
			fails++
			m.cap.events = m.cap.events[:before]
			if _, err := c.ExecContext(ctx, "ROLLBACK TO s"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.ExecContext(ctx, "RELEASE s"); err != nil {
			t.Fatal(err)
		}
		if i%50 != 49 {
			continue
		}
		want := readRefCapture(t, c, tables)
		got := m.cap.events
		if len(got) != len(want) {
			t.Fatalf("after %d statements (last %s %v): %d events captured, read-back %d", i+1, q, args, len(got), len(want))
		}
		for j := range want {
			g, w := got[j], want[j]
			if g.t != w.t || g.op != w.op || len(g.vals) != len(w.vals) {
				t.Fatalf("event %d: %s op %d (%d values), read-back %s op %d (%d values)", j, g.t.Name, g.op, len(g.vals), w.t.Name, w.op, len(w.vals))
			}
			for k := range w.vals {
				if !g.vals[k].Equal(w.vals[k]) {
					t.Fatalf("event %d (%s op %d) value %d: captured %v (type %d), read-back %v (type %d)", j, g.t.Name, g.op, k, g.vals[k], g.vals[k].Type, w.vals[k], w.vals[k].Type)
				}
			}
		}
	}
	if len(m.cap.events) < 500 || fails == 0 {
		t.Fatalf("%d events, %d failed statements: the statements do not cover enough", len(m.cap.events), fails)
	}
	t.Logf("%d events, %d failed statements", len(m.cap.events), fails)
}

// TestCaptureOnlyWhileOn checks that the triggers ask the sink's flag at every statement:
// rows written while it is off (a fold) reach nobody, rows written while it is on are
// captured, and rows written after it is turned off again reach nobody.
func TestCaptureOnlyWhileOn(t *testing.T) {
	ctx := context.Background()
	c := writerConn(t)
	m, _ := setupCaptureOn(t, c, "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
	exec := func(q string) {
		t.Helper()
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	exec("INSERT INTO t VALUES (1, 'folded'), (2, 'folded')")
	if n := len(m.cap.events); n != 0 || m.cap.on {
		t.Fatalf("capture off after setup: %d events, on %v", n, m.cap.on)
	}
	m.cap.on = true
	exec("INSERT INTO t VALUES (3, 'local'), (4, 'local')")
	exec("UPDATE t SET a = 'changed' WHERE id IN (1, 3)")
	exec("DELETE FROM t WHERE id = 2")
	var ops []int64
	for _, ev := range m.cap.events {
		ops = append(ops, ev.op)
	}
	if want := []int64{opInsert, opInsert, opUpdate, opUpdate, opDelete}; fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Fatalf("capture on: ops %v, want %v", ops, want)
	}
	m.cap.on = false
	exec("UPDATE t SET a = 'folded again'")
	exec("INSERT INTO t VALUES (5, 'folded')")
	if n := len(m.cap.events); n != len(ops) {
		t.Fatalf("capture off again: %d events, want the %d of before", n, len(ops))
	}
}

// BenchmarkCaptureWhen measures an INSERT of 1 or 10 rows on the writer's connection with
// the capture triggers asking the Go flag (func), with the same triggers reading a temp
// table's flag instead as they did before (table), capture on (a local write) and off (a
// fold's write), and without triggers (none):
// go test ./materializer -run '^$' -bench CaptureWhen.
func BenchmarkCaptureWhen(b *testing.B) {
	for _, rows := range []int{1, 10} {
		for _, when := range []string{"none", "table", "func"} {
			for _, on := range []bool{true, false} {
				if when == "none" && !on {
					continue
				}
				b.Run(fmt.Sprintf("rows=%d/%s/on=%v", rows, when, on), func(b *testing.B) { benchCaptureWhen(b, rows, when, on) })
			}
		}
	}
}

func benchCaptureWhen(b *testing.B, rows int, when string, on bool) {
	ctx := context.Background()
	c := writerConn(b)
	exec := func(q string, args ...any) {
		if _, err := c.ExecContext(ctx, q, args...); err != nil {
			b.Fatal(q, err)
		}
	}
	const ddl = "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)"
	m := &Materializer{}
	if when == "none" {
		exec(ddl)
	} else {
		m, _ = setupCaptureOn(b, c, ddl)
		m.cap.on = on
	}
	if when == "table" {
		flag := 0
		if on {
			flag = 1
		}
		exec("CREATE TEMP TABLE flag (v INTEGER NOT NULL)")
		exec("INSERT INTO temp.flag VALUES (?)", flag)
		for _, tr := range captureTriggers(m.cap.tables[0], m.capID, 0) {
			name := tr[len("CREATE TEMP TRIGGER "):strings.Index(tr, " AFTER ")]
			exec("DROP TRIGGER temp." + name)
			exec(strings.Replace(tr, fmt.Sprintf("WHEN %s(%d)", capturingFunc, m.capID), "WHEN (SELECT v FROM temp.flag)", 1))
		}
		m.cap.on = true // the table's flag decides
	}
	insert := "INSERT INTO t (id, a, b) VALUES (?, ?, ?)" + strings.Repeat(", (?, ?, ?)", rows-1)
	args := make([]any, 3*rows)
	exec("BEGIN")
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		for r := range rows {
			args[3*r], args[3*r+1], args[3*r+2] = rows*i+r, "value of some length", i%1000
		}
		exec(insert, args...)
		if i%100 == 0 {
			m.cap.reset()
			exec("COMMIT")
			exec("BEGIN")
		}
	}
	exec("COMMIT")
	if n := len(m.cap.events); on != (n > 0) && when != "none" && i%100 != 0 {
		b.Fatalf("on %v: %d events", on, n)
	}
}
