// Package archtest checks that Patina's packages depend on each other only in the
// directions DESIGN.md allows: log <- materializer <- api, log <- gossip, and only
// cmd/patina wires them together.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/patinadb/patina/"

func TestDependencyDirection(t *testing.T) {
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{"log", []string{"materializer", "gossip", "api", "cmd", "bench"}},
		{"materializer", []string{"gossip", "api", "cmd", "bench"}},
		{"gossip", []string{"materializer", "api", "cmd", "bench"}},
		{"api", []string{"gossip", "cmd", "bench"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", mod+tt.pkg+"/...").CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "matched no packages") {
					t.Skipf("%s does not exist yet", tt.pkg)
				}
				t.Fatalf("go list: %v\n%s", err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range tt.forbidden {
					if dep == mod+f || strings.HasPrefix(dep, mod+f+"/") {
						t.Errorf("%s depends on %s", tt.pkg, dep)
					}
				}
			}
		})
	}
}
