package materializer

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// FuzzStatementChecks: SQL text comes from the network; the statement and schema checks
// must answer every input with a decision or an error, never a panic.
func FuzzStatementChecks(f *testing.F) {
	for _, s := range []string{
		"INSERT INTO t VALUES (1, 'a''b', X'00')", "SELECT * FROM \"__patina_meta\"", "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x)",
		"CREATE INDEX IF NOT EXISTS i ON main.t (x)", "DROP INDEX IF EXISTS i", "WITH a AS (SELECT 1) SELECT * FROM a; -- c",
		"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;", "[x", "'unterminated", "/* c */ PRAGMA x = 1", "x'", "1e+",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		wc, werr := checkWrite(s)
		rerr := checkReadStatement(s)
		if werr == nil && wc.bounded {
			// Unwatched (runLocal) only an INSERT or REPLACE with no SELECT or WITH.
			toks, _ := oneStatement(s)
			if !toks[0].Is("INSERT") && !toks[0].Is("REPLACE") {
				t.Fatalf("%q bounded, but it is no INSERT or REPLACE", s)
			}
			for _, tk := range toks {
				if tk.Is("SELECT") || tk.Is("WITH") {
					t.Fatalf("%q bounded, but it holds %s", s, tk.Text)
				}
			}
		}
		if werr == nil && rerr == nil {
			// Both accept only when the first word is SELECT, WITH or VALUES.
			toks, _ := oneStatement(s)
			if !(toks[0].Is("SELECT") || toks[0].Is("WITH") || toks[0].Is("VALUES")) {
				t.Fatalf("%q accepted as both a read and a write", s)
			}
		}
		parseSchemaStmt(s)
		normalizeSQL(s)
	})
}

// TestFoldArbitraryChangesets feeds the fold valid changesets that local writes would never
// make (unknown tables and columns, key columns as cids, jumps in cl, col_version 0, values
// of every class): nothing may fail or hang, the clocks must stay consistent with the rows,
// and refolding everything (Replay) must change nothing.
func TestFoldArbitraryChangesets(t *testing.T) {
	n := newNode(t, log.SiteID{1}, []string{
		"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x, y TEXT NOT NULL DEFAULT 'd', r REAL, i INTEGER)",
		"CREATE TABLE s (k TEXT PRIMARY KEY NOT NULL)",
	})
	r := rand.New(rand.NewPCG(1, 2))
	tables := []string{"t", "s", "nope", "T"}
	cids := map[string][]string{"t": {"x", "y", "r", "i", "id", "-1", "zz"}, "s": {"-1", "k", "q"}, "nope": {"a", "-1"}, "T": {"X", "-1"}}
	var css []*log.Changeset
	for v := range 300 {
		cs := &log.Changeset{Site: log.SiteID{byte(2 + r.IntN(3))}, Version: log.Version(v + 1)}
		for range 1 + r.IntN(6) {
			tb := tables[r.IntN(len(tables))]
			var pk log.PK
			if tb == "s" {
				pk = log.MustPackPK(log.Text(string(rune('a' + r.IntN(3)))))
			} else {
				pk = log.MustPackPK(log.Integer(int64(r.IntN(4))))
			}
			cid := cids[tb][r.IntN(len(cids[tb]))]
			val := propValues[r.IntN(len(propValues))]
			if cid == "-1" {
				val = log.Null()
			}
			cs.Changes = append(cs.Changes, log.Change{Table: tb, PK: pk, CID: cid, Val: val,
				ColVersion: uint64(r.IntN(4)), CL: uint64(1 + r.IntN(5)), Ord: uint64(len(cs.Changes))})
		}
		cs.LastOrd = uint64(len(cs.Changes) - 1)
		cs.Span = log.OrdRange{First: 0, Last: cs.LastOrd}
		css = append(css, cs)
	}
	for i := 0; i < len(css); i += 7 {
		if _, err := n.m.Apply(context.Background(), css[i:min(i+7, len(css))]); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, n) // dumpClock checks rows against clocks
	if err := n.m.Replay(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "refold", func() bool { return n.m.FoldPosition() == n.store.LastSeq() })
	if after := snapshot(t, n); after != before {
		t.Fatalf("refold changed the view:\n%s\nwas\n%s", after, before)
	}
	if got := n.query(t, "SELECT count(*) FROM __patina_pending")[0][0].Int; got == 0 {
		t.Fatalf("no changeset recorded as pending, though some name unknown tables")
	}
}
