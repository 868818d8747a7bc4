package main

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// writeSchema writes a kv schema file and returns its path.
func writeSchema(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "schema.sql")
	if err := os.WriteFile(p, []byte("CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v INTEGER);"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Issue 12, item 8: an agent keeps its data dir 0700 and every file in it 0600 (log, view,
// subscriptions), and tightens a data dir an older version left 0755 with 0644 files.
func TestDataDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dir, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Join(dir, "log"), 0o755)
	schema := writeSchema(t)
	a := startTestAgent(t, func(c *Config) { c.DataDir, c.Schema = dir, []string{schema} })
	cl := a.client(t)
	if _, err := cl.Exec(context.Background(), client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES ('a', 1)")); err != nil {
		t.Fatal(err)
	}
	var n int
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if info, err := d.Info(); err == nil && info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group or other permission", p, info.Mode().Perm())
		}
		return nil
	})
	if n < 5 {
		t.Fatalf("walked %d entries: the data dir is not populated", n)
	}
}

// damageTable overwrites the root page of table name in the stopped agent's views.db with
// garbage, as a failing disk would.
func damageTable(tb testing.TB, dataDir, name string) {
	tb.Helper()
	path := filepath.Join(dataDir, "views.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	var root, pageSize int64
	if err := db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = ?", name).Scan(&root); err != nil {
		tb.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		tb.Fatal(err)
	}
	db.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, int(pageSize)/4), (root-1)*pageSize); err != nil {
		tb.Fatal(err)
	}
}

// Issue 12, item 7: an agent whose views.db was damaged while it was down serves every row:
// with the start check it rebuilds the view before serving; without it, the first read that
// meets the damage answers 503 with a JSON error (not 500 "malformed" forever), health says
// so, and the view is rebuilt from the log by itself.
func TestDamagedViewIsRebuiltFromTheLog(t *testing.T) {
	for _, check := range []bool{true, false} {
		t.Run(fmt.Sprintf("check_on_start=%v", check), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			schema := writeSchema(t)
			a := startTestAgent(t, func(c *Config) { c.DataDir, c.Schema = dir, []string{schema} })
			cl := a.client(t)
			ctx := context.Background()
			for i := range 20 {
				stmts := make([]client.Statement, 50)
				for j := range stmts {
					stmts[j] = client.Stmt("INSERT INTO kv (k, v) VALUES (?, ?)", fmt.Sprintf("key-%04d-%s", i*50+j, strings.Repeat("x", 100)), i*50+j)
				}
				if _, err := cl.Exec(ctx, client.Options{}, stmts...); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			damageTable(t, dir, "kv")

			b := startTestAgent(t, func(c *Config) { c.DataDir, c.Schema, c.DB.CheckOnStart = dir, []string{schema}, check })
			bcl := b.client(t)
			count := func() (int64, error) {
				_, rows, err := bcl.QueryAll(ctx, client.Options{}, client.Stmt("SELECT count(*) FROM kv WHERE v >= 0"))
				if err != nil {
					return 0, err
				}
				return rows[0][0].Int, nil
			}
			if !check {
				_, err := count()
				var ce *client.Error
				if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || !strings.Contains(ce.Message, "rebuilt from the log") {
					t.Fatalf("read of a damaged table: %v, want 503 saying the view is being rebuilt", err)
				}
			}
			testutil.WaitFor(t, 30*time.Second, "every row readable", func() bool {
				n, err := count()
				return err == nil && n == 1000
			})
			if _, err := bcl.Health(ctx, nil); err != nil {
				t.Fatalf("health after the rebuild: %v", err)
			}
			if _, err := bcl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES ('after', 1)")); err != nil {
				t.Fatalf("write after the rebuild: %v", err)
			}
		})
	}
}

// Issue 12, item 2: on a log with a damaged table file, patina log inspect --check and patina
// rebuild fail with exit 1 and an error naming the damaged file and the versions it held
// (never a panic), and rebuild leaves the old view in place.
func TestOfflineToolsReportDamagedLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	schema := writeSchema(t)
	a := startTestAgent(t, func(c *Config) { c.DataDir, c.Schema = dir, []string{schema} })
	cl := a.client(t)
	for i := range 30 {
		stmts := make([]client.Statement, 20)
		for j := range stmts {
			stmts[j] = client.Stmt("INSERT INTO kv (k, v) VALUES (?, ?)", fmt.Sprintf("key-%04d-%s", i*20+j, strings.Repeat("y", 200)), i*20+j)
		}
		if _, err := cl.Exec(context.Background(), client.Options{}, stmts...); err != nil {
			t.Fatal(err)
		}
	}
	site := a.SiteID()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Pebble flushes the recovered write-ahead log into a table file when the log is opened.
	st, err := log.Open(filepath.Join(dir, "log"), log.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	damageTables(t, filepath.Join(dir, "log"))
	view, err := os.ReadFile(filepath.Join(dir, "views.db"))
	if err != nil {
		t.Fatal(err)
	}

	out, err := cliErr(t, "log", "inspect", "--data-dir", dir, "--check")
	if exitCode(err) != 1 || !strings.Contains(out+err.Error(), "damaged file") || !strings.Contains(out+err.Error(), "of "+site.String()) {
		t.Errorf("log inspect --check of a damaged log: exit %d, %v\n%s", exitCode(err), err, out)
	}
	_, err = cliErr(t, "rebuild", "--data-dir", dir, "-q")
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "versions [") {
		t.Errorf("rebuild of a damaged log: exit %d, %v", exitCode(err), err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "views.db")); !bytes.Equal(after, view) {
		t.Error("the failed rebuild changed views.db")
	}
}

// largestFiles lists the n largest files under dir with their sizes in bytes (what a disk
// full test prints when the disk filled more than it should have).
func largestFiles(dir string, n int) string {
	type file struct {
		path string
		size int64
	}
	var files []file
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				files = append(files, file{path, fi.Size()})
			}
		}
		return nil
	})
	slices.SortFunc(files, func(a, b file) int { return cmp.Compare(b.size, a.size) })
	var sb strings.Builder
	for _, f := range files[:min(n, len(files))] {
		fmt.Fprintf(&sb, "%12d %s\n", f.size, f.path)
	}
	return sb.String()
}

// Issue 12, item 3, on a real full disk (a small tmpfs): writes are refused with 507 once the
// free space falls under db.min_free_bytes, never a crash; every acknowledged write is
// readable; reads, health (503, disk_full), metrics and subscriptions (open ones and new
// ones) keep working; once space is freed, writes resume by themselves and open
// subscriptions see them. The threshold is 32 MiB: with 16 MiB a run without -race could
// spend it all between two checks (the data dir grew 22 MiB for 1.6 MB of rows: three
// Pebble WAL files of about 4.5 MB each and SQLite WAL files of about 4.3 MB), and Pebble
// met ENOSPC; README says to keep db.min_free_bytes at 32 MiB or more.
func TestDiskFullOnTmpfs(t *testing.T) {
	const minFree = 32 << 20
	mnt := testutil.MountTmpfs(t, 128<<20)
	schema := writeSchema(t)
	a := startTestAgent(t, func(c *Config) {
		c.DataDir, c.Schema, c.DB.MinFreeBytes = filepath.Join(mnt, "data"), []string{schema}, minFree
	})
	cl := a.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	sub, err := cl.Subscribe(ctx, client.Stmt("SELECT k FROM kv"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for sub.Next() && sub.Event().EOQ == nil {
	}
	if sub.Err() != nil {
		t.Fatal(sub.Err())
	}

	// Ballast leaves about 6 MiB above the threshold, then writes fill it.
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, testutil.FreeBytes(t, mnt)-minFree-6<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("z", 64<<10)
	var acked []string
	var refused *client.Error
	for i := 0; i < 1000 && refused == nil; i++ {
		k := fmt.Sprintf("k%04d", i)
		_, err := cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES (?, ?)", k+value, i))
		switch {
		case err == nil:
			acked = append(acked, k)
		case errors.As(err, &refused) && refused.Status == http.StatusInsufficientStorage:
		default:
			t.Fatalf("write %d: %v, want success or 507", i, err)
		}
	}
	if refused == nil || len(acked) == 0 {
		t.Fatalf("after %d writes: no 507 (free %d bytes)", len(acked), testutil.FreeBytes(t, mnt))
	}
	count := func() int64 {
		_, rows, err := cl.QueryAll(ctx, client.Options{}, client.Stmt("SELECT count(*) FROM kv"))
		if err != nil {
			t.Fatalf("read on a full disk: %v", err)
		}
		return rows[0][0].Int
	}
	if n := count(); n != int64(len(acked)) {
		t.Fatalf("%d rows readable, %d writes acknowledged", n, len(acked))
	}
	if h, err := cl.Health(ctx, nil); err == nil || !h.DiskFull {
		t.Fatalf("health on a full disk: %+v, %v; want 503 with disk_full", h, err)
	}
	metrics, err := cl.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"patina_log_disk_full 1", "patina_log_refused_writes_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	sub2, err := cl.Subscribe(ctx, client.Stmt("SELECT count(*) FROM kv"), false)
	if err != nil {
		// Seen once under heavy load (round 9 of issue 14): the tmpfs was really full
		// although the log refused writes with 32 MiB left. Say what filled it.
		t.Fatalf("subscribe on a full disk: %v (free %d bytes, %d writes acknowledged); largest files:\n%s",
			err, testutil.FreeBytes(t, mnt), len(acked), largestFiles(mnt, 12))
	}
	for sub2.Next() && sub2.Event().EOQ == nil {
	}
	sub2.Close()
	if sub2.Err() != nil {
		t.Fatalf("subscription opened on a full disk: %v", sub2.Err())
	}

	// Space is freed: writes resume by themselves, and the open subscription sees them.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "writes to resume", func() bool {
		_, err := cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES ('after', 1)"))
		return err == nil
	})
	for sub.Next() {
		if ch := sub.Event().Change; len(ch) >= 3 && strings.Contains(string(ch[2]), "after") {
			break
		}
	}
	if sub.Err() != nil {
		t.Fatalf("open subscription after the disk freed: %v", sub.Err())
	}
	if _, err := cl.Health(ctx, nil); err != nil {
		t.Fatalf("health after space was freed: %v", err)
	}
	if n := count(); n != int64(len(acked))+1 {
		t.Fatalf("%d rows after recovery, want %d", n, len(acked)+1)
	}
}

// Issue 12, item 2, through real agent processes: a node whose log has a damaged table file
// repairs itself once a read meets the damage (here: a late joiner's sync), takes back what
// the repair removed from its peers, and ends with every version, no damage, 0 gaps, a view
// equal to its peers' and a log that passes patina log inspect --check.
func TestClusterRepairsDamagedLog(t *testing.T) {
	bin := clusterBinary(t)
	c := startCluster(t, bin, 2, "repair")
	w := newClWriter()
	c.writeAll(w, c.nodes, 60)
	c.waitConverged(w, c.nodes, 60*time.Second)

	damaged := c.nodes[0]
	damaged.stop(syscall.SIGTERM)
	logDir := filepath.Join(damaged.dir, "data", "log")
	st, err := log.Open(logDir, log.Options{}) // Pebble flushes the WAL into a table file
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	damageTables(t, logDir)
	damaged.start()

	// A late joiner syncs everything from the damaged node: the read meets the damage.
	late := newClNode(t, bin, 2, "repair", nil)
	late.bootstrap = []string{damaged.gossip}
	late.start()
	c.nodes = append(c.nodes, late)
	testutil.WaitFor(t, 60*time.Second, "the damaged node to repair its log", func() bool {
		return damaged.metric("patina_log_repairs_total") >= 1
	})
	if removed := damaged.metric("patina_log_repair_removed_versions_total"); removed == 0 {
		t.Fatalf("the repair removed no version\n%s", tail(damaged.out.String(), 4096))
	}
	c.waitConverged(w, c.nodes, 60*time.Second)
	testutil.WaitFor(t, 30*time.Second, "the damaged node's health to be clean", func() bool {
		h, err := damaged.cl.Health(context.Background(), nil)
		return err == nil && h.Gaps == 0 && h.Corruption == "" &&
			damaged.metric("patina_log_repair_pending_versions") == 0 && damaged.metric("patina_log_damaged_files") == 0
	})
	if !strings.Contains(damaged.out.String(), "log repaired") {
		t.Fatalf("no log line for the repair:\n%s", tail(damaged.out.String(), 4096))
	}
	c.compareDumps(c.nodes)
	if out, err := cliErr(t, "log", "inspect", "--data-dir", filepath.Join(damaged.dir, "data"), "--check"); err != nil {
		t.Fatalf("log inspect --check after the repair: %v\n%s", err, out)
	}
}

// damageTables flips 64 bytes a quarter into every table file of the (closed) log in dir,
// as a failing disk would.
func damageTables(t *testing.T, dir string) {
	t.Helper()
	if testutil.DamageTables(t, dir, 0.25) == 0 {
		t.Fatal("no table file to damage")
	}
}
