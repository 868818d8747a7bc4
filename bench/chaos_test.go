package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestChaosShort is the short chaos run of `go test ./...`: real agent processes, kill -9,
// SIGTERM restarts, loss and partitions through the fault hook, then every invariant
// (nothing acknowledged lost, identical dumps and heads, gaps 0, no panics). The long run
// is `patina bench chaos --duration 10m`. Network namespaces are not used by this workload
// (see bench/RESULTS.md), so it needs no root.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the chaos run starts agent processes")
	}
	cfg := DefaultChaosConfig()
	cfg.Binary = buildPatinaForCluster(t)
	cfg.Duration, cfg.Step, cfg.Seed = 8*time.Second, 1500*time.Millisecond, 7
	// Every kind once; the log is damaged once it holds a few table blocks (disk full is
	// replaced by a kill -9 when not root, and the run says so).
	cfg.Kinds = []string{"kill -9", "partition", "damaged log file", "disk full", "loss and delay", "sigterm restart"}
	cfg.Dir = t.TempDir()
	cfg.Logf = t.Logf
	res, err := RunChaos(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Rows < res.Acknowledged || len(res.Faults) == 0 {
		t.Fatalf("rows %d for %d acknowledged writes; faults %v", res.Rows, res.Acknowledged, res.Faults)
	}
	if len(res.Faults) < len(cfg.Kinds)-len(res.Skipped) {
		t.Fatalf("want every kind once: %v", res)
	}
	if res.Faults["damaged log file"] == 0 || res.Repairs == 0 {
		t.Fatalf("want a damaged log file and its repair: %v", res)
	}
	if len(res.Skipped) > 0 {
		t.Logf("fault kinds left out (not a failure): %s", strings.Join(res.Skipped, "; "))
	}
}
