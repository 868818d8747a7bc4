package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWriteWorkload runs the write workload briefly on 2 agents, with profiles: every figure
// must be measured (non-zero), every row replicated, the rebuild must count the cells the
// log holds, and each agent and the rebuild must leave its profiles.
func TestWriteWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns agents")
	}
	bin := buildPatinaForCluster(t)
	cfg := DefaultWriteConfig()
	cfg.Binary, cfg.Nodes, cfg.Clients, cfg.Rows, cfg.Duration, cfg.SingleClients = bin, 2, 2, 10, 500*time.Millisecond, 4
	cfg.ProfileDir = t.TempDir()
	res, err := RunWrite(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.BaselineRows == 0 || res.Rows == 0 || res.ReplicatedSec <= 0 || res.CPUTotal <= 0 {
		t.Fatalf("figures missing: %+v", res)
	}
	if res.SingleTx == 0 || res.SingleTxSec <= 0 || res.BaselineSingleTxSec <= 0 || res.SingleCPUPerTx <= 0 {
		t.Fatalf("single-row figures missing: %+v", res)
	}
	// Every row inserted has 4 non-key columns: 4 changes (cells) each.
	if want := 4 * (res.Rows + res.SingleTx); res.RebuildCells != want || res.RebuildFoldSec <= 0 {
		t.Fatalf("rebuild folded %d cells at %v/s; want %d", res.RebuildCells, res.RebuildFoldSec, want)
	}
	for _, f := range []string{"node0.cpu.pprof", "node1.allocs.pprof", "rebuild.cpu.pprof"} {
		if st, err := os.Stat(filepath.Join(cfg.ProfileDir, f)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
	if s := res.String(); !strings.Contains(s, "x baseline") || !strings.Contains(s, "single-row tx/s") {
		t.Errorf("no ratio printed:\n%s", s)
	}
	bad := cfg
	bad.Rows = 0
	if err := bad.Validate(); err == nil {
		t.Error("0 rows per transaction is valid")
	}
}

// TestOverloadWorkload: with one slot and no queue, a burst gets 503s; with the queue, the
// same burst is served without any.
func TestOverloadWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns agents")
	}
	cfg := DefaultOverloadConfig()
	cfg.Binary, cfg.Rate, cfg.Duration, cfg.MaxConcurrency = buildPatinaForCluster(t), 400, 500*time.Millisecond, 1
	// A shared CI machine can stall the agent for seconds: the queue must not time out here.
	cfg.QueueTimeout = time.Minute
	res, err := RunOverload(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.NoQueue.Sent != 200 || res.Queue.Sent != 200 || res.NoQueue.Other != 0 || res.Queue.Other != 0 {
		t.Fatalf("sent or failed otherwise: %+v", res)
	}
	if res.Queue.Shed != 0 || res.Queue.OK != 200 {
		t.Errorf("with the queue: %d refused, %d served; want all 200 served", res.Queue.Shed, res.Queue.OK)
	}
	if res.NoQueue.Shed+res.NoQueue.OK != 200 {
		t.Errorf("without the queue: %d refused + %d served != 200", res.NoQueue.Shed, res.NoQueue.OK)
	}
}
