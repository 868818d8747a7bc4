package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/patinadb/patina/api/client"
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
