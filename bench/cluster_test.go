package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	builtBin  string
	buildErr  error
)

// TestMain removes the agent binary the tests of this package share.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildPatinaForCluster builds the agent binary the cluster workloads spawn, once per test
// binary (a build costs tens of seconds on the shared 2 cores).
func buildPatinaForCluster(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "patina-bench-bin-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "patina")
		// The flags of the Dockerfile's build, which cmd/patina's process tests use too: the
		// two builds then share the build cache (another configuration compiles every
		// dependency again, modernc's SQLite included: most of TestChaosShort's time in CI).
		// It goes through go run, whose linked executables the build cache keeps (go build
		// links again every time): -exec cp copies the cached binary out instead of running
		// it. A second run of the package's tests then takes ~2 s here, not a link's 10-35 s.
		build := exec.Command("go", "run", "-trimpath", "-ldflags=-s -w", "-exec", "cp", "../cmd/patina", builtBin)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return builtBin
}

// BenchmarkCluster runs the replication latency workload once per configuration (b.N is
// not a loop count here: one run is seconds of traffic) and reports its figures.
func BenchmarkCluster(b *testing.B) {
	bin := buildPatinaForCluster(b)
	for _, bc := range []struct {
		name  string
		nodes int
		rate  int
	}{
		{"3nodes-100wps", 3, 100}, {"3nodes-1000wps", 3, 1000},
		{"10nodes-100wps", 10, 100}, {"10nodes-1000wps", 10, 1000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := DefaultClusterConfig()
			cfg.Binary, cfg.Nodes, cfg.Rate, cfg.Duration = bin, bc.nodes, bc.rate, 5*time.Second
			var res ClusterResult
			for b.Loop() {
				var err error
				if res, err = RunCluster(b.Context(), cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(res.P50)/1e6, "p50-ms")
			b.ReportMetric(float64(res.P99)/1e6, "p99-ms")
			b.ReportMetric(float64(res.Max)/1e6, "max-ms")
			b.ReportMetric(res.Achieved, "writes/s")
			b.ReportMetric(float64(res.Lost), "lost")
		})
	}
}

// BenchmarkClusterCatchUp measures the catch-up of a restarted node that missed 100,000
// changes.
func BenchmarkClusterCatchUp(b *testing.B) {
	bin := buildPatinaForCluster(b)
	cfg := DefaultClusterConfig()
	cfg.Binary, cfg.CatchUp = bin, 100_000
	var res ClusterResult
	for b.Loop() {
		var err error
		if res, err = RunCluster(b.Context(), cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.CatchUpRate, "changes/s")
	b.ReportMetric(float64(res.CatchUpChanges), "changes")
}

// TestClusterWorkload runs both workloads small, to keep them working.
func TestClusterWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns agents")
	}
	bin := buildPatinaForCluster(t)
	tests := []struct {
		name string
		mod  func(*ClusterConfig)
	}{
		{"latency", func(c *ClusterConfig) { c.Rate, c.Duration, c.Warmup = 50, time.Second, 0 }},
		{"catch-up", func(c *ClusterConfig) { c.Nodes, c.CatchUp = 2, 3000 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultClusterConfig()
			cfg.Binary = bin
			tt.mod(&cfg)
			res, err := RunCluster(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			if cfg.CatchUp > 0 {
				if res.CatchUpChanges < cfg.CatchUp || res.CatchUpRate <= 0 {
					t.Fatalf("catch-up of %d changes at %v/s; want at least %d changes", res.CatchUpChanges, res.CatchUpRate, cfg.CatchUp)
				}
				return
			}
			if res.Writes != 50 || res.Lost != 0 || res.Max <= 0 {
				t.Fatalf("%d writes, %d lost, max %v; want 50 writes all seen", res.Writes, res.Lost, res.Max)
			}
		})
	}
	cfg := DefaultClusterConfig()
	if err := cfg.Validate(); err == nil {
		t.Fatal("a config without a binary is valid")
	}
}
