package fsmode

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// AssertPrivate fails tb if anything under dir (dir included) grants a permission to group or
// others.
func assertPrivate(tb testing.TB, dir string) {
	tb.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			tb.Fatal(err)
		}
		info, err := d.Info()
		if err != nil {
			tb.Fatal(err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			tb.Errorf("%s: mode %v, want no group or other permission", p, info.Mode().Perm())
		}
		return nil
	})
}

// Dir creates 0700, tightens a loose existing dir and reports it; Tighten fixes what is under
// it; File creates 0600 and tightens a loose file.
func TestPrivate(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(root, "a", "b")
	if tightened, err := Dir(fresh); err != nil || tightened {
		t.Fatalf("Dir(new) = %v, %v", tightened, err)
	}
	assertPrivate(t, filepath.Join(root, "a"))

	old := filepath.Join(root, "old")
	if err := os.MkdirAll(filepath.Join(old, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(old, "f"), filepath.Join(old, "sub", "g")} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o644) // whatever the umask
	}
	os.Chmod(old, 0o755)
	os.Chmod(filepath.Join(old, "sub"), 0o755)
	if tightened, err := Dir(old); err != nil || !tightened {
		t.Fatalf("Dir(loose) = %v, %v, want tightened", tightened, err)
	}
	n, err := Tighten(old)
	if err != nil || n != 3 {
		t.Fatalf("Tighten = %d, %v, want 3 (sub, f, g)", n, err)
	}
	assertPrivate(t, old)
	if n, err := Tighten(old); err != nil || n != 0 {
		t.Fatalf("second Tighten = %d, %v, want 0", n, err)
	}

	f := filepath.Join(root, "db")
	if tightened, err := File(f); err != nil || tightened {
		t.Fatalf("File(new) = %v, %v", tightened, err)
	}
	os.Chmod(f, 0o644)
	if tightened, err := File(f); err != nil || !tightened {
		t.Fatalf("File(loose) = %v, %v, want tightened", tightened, err)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != FileMode {
		t.Fatalf("file mode %v, want %v", st.Mode().Perm(), FileMode)
	}
}
