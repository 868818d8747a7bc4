package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/patinadb/patina/log"
)

// TestBackupKeepsCleared: a backup of a compacted log carries its cleared versions (online
// and offline), so a node restored from it, or fed it by POST /v1/changes, holds exactly the
// versions of the source, gaps nowhere, and a restore as the source's site writes after
// them, never over a cleared version.
func TestBackupKeepsCleared(t *testing.T) {
	ctx := context.Background()
	a := startTestAgent(t, nil)
	addr := a.APIAddr()
	dir := t.TempDir()
	schema := filepath.Join(dir, "kv.sql")
	if err := os.WriteFile(schema, []byte("CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v INTEGER);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "migrate", "--api-addr", addr, schema)
	for i := range 20 {
		cli(t, "exec", "--api-addr", addr, fmt.Sprintf("INSERT INTO kv VALUES ('k%d', %d) ON CONFLICT (k) DO UPDATE SET v = excluded.v", i%3, i))
	}
	if _, err := a.mat.CompactLog(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	site := a.store.SiteID()
	want := a.store.Vector().Sites[site]
	if len(want.Cleared) == 0 {
		t.Fatal("compaction cleared nothing")
	}
	same := func(what string, got *log.Vector) {
		t.Helper()
		sv := got.Sites[site]
		if sv == nil || !slices.Equal(sv.Versions, want.Versions) || !slices.Equal(sv.Cleared, want.Cleared) {
			t.Fatalf("%s holds %+v of the source's site, want %+v", what, sv, want)
		}
	}
	online := filepath.Join(dir, "online.backup")
	cli(t, "backup", "--api-addr", addr, "--out", online, "-q")

	// POST /v1/changes of the backup file into a fresh node: no gap refused, none left.
	b := startTestAgent(t, nil)
	body, err := os.ReadFile(online)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+b.APIAddr()+"/v1/changes", "application/msgpack", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST the backup: %s", resp.Status)
	}
	same("a node fed the backup by POST", b.store.Vector())

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	offline := filepath.Join(dir, "offline.backup")
	cli(t, "backup", "--data-dir", a.cfg.DataDir, "--out", offline)
	for _, file := range []string{online, offline} {
		restored := filepath.Join(t.TempDir(), "data")
		cli(t, "restore", "--data-dir", restored, "--in", file, "--site-id", site.String(), "--no-cluster-check", "-q")
		st, err := log.Open(filepath.Join(restored, "log"), log.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		same("a node restored from "+filepath.Base(file), st.Vector())
		top, _ := want.Versions.Max()
		if next := st.NextLocalVersion(); next != log.Version(top+1) {
			t.Fatalf("restored from %s: next local version %d, want %d", filepath.Base(file), next, top+1)
		}
		st.Close()
	}
}
