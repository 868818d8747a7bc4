package subs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

func openEngine(tb testing.TB, src Source, cfg Config) *Engine {
	tb.Helper()
	e := New(src, cfg)
	if err := e.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("close engine: %v", err)
		}
	})
	return e
}

func subscribe(tb testing.TB, e *Engine, sql string, opts Options, params ...log.Value) *Stream {
	tb.Helper()
	st, err := e.Subscribe(context.Background(), stmt(sql, params...), opts)
	if err != nil {
		tb.Fatalf("subscribe %s: %v", sql, err)
	}
	tb.Cleanup(st.Close)
	return st
}

func subscribeSt(tb testing.TB, e *Engine, st materializer.Statement, opts Options) *Stream {
	tb.Helper()
	s, err := e.Subscribe(context.Background(), st, opts)
	if err != nil {
		tb.Fatalf("subscribe %s: %v", st.SQL, err)
	}
	tb.Cleanup(s.Close)
	return s
}

func waitSeq(tb testing.TB, e *Engine, seq log.Seq) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.WaitProcessed(ctx, seq); err != nil {
		tb.Fatalf("wait for seq %d: %v (processed %d)", seq, err, e.Processed())
	}
}

// nextLines reads n lines from st.
func nextLines(tb testing.TB, st *Stream, n int) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make([]string, n)
	for i := range out {
		l, err := st.Next(ctx)
		if err != nil {
			tb.Fatalf("line %d of %d: %v", i+1, n, err)
		}
		out[i] = string(l)
	}
	return out
}

func checkLines(tb testing.TB, got []string, want ...string) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("got %d lines %q, want %q", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i]+"\n" {
			tb.Errorf("line %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

const testTable = `CREATE TABLE m (id INTEGER PRIMARY KEY, app TEXT, port INTEGER, w REAL)`

func mrow(id int64, app string, port int64, w float64) op {
	return op{table: "m", pk: []string{"id"}, cols: []string{"id", "app", "port", "w"},
		vals: []log.Value{log.Integer(id), log.Text(app), log.Integer(port), log.Real(w)}}
}

func mdel(id int64) op {
	return op{table: "m", pk: []string{"id"}, vals: []log.Value{log.Integer(id)}, del: true}
}

// TestStreamEvents pins the exact lines of a subscription's life: columns, rows in ORDER BY
// order, eoq, then one change per event with ids growing by one.
func TestStreamEvents(t *testing.T) {
	src := newSQLSource(t, testTable)
	src.write(t, mrow(1, "a", 80, 1.5), mrow(2, "b", 443, 2))
	e := openEngine(t, src, Config{})
	st := subscribe(t, e, `SELECT id, app, port, w FROM m WHERE port > 10 ORDER BY port DESC`, Options{})
	checkLines(t, nextLines(t, st, 4),
		`{"columns":["id","app","port","w"]}`,
		`{"row":[1,[2,"b",443,2.0]]}`,
		`{"row":[2,[1,"a",80,1.5]]}`,
		`{"eoq":{"time":`+eoqTime(t, st)+`,"change_id":0}}`,
	)
	waitSeq(t, e, src.write(t, mrow(3, "c", 8080, 0)))
	waitSeq(t, e, src.write(t, mrow(1, "a", 81, 1.5)))
	waitSeq(t, e, src.write(t, mrow(2, "b", 5, 2))) // leaves the filter
	waitSeq(t, e, src.write(t, mdel(3)))
	waitSeq(t, e, src.write(t, mrow(9, "z", 1, 0))) // never matches: no event
	waitSeq(t, e, src.write(t, mrow(2, "b", 6, 2))) // still out: no event
	checkLines(t, nextLines(t, st, 4),
		`{"change":["insert",3,[3,"c",8080,0.0],1]}`,
		`{"change":["update",2,[1,"a",81,1.5],2]}`,
		`{"change":["delete",1,[2,"b",443,2.0],3]}`,
		`{"change":["delete",3,[3,"c",8080,0.0],4]}`,
	)
	if n := st.Buffered(); n != 0 {
		t.Errorf("%d more lines buffered, want none", n)
	}
}

// eoqTime reads the time the subscription's eoq reports, which the test cannot predict.
func eoqTime(tb testing.TB, st *Stream) string {
	tb.Helper()
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	return string(eoqLine(st.s.queryTime, 0)[len(`{"eoq":{"time":`) : len(eoqLine(st.s.queryTime, 0))-len(`,"change_id":0}}`+"\n")])
}

func TestSkipRowsAndSharing(t *testing.T) {
	src := newSQLSource(t, testTable)
	src.write(t, mrow(1, "a", 80, 1))
	e := openEngine(t, src, Config{})
	a := subscribe(t, e, `SELECT app FROM m`, Options{})
	b := subscribe(t, e, `SELECT app FROM m`, Options{SkipRows: true})
	c := subscribe(t, e, `SELECT app FROM m `, Options{}) // same text once trimmed
	d := subscribe(t, e, `SELECT app FROM m WHERE 1`, Options{})
	if a.ID != b.ID || a.ID != c.ID || a.Hash != b.Hash {
		t.Errorf("same statement, ids %s %s %s: want one subscription", a.ID, b.ID, c.ID)
	}
	if d.ID == a.ID || d.Hash == a.Hash {
		t.Errorf("other statement shares subscription %s", d.ID)
	}
	if got := len(e.List()); got != 2 {
		t.Errorf("%d subscriptions, want 2", got)
	}
	// skip_rows: no columns, rows or eoq (Corrosion sends none); the first line is a change.
	src.write(t, mrow(2, "b", 80, 1))
	if l := nextLines(t, b, 1)[0]; !strings.HasPrefix(l, `{"change":["insert",`) {
		t.Errorf("skip_rows stream starts %q, want the change", l)
	}
}

func TestRefusesNonSelect(t *testing.T) {
	src := newSQLSource(t, testTable)
	e := openEngine(t, src, Config{})
	for _, sql := range []string{
		``,
		`   ;`,
		`DELETE FROM m`,
		`INSERT INTO m (id) VALUES (1)`,
		`UPDATE m SET port = 1`,
		`SELECT 1; SELECT 2`,
		`SELECT * FROM m; DROP TABLE m`,
		`CREATE TABLE x (id INTEGER PRIMARY KEY)`,
		`PRAGMA table_info(m)`,
		`WITH x AS (SELECT 1) DELETE FROM m`,
		`SELECT 'unterminated`,
		`SELECT * FROM nosuchtable`,
		`SELECT nosuchcolumn FROM m`,
		`SELEC * FROM m`,
	} {
		t.Run(sql, func(t *testing.T) {
			_, err := e.Subscribe(context.Background(), stmt(sql), Options{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !IsBadInput(err) {
				t.Errorf("error %v is not bad input", err)
			}
		})
	}
	if n := len(e.List()); n != 0 {
		t.Errorf("%d subscriptions left behind by refused statements", n)
	}
}

func TestAttachErrors(t *testing.T) {
	src := newSQLSource(t, testTable)
	e := openEngine(t, src, Config{RetainChanges: 2})
	st := subscribe(t, e, `SELECT * FROM m`, Options{})
	for i := range 4 {
		waitSeq(t, e, src.write(t, mrow(int64(i), "a", 1, 1)))
	}
	from := func(n uint64) Options { return Options{From: &n} }
	cases := []struct {
		name string
		id   string
		opts Options
		want error
	}{
		{"unknown id", "nope", Options{}, ErrNotFound},
		{"too old", st.ID, from(1), ErrTooOld},
		{"ahead", st.ID, from(5), ErrFromAhead},
		{"oldest retained", st.ID, from(2), nil},
		{"latest", st.ID, from(4), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := e.Attach(context.Background(), c.id, c.opts)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if s != nil {
				s.Close()
			}
		})
	}
}

// TestCorrosionSubscribeRules pins Corrosion's answers: a statement's parameters are folded
// into its text (so the bound and the literal forms share one subscription), from on a
// statement without a subscription is refused, and from=0 sends the current result.
func TestCorrosionSubscribeRules(t *testing.T) {
	src := newSQLSource(t, testTable)
	src.write(t, mrow(1, "a", 80, 1))
	e := openEngine(t, src, Config{})
	lit := subscribe(t, e, `SELECT id FROM m WHERE port > 0 AND app = 'a'`, Options{})
	bound := subscribe(t, e, `SELECT id FROM m WHERE port > ? AND app = ?`, Options{}, log.Integer(0), log.Text("a"))
	named, err := e.Subscribe(context.Background(), materializer.Statement{SQL: `SELECT id FROM m WHERE port > :p AND app = @a`,
		Named: map[string]log.Value{"p": log.Integer(0), "a": log.Text("a")}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer named.Close()
	if bound.ID != lit.ID || named.ID == "" {
		t.Errorf("literal %s, bound %s: want one subscription", lit.ID, bound.ID)
	}
	if other := subscribe(t, e, `SELECT id FROM m WHERE port > ? AND app = ?`, Options{}, log.Integer(1), log.Text("a")); other.ID == lit.ID {
		t.Error("other parameter values share the subscription")
	}
	from := uint64(0)
	if _, err := e.Subscribe(context.Background(), stmt(`SELECT app FROM m WHERE id = 1`), Options{From: &from}); !errors.Is(err, ErrFromWithoutSub) || !IsBadInput(err) {
		t.Errorf("from on a new statement: %v, want ErrFromWithoutSub (bad input)", err)
	}
	again, err := e.Subscribe(context.Background(), stmt(`SELECT id FROM m WHERE port > 0 AND app = 'a'`), Options{From: &from})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if l := nextLines(t, again, 3); l[0] != "{\"columns\":[\"id\"]}\n" || l[1] != "{\"row\":[1,[1]]}\n" || !strings.HasPrefix(l[2], `{"eoq":`) {
		t.Errorf("from=0 on an existing subscription: %q, want columns, rows, eoq", l)
	}
}

func TestFoldParams(t *testing.T) {
	tenth := 0.1
	cases := []struct {
		sql    string
		params []log.Value
		named  map[string]log.Value
		want   string
	}{
		{`SELECT * FROM t WHERE a = ? AND b = ?`, []log.Value{log.Integer(-3), log.Real(1.5)}, nil, `SELECT * FROM t WHERE a = (-3) AND b = 1.5`},
		{`SELECT ?2, ?1, ?`, []log.Value{log.Text("it's"), log.Blob([]byte{1, 0xAB}), log.Null()}, nil, `SELECT X'01AB', 'it''s', NULL`},
		{`SELECT x-? FROM t`, []log.Value{log.Integer(-1)}, nil, `SELECT x-(-1) FROM t`},
		{`SELECT '?', "?" FROM t WHERE a = ? -- ?`, []log.Value{log.Real(2)}, nil, `SELECT '?', "?" FROM t WHERE a = 2.0 -- ?`},
		{`SELECT :a, @b, $a`, nil, map[string]log.Value{"a": log.Integer(7), "b": log.Text("x")}, `SELECT 7, 'x', 7`},
		// Unchanged: a missing value, a real with no exact short decimal, text with NUL.
		{`SELECT ?, ?`, []log.Value{log.Integer(1)}, nil, ``},
		{`SELECT ?`, []log.Value{log.Real(tenth + 0.2)}, nil, ``},
		{`SELECT ?`, []log.Value{log.Text("a\x00b")}, nil, ``},
		{`SELECT :missing`, nil, map[string]log.Value{"a": log.Integer(1)}, ``},
	}
	for _, c := range cases {
		in := materializer.Statement{SQL: c.sql, Params: c.params, Named: c.named}
		got := foldParams(in)
		if c.want == "" {
			if got.SQL != c.sql || len(got.Params) != len(c.params) || len(got.Named) != len(c.named) {
				t.Errorf("%s: folded to %q, want it unchanged", c.sql, got.SQL)
			}
			continue
		}
		if got.SQL != c.want || got.Params != nil || got.Named != nil {
			t.Errorf("%s: got %q %v %v, want %q", c.sql, got.SQL, got.Params, got.Named, c.want)
		}
	}
}
