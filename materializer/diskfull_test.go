package materializer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// TestIsDiskFull: a real SQLITE_FULL (a file held to its max_page_count), the log's refusal
// and ENOSPC are the disk's lack of space, wrapped or not; other failures are not.
func TestIsDiskFull(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "full.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"CREATE TABLE t (v BLOB)", "PRAGMA max_page_count = 8"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	var full error
	for i := 0; i < 100 && full == nil; i++ {
		_, full = db.Exec("INSERT INTO t VALUES (?)", make([]byte, 4096))
	}
	if full == nil || !strings.Contains(full.Error(), "full") {
		t.Fatalf("no SQLITE_FULL after 100 rows in 8 pages: %v", full)
	}
	_, constraint := db.Exec("SELECT * FROM no_such_table")
	for _, c := range []struct {
		err  error
		want bool
	}{
		{full, true},
		{fmt.Errorf("store subscription: %w", full), true},
		{fmt.Errorf("append: %w", log.ErrDiskFull), true},
		{&fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, true},
		{constraint, false},
		{errors.New("database or disk is full"), false}, // words alone are not the code
		{nil, false},
	} {
		if got := IsDiskFull(c.err); got != c.want {
			t.Errorf("IsDiskFull(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// The view's disk fills while the log's does not. A transaction whose rows fit in SQLite's
// page cache runs, the log takes its changeset, and the view's COMMIT fails writing its
// WAL (SQLITE_FULL). The log is the source of truth: the transaction is committed, so its
// answer must be success, and the view folds it from the log once space is freed. Before
// the fix it answered "disk full" while the log kept the changeset and the view folded it
// later: a write its client was told had failed.
func TestViewCommitFailsAfterTheLogTookIt(t *testing.T) {
	mnt := testutil.MountTmpfs(t, 4<<20)
	var logs testutil.LockedBuffer
	n := openNode(t, t.TempDir(), log.SiteID{1}, []string{"CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v BLOB)"}, func(c *Config) {
		c.Path = filepath.Join(mnt, "views.db")
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	n.exec(t, "INSERT INTO kv (k, v) VALUES ('before', 1)")

	ballast := filepath.Join(mnt, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	// 256 KiB of new pages: the WAL must grow at COMMIT, and there is no room.
	res, err := n.m.Transact(context.Background(), []Statement{{SQL: "INSERT INTO kv (k, v) VALUES ('big', ?)", Params: []log.Value{log.Blob(make([]byte, 256<<10))}}})
	if got := counterValue(n.m.met.txViewDeferred); got != 1 {
		t.Fatalf("the view's commit did not fail after the append (tx_view_deferred %v; transact: %v): the test no longer reaches the case it is about", got, err)
	}
	if err != nil {
		t.Fatalf("transact: %v, but the log holds its changeset (contains version 2: %v): the client would be told a committed write failed",
			err, n.store.Contains(log.SiteID{1}, 2))
	}
	if res.Version == 0 || !n.store.Contains(log.SiteID{1}, res.Version) {
		t.Fatalf("answered version %d, which the log does not hold", res.Version)
	}
	if n.store.DiskFull() {
		t.Fatal("the log's disk is not full, yet DiskFull says so")
	}
	// The writer retries the fold every 100 ms and fails while the disk stays full: every
	// failure is counted, and one line says so (then one per failLogEvery).
	testutil.WaitFor(t, 10*time.Second, "the writer's retries to fail", func() bool { return counterValue(n.m.met.writerFailures) >= 3 })
	if k := strings.Count(logs.String(), "writer iteration failed"); k != 1 {
		t.Errorf("%d lines about the failing writer for %v failures, want 1:\n%s", k, counterValue(n.m.met.writerFailures), logs.String())
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the view to fold the transaction from the log", func() bool {
		return n.query(t, "SELECT count(*) FROM kv WHERE k = 'big'")[0][0].Int == 1
	})
	n.exec(t, "INSERT INTO kv (k, v) VALUES ('after', 1)")
	if rows := n.query(t, "SELECT count(*) FROM kv"); rows[0][0].Int != 3 {
		t.Fatalf("%d rows, want 3", rows[0][0].Int)
	}
}
