package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReplayCommand: patina replay writes the view as of a seq or a time, from a running
// agent (over the API) and from its stopped data dir; a point before the compaction
// horizon is refused with exit 1 and one line naming the oldest exact point; bad points and
// an existing --out are exit 2.
func TestReplayCommand(t *testing.T) {
	a := startTestAgent(t, nil)
	addr := a.APIAddr()
	out := t.TempDir()
	schema := filepath.Join(out, "kv.sql")
	if err := os.WriteFile(schema, []byte("CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v INTEGER);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "migrate", "--api-addr", addr, schema)
	cli(t, "exec", "--api-addr", addr, "INSERT INTO kv VALUES ('a', 1)")
	point := a.store.LastSeq()
	cli(t, "exec", "--api-addr", addr, "UPDATE kv SET v = 2 WHERE k = 'a'")
	cli(t, "exec", "--api-addr", addr, "INSERT INTO kv VALUES ('b', 3)")
	end := a.store.LastSeq()
	now := time.Now().UTC().Format(time.RFC3339Nano)

	rows := func(file string) string {
		t.Helper()
		db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var ks []string
		r, err := db.Query("SELECT k, v FROM kv ORDER BY k")
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		defer r.Close()
		for r.Next() {
			var k string
			var v int
			r.Scan(&k, &v)
			ks = append(ks, fmt.Sprint(k, "=", v))
		}
		return strings.Join(ks, ",")
	}
	f1 := filepath.Join(out, "then.db")
	cli(t, "replay", "--api-addr", addr, "--until", fmt.Sprint(point), "--out", f1)
	if got := rows(f1); got != "a=1" {
		t.Fatalf("online replay until seq %d: %s", point, got)
	}
	if _, err := cliErr(t, "replay", "--api-addr", addr, "--until", fmt.Sprint(point), "--out", f1); exitCode(err) != 2 {
		t.Fatalf("replay over an existing file: %v", err)
	}
	if _, err := cliErr(t, "replay", "--api-addr", addr, "--until", "yesterday", "--out", filepath.Join(out, "x.db")); exitCode(err) != 2 {
		t.Fatalf("replay until yesterday: %v", err)
	}
	if _, err := a.mat.CompactLog(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	_, err := cliErr(t, "replay", "--api-addr", addr, "--until", fmt.Sprint(point), "--out", filepath.Join(out, "old.db"))
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "oldest exact point is seq") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("online replay before the horizon: exit %d: %v", exitCode(err), err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// Offline, on the stopped data dir.
	f2 := filepath.Join(out, "now.db")
	cli(t, "replay", "--data-dir", a.cfg.DataDir, "--until", now, "--out", f2, "-q")
	if got := rows(f2); got != "a=2,b=3" {
		t.Fatalf("offline replay until %s: %s", now, got)
	}
	f3 := filepath.Join(out, "end.db")
	cli(t, "replay", "--data-dir", a.cfg.DataDir, "--until", fmt.Sprint(end), "--out", f3, "-q")
	if got := rows(f3); got != "a=2,b=3" {
		t.Fatalf("offline replay until seq %d: %s", end, got)
	}
	_, err = cliErr(t, "replay", "--data-dir", a.cfg.DataDir, "--until", fmt.Sprint(point), "--out", filepath.Join(out, "old.db"), "-q")
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "oldest exact point is seq") {
		t.Fatalf("offline replay before the horizon: exit %d: %v", exitCode(err), err)
	}
	if _, err := cliErr(t, "replay", "--data-dir", a.cfg.DataDir, "--until", fmt.Sprint(end+1), "--out", filepath.Join(out, "y.db"), "-q"); exitCode(err) != 2 {
		t.Fatalf("offline replay past the end: %v", err)
	}
}
