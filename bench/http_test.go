package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkHTTP runs the HTTP workload and its direct (no HTTP) twin on an in-process node:
// go test ./bench -run '^$' -bench HTTP -benchtime 1x. Each run is time-based (2 s), so b.N
// only repeats it.
func BenchmarkHTTP(b *testing.B) {
	cases := []struct {
		clients, rows int
		reads         bool
	}{
		{1, 1, false}, {32, 1, false}, {1, 100, false}, {32, 100, false}, {1, 0, true}, {32, 0, true},
	}
	for _, c := range cases {
		for _, direct := range []bool{false, true} {
			mode := "http"
			if direct {
				mode = "direct"
			}
			name := fmt.Sprintf("%s/write-%drows/clients-%d", mode, c.rows, c.clients)
			if c.reads {
				name = fmt.Sprintf("%s/point-read/clients-%d", mode, c.clients)
			}
			b.Run(name, func(b *testing.B) {
				cfg := DefaultHTTPConfig()
				cfg.Clients, cfg.Reads, cfg.Direct = c.clients, c.reads, direct
				cfg.Rows = max(c.rows, 1)
				cfg.Duration, cfg.Warmup = 2*time.Second, 300*time.Millisecond
				cfg.Dir = b.TempDir()
				var res HTTPResult
				for b.Loop() {
					var err error
					if res, err = RunHTTP(b.Context(), cfg); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(res.OpsPerSec, "ops/s")
				b.ReportMetric(res.RowsPerSec, "rows/s")
				b.ReportMetric(float64(res.P50.Microseconds())/1e3, "p50-ms")
				b.ReportMetric(float64(res.P99.Microseconds())/1e3, "p99-ms")
				b.ReportMetric(float64(res.CPU.Nanoseconds())/1e3, "cpu-us/op")
			})
		}
	}
}

// TestHTTPWorkload checks that the workload measures something and fails on bad configs.
func TestHTTPWorkload(t *testing.T) {
	for _, reads := range []bool{false, true} {
		cfg := DefaultHTTPConfig()
		cfg.Clients, cfg.Rows, cfg.Reads, cfg.Preload = 4, 10, reads, 200
		cfg.Duration, cfg.Warmup = 300*time.Millisecond, 0
		cfg.Dir = t.TempDir()
		res, err := RunHTTP(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Ops == 0 || res.Errors != 0 || res.P99 < res.P50 || res.P50 <= 0 || res.CPU <= 0 {
			t.Errorf("reads=%v: implausible result %v", reads, res)
		}
	}
	// The floor: no node, each write answered at the next tick of its clock, so that no
	// write is answered sooner than a tick (at once without one); served by net/http, and
	// with WriteListener by fasthttp as the node's write listener.
	for _, fast := range []bool{false, true} {
		for _, wait := range []time.Duration{0, 20 * time.Millisecond} {
			cfg := DefaultHTTPConfig()
			cfg.Clients, cfg.Floor, cfg.FloorWait, cfg.WriteListener = 4, true, wait, fast
			cfg.Duration, cfg.Warmup = 300*time.Millisecond, 0
			res, err := RunHTTP(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			mode := map[bool]string{false: "floor", true: "floor write listener"}[fast]
			if res.Mode != mode || res.Ops == 0 || res.Errors != 0 || res.CPU <= 0 {
				t.Errorf("floor wait %v, fasthttp %v: implausible result %v", wait, fast, res)
			}
			// Each client waits for a tick per write: at most one write per client per tick
			// (and one more for the tick that ends the window).
			if most := 4 * (int(cfg.Duration/max(wait, time.Nanosecond)) + 1); wait > 0 && res.Ops > most {
				t.Errorf("floor wait %v, fasthttp %v: %d writes in %v, want at most %d", wait, fast, res.Ops, cfg.Duration, most)
			}
		}
	}
	// Through a Unix socket: the node's (its SocketPath, which is empty, and so no client
	// address, if the node did not serve one) and the floor's.
	for _, floor := range []bool{false, true} {
		cfg := DefaultHTTPConfig()
		cfg.Clients, cfg.Socket, cfg.Floor, cfg.FloorWait = 4, true, floor, 0
		cfg.Duration, cfg.Warmup = 300*time.Millisecond, 0
		res, err := RunHTTP(t.Context(), cfg)
		if err != nil {
			t.Fatalf("socket, floor %v: %v", floor, err)
		}
		if res.Ops == 0 || res.Errors != 0 || res.CPU <= 0 {
			t.Errorf("socket, floor %v: implausible result %v", floor, res)
		}
	}
	// Through the node's write listener.
	cfg := DefaultHTTPConfig()
	cfg.Clients, cfg.WriteListener = 4, true
	cfg.Duration, cfg.Warmup = 300*time.Millisecond, 0
	res, err := RunHTTP(t.Context(), cfg)
	if err != nil {
		t.Fatalf("write listener: %v", err)
	}
	if res.Mode != "http write listener" || res.Ops == 0 || res.Errors != 0 || res.CPU <= 0 {
		t.Errorf("write listener: implausible result %v", res)
	}
	bad := DefaultHTTPConfig()
	bad.Clients = 0
	if _, err := RunHTTP(t.Context(), bad); err == nil {
		t.Error("0 clients accepted")
	}
	for name, mend := range map[string]func(*HTTPConfig){
		"floor with direct":          func(c *HTTPConfig) { c.Floor, c.Direct = true, true },
		"floor with reads":           func(c *HTTPConfig) { c.Floor, c.Reads = true, true },
		"floor with addr":            func(c *HTTPConfig) { c.Floor, c.Addr = true, "127.0.0.1:1" },
		"negative wait":              func(c *HTTPConfig) { c.Floor, c.FloorWait = true, -time.Millisecond },
		"socket with addr":           func(c *HTTPConfig) { c.Socket, c.Addr = true, "127.0.0.1:1" },
		"socket with direct":         func(c *HTTPConfig) { c.Socket, c.Direct = true, true },
		"write listener with addr":   func(c *HTTPConfig) { c.WriteListener, c.Addr = true, "127.0.0.1:1" },
		"write listener with direct": func(c *HTTPConfig) { c.WriteListener, c.Direct = true, true },
		"write listener with socket": func(c *HTTPConfig) { c.WriteListener, c.Socket = true, true },
		"write addr without addr":    func(c *HTTPConfig) { c.WriteAddr = "127.0.0.1:1" },
	} {
		cfg := DefaultHTTPConfig()
		mend(&cfg)
		if _, err := RunHTTP(t.Context(), cfg); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestHTTPAgentCPUNeedsMetrics: against an agent whose /metrics has no process CPU (the
// bench's own node serves the API without the process collector), a run still measures,
// with no agent CPU figure and an error that says why. The figure itself is checked against
// a real agent in cmd/patina (TestBenchHTTPAgentCPU).
func TestHTTPAgentCPUNeedsMetrics(t *testing.T) {
	cfg := DefaultHTTPConfig()
	cfg.Dir = t.TempDir()
	n, err := openNode(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	cfg.Addr, cfg.Dir = n.srv.Addr().String(), ""
	cfg.Clients, cfg.Duration, cfg.Warmup = 2, 200*time.Millisecond, 0
	res, err := RunHTTP(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.AgentCPU != 0 || res.AgentCPUErr == nil ||
		!strings.Contains(res.AgentCPUErr.Error(), "process_cpu_seconds_total") {
		t.Fatalf("ops %d, agent cpu %v, error %v; want ops, no agent cpu and an error naming the metric", res.Ops, res.AgentCPU, res.AgentCPUErr)
	}
	if strings.Contains(res.String(), "agent cpu") {
		t.Errorf("result prints an agent cpu it does not have: %s", res)
	}
}
