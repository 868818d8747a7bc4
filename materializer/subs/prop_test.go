package subs

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// propSchema is a random two-table schema: a parent p and a child c that refers to it. Key
// types, composite keys, extra columns and names vary with the seed; the roles stay, so
// that the query shapes can be written against them.
type propSchema struct {
	p, c      string // table names
	pKind     int    // p's key is 0 INTEGER, 1 TEXT, 2 REAL (thirds: no exact decimal literal)
	cCompound bool   // c's key is (cid, part), else cid alone
	pExtra    int    // extra nullable columns of p
	ddl       []string
}

func randomSchema(r *rand.Rand) *propSchema {
	s := &propSchema{
		p:         fmt.Sprintf("parent_%d", r.IntN(100)),
		c:         fmt.Sprintf("Child_%d", r.IntN(100)),
		pKind:     r.IntN(3),
		cCompound: r.IntN(2) == 0,
		pExtra:    r.IntN(3),
	}
	pkType := []string{"INTEGER", "TEXT", "REAL"}[s.pKind]
	var extra strings.Builder
	for i := range s.pExtra {
		fmt.Fprintf(&extra, ", x%d ANY", i)
	}
	s.ddl = append(s.ddl, fmt.Sprintf(`CREATE TABLE %s (pid %s PRIMARY KEY NOT NULL, n INTEGER, label TEXT%s)`, s.p, pkType, extra.String()))
	if s.cCompound {
		s.ddl = append(s.ddl, fmt.Sprintf(`CREATE TABLE %q (cid INTEGER NOT NULL, part TEXT NOT NULL, pid %s, v INTEGER, w REAL, PRIMARY KEY (cid, part))`, s.c, pkType))
	} else {
		s.ddl = append(s.ddl, fmt.Sprintf(`CREATE TABLE %q (cid INTEGER PRIMARY KEY NOT NULL, pid %s, v INTEGER, w REAL)`, s.c, pkType))
	}
	return s
}

func (s *propSchema) pkey(r *rand.Rand) log.Value {
	k := r.IntN(6)
	switch s.pKind {
	case 1:
		return log.Text(string(rune('a' + k)))
	case 2:
		return log.Real(float64(k) / 3)
	}
	return log.Integer(int64(k))
}

// small returns a value from a small domain, of mixed types now and then, so that filters,
// groups and joins see equal values, NULLs and type mismatches.
func small(r *rand.Rand) log.Value {
	switch r.IntN(12) {
	case 0:
		return log.Null()
	case 1:
		return log.Real(float64(r.IntN(5)) + 0.5)
	case 2:
		return log.Text(fmt.Sprint(r.IntN(5)))
	}
	return log.Integer(int64(r.IntN(5)))
}

// randomOp writes or deletes a random row of p or c.
func (s *propSchema) randomOp(r *rand.Rand) op {
	if r.IntN(2) == 0 {
		o := op{table: s.p, pk: []string{"pid"}, cols: []string{"pid", "n", "label"}}
		o.vals = []log.Value{s.pkey(r), small(r), log.Text([]string{"x", "y", "Y", "z"}[r.IntN(4)])}
		for i := range s.pExtra {
			o.cols = append(o.cols, fmt.Sprintf("x%d", i))
			o.vals = append(o.vals, small(r))
		}
		o.del = r.IntN(4) == 0
		return o
	}
	o := op{table: s.c}
	if s.cCompound {
		o.pk = []string{"cid", "part"}
		o.cols = []string{"cid", "part", "pid", "v", "w"}
		o.vals = []log.Value{log.Integer(int64(r.IntN(5))), log.Text([]string{"l", "r"}[r.IntN(2)])}
	} else {
		o.pk = []string{"cid"}
		o.cols = []string{"cid", "pid", "v", "w"}
		o.vals = []log.Value{log.Integer(int64(r.IntN(8)))}
	}
	pid := s.pkey(r)
	if r.IntN(8) == 0 {
		pid = log.Null()
	}
	o.vals = append(o.vals, pid, small(r), log.Real(float64(r.IntN(3))))
	o.del = r.IntN(4) == 0
	return o
}

// shape is a query shape of issue 7 point 3, written against a propSchema.
type shape struct {
	name    string
	sql     string // {p} is p, {c} is c (quoted)
	params  []log.Value
	named   map[string]log.Value
	ordered bool // the initial rows must come in this order
}

var shapes = []shape{
	{name: "filter", sql: `SELECT * FROM {c} WHERE v > 1`},
	{name: "filter eq param", sql: `SELECT cid, v, w FROM {c} WHERE v = ?`, params: []log.Value{log.Integer(2)}},
	{name: "filter named param", sql: `SELECT * FROM {p} WHERE n = :n AND label IS NOT :l`, named: map[string]log.Value{"n": log.Integer(1), "l": log.Text("z")}},
	{name: "filter named col=const", sql: `SELECT pid, label FROM {p} WHERE label = 'y'`},
	{name: "order by", sql: `SELECT pid, n, label FROM {p} ORDER BY n DESC, pid`, ordered: true},
	{name: "order by limit", sql: `SELECT * FROM {c} ORDER BY v, cid, w LIMIT 3`, ordered: true},
	{name: "inner join", sql: `SELECT c.cid, c.v, p.label FROM {c} AS c JOIN {p} p ON c.pid = p.pid`},
	{name: "inner join filter", sql: `SELECT c.cid, p.n FROM {c} c, {p} p WHERE c.pid = p.pid AND p.label = 'x'`},
	{name: "left join", sql: `SELECT p.pid, p.label, c.v FROM {p} p LEFT JOIN {c} c ON c.pid = p.pid`},
	{name: "left join where null", sql: `SELECT p.pid FROM {p} p LEFT JOIN {c} c ON c.pid = p.pid WHERE c.pid IS NULL`},
	{name: "in subquery", sql: `SELECT * FROM {p} WHERE pid IN (SELECT pid FROM {c} WHERE v > 1)`},
	{name: "exists", sql: `SELECT pid, n FROM {p} p WHERE EXISTS (SELECT 1 FROM {c} c WHERE c.pid = p.pid AND c.v < 3)`},
	{name: "not exists", sql: `SELECT pid FROM {p} p WHERE NOT EXISTS (SELECT 1 FROM {c} c WHERE c.pid = p.pid)`},
	{name: "scalar subquery", sql: `SELECT pid, (SELECT count(*) FROM {c} c WHERE c.pid = p.pid) AS kids FROM {p} p`},
	{name: "same table in subquery", sql: `SELECT * FROM {c} WHERE v = (SELECT max(v) FROM {c})`},
	{name: "aggregate", sql: `SELECT count(*), sum(v), max(w), group_concat(cid) FROM {c}`},
	{name: "group by", sql: `SELECT pid, count(*), sum(v) FROM {c} GROUP BY pid`},
	{name: "group by having", sql: `SELECT pid, count(*) AS k FROM {c} GROUP BY pid HAVING count(*) > 1`},
	{name: "group by ordinal join", sql: `SELECT p.label, count(c.cid) FROM {p} p LEFT JOIN {c} c ON c.pid = p.pid GROUP BY 1`},
	{name: "group by alias", sql: `SELECT v % 2 AS parity, count(*) FROM {c} GROUP BY parity`},
	{name: "distinct", sql: `SELECT DISTINCT v FROM {c}`},
	{name: "expressions", sql: `SELECT cid, v * 2 + 1 AS e, upper(pid) || '-' || coalesce(w, 'none'), typeof(v) FROM {c} WHERE v IS NOT NULL`},
	{name: "union", sql: `SELECT pid FROM {p} UNION SELECT pid FROM {c}`},
	{name: "cte", sql: `WITH x AS (SELECT pid, v FROM {c} WHERE v > 0) SELECT * FROM x`},
	{name: "subquery in from", sql: `SELECT s.pid, s.t FROM (SELECT pid, sum(v) AS t FROM {c} GROUP BY pid) s WHERE s.t > 1`},
	{name: "window", sql: `SELECT cid, v, rank() OVER (ORDER BY v) FROM {c}`},
	{name: "no from", sql: `SELECT 1 + 1, 'const'`},
	{name: "duplicate rows", sql: `SELECT v FROM {c}`},
}

func (sh shape) stmt(sql string) materializer.Statement {
	return materializer.Statement{SQL: sql, Params: sh.params, Named: sh.named}
}

func (sh shape) text(s *propSchema) string {
	return strings.NewReplacer("{p}", s.p, "{c}", quoteIdent(s.c)).Replace(sh.sql)
}

// TestProperty: random schema, a subscription of every shape, random writes; a client
// rebuilds each result from the events alone and, at every quiet point, it equals running
// the query directly; a client attaching then gets the current rows in the query's order,
// and one resuming from an earlier change id catches up to the same result.
func TestProperty(t *testing.T) {
	seeds := 6
	rounds := 12
	if testing.Short() {
		seeds, rounds = 2, 5
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 7))
			sc := randomSchema(r)
			src := newSQLSource(t, sc.ddl...)
			for range 10 {
				src.write(t, sc.randomOp(r))
			}
			dir := t.TempDir()
			e := openEngine(t, src, Config{Dir: dir, RetainChanges: 1 << 20})
			type live struct {
				sh     shape
				sql    string
				st     *Stream
				m      *mirror
				marks  []uint64 // change ids seen at earlier quiet points
				mirrAt map[uint64]*mirror
			}
			var lives []*live
			for _, sh := range shapes {
				sql := sh.text(sc)
				l := &live{sh: sh, sql: sql, st: subscribeSt(t, e, sh.stmt(sql), Options{}), m: newMirror()}
				lives = append(lives, l)
			}
			for round := range rounds {
				if round == rounds/2 {
					// Restart: the engine closes (clients are cut off), writes go on while
					// it is down, and every client resumes by id from the last change it
					// saw.
					if err := e.Close(); err != nil {
						t.Fatal(err)
					}
					for range 3 {
						src.write(t, sc.randomOp(r))
					}
					e = openEngine(t, src, Config{Dir: dir, RetainChanges: 1 << 20})
					for _, l := range lives {
						from := l.m.changeID
						if from == 0 {
							l.m = newMirror() // from=0 sends the current result again
						}
						st, err := e.Attach(t.Context(), l.st.ID, Options{From: &from})
						if err != nil {
							t.Fatalf("resume %s after restart from %d: %v", l.sh.name, from, err)
						}
						t.Cleanup(st.Close)
						l.st = st
					}
				}
				var seq log.Seq
				for range 1 + r.IntN(6) {
					ops := make([]op, 1+r.IntN(3))
					for i := range ops {
						ops[i] = sc.randomOp(r)
					}
					seq = src.write(t, ops...)
				}
				waitSeq(t, e, seq)
				for _, l := range lives {
					info := subInfo(t, e, l.st.ID)
					l.m.readUntil(t, l.st, info.ChangeID)
					_, want := queryStmt(t, src, l.sh.stmt(l.sql))
					if got, w := l.m.multiset(), multiset(want); !slices.Equal(got, w) {
						t.Fatalf("round %d, %s (%s, %s):\n got %d rows %q\nwant %d rows %q", round, l.sh.name, info.Mode, l.sql, len(got), got, len(w), w)
					}
					// A new client sees the current rows, in the query's order.
					fresh := newMirror()
					st := subscribeSt(t, e, l.sh.stmt(l.sql), Options{})
					fresh.readUntil(t, st, info.ChangeID)
					st.Close()
					if l.sh.ordered {
						got := make([][]log.Value, len(fresh.order))
						for i, id := range fresh.order {
							got[i] = fresh.rows[id]
						}
						for i := range want {
							if !equalCells(got[i], want[i]) {
								t.Fatalf("round %d, %s: initial row %d is %v, want %v", round, l.sh.name, i, got[i], want[i])
							}
						}
					}
					// A client resuming from an earlier quiet point catches up exactly.
					if len(l.marks) > 0 {
						from := l.marks[r.IntN(len(l.marks))]
						old := l.mirrAt[from]
						res := &mirror{rows: map[int64][]log.Value{}, changeID: from, gotEOQ: true}
						for k, v := range old.rows {
							res.rows[k] = v
						}
						if from == 0 {
							res = newMirror() // from=0 sends the current result again
						}
						st, err := e.Attach(t.Context(), l.st.ID, Options{From: &from})
						if err != nil {
							t.Fatalf("resume %s from %d: %v", l.sh.name, from, err)
						}
						res.readUntil(t, st, info.ChangeID)
						st.Close()
						if got, w := res.multiset(), multiset(want); !slices.Equal(got, w) {
							t.Fatalf("round %d, %s resumed from %d: got %q, want %q", round, l.sh.name, from, got, w)
						}
					}
					if l.mirrAt == nil {
						l.mirrAt = map[uint64]*mirror{}
					}
					if _, ok := l.mirrAt[info.ChangeID]; !ok {
						snap := &mirror{rows: map[int64][]log.Value{}}
						for k, v := range l.m.rows {
							snap.rows[k] = v
						}
						l.mirrAt[info.ChangeID] = snap
						l.marks = append(l.marks, info.ChangeID)
					}
				}
			}
			modes := map[string]string{}
			for _, l := range lives {
				modes[l.sh.name] = subInfo(t, e, l.st.ID).Mode
			}
			t.Logf("schema %q; modes %v", sc.ddl, modes)
		})
	}
}

func subInfo(tb testing.TB, e *Engine, id string) Info {
	tb.Helper()
	for _, in := range e.List() {
		if in.ID == id {
			return in
		}
	}
	tb.Fatalf("no subscription %s", id)
	return Info{}
}
