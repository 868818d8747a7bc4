package scenario

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFreshClone copies the repository's tracked files into an empty temp dir, with nothing
// beside it, and runs the scenario tests there: they must pass on the repository alone (no
// sibling folder of shared test data). It runs the quick ones (this package and the
// materializer's edge-case replays) to stay within seconds.
func TestFreshClone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test in a copy of the repository; skipped with -short")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files (the test needs the repository's git checkout): %v", err)
	}
	dst := filepath.Join(t.TempDir(), "clone", "patina")
	n := 0
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, f)
		info, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the work tree and not yet committed
		}
		if !info.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, b, info.Mode().Perm()|fs.FileMode(0o200)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no tracked files")
	}
	cmd := exec.Command("go", "test", "-count=1", "-run", "TestCorpora|TestStatements|TestScenarios$|TestPKScenarios",
		"./internal/scenario/", "./materializer/")
	cmd.Dir = dst
	cmd.Env = append(os.Environ(), "PATINA_CRSQLITE_SCENARIOS=")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in a copy with nothing beside it (%s): %v\n%s", dst, err, res)
	}
	if !strings.Contains(string(res), "ok  \tgithub.com/patinadb/patina/materializer") {
		t.Fatalf("the materializer's scenario tests did not run:\n%s", res)
	}
}
