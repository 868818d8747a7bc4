package log

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// looseEntries lists what under dir (dir included) grants a permission to group or others.
func looseEntries(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			tb.Fatal(err)
		}
		if info, err := d.Info(); err == nil && info.Mode().Perm()&0o077 != 0 {
			out = append(out, p+" "+info.Mode().Perm().String())
		}
		return nil
	})
	return out
}

// Issue 12, item 8: the log's directory is 0700 and every file Pebble writes (WAL, tables,
// manifest, options, lock) 0600, whatever the umask; a log left world-readable by an older
// version is tightened when it is opened.
func TestLogFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	s := openStore(t, dir, Options{SiteID: siteA})
	for v := Version(1); v <= 50; v++ {
		mustAppend(t, s, makeCS(siteB, v, 5))
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if loose := looseEntries(t, dir); len(loose) > 0 {
		t.Fatalf("readable by others: %v", loose)
	}
	s.Close()

	// What an older version left: 0755 and 0644.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	s = openStore(t, dir, Options{})
	defer s.Close()
	if loose := looseEntries(t, dir); len(loose) > 0 {
		t.Fatalf("after reopening a loose log, still readable by others: %v", loose)
	}
}
