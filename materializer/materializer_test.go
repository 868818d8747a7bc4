package materializer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/prometheus/client_golang/prometheus"
)

var tSchema = []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x, y TEXT NOT NULL DEFAULT 'd')"}

// lastChanges returns the changes of the changeset a transaction produced, rendered
// "cid=val@cv/cl" in changeset order.
func lastChanges(tb testing.TB, n *node, res TxResult) []string {
	tb.Helper()
	if res.Version == 0 {
		return nil
	}
	cs, err := n.store.Get(n.store.SiteID(), res.Version)
	if err != nil {
		tb.Fatalf("get version %d: %v", res.Version, err)
	}
	var out []string
	for _, c := range cs.Changes {
		pk, _ := log.UnpackPK(c.PK)
		out = append(out, fmt.Sprintf("%v.%s=%s@%d/%d", pk[0].Quote(), c.CID, c.Val.Quote(), c.ColVersion, c.CL))
	}
	return out
}

// TestLocalWriteRules checks the changes each kind of local write produces (docs/DESIGN.md rule L1-L8).
func TestLocalWriteRules(t *testing.T) {
	tests := []struct {
		name  string
		setup []string
		sql   string
		want  []string // nil: no version
		err   error
	}{
		{"L1 insert gives every column version 1", nil, "INSERT INTO t (id) VALUES (7)",
			[]string{"7.x=NULL@1/1", "7.y='d'@1/1"}, nil},
		{"L2 same value bumps nothing", []string{"INSERT INTO t VALUES (1, 5, 'a')"}, "UPDATE t SET x = x, y = 'a'", nil, nil},
		{"L2 1 to 1.0 is a change", []string{"INSERT INTO t VALUES (1, 1, 'a')"}, "UPDATE t SET x = 1.0",
			[]string{"1.x=1.0@2/1"}, nil},
		{"L2 text to blob is a change", []string{"INSERT INTO t VALUES (1, 'a', 'a')"}, "UPDATE t SET x = X'61'",
			[]string{"1.x=X'61'@2/1"}, nil},
		{"L3 delete", []string{"INSERT INTO t VALUES (1, 1, 'a')", "UPDATE t SET x = 2"}, "DELETE FROM t WHERE id = 1",
			[]string{"1.-1=NULL@2/2"}, nil},
		{"L3 delete of nothing", nil, "DELETE FROM t WHERE id = 1", nil, nil},
		{"L4 re-insert resets columns", []string{"INSERT INTO t VALUES (1, 1, 'a')", "UPDATE t SET x = 2", "DELETE FROM t"},
			"INSERT INTO t VALUES (1, 3, 'b')", []string{"1.-1=NULL@3/3", "1.x=3@1/3", "1.y='b'@1/3"}, nil},
		{"L5 replace without sentinel keeps cl 1", []string{"INSERT INTO t VALUES (1, 1, 'a')"},
			"INSERT OR REPLACE INTO t (id, x) VALUES (1, 1)", []string{"1.x=1@2/1", "1.y='d'@2/1"}, nil},
		{"L5 replace with sentinel adds 2", []string{"INSERT INTO t VALUES (1, 1, 'a')", "DELETE FROM t", "INSERT INTO t VALUES (1, 1, 'a')"},
			"REPLACE INTO t VALUES (1, 1, 'a')", []string{"1.-1=NULL@5/5", "1.x=1@2/5", "1.y='a'@2/5"}, nil},
		{"L6 upsert bumps assigned changed columns", []string{"INSERT INTO t VALUES (1, 1, 'a')"},
			"INSERT INTO t VALUES (1, 9, 'a') ON CONFLICT DO UPDATE SET x = excluded.x, y = excluded.y", []string{"1.x=9@2/1"}, nil},
		{"L6 insert or ignore over a row", []string{"INSERT INTO t VALUES (1, 1, 'a')"}, "INSERT OR IGNORE INTO t VALUES (1, 2, 'b')", nil, nil},
		{"L7 key update moves the clocks", []string{"INSERT INTO t VALUES (1, 1, 'a')", "UPDATE t SET x = 2"},
			"UPDATE t SET id = 2 WHERE id = 1", []string{"1.-1=NULL@2/2", "2.-1=NULL@1/1", "2.x=2@2/1", "2.y='a'@1/1"}, nil},
		{"L8 a failing statement leaves nothing", []string{"INSERT INTO t VALUES (1, 1, 'a')"}, "UPDATE t SET y = NULL", nil, ErrConstraint},
		{"L8 duplicate key", []string{"INSERT INTO t VALUES (1, 1, 'a')"}, "INSERT INTO t VALUES (1, 2, 'b')", nil, ErrConstraint},
		{"insert then delete in one transaction", nil, "INSERT INTO t VALUES (1, 1, 'a')", []string{"1.x=1@1/1", "1.y='a'@1/1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, log.SiteID{1}, tSchema)
			for _, s := range tt.setup {
				n.exec(t, s)
			}
			before := n.dumpClock(t)
			res, err := n.m.Transact(context.Background(), []Statement{{SQL: tt.sql}})
			if tt.err != nil {
				var se *StmtError
				if !errors.Is(err, tt.err) || !errors.As(err, &se) || se.Index != 0 {
					t.Fatalf("err = %v, want %v in a StmtError", err, tt.err)
				}
				if after := n.dumpClock(t); !clockEqual(after, before, true) {
					t.Fatalf("clock changed by a failed statement:\n%v\n%v", after, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := lastChanges(t, n, res)
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("changes:\n got  %v\n want %v", got, tt.want)
			}
			if (res.Version == 0) != (tt.want == nil) {
				t.Fatalf("version %d with changes %v", res.Version, got)
			}
		})
	}
}

func TestTransactAtomicAndResults(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	res := n.exec(t, "INSERT INTO t (id, x) VALUES (1, 'a'), (2, 'b')")
	// Version 1 is the schema changeset the schema given at open appended.
	if res.Version != 2 || res.Results[0].RowsAffected != 2 {
		t.Fatalf("result %+v", res)
	}
	_, err := n.m.Transact(context.Background(), []Statement{
		{SQL: "INSERT INTO t (id, x) VALUES (3, 'c')"},
		{SQL: "UPDATE t SET x = :v WHERE id = :id", Named: map[string]log.Value{"v": log.Integer(5), ":id": log.Integer(1)}},
		{SQL: "INSERT INTO t (id) VALUES (?)", Params: []log.Value{log.Integer(2)}},
	})
	var se *StmtError
	if !errors.As(err, &se) || se.Index != 2 || !errors.Is(err, ErrConstraint) {
		t.Fatalf("err = %v, want a constraint error at statement 2", err)
	}
	if got := n.query(t, "SELECT count(*) FROM t"); got[0][0].Int != 2 {
		t.Fatalf("rows after a failed transaction: %v", got)
	}
	if v := n.store.NextLocalVersion(); v != 3 {
		t.Fatalf("a failed transaction used a version: next is %d", v)
	}
	res, err = n.m.Transact(context.Background(), []Statement{
		{SQL: "UPDATE t SET x = :v WHERE id = :id", Named: map[string]log.Value{"v": log.Integer(5), ":id": log.Integer(1)}},
		{SQL: "DELETE FROM t WHERE id = ?", Params: []log.Value{log.Integer(2)}},
	})
	if err != nil || res.Version != 3 || res.Results[0].RowsAffected != 1 || res.Results[1].RowsAffected != 1 {
		t.Fatalf("res %+v err %v", res, err)
	}
	if got := n.query(t, "SELECT id, x FROM t"); len(got) != 1 || !got[0][1].Equal(log.Integer(5)) {
		t.Fatalf("rows: %v", got)
	}
}

func TestStatementRefusals(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	n.exec(t, "INSERT INTO t VALUES (1, 1, 'a')")
	writes := []struct {
		sql  string
		want error
	}{
		{"INSERT INTO __patina_meta VALUES ('x', 1)", ErrInternalTable},
		{"UPDATE \"__patina_clock_t\" SET cl = 9", ErrInternalTable},
		{"UPDATE temp.__patina_on SET v = 0", ErrInternalTable},
		{"CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL)", ErrBadStatement},
		{"DROP TABLE t", ErrBadStatement},
		{"PRAGMA recursive_triggers = 1", ErrBadStatement},
		{"INSERT INTO t VALUES (2, 2, 'b'); DELETE FROM t", ErrBadStatement},
		{"INSERT INTO nope VALUES (1)", ErrBadStatement},
		{"INSER INTO t VALUES (1)", ErrBadStatement},
		{"", ErrBadStatement},
	}
	for _, w := range writes {
		_, err := n.m.Transact(context.Background(), []Statement{{SQL: w.sql}})
		if !errors.Is(err, w.want) {
			t.Errorf("Transact(%q) = %v, want %v", w.sql, err, w.want)
		}
	}
	reads := []struct {
		sql  string
		want error
	}{
		{"INSERT INTO t VALUES (3, 3, 'c')", ErrReadOnly},
		{"DELETE FROM t", ErrReadOnly},
		{"PRAGMA query_only = 0", ErrReadOnly},
		{"WITH x AS (SELECT 1) DELETE FROM t", ErrReadOnly},
		{"SELECT * FROM nope", ErrBadStatement},
		{"SELECT 1; SELECT 2", ErrBadStatement},
		{"SELEC 1", ErrBadStatement},
		{"ATTACH 'x.db' AS x", ErrReadOnly},
		{"VACUUM", ErrReadOnly},
	}
	for _, r := range reads {
		rows, err := n.m.Query(context.Background(), Statement{SQL: r.sql})
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
		}
		if !errors.Is(err, r.want) {
			t.Errorf("Query(%q) = %v, want %v", r.sql, err, r.want)
		}
	}
	if got := n.query(t, "SELECT count(*) FROM t"); got[0][0].Int != 1 {
		t.Fatalf("refused statements changed the table: %v", got)
	}
}

func TestQueryTypes(t *testing.T) {
	n := newNode(t, log.SiteID{1}, []string{"CREATE TABLE v (id INTEGER PRIMARY KEY NOT NULL, x, d DATETIME)"})
	n.exec(t, "INSERT INTO v VALUES (1, 1, 'x'), (2, 1.0, 'y'), (3, '1', NULL), (4, X'', NULL), (5, NULL, NULL)")
	got := n.query(t, "SELECT x FROM v ORDER BY id")
	want := []log.Value{log.Integer(1), log.Real(1), log.Text("1"), log.Blob(nil), log.Null()}
	for i := range want {
		if !got[i][0].Equal(want[i]) {
			t.Fatalf("row %d: %v (%v), want %v", i, got[i][0].Quote(), got[i][0].Type, want[i].Quote())
		}
	}
	got = n.query(t, "SELECT id FROM v WHERE x = ? AND typeof(x) = 'text'", log.Text("1"))
	if len(got) != 1 || got[0][0].Int != 3 {
		t.Fatalf("parameter binding: %v", got)
	}
}

func TestSchemaRules(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	refused := []struct {
		stmt     string
		want     error
		mentions string
	}{
		{"CREATE TABLE a (x)", ErrSchema, "PRIMARY KEY"},
		{"CREATE TABLE a (id INTEGER PRIMARY KEY, x)", ErrSchema, "NOT NULL"},
		{"CREATE TABLE a (id INTEGER PRIMARY KEY NOT NULL, x UNIQUE)", ErrSchema, "UNIQUE"},
		{"CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL)", ErrSchema, "AUTOINCREMENT"},
		{"CREATE TABLE a (id INTEGER PRIMARY KEY NOT NULL, x REFERENCES t(id))", ErrSchema, "foreign"},
		{"CREATE TABLE a (id INTEGER PRIMARY KEY NOT NULL, x TEXT NOT NULL)", ErrSchema, "DEFAULT"},
		{"CREATE TABLE __patina_x (id INTEGER PRIMARY KEY NOT NULL)", ErrSchema, "reserved"},
		{"CREATE UNIQUE INDEX ux ON t (x)", ErrSchema, "UNIQUE"},
		{"DROP TABLE t", ErrSchemaConflict, "destructive"},
		{"ALTER TABLE t RENAME TO u", ErrSchemaConflict, "ALTER"},
		{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x)", ErrSchemaConflict, "y"},
		{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x INTEGER, y TEXT NOT NULL DEFAULT 'd')", ErrSchemaConflict, "x"},
		{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, y, x TEXT NOT NULL DEFAULT 'd')", ErrSchemaConflict, "column"},
		{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x, y TEXT NOT NULL DEFAULT 'd', z NOT NULL)", ErrSchema, "DEFAULT"},
		{"CREATE VIEW vv AS SELECT 1", ErrSchema, "only"},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", ErrSchema, "only"},
	}
	for _, r := range refused {
		_, err := n.m.Migrate(context.Background(), []string{r.stmt})
		if !errors.Is(err, r.want) || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(r.mentions)) {
			t.Errorf("Migrate(%q) = %v, want %v mentioning %q", r.stmt, err, r.want, r.mentions)
		}
	}
	if got := n.m.Tables(); len(got) != 1 || got[0] != "t" {
		t.Fatalf("refused migrations left tables: %v", got)
	}
	// Allowed changes, and re-applying is a no-op.
	allowed := []string{
		"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x, y TEXT NOT NULL DEFAULT 'd', z REAL, w TEXT NOT NULL DEFAULT '')",
		"CREATE INDEX tx ON t (x)",
		"CREATE TABLE u (a TEXT NOT NULL, b INTEGER NOT NULL, v, PRIMARY KEY (a, b)) WITHOUT ROWID",
	}
	res, err := n.m.Migrate(context.Background(), allowed)
	if err != nil || len(res.Applied) != 3 {
		t.Fatalf("migrate: %+v %v", res, err)
	}
	res, err = n.m.Migrate(context.Background(), allowed)
	if err != nil || len(res.Applied) != 0 {
		t.Fatalf("re-apply: %+v %v", res, err)
	}
	if res, err = n.m.Migrate(context.Background(), []string{"DROP INDEX tx"}); err != nil || len(res.Applied) != 1 {
		t.Fatalf("drop index: %+v %v", res, err)
	}
	// The new columns are captured by local writes.
	r := n.exec(t, "INSERT INTO t (id, z) VALUES (1, 2.5)")
	if got := lastChanges(t, n, r); len(got) != 4 || got[2] != "1.z=2.5@1/1" || got[3] != "1.w=''@1/1" {
		t.Fatalf("changes after migration: %v", got)
	}
	// A schema file that lacks columns a migration added lags the replicated schema: the
	// replicated one is kept (and the file reported), nothing is dropped.
	n.m.Close()
	reg := prometheus.NewRegistry()
	m := New(n.store, Config{Path: n.cfg.Path, Schema: tSchema, Registerer: reg})
	if err := m.Open(context.Background()); err != nil {
		t.Fatalf("reopen with a schema missing columns: %v", err)
	}
	if got := registryValue(t, reg, "patina_schema_file_lagging_total"); got != 1 {
		t.Fatalf("lagging statements counted: %v", got)
	}
	if cols := len(m.Schema().Tables[0].Columns); cols != 5 {
		t.Fatalf("columns after reopen with a lagging file: %+v", m.Schema().Tables[0])
	}
	m.Close()
	// A schema file that changes a column is refused at open, as before.
	m = New(n.store, Config{Path: n.cfg.Path, Schema: []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x INTEGER)"}})
	if err := m.Open(context.Background()); !errors.Is(err, ErrSchemaConflict) {
		m.Close()
		t.Fatalf("reopen with a schema that changes a column: %v", err)
	}
	m.Close()
}

// TestUnknownSchemaPending: changes for tables and columns a node does not know yet stay in
// its log and are folded once a migration adds them.
func TestUnknownSchemaPending(t *testing.T) {
	full := []string{
		"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x, y TEXT NOT NULL DEFAULT 'd', z)",
		"CREATE TABLE u (k TEXT PRIMARY KEY NOT NULL, v)",
	}
	a := newNode(t, log.SiteID{1}, full)
	b := newNode(t, log.SiteID{2}, tSchema)
	a.exec(t, "INSERT INTO t VALUES (1, 'x', 'y', 'z')")
	a.exec(t, "INSERT INTO u VALUES ('k', 1)")
	a.exec(t, "UPDATE t SET z = 'zz'")
	a.syncTo(t, b)
	if got := b.dumpTable(t, "t"); len(got) != 1 || !got[0][1].Equal(log.Text("x")) {
		t.Fatalf("known columns not folded: %v", fmtRows(got))
	}
	if _, err := b.m.Migrate(context.Background(), full); err != nil {
		t.Fatal(err)
	}
	if got, want := snapshot(t, b), snapshot(t, a); got != want {
		t.Fatalf("after migration:\n%s\nwant\n%s", got, want)
	}
	if got := b.query(t, "SELECT count(*) FROM __patina_pending"); got[0][0].Int != 0 {
		t.Fatalf("pending left: %v", got)
	}
}

// TestCrashRefold: versions in the log that the view lacks (a crash between the log append
// and the SQLite commit) are folded at open, and refolding from an older fold position is
// exactly-once in effect.
func TestCrashRefold(t *testing.T) {
	dir := t.TempDir()
	site := log.SiteID{1}
	n := openNode(t, dir, site, tSchema, nil)
	n.exec(t, "INSERT INTO t VALUES (1, 1, 'a')")
	n.exec(t, "UPDATE t SET x = 2")
	want := func() string {
		r := newNode(t, log.SiteID{9}, tSchema)
		n.syncTo(t, r)
		return r.query(t, "SELECT group_concat(id || ':' || x || ':' || y) FROM t")[0][0].Quote()
	}
	n.m.Close()
	n.m = nil
	// The node "crashed" after a remote version reached its log but before the fold.
	remote := &log.Changeset{Site: log.SiteID{2}, Version: 1, Span: log.OrdRange{First: 0, Last: 1}, LastOrd: 1, Changes: []log.Change{
		{Table: "t", PK: log.MustPackPK(log.Integer(2)), CID: "x", Val: log.Integer(7), ColVersion: 1, CL: 1, Ord: 0},
		{Table: "t", PK: log.MustPackPK(log.Integer(2)), CID: "y", Val: log.Text("r"), ColVersion: 1, CL: 1, Ord: 1},
	}}
	if _, err := n.store.Append(context.Background(), remote); err != nil {
		t.Fatal(err)
	}
	m := New(n.store, n.cfg)
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.m = m
	if got := n.m.FoldPosition(); got != n.store.LastSeq() {
		t.Fatalf("fold position %d after open, log at %d", got, n.store.LastSeq())
	}
	before := snapshot(t, n)
	if !strings.Contains(before, "2:integer 7:integer 'r':text") {
		t.Fatalf("remote version not folded at open:\n%s", before)
	}
	// Replay everything: idempotent.
	if err := n.m.Replay(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "refold", func() bool { return n.m.FoldPosition() == n.store.LastSeq() })
	if after := snapshot(t, n); after != before {
		t.Fatalf("replay changed the view:\n%s\nwas\n%s", after, before)
	}
	// And a fold position lost with the last SQLite commits (set back by hand).
	n.m.Close()
	db, err := sql.Open("sqlite", n.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE __patina_meta SET value = 1 WHERE key = 'fold_pos'"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	m = New(n.store, n.cfg)
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.m = m
	if after := snapshot(t, n); after != before {
		t.Fatalf("refold after reopen changed the view:\n%s\nwas\n%s", after, before)
	}
	_ = want
}

func TestNotify(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	ch, cancel := n.m.Notify(1)
	defer cancel()
	n.exec(t, "INSERT INTO t VALUES (1, 1, 'a')")
	nt := <-ch
	if len(nt.Rows) != 1 || nt.Rows[0].Table != "t" || nt.Rows[0].CL != 1 || nt.Lagged || nt.Seq != 2 {
		t.Fatalf("notice %+v", nt)
	}
	if !strings.EqualFold(nt.Rows[0].PK.String(), log.MustPackPK(log.Integer(1)).String()) {
		t.Fatalf("pk %v", nt.Rows[0].PK)
	}
	// Nothing reads: the writer must not block, the listener lags.
	for i := range 5 {
		n.exec(t, fmt.Sprintf("UPDATE t SET x = %d", i+10))
	}
	<-ch // the one that fitted
	n.exec(t, "DELETE FROM t")
	nt = <-ch
	if !nt.Lagged || nt.Rows[0].CL != 2 {
		t.Fatalf("notice after overflow %+v, want Lagged and cl 2", nt)
	}
	// Remote folds notify too.
	o := newNode(t, log.SiteID{2}, tSchema)
	o.exec(t, "INSERT INTO t VALUES (5, 5, 'e')")
	o.syncTo(t, n)
	nt = <-ch
	if nt.Lagged || len(nt.Rows) != 1 || nt.Rows[0].CL != 1 {
		t.Fatalf("fold notice %+v", nt)
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after cancel")
	}
}

func TestOnCommit(t *testing.T) {
	var mu sync.Mutex
	var got []*log.Changeset
	n := openNode(t, t.TempDir(), log.SiteID{1}, tSchema, func(c *Config) {
		c.OnCommit = func(css []*log.Changeset) {
			mu.Lock()
			got = append(got, css...)
			mu.Unlock()
		}
	})
	n.exec(t, "INSERT INTO t VALUES (1, 1, 'a')")
	n.exec(t, "UPDATE t SET x = x") // no change, no changeset
	n.exec(t, "UPDATE t SET x = 2")
	// A remote changeset is not handed to OnCommit.
	o := newNode(t, log.SiteID{2}, tSchema)
	o.exec(t, "INSERT INTO t VALUES (5, 5, 'e')")
	o.syncTo(t, n)
	testutil.WaitFor(t, 5*time.Second, "two local changesets", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 3
	})
	n.m.Close()
	mu.Lock()
	defer mu.Unlock()
	// The schema changeset the schema given at open appended is handed over too (version 1).
	if len(got) != 3 || got[0].Kind != log.KindSchema || got[1].Version != 2 || got[2].Version != 3 || got[2].Site != n.store.SiteID() || got[2].Seq == 0 {
		t.Fatalf("OnCommit saw %+v", got)
	}
}

// TestConcurrentWritersAndReaders: many callers group-commit; every version is in the log
// and the view, readers never see half a transaction.
func TestConcurrentWritersAndReaders(t *testing.T) {
	n := newNode(t, log.SiteID{1}, []string{"CREATE TABLE p (id INTEGER PRIMARY KEY NOT NULL, g INTEGER)"})
	const writers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	stop := make(chan struct{})
	go func() { // rows come in pairs per transaction: a reader must always see an even count
		for {
			select {
			case <-stop:
				errs <- nil
				return
			default:
			}
			rows, err := n.m.Query(context.Background(), Statement{SQL: "SELECT count(*) FROM p"})
			if err != nil {
				errs <- err
				return
			}
			rows.Next()
			c := rows.Values()[0].Int
			rows.Close()
			if c%2 != 0 {
				errs <- fmt.Errorf("reader saw %d rows: half a transaction", c)
				return
			}
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := int64((w*each + i) * 2)
				_, err := n.m.Transact(context.Background(), []Statement{
					{SQL: "INSERT INTO p VALUES (?, ?)", Params: []log.Value{log.Integer(id), log.Integer(int64(w))}},
					{SQL: "INSERT INTO p VALUES (?, ?)", Params: []log.Value{log.Integer(id + 1), log.Integer(int64(w))}},
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if got := n.query(t, "SELECT count(*) FROM p")[0][0].Int; got != writers*each*2 {
		t.Fatalf("%d rows", got)
	}
	if v := n.store.NextLocalVersion(); v != writers*each+2 { // and the schema changeset
		t.Fatalf("next version %d", v)
	}
	if n.m.FoldPosition() != n.store.LastSeq() {
		t.Fatalf("fold %d log %d", n.m.FoldPosition(), n.store.LastSeq())
	}
}

func TestRebuildOffline(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, dir, log.SiteID{1}, tSchema, nil)
	n.exec(t, "INSERT INTO t VALUES (1, 1, 'a'), (2, 2.5, 'b')")
	n.exec(t, "DELETE FROM t WHERE id = 2")
	o := newNode(t, log.SiteID{2}, tSchema)
	o.exec(t, "INSERT INTO t VALUES (3, X'00', 'c')")
	o.syncTo(t, n)
	want := snapshot(t, n)
	n.m.Close()
	var last RebuildProgress
	m := New(n.store, n.cfg)
	if err := m.Rebuild(context.Background(), func(p RebuildProgress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if last.Done != last.Total || last.Total != uint64(n.store.LastSeq()) || last.Cells == 0 {
		t.Fatalf("progress %+v", last)
	}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.m = m
	if got := snapshot(t, n); got != want {
		t.Fatalf("rebuilt:\n%s\nwant\n%s", got, want)
	}
}

// TestViewReadableWhileRunning: another SQLite connection (as the sqlite3 shell would) can
// read the view while the node runs.
func TestViewReadableWhileRunning(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	n.exec(t, "INSERT INTO t VALUES (1, 1, 'a')")
	db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(n.cfg.Path)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var c int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&c); err != nil || c != 1 {
		t.Fatalf("count %d err %v", c, err)
	}
	n.exec(t, "INSERT INTO t VALUES (2, 1, 'a')")
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&c); err != nil || c != 2 {
		t.Fatalf("count %d err %v", c, err)
	}
}

func TestClosed(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	n.m.Close()
	if _, err := n.m.Transact(context.Background(), []Statement{{SQL: "INSERT INTO t (id) VALUES (1)"}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Transact after Close: %v", err)
	}
	if _, err := n.m.Query(context.Background(), Statement{SQL: "SELECT 1"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Query after Close: %v", err)
	}
	if _, err := n.m.Apply(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
	if err := n.m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestRefusedChangesetDoesNotStall: a remote changeset this node's schema refuses (NULL
// into a NOT NULL column) is set aside with its reason; folding goes on.
func TestRefusedChangesetDoesNotStall(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	pk := log.MustPackPK(log.Integer(1))
	bad := &log.Changeset{Site: log.SiteID{2}, Version: 1, Span: log.OrdRange{First: 0, Last: 0}, LastOrd: 0, Changes: []log.Change{
		{Table: "t", PK: pk, CID: "y", Val: log.Null(), ColVersion: 1, CL: 1, Ord: 0},
	}}
	good := &log.Changeset{Site: log.SiteID{2}, Version: 2, Span: log.OrdRange{First: 0, Last: 0}, LastOrd: 0, Changes: []log.Change{
		{Table: "t", PK: log.MustPackPK(log.Integer(2)), CID: "x", Val: log.Integer(5), ColVersion: 1, CL: 1, Ord: 0},
	}}
	// One changeset folded before the bad one in the same batch: the batch is folded
	// without savepoints first, then again one savepoint per changeset once one fails, and
	// the first must be folded exactly once.
	before := &log.Changeset{Site: log.SiteID{3}, Version: 1, Span: log.OrdRange{First: 0, Last: 0}, LastOrd: 0, Changes: []log.Change{
		{Table: "t", PK: log.MustPackPK(log.Integer(4)), CID: "x", Val: log.Integer(4), ColVersion: 1, CL: 1, Ord: 0},
	}}
	if _, err := n.m.Apply(context.Background(), []*log.Changeset{before, bad, good}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if got := n.query(t, "SELECT id, x, y FROM t ORDER BY id"); len(got) != 2 || got[0][0].Int != 2 || got[1][0].Int != 4 {
			t.Fatalf("%s: rows %v", when, fmtRows(got))
		}
		got := n.query(t, "SELECT version, error FROM __patina_failed")
		if len(got) != 1 || got[0][0].Int != 1 || !strings.Contains(got[0][1].Text, "NOT NULL") {
			t.Fatalf("%s: failed table %v", when, fmtRows(got))
		}
	}
	check("folded")
	clocks := n.query(t, "SELECT * FROM __patina_clock_t ORDER BY 1")
	if err := n.m.Rebuild(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	check("rebuilt")
	if got := n.query(t, "SELECT * FROM __patina_clock_t ORDER BY 1"); !rowsEqual(got, clocks) {
		t.Fatalf("clocks after rebuild %v, before %v", fmtRows(got), fmtRows(clocks))
	}
	n.exec(t, "INSERT INTO t VALUES (3, 3, 'c')")
	if _, err := n.m.Apply(context.Background(), []*log.Changeset{bad}); err != nil {
		t.Fatal(err)
	}
	if n.m.FoldPosition() != n.store.LastSeq() {
		t.Fatal("fold position behind")
	}
}

func TestQueryDateColumns(t *testing.T) {
	n := newNode(t, log.SiteID{1}, []string{"CREATE TABLE e (id INTEGER PRIMARY KEY NOT NULL, at DATETIME, d DATE)"})
	n.exec(t, "INSERT INTO e VALUES (1, '2024-01-02 03:04:05', 'not a date'), (2, 17, NULL)")
	got := n.query(t, "SELECT * FROM e ORDER BY id")
	want := [][]log.Value{
		{log.Integer(1), log.Text("2024-01-02 03:04:05"), log.Text("not a date")},
		{log.Integer(2), log.Integer(17), log.Null()},
	}
	if !rowsEqual(got, want) {
		t.Fatalf("got %s", fmtRows(got))
	}
}

// TestPartsVisibleOnlyWhole: a version sent in parts is folded only once every part is in.
func TestPartsVisibleOnlyWhole(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	var changes []log.Change
	for i := range 4 {
		pk := log.MustPackPK(log.Integer(int64(i)))
		changes = append(changes,
			log.Change{Table: "t", PK: pk, CID: "x", Val: log.Integer(int64(i)), ColVersion: 1, CL: 1, Ord: uint64(2 * i)},
			log.Change{Table: "t", PK: pk, CID: "y", Val: log.Text("p"), ColVersion: 1, CL: 1, Ord: uint64(2*i + 1)})
	}
	part := func(first, last uint64) *log.Changeset {
		return &log.Changeset{Site: log.SiteID{2}, Version: 1, Span: log.OrdRange{First: first, Last: last}, LastOrd: 7,
			Changes: changes[first : last+1]}
	}
	if _, err := n.m.Apply(context.Background(), []*log.Changeset{part(0, 3)}); err != nil {
		t.Fatal(err)
	}
	if got := n.query(t, "SELECT count(*) FROM t")[0][0].Int; got != 0 {
		t.Fatalf("half a version visible: %d rows", got)
	}
	if _, err := n.m.Apply(context.Background(), []*log.Changeset{part(4, 7)}); err != nil {
		t.Fatal(err)
	}
	if got := n.query(t, "SELECT count(*) FROM t")[0][0].Int; got != 4 {
		t.Fatalf("%d rows after the last part", got)
	}
}

// TestLargeTransaction: a local transaction bigger than one log part replicates whole.
func TestLargeTransaction(t *testing.T) {
	a := newNode(t, log.SiteID{1}, tSchema)
	b := newNode(t, log.SiteID{2}, tSchema)
	res := a.exec(t, "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 5000) INSERT INTO t (id, x) SELECT i, i * 2 FROM s")
	if res.Results[0].RowsAffected != 5000 || res.Version != 2 {
		t.Fatalf("result %+v", res)
	}
	a.syncTo(t, b)
	if got := b.query(t, "SELECT count(*), sum(x) FROM t")[0]; got[0].Int != 5000 || got[1].Int != 5000*5001 {
		t.Fatalf("replica has %v", fmtRows([][]log.Value{got}))
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := openNode(t, t.TempDir(), log.SiteID{1}, tSchema, func(c *Config) { c.Registerer = reg })
	n.exec(t, "INSERT INTO t VALUES (1, 1, 'a')")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"patina_materializer_fold_lag", "patina_materializer_queue_length",
		"patina_materializer_tx_seconds", "patina_materializer_cells_total", "patina_materializer_tx_group_size"} {
		if !names[want] {
			t.Errorf("metric %s missing (have %v)", want, names)
		}
	}
}

// TestCloseWhileBusy: Close with transactions in flight answers every caller.
func TestCloseWhileBusy(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				_, err := n.m.Transact(context.Background(), []Statement{{SQL: "INSERT INTO t (id) VALUES (?)",
					Params: []log.Value{log.Integer(int64(w*1000 + i))}}})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	testutil.WaitFor(t, 10*time.Second, "some writes", func() bool { return n.store.NextLocalVersion() > 20 })
	n.m.Close()
	wg.Wait()
}

// TestConcurrentApplyAndTransact: remote changesets arrive from several goroutines while
// local transactions run; the fold position ends at the log's end and the view equals a
// rebuild from the log (the writer's own seqs beyond a gap are skipped, not lost).
func TestConcurrentApplyAndTransact(t *testing.T) {
	a := newNode(t, log.SiteID{1}, tSchema)
	for i := range 200 {
		a.exec(t, fmt.Sprintf("INSERT INTO t VALUES (%d, %d, 'a')", i, i))
	}
	css, err := a.store.Read(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	b := newNode(t, log.SiteID{2}, tSchema)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(css); i += 4 {
				cs := *css[i]
				cs.Seq = 0
				if _, err := b.m.Apply(context.Background(), []*log.Changeset{&cs}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 100 {
		b.exec(t, fmt.Sprintf("INSERT OR REPLACE INTO t VALUES (%d, 'b', 'b')", i*2))
	}
	wg.Wait()
	if b.m.FoldPosition() != b.store.LastSeq() {
		t.Fatalf("fold %d, log %d", b.m.FoldPosition(), b.store.LastSeq())
	}
	want := snapshot(t, b)
	if err := b.m.Rebuild(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, b); got != want {
		t.Fatalf("rebuild differs:\n%s\nvs\n%s", got, want)
	}
}

func TestStats(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	n.exec(t, "INSERT INTO t VALUES (1, 1, 'a')")
	if st := n.m.Stats(); st.FoldPosition != 2 || st.FoldLag != 0 || st.Queue != 0 {
		t.Fatalf("stats %+v", st)
	}
}
func TestNamedParameterPrefixes(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	for i, q := range []string{"INSERT INTO t (id, x) VALUES (:id, :v)", "INSERT INTO t (id, x) VALUES (@id, @v)", "INSERT INTO t (id, x) VALUES ($id, $v)"} {
		_, err := n.m.Transact(context.Background(), []Statement{{SQL: q, Named: map[string]log.Value{"id": log.Integer(int64(i)), "v": log.Text("a")}}})
		if err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// TestPendingFoldedAtRestart: a node restarted with a schema file that adds the table its
// log already has changes for shows them.
func TestPendingFoldedAtRestart(t *testing.T) {
	full := append([]string{"CREATE TABLE u (k TEXT PRIMARY KEY NOT NULL, v)"}, tSchema...)
	a := newNode(t, log.SiteID{1}, full)
	a.exec(t, "INSERT INTO u VALUES ('k', 1)")
	dir := t.TempDir()
	b := openNode(t, dir, log.SiteID{2}, tSchema, nil)
	a.syncTo(t, b)
	b.m.Close()
	m := New(b.store, Config{Path: b.cfg.Path, Schema: full})
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.m = m
	if got := b.dumpTable(t, "u"); len(got) != 1 || !got[0][1].Equal(log.Integer(1)) {
		t.Fatalf("u after restart: %s", fmtRows(got))
	}
}

// TestSQLite3ShellReads: the sqlite3 shell, a separate process, reads the view while the node
// runs and writes.
func TestSQLite3ShellReads(t *testing.T) {
	shell, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("no sqlite3 shell on this machine")
	}
	n := newNode(t, log.SiteID{1}, tSchema)
	n.exec(t, "INSERT INTO t VALUES (1, 1.5, 'a'), (2, X'00', 'b')")
	out, err := exec.Command(shell, "-readonly", n.cfg.Path, "SELECT id, quote(x), y FROM t ORDER BY id; SELECT count(*) FROM __patina_clock_t;").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "1|1.5|a\n2|X'00'|b\n2"; got != want {
		t.Fatalf("sqlite3 printed %q, want %q", got, want)
	}
	n.exec(t, "DELETE FROM t WHERE id = 1")
	out, err = exec.Command(shell, "-readonly", n.cfg.Path, "SELECT count(*) FROM t").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("sqlite3 after a write: %v: %s", err, out)
	}
}

// TestMigrateUnderLoad: migrations interleave with local transactions and remote folds.
func TestMigrateUnderLoad(t *testing.T) {
	n := newNode(t, log.SiteID{1}, tSchema)
	o := newNode(t, log.SiteID{2}, tSchema)
	for i := range 50 {
		o.exec(t, fmt.Sprintf("INSERT INTO t (id, x) VALUES (%d, %d)", 1000+i, i))
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 100 {
			if _, err := n.m.Transact(context.Background(), []Statement{{SQL: "INSERT INTO t (id, x) VALUES (?, ?)",
				Params: []log.Value{log.Integer(int64(i)), log.Integer(int64(i))}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		o.syncTo(t, n)
	}()
	cols := "id INTEGER PRIMARY KEY NOT NULL, x, y TEXT NOT NULL DEFAULT 'd'"
	for i := range 5 {
		cols += fmt.Sprintf(", c%d", i)
		if _, err := n.m.Migrate(context.Background(), []string{"CREATE TABLE t (" + cols + ")",
			fmt.Sprintf("CREATE TABLE u%d (k INTEGER PRIMARY KEY NOT NULL, v)", i)}); err != nil {
			t.Fatal(err)
		}
		n.m.Tables()
	}
	wg.Wait()
	if got := n.query(t, "SELECT count(*) FROM t")[0][0].Int; got != 150 {
		t.Fatalf("%d rows", got)
	}
	r := n.exec(t, "UPDATE t SET c4 = 'new' WHERE id = 1")
	if got := lastChanges(t, n, r); len(got) != 1 || got[0] != "1.c4='new'@1/1" {
		t.Fatalf("changes %v", got)
	}
	if len(n.m.Tables()) != 6 {
		t.Fatalf("tables %v", n.m.Tables())
	}
}
