package main

import (
	"regexp"
	"strconv"
	"testing"
)

// TestBenchHTTPAgentCPU: `bench http --addr` prints the agent's own CPU per operation, read
// from the agent's /metrics around the measured window. The agent runs in this process here,
// so its figure includes the clients' CPU: it must be at least the process's own figure.
func TestBenchHTTPAgentCPU(t *testing.T) {
	a := startTestAgent(t, nil)
	out := cli(t, "bench", "http", "--addr", a.APIAddr(), "--clients", "4", "--duration", "1s", "--warmup", "0s")
	m := regexp.MustCompile(`, 0 errors, cpu (\d+) us/op, agent cpu (\d+) us/op`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no agent cpu figure in:\n%s", out)
	}
	self, _ := strconv.Atoi(m[1])
	agent, _ := strconv.Atoi(m[2])
	// The agent's figure counts 10 ms ticks, two of them at most wrong over a window of at
	// least 0.4 s of CPU: 15% is room enough, and a figure scaled wrongly is far outside it.
	if agent <= 0 || float64(agent) < 0.85*float64(self) || agent > 3*self {
		t.Errorf("agent cpu %d us/op, this process %d us/op: want > 0 and about at least this process's", agent, self)
	}
}
