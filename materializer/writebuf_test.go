package materializer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/patinadb/patina/log"
)

// remoteCS builds a changeset of a remote site from (pk, column, value) triples, in order,
// every change at col_version cv and cl 1.
func remoteCS(version log.Version, cv uint64, changes ...any) *log.Changeset {
	cs := &log.Changeset{Site: log.SiteID{0xBE, 2}, Version: version, TS: log.Timestamp(version), Kind: log.KindData}
	for i := 0; i < len(changes); i += 3 {
		cs.Changes = append(cs.Changes, log.Change{Table: "u", PK: log.MustPackPK(log.Integer(int64(changes[i].(int)))),
			CID: changes[i+1].(string), Val: changes[i+2].(log.Value), ColVersion: cv, CL: 1, Ord: uint64(len(cs.Changes))})
	}
	cs.LastOrd = uint64(len(cs.Changes) - 1)
	cs.Span = log.OrdRange{First: 0, Last: cs.LastOrd}
	return cs
}

// TestBufferedFold: the fold buffers a changeset's row and clock writes and writes them
// with multi-row statements (writebuf.go). A row that comes back later in the same changeset
// must see its buffered clock (both columns end in the clock, not only the last one); the
// rows of a run longer than the largest statement all land; a changeset whose buffered rows
// break a CHECK constraint is refused alone, as with one statement per row.
func TestBufferedFold(t *testing.T) {
	n := newNode(t, log.SiteID{1}, []string{"CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, k TEXT, v TEXT CHECK (v IS NULL OR v <> 'bad'))"})
	ctx := context.Background()
	// Row 1, row 2, row 1 again (not consecutive).
	cs1 := remoteCS(1, 1, 1, "k", log.Text("a"), 2, "k", log.Text("b"), 1, "v", log.Text("one"))
	// 150 rows of one column set: runs of 64, 64, 16, 4, 1, 1.
	var big []any
	for i := range 150 {
		big = append(big, 100+i, "k", log.Text("big-"+string(rune('A'+i%26))+string(rune('a'+i/26))), 100+i, "v", log.Text("x"))
	}
	cs2 := remoteCS(2, 1, big...)
	// The second row breaks the CHECK constraint: the whole changeset is refused.
	cs3 := remoteCS(3, 1, 500, "v", log.Text("ok"), 501, "v", log.Text("bad"))
	// Folded after the refused one in the same batch.
	cs4 := remoteCS(4, 1, 600, "k", log.Text("after"))
	if _, err := n.m.Apply(ctx, []*log.Changeset{cs1, cs2, cs3, cs4}); err != nil {
		t.Fatal(err)
	}
	got := n.query(t, "SELECT id, k, v FROM u WHERE id < 100 ORDER BY id")
	want := [][]log.Value{{log.Integer(1), log.Text("a"), log.Text("one")}, {log.Integer(2), log.Text("b"), log.Null()}}
	if !rowsEqual(got, want) {
		t.Errorf("rows 1 and 2: %s; want %s", fmtRows(got), fmtRows(want))
	}
	cols := 0
	for _, c := range n.dumpClock(t) {
		if c.PK == "X'"+hexPK(1)+"'" {
			cols++
		}
	}
	if cols != 2 {
		t.Errorf("row 1's clock holds %d column records; want 2 (k, then v after the row came back)", cols)
	}
	if c := n.query(t, "SELECT count(*), count(DISTINCT k), min(v), max(v) FROM u WHERE id BETWEEN 100 AND 249"); c[0][0].Int != 150 || c[0][1].Int != 150 || c[0][2].Text != "x" {
		t.Errorf("the 150-row changeset: %s", fmtRows(c))
	}
	if c := n.query(t, "SELECT count(*) FROM u WHERE id IN (500, 501)"); c[0][0].Int != 0 {
		t.Errorf("the changeset that breaks CHECK left %d rows; want it refused whole", c[0][0].Int)
	}
	if c := n.query(t, "SELECT count(*) FROM "+failedTable); c[0][0].Int != 1 {
		t.Errorf("%d refused changesets recorded; want 1", c[0][0].Int)
	}
	if c := n.query(t, "SELECT k FROM u WHERE id = 600"); len(c) != 1 || c[0][0].Text != "after" {
		t.Errorf("the changeset after the refused one: %s", fmtRows(c))
	}
	// The buffer is writer-owned: ask the writer, through a transaction, whether it is empty.
	n.exec(t, "INSERT INTO u (id, k) VALUES (700, 'local')")
	if c := n.query(t, "SELECT k FROM u WHERE id = 700"); len(c) != 1 {
		t.Errorf("local row: %s", fmtRows(c))
	}
}

func hexPK(id int64) string {
	const digits = "0123456789ABCDEF"
	pk := log.MustPackPK(log.Integer(id))
	out := make([]byte, 0, 2*len(pk))
	for _, b := range pk {
		out = append(out, digits[b>>4], digits[b&15])
	}
	return string(out)
}

// TestStatementChangesRows: only INSERT, REPLACE, UPDATE and DELETE (WITH clause or not)
// report a row count; SQLite's count after anything else is an earlier statement's.
func TestStatementChangesRows(t *testing.T) {
	for q, want := range map[string]bool{
		"INSERT INTO t VALUES (1)":       true,
		"replace into t values (1)":      true,
		"UPDATE t SET a = 1 RETURNING a": true,
		"DELETE FROM t":                  true,
		"WITH d AS (SELECT 1 AS x) DELETE FROM t WHERE a IN (SELECT x FROM d)":                                  true,
		"WITH RECURSIVE d(x) AS (VALUES (1) UNION SELECT x+1 FROM d WHERE x < 3) INSERT INTO t SELECT x FROM d": true,
		"SELECT 1":                                         false,
		"VALUES (1)":                                       false,
		"WITH d AS (DELETE FROM t) SELECT 1":               false, // SQLite refuses it; the verb outside the parentheses is SELECT
		"WITH d AS (SELECT 1) SELECT * FROM d":             false,
		"WITH d AS NOT MATERIALIZED (SELECT 1) VALUES (2)": false,
	} {
		c, err := checkWrite(q)
		if got := c.changesRows; err != nil || got != want {
			t.Errorf("%s: changesRows %v, %v; want %v", q, got, err, want)
		}
	}
}

// TestCheckWriteBounded: only an INSERT or REPLACE without SELECT or WITH runs unwatched
// (see runLocal): anything that can read a table, or recurse, stays interruptible.
func TestCheckWriteBounded(t *testing.T) {
	for q, want := range map[string]bool{
		"INSERT INTO t (a, b) VALUES (?, ?)":                                                            true,
		"insert into t values (1), (2), (3)":                                                            true,
		"REPLACE INTO t VALUES (1)":                                                                     true,
		"INSERT OR REPLACE INTO t VALUES (1)":                                                           true,
		"INSERT INTO t DEFAULT VALUES":                                                                  true,
		"INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b + 1":                     true,
		"INSERT INTO t VALUES ('SELECT')":                                                               true, // a string, not the keyword
		"INSERT INTO t VALUES (1) RETURNING a":                                                          true,
		"INSERT INTO t SELECT * FROM u":                                                                 false,
		"INSERT INTO t VALUES ((SELECT count(*) FROM u))":                                               false,
		"INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = (SELECT max(b) FROM t)":             false,
		"WITH d AS (SELECT 1) INSERT INTO t SELECT * FROM d":                                            false,
		"WITH RECURSIVE d(x) AS (VALUES (1) UNION ALL SELECT x+1 FROM d) INSERT INTO t SELECT x FROM d": false,
		"UPDATE t SET a = 1 WHERE id = ?":                                                               false,
		"DELETE FROM t":                                                                                 false,
		"SELECT 1":                                                                                      false,
	} {
		for range 2 { // parsed, then from the cache
			got, err := checkWrite(q)
			if err != nil || got.bounded != want {
				t.Errorf("%s: bounded %v, %v; want %v", q, got.bounded, err, want)
			}
		}
	}
}

// TestCheckWriteStatementCached: the verdict of a statement is the same the second time
// (from the cache), refusals are never remembered as allowed, and a full cache starts over.
func TestCheckWriteStatementCached(t *testing.T) {
	for range 2 {
		if c, err := checkWrite("INSERT INTO t VALUES (?)"); err != nil || !c.changesRows {
			t.Fatal(c, err)
		}
		if _, err := checkWrite("INSERT INTO __patina_meta VALUES (1, 2)"); err == nil {
			t.Fatal("a write of an internal table was let through")
		}
		if _, err := checkWrite("CREATE TABLE x (a)"); err == nil {
			t.Fatal("a schema change was let through")
		}
	}
	for i := range checkedWritesMax + 10 {
		if _, err := checkWrite("UPDATE t SET a = " + string(rune('0'+i%10)) + " WHERE id = ?" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))); err != nil {
			t.Fatal(err)
		}
	}
	checkedWrites.Lock()
	size := len(checkedWrites.ok)
	checkedWrites.Unlock()
	if size > checkedWritesMax {
		t.Errorf("cache holds %d statements; want at most %d", size, checkedWritesMax)
	}
}

// TestFoldDelay: with a fold delay (db.fold_delay), remote changesets arriving one by one
// from concurrent callers all fold and each Apply returns once its changeset is folded; a
// local transaction during the wait runs (it ends the wait) and is folded with them.
func TestFoldDelay(t *testing.T) {
	n := openNode(t, t.TempDir(), log.SiteID{1}, []string{"CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, k TEXT, v TEXT)"},
		func(c *Config) { c.FoldDelay = 20 * time.Millisecond })
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.m.Apply(ctx, []*log.Changeset{remoteCS(log.Version(i+1), 1, i, "k", log.Text("r"))}); err != nil {
				errs <- err
				return
			}
			// Apply returned: the row is folded.
			rows, err := n.m.Query(ctx, Statement{SQL: "SELECT k FROM u WHERE id = ?", Params: []log.Value{log.Integer(int64(i))}})
			if err != nil {
				errs <- err
				return
			}
			defer rows.Close()
			if !rows.Next() {
				errs <- fmt.Errorf("row %d not folded when Apply returned (%v)", i, rows.Err())
			}
		}()
	}
	n.exec(t, "INSERT INTO u (id, k) VALUES (100, 'local')")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := n.query(t, "SELECT count(*) FROM u"); c[0][0].Int != 11 {
		t.Errorf("%d rows; want 11", c[0][0].Int)
	}
}
