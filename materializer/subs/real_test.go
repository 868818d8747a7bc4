package subs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// realNode is a real log and view in a temp dir.
type realNode struct {
	store *log.Store
	mat   *materializer.Materializer
	read  log.Seq // how far another node has taken this one's log
	marks int64
}

func newRealNode(tb testing.TB, schema ...string) *realNode {
	tb.Helper()
	dir := tb.TempDir()
	store, err := log.Open(filepath.Join(dir, "log"), log.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	cfg := materializer.DefaultConfig(filepath.Join(dir, "views.db"))
	cfg.Schema = schema
	mat := materializer.New(store, cfg)
	if err := mat.Open(context.Background()); err != nil {
		tb.Fatalf("open materializer: %v", err)
	}
	tb.Cleanup(func() { mat.Close() })
	return &realNode{store: store, mat: mat}
}

// sqlOf renders an op as a statement.
func sqlOf(o op) materializer.Statement {
	if o.del {
		conds := make([]string, len(o.pk))
		for i, c := range o.pk {
			conds[i] = quoteIdent(c) + " = ?"
		}
		return materializer.Statement{SQL: "DELETE FROM " + quoteIdent(o.table) + " WHERE " + strings.Join(conds, " AND "), Params: o.vals[:len(o.pk)]}
	}
	quoted := make([]string, len(o.cols))
	for i, c := range o.cols {
		quoted[i] = quoteIdent(c)
	}
	qs := strings.TrimSuffix(strings.Repeat("?,", len(o.cols)), ",")
	return materializer.Statement{SQL: "INSERT OR REPLACE INTO " + quoteIdent(o.table) + " (" + strings.Join(quoted, ",") + ") VALUES (" + qs + ")", Params: o.vals}
}

// markerDDL is a table the tests write to at quiet points: a commit that surely changes a
// row, so surely publishes a notice (a commit that changes nothing publishes none).
const markerDDL = `CREATE TABLE zz_marker (k INTEGER PRIMARY KEY NOT NULL, n INTEGER)`

// mark commits a change to the marker table and returns its seq: once the engine has
// processed it, it has processed every commit before it.
func (n *realNode) mark(tb testing.TB) log.Seq {
	tb.Helper()
	n.marks++
	res, err := n.mat.Transact(context.Background(), []materializer.Statement{{
		SQL: `INSERT OR REPLACE INTO zz_marker (k, n) VALUES (1, ?)`, Params: []log.Value{log.Integer(n.marks)}}})
	if err != nil {
		tb.Fatalf("mark: %v", err)
	}
	return res.Seq
}

func (n *realNode) write(tb testing.TB, ops ...op) {
	tb.Helper()
	stmts := make([]materializer.Statement, len(ops))
	for i, o := range ops {
		stmts[i] = sqlOf(o)
	}
	if _, err := n.mat.Transact(context.Background(), stmts); err != nil {
		tb.Fatalf("transact: %v", err)
	}
}

// ship applies to dst what src's log holds that dst has not been given yet, as gossip would.
func (n *realNode) ship(tb testing.TB, dst *realNode) {
	tb.Helper()
	for {
		css, err := n.store.Read(n.read, 256)
		if err != nil {
			tb.Fatal(err)
		}
		if len(css) == 0 {
			return
		}
		n.read = css[len(css)-1].Seq
		if _, err := dst.mat.Apply(context.Background(), css); err != nil {
			tb.Fatalf("apply: %v", err)
		}
	}
}

// TestPropertyReal is TestProperty over the real materializer, with local writes on the
// subscribed node and remote changesets from another node (including conflicting writes to
// the same rows, merged by the CRDT rules).
func TestPropertyReal(t *testing.T) {
	seeds, rounds := 3, 10
	if testing.Short() {
		seeds, rounds = 1, 4
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 11))
			sc := randomSchema(r)
			ddl := append(slices.Clone(sc.ddl), markerDDL)
			a := newRealNode(t, ddl...)
			b := newRealNode(t, ddl...)
			for range 10 {
				a.write(t, sc.randomOp(r))
				b.write(t, sc.randomOp(r))
			}
			b.ship(t, a)
			dir := t.TempDir()
			e := openEngine(t, a.mat, Config{Dir: dir})
			type live struct {
				sh  shape
				sql string
				st  *Stream
				m   *mirror
			}
			var lives []*live
			for _, sh := range shapes {
				sql := sh.text(sc)
				lives = append(lives, &live{sh: sh, sql: sql, st: subscribeSt(t, e, sh.stmt(sql), Options{}), m: newMirror()})
			}
			for round := range rounds {
				if round == rounds/2 {
					// Restart with writes, local and remote, while the engine is down;
					// every client resumes by id.
					if err := e.Close(); err != nil {
						t.Fatal(err)
					}
					a.write(t, sc.randomOp(r))
					b.write(t, sc.randomOp(r))
					b.ship(t, a)
					e = openEngine(t, a.mat, Config{Dir: dir})
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
				for range 1 + r.IntN(6) {
					ops := make([]op, 1+r.IntN(3))
					for i := range ops {
						ops[i] = sc.randomOp(r)
					}
					if r.IntN(2) == 0 {
						a.write(t, ops...)
					} else {
						b.write(t, ops...)
						if r.IntN(2) == 0 {
							b.ship(t, a)
						}
					}
				}
				b.ship(t, a)
				waitSeq(t, e, a.mark(t))
				for _, l := range lives {
					info := subInfo(t, e, l.st.ID)
					l.m.readUntil(t, l.st, info.ChangeID)
					_, want := queryStmt(t, a.mat, l.sh.stmt(l.sql))
					if got, w := l.m.multiset(), multiset(want); !slices.Equal(got, w) {
						t.Fatalf("round %d, %s (%s, %s):\n got %d rows %q\nwant %d rows %q", round, l.sh.name, info.Mode, l.sql, len(got), got, len(w), w)
					}
				}
			}
		})
	}
}
