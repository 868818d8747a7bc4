package materializer

import (
	"os"
	"testing"
)

// Issue 12, item 8: views.db and its -wal and -shm files are 0600 whatever the umask (SQLite
// alone creates them 0644), and a view left world-readable is tightened when it is opened.
func TestViewFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, dir, siteFromHex(t, "0102030405060708090a0b0c0d0e0f10"), []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)"}, nil)
	n.exec(t, "INSERT INTO t (id, v) VALUES (1, 'a')")
	check := func(when string) {
		t.Helper()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			st, err := os.Stat(n.cfg.Path + suffix)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s: views.db%s mode %v, want 0600", when, suffix, st.Mode().Perm())
			}
		}
	}
	check("new view")
	n.close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Chmod(n.cfg.Path+suffix, 0o644)
	}
	n = openNode(t, dir, siteFromHex(t, "0102030405060708090a0b0c0d0e0f10"), nil, nil)
	n.exec(t, "INSERT INTO t (id, v) VALUES (2, 'b')")
	check("reopened loose view")
	if err := n.m.Rebuild(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	n.exec(t, "INSERT INTO t (id, v) VALUES (3, 'c')")
	check("rebuilt view")
}
