package materializer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

var healSchema = []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)"}

// damagedView writes rows into a new view, closes it, and overwrites the root page of table
// t in views.db with garbage (or, with header, the file's first page, schema included): what a
// failing disk or a stray write does. It returns the node's directory and the rows t held.
func damagedView(tb testing.TB, header bool) (string, [][]log.Value) {
	tb.Helper()
	dir := tb.TempDir()
	n := openNode(tb, dir, siteFromHex(tb, "0102030405060708090a0b0c0d0e0f10"), healSchema, nil)
	for i := range 20 {
		stmts := make([]Statement, 0, 50)
		for j := range 50 {
			id := int64(i*50 + j)
			stmts = append(stmts, Statement{SQL: "INSERT INTO t (id, v) VALUES (?, ?)", Params: []log.Value{log.Integer(id), log.Text(strings.Repeat(fmt.Sprint(id), 40))}})
		}
		if _, err := n.m.Transact(context.Background(), stmts); err != nil {
			tb.Fatal(err)
		}
	}
	want := n.dumpTable(tb, "t")
	path := n.cfg.Path
	n.close()

	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	var root, pageSize int64
	if err := db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = 't'").Scan(&root); err != nil {
		tb.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		tb.Fatal(err)
	}
	db.Close()
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); err == nil {
			tb.Fatalf("views.db%s left after close: the damage would not be read", suffix)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	garbage := []byte(strings.Repeat("\xde\xad\xbe\xef", int(pageSize)/4))
	if header {
		root = 1
	}
	if _, err := f.WriteAt(garbage, (root-1)*pageSize); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	return dir, want
}

// Issue 12, item 7: a views.db damaged while the node was down is found at start (quick_check)
// and rebuilt from the log before the node serves: every row is back, the damaged file is
// kept beside it, and nothing reports corruption.
// The first page holds the file header and the schema: then SQLite says "file is not a
// database" at open, and the schema comes from the log.
func TestDamagedViewHealsAtStart(t *testing.T) {
	for _, header := range []bool{false, true} {
		t.Run(fmt.Sprintf("header=%v", header), func(t *testing.T) {
			dir, want := damagedView(t, header)
			n := openNode(t, dir, log.SiteID{}, healSchema, nil)
			if got := n.dumpTable(t, "t"); !rowsEqual(got, want) {
				t.Fatalf("after start: %d rows, want %d", len(got), len(want))
			}
			if err := n.m.ViewCorruption(); err != nil {
				t.Fatalf("ViewCorruption after the heal: %v", err)
			}
			if _, err := os.Stat(n.cfg.Path + corruptSuffix); err != nil {
				t.Fatalf("the damaged view was not kept: %v", err)
			}
			n.exec(t, "INSERT INTO t (id, v) VALUES (5000, 'after')")
		})
	}
}

// Issue 12, item 7: without the start check, the first statement that meets the damage
// answers ErrViewCorrupt (never a generic 500) and starts the rebuild from the log; once it
// is done, reads and writes work and see every row.
func TestDamagedViewHealsOnFirstError(t *testing.T) {
	dir, want := damagedView(t, false)
	n := openNode(t, dir, log.SiteID{}, healSchema, func(c *Config) { c.NoOpenCheck = true })
	rows, err := n.m.Query(context.Background(), Statement{SQL: "SELECT id, v FROM t ORDER BY id"})
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if !errors.Is(err, ErrViewCorrupt) {
		t.Fatalf("query on the damaged table: %v, want ErrViewCorrupt", err)
	}
	testutil.WaitFor(t, 30*time.Second, "the view rebuilt from the log", func() bool { return n.m.ViewCorruption() == nil })
	if got := n.dumpTable(t, "t"); !rowsEqual(got, want) {
		t.Fatalf("after the heal: %d rows, want %d", len(got), len(want))
	}
	n.exec(t, "INSERT INTO t (id, v) VALUES (5000, 'after')")
	if got := n.query(t, "SELECT count(*) FROM t"); !rowsEqual(got, [][]log.Value{{log.Integer(int64(len(want) + 1))}}) {
		t.Fatalf("count after a write = %v, want %d", got[0][0], len(want)+1)
	}
}

// patina rebuild (an offline Rebuild) replaces a damaged view, whose schema it cannot read,
// with the rows of the log.
func TestDamagedViewOfflineRebuild(t *testing.T) {
	dir, want := damagedView(t, true)
	st, err := log.Open(dir+"/log", log.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	m := New(st, DefaultConfig(dir+"/views.db"))
	if err := m.Rebuild(context.Background(), nil); err != nil {
		t.Fatalf("offline rebuild of a damaged view: %v", err)
	}
	st.Close()
	n := openNode(t, dir, log.SiteID{}, healSchema, nil)
	if got := n.dumpTable(t, "t"); !rowsEqual(got, want) {
		t.Fatalf("after patina rebuild: %d rows, want %d", len(got), len(want))
	}
}
