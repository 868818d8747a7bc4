// Package archtest checks that Patina's packages depend on each other only in the
// directions docs/ and the doc.go files promise: log <- materializer <- api, log <- gossip
// <- sim, and only cmd/patina wires them together.
package archtest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mod = "github.com/patinadb/patina/"

// rule says that the packages matched by pattern must not depend on any package in
// trees (the package and everything below it) nor on any package in exact (that package
// alone, so a rule can forbid a parent without forbidding its children, as api/client
// must not import api), nor on any module path starting with one of external (a third-party
// dependency too heavy for the packages users embed).
type rule struct {
	pattern  string
	trees    []string
	exact    []string
	external []string
}

// pebble is the storage engine: only the log (and what needs a Store) may pull it in.
const pebble = "github.com/cockroachdb/pebble"

var rules = []rule{
	{pattern: "log/...", trees: []string{"materializer", "gossip", "api", "cmd", "bench", "sim"}},
	// The log's data model (values, keys, changesets, vectors and their codecs) is a leaf:
	// the Go client imports it, so it must not reach the Store or Pebble.
	{pattern: "log/format/...", exact: []string{"log"}, trees: []string{"materializer", "gossip", "api", "cmd", "bench", "sim"}, external: []string{pebble}},
	// The materializer package itself must not import its subscription engine, which
	// sits on top of it: subs imports materializer, never the reverse. The pattern names
	// the package alone, because "materializer/..." would include subs itself.
	{pattern: "materializer", trees: []string{"materializer/subs", "gossip", "api", "cmd", "bench"}},
	{pattern: "materializer/...", trees: []string{"gossip", "api", "cmd", "bench"}},
	// gossip never knows it is simulated: the simulator drives it through its seams.
	{pattern: "gossip/...", trees: []string{"materializer", "api", "cmd", "bench", "sim"}},
	// The simulator runs the real gossip and log only; cmd/patina (and bench) import it.
	{pattern: "sim/...", trees: []string{"materializer", "api", "cmd", "bench", "pg"}},
	{pattern: "api/...", trees: []string{"gossip", "cmd", "bench"}},
	// The Go client is what users embed: it speaks HTTP and must not pull in the server.
	// Embedding it costs the standard library and msgpack, not Pebble (400 packages before
	// the data model moved to log/format, 194 after).
	{pattern: "api/client/...", exact: []string{"api", "log"}, trees: []string{"materializer", "gossip", "cmd", "bench"}, external: []string{pebble}},
	// The PostgreSQL server is a sibling of api: it reads and writes the materializer and
	// knows nothing of HTTP, gossip, subscriptions or the agent.
	// Templates talk to a node through the Go client only, so they run beside any agent.
	{pattern: "template/...", exact: []string{"api"}, trees: []string{"materializer", "gossip", "cmd", "bench", "pg"}},
	{pattern: "pg/...", trees: []string{"api", "gossip", "cmd", "bench", "materializer/subs"}},
}

func TestDependencyDirection(t *testing.T) {
	touchSources(t)
	for _, r := range rules {
		t.Run(r.pattern, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", mod+r.pattern).CombinedOutput()
			if err != nil {
				t.Fatalf("go list %s: %v\n%s", r.pattern, err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) == 0 {
				t.Fatalf("%s matched no packages: the rule checks nothing", r.pattern)
			}
			for _, dep := range deps {
				if v := violates(dep, r); v != "" {
					t.Errorf("%s depends on %s (forbidden: %s)", r.pattern, dep, v)
				}
			}
		})
	}
}

func violates(dep string, r rule) string {
	for _, f := range r.trees {
		if dep == mod+f || strings.HasPrefix(dep, mod+f+"/") {
			return f + "/..."
		}
	}
	for _, f := range r.exact {
		if dep == mod+f {
			return f
		}
	}
	for _, e := range r.external {
		if dep == e || strings.HasPrefix(dep, e+"/") {
			return e + "/..."
		}
	}
	return ""
}

// TestRuleMatching pins the matcher itself, so a rule that could never fire is caught here
// and not by a reader months later.
func TestRuleMatching(t *testing.T) {
	r := rule{trees: []string{"materializer/subs"}, exact: []string{"api"}, external: []string{pebble}}
	for dep, want := range map[string]bool{
		mod + "materializer/subs":    true,
		mod + "materializer/subs/x":  true,
		mod + "materializer":         false,
		mod + "materializer/subsidy": false,
		mod + "api":                  true,
		mod + "api/client":           false,
		"example.com/" + "api":       false,
		pebble + "/v2":               true,
		pebble + "/v2/vfs":           true,
		pebble + "x/other":           false,
	} {
		if got := violates(dep, r) != ""; got != want {
			t.Errorf("violates(%q) = %v, want %v", dep, got, want)
		}
	}
}

// touchSources stats every Go file and go.mod of the module. go list runs in a child
// process, which go test's result cache cannot see; the stats tell the cache that this
// test's result depends on every source file, so an edit that adds an import re-runs it
// instead of answering with a stale "ok (cached)".
func touchSources(t *testing.T) {
	t.Helper()
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") || d.Name() == "go.mod" {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatalf("walking the module's sources: %v", err)
	}
}
