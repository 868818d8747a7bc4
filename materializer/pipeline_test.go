package materializer

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// openNodeOn is openNode with the log on fs, at a commit depth, with fsync.
func openNodeOn(tb testing.TB, dir string, fs vfs.FS, depth int, tweak func(*Config)) *node {
	tb.Helper()
	opts := log.Options{SiteID: log.SiteID{1}, FS: fs, CommitDepth: depth, Logger: slog.New(slog.DiscardHandler)}
	return openNodeLog(tb, dir, opts, tSchema, func(c *Config) {
		c.Logger = slog.New(slog.DiscardHandler)
		if tweak != nil {
			tweak(c)
		}
	})
}

// rowCount counts the rows of t the view shows a reader now.
func rowCount(tb testing.TB, n *node) int {
	tb.Helper()
	return int(n.query(tb, "SELECT count(*) FROM t")[0][0].Int)
}

// TestWriterOverlapsLogSync holds the log's WAL sync: the writer commits a first
// transaction's group to the view and, while that group's fsync is held, runs and commits a
// second group (its SQL overlaps the first one's sync). Neither is answered, noticed nor
// broadcast, and the published fold position does not move, until the syncs go through;
// then both are answered, noticed and broadcast in commit order, and a read after an answer
// sees the write.
func TestWriterOverlapsLogSync(t *testing.T) {
	gate := testutil.NewWALGate(vfs.Default)
	var broadcasts atomic.Int32 // data changesets handed to OnCommit
	n := openNodeOn(t, t.TempDir(), gate, 2, func(c *Config) {
		c.WriterDepth = 2
		c.OnCommit = func(css []*log.Changeset) {
			for _, cs := range css {
				if cs.Kind == log.KindData {
					broadcasts.Add(1)
				}
			}
		}
	})
	defer gate.Free()
	n.exec(t, "INSERT INTO t (id, x) VALUES (0, 0)")
	testutil.WaitFor(t, 10*time.Second, "the first write's broadcast", func() bool { return broadcasts.Load() == 1 })
	notices, cancel := n.m.Notify(16)
	defer cancel()
	base, baseSeq, baseBroadcasts := n.m.FoldPosition(), n.store.LastSeq(), broadcasts.Load()

	gate.Hold()
	type answer struct {
		res TxResult
		err error
	}
	transact := func(id int64) chan answer {
		ch := make(chan answer, 1)
		go func() {
			res, err := n.m.Transact(context.Background(), []Statement{{SQL: "INSERT INTO t (id, x) VALUES (?, 1)", Params: []log.Value{log.Integer(id)}}})
			ch <- answer{res, err}
		}()
		return ch
	}
	a := transact(1)
	testutil.WaitFor(t, 10*time.Second, "the first group's sync to be held", func() bool { return gate.Entered() >= 1 })
	testutil.WaitFor(t, 10*time.Second, "the first group committed to the view before its sync", func() bool { return rowCount(t, n) == 2 })
	b := transact(2)
	// The second group's SQL runs and commits while the first group's fsync is held.
	testutil.WaitFor(t, 10*time.Second, "the second group committed during the first one's sync", func() bool { return rowCount(t, n) == 3 })
	select {
	case ans := <-a:
		t.Fatalf("the first transaction was answered (%+v) while its sync was held", ans)
	case ans := <-b:
		t.Fatalf("the second transaction was answered (%+v) while its sync was held", ans)
	case nt := <-notices:
		t.Fatalf("a commit notice (seq %d) while the sync was held", nt.Seq)
	default:
	}
	if broadcasts.Load() != baseBroadcasts {
		t.Fatal("a changeset was broadcast before it was durable")
	}
	if fp := n.m.FoldPosition(); fp != base || n.store.LastSeq() != baseSeq {
		t.Fatalf("published fold position %d (log %d) moved while the sync was held (was %d, log %d)", fp, n.store.LastSeq(), base, baseSeq)
	}

	gate.Free()
	ansA, ansB := <-a, <-b
	if ansA.err != nil || ansB.err != nil {
		t.Fatalf("answers after the sync: %v, %v", ansA.err, ansB.err)
	}
	if ansA.res.Seq == 0 || ansB.res.Seq <= ansA.res.Seq {
		t.Fatalf("seqs %d then %d, want increasing", ansA.res.Seq, ansB.res.Seq)
	}
	// One notice per transaction, in commit order.
	var seen []log.Seq
	for len(seen) < 2 {
		nt := <-notices
		seen = append(seen, nt.Seq)
	}
	if seen[0] < ansA.res.Seq || seen[1] < ansB.res.Seq || seen[1] <= seen[0] {
		t.Fatalf("notices at seqs %v for transactions at %d and %d", seen, ansA.res.Seq, ansB.res.Seq)
	}
	testutil.WaitFor(t, 10*time.Second, "both broadcasts", func() bool { return broadcasts.Load() == baseBroadcasts+2 })
	if fp, last := n.m.FoldPosition(), n.store.LastSeq(); fp < ansB.res.Seq || fp > last {
		t.Fatalf("fold position %d after the answers, log at %d, want in [%d, %d]", fp, last, ansB.res.Seq, last)
	}
	// Read your writes.
	if got := n.query(t, "SELECT x FROM t WHERE id = 2"); len(got) != 1 || got[0][0].Int != 1 {
		t.Fatalf("read after the answer: %v", got)
	}
}

// TestViewAheadOfLogHealsAtOpen makes a view that holds a changeset its log does not (what
// a power loss between the view's commit and the log's sync leaves: here the log's directory
// is put back to a copy taken before the write), and one whose view_seq names a seq beyond
// the log (a local changeset folded ahead of a gap): Open rebuilds the view from the log,
// keeps the old one as views.db.ahead, counts it, and the node goes on writing.
func TestViewAheadOfLogHealsAtOpen(t *testing.T) {
	t.Run("fold position", func(t *testing.T) {
		dir := t.TempDir()
		n := openNodeOn(t, dir, vfs.Default, 2, nil)
		n.exec(t, "INSERT INTO t (id, x) VALUES (1, 'kept')")
		n.close()
		copyDir(t, filepath.Join(dir, "log"), filepath.Join(dir, "log.before"))
		n = openNodeOn(t, dir, vfs.Default, 2, nil)
		lost := n.exec(t, "INSERT INTO t (id, x) VALUES (2, 'lost')")
		n.close()
		if err := os.RemoveAll(filepath.Join(dir, "log")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "log.before"), filepath.Join(dir, "log")); err != nil {
			t.Fatal(err)
		}
		n = openNodeOn(t, dir, vfs.Default, 2, nil)
		checkHealed(t, n, 1)
		// The lost version is given again, to a new changeset.
		again := n.exec(t, "INSERT INTO t (id, x) VALUES (3, 'new')")
		if again.Version != lost.Version {
			t.Fatalf("version %d after the heal, the lost one was %d", again.Version, lost.Version)
		}
		if got := n.query(t, "SELECT id, x FROM t ORDER BY id"); len(got) != 2 || got[0][1].Text != "kept" || got[1][1].Text != "new" {
			t.Fatalf("rows after the heal and a write: %v", got)
		}
	})
	t.Run("view seq", func(t *testing.T) {
		dir := t.TempDir()
		n := openNodeOn(t, dir, vfs.Default, 2, nil)
		n.exec(t, "INSERT INTO t (id, x) VALUES (1, 'kept')")
		last := n.store.LastSeq()
		n.close()
		db, err := sql.Open("sqlite", dsn(filepath.Join(dir, "views.db"), false, 0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("INSERT OR REPLACE INTO "+metaTable+" (key, value) VALUES ('view_seq', ?)", int64(last)+3); err != nil {
			t.Fatal(err)
		}
		db.Close()
		n = openNodeOn(t, dir, vfs.Default, 2, nil)
		checkHealed(t, n, 1)
	})
}

// checkHealed: n's view was rebuilt at Open, holds rows rows, agrees with a rebuild and
// with its log.
func checkHealed(t *testing.T, n *node, rows int) {
	t.Helper()
	if got := counterValue(n.m.met.viewAheadRebuilds.WithLabelValues("open")); got != 1 {
		t.Fatalf("patina_view_ahead_rebuilds_total{when=open} = %v, want 1", got)
	}
	if _, err := os.Stat(n.cfg.Path + aheadSuffix); err != nil {
		t.Fatalf("the old view was not kept: %v", err)
	}
	if got := rowCount(t, n); got != rows {
		t.Fatalf("%d rows after the heal, want %d", got, rows)
	}
	if fp, last := n.m.FoldPosition(), n.store.LastSeq(); fp != last {
		t.Fatalf("fold position %d, log at %d", fp, last)
	}
	before := snapshot(t, n)
	if err := n.m.Rebuild(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, n); after != before {
		t.Fatalf("healed view differs from a rebuild:\n%s\nvs\n%s", before, after)
	}
}

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// TestWALFailureAfterViewCommit: the log's WAL sync fails after the view committed a
// transaction (the pipeline's window). The transaction is answered with an error, and only
// once the running view has been rebuilt from the log: a read after the answer does not see
// the refused row. Later writes are refused; reads go on; a restart on a working disk opens.
func TestWALFailureAfterViewCommit(t *testing.T) {
	var failing atomic.Bool
	dir := t.TempDir()
	n := openNodeOn(t, dir, testutil.FailingWAL(vfs.Default, &failing), 2, nil)
	n.exec(t, "INSERT INTO t (id, x) VALUES (1, 'kept')")
	failing.Store(true)
	_, err := n.m.Transact(context.Background(), []Statement{{SQL: "INSERT INTO t (id, x) VALUES (2, 'refused')"}})
	if err == nil {
		t.Fatal("a transaction whose WAL sync failed was answered with success")
	}
	if got := n.query(t, "SELECT id FROM t ORDER BY id"); len(got) != 1 || got[0][0].Int != 1 {
		t.Fatalf("rows after the refused write was answered: %v, want only the acknowledged one", got)
	}
	if got := counterValue(n.m.met.viewAheadRebuilds.WithLabelValues("running")); got != 1 {
		t.Fatalf("patina_view_ahead_rebuilds_total{when=running} = %v, want 1", got)
	}
	if fp, last := n.m.FoldPosition(), n.store.LastSeq(); fp > last {
		t.Fatalf("fold position %d beyond the log's %d", fp, last)
	}
	if _, err := n.m.Transact(context.Background(), []Statement{{SQL: "INSERT INTO t (id, x) VALUES (3, 'refused')"}}); err == nil {
		t.Fatal("a write after the log failed was answered with success")
	}
	if got := rowCount(t, n); got != 1 {
		t.Fatalf("%d rows after a refused write, want 1", got)
	}
	n.close()
	failing.Store(false)
	n = openNodeOn(t, dir, vfs.Default, 2, nil)
	if got := n.query(t, "SELECT id FROM t ORDER BY id"); len(got) != 1 || got[0][0].Int != 1 {
		t.Fatalf("rows after the restart: %v", got)
	}
	if fp, last := n.m.FoldPosition(), n.store.LastSeq(); fp != last {
		t.Fatalf("fold position %d, log at %d after the restart", fp, last)
	}
	n.exec(t, "INSERT INTO t (id, x) VALUES (4, 'after')")
}
