package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/bench"
)

func init() { register("bench", newBenchWriteCmd) }

func newBenchWriteCmd(m *Main) *cobra.Command {
	cfg := bench.DefaultWriteConfig()
	noRebuild := false
	c := &cobra.Command{
		Use:   "write",
		Short: "Measure batched replicated writes and rebuild against a plain-SQLite baseline",
		Long: `Measure the write path against plain SQLite on the same disk, in the same run, and print
the ratios. First the baseline: modernc SQLite (WAL, synchronous=FULL) inserts rows of 5
columns in transactions of --rows single-row INSERTs for --duration. Then --nodes agents of
this binary start on 127.0.0.1 (data in a temp dir, removed after) and --clients HTTP clients,
spread over the nodes, post transactions of one --rows-row INSERT of the same rows for
--duration; the replicated rate is the rows acknowledged over the time until every node
holds them, and the agents' CPU (user + system) is divided by those rows. Last, the agents
stop and the last node's view is rebuilt from its log with "patina rebuild" (cells/s against
the baseline's rows x 5 columns). Between the two, unless --single-clients is 0,
--single-clients HTTP clients post single-row transactions for --duration, beside plain
SQLite's single-row transactions (WAL, synchronous=FULL) measured in the same run.

With --profile-dir DIR every agent and the rebuild write a CPU and an allocation profile
there (go tool pprof DIR/node0.cpu.pprof).`,
		Example: `  patina bench write
  patina bench write --nodes 3 --clients 8 --rows 100 --duration 10s --profile-dir /tmp/prof`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "agents to start")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent HTTP writers, spread over the nodes")
	fs.IntVar(&cfg.SingleClients, "single-clients", cfg.SingleClients, "concurrent writers of the single-row phase (0: skip it)")
	fs.IntVar(&cfg.Rows, "rows", cfg.Rows, "rows per transaction")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the clients (and the baseline) write")
	fs.BoolVar(&noRebuild, "no-rebuild", false, "skip the rebuild")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "write CPU and allocation profiles of the agents and the rebuild here")
	fs.StringVar(&cfg.Dir, "data-dir", "", "where the agents keep their data (default: a temp dir, removed after)")
	agentBin := ""
	fs.StringVar(&agentBin, "binary", "", "run the agents and the rebuild from this patina binary instead of this one (an A/B of two builds under one harness)")
	c.RunE = func(c *cobra.Command, args []string) error {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary: %w", err)
		}
		if agentBin != "" {
			if _, err := os.Stat(agentBin); err != nil {
				return &usageError{fmt.Errorf("--binary: %w", err)}
			}
			exe = agentBin
		}
		cfg.Binary = exe
		cfg.Rebuild = !noRebuild
		cfg.Logf = func(format string, args ...any) { fmt.Fprintf(m.Stderr, format+"\n", args...) }
		if err := cfg.Validate(); err != nil {
			return &usageError{err}
		}
		fmt.Fprintf(m.Stdout, "bench write: %d nodes, %d clients, %d-row transactions, %v\n", cfg.Nodes, cfg.Clients, cfg.Rows, cfg.Duration)
		res, err := bench.RunWrite(c.Context(), cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, res)
		return nil
	}
	return c
}
