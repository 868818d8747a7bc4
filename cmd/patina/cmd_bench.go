package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/bench"
)

func init() { register("bench", newBenchClusterCmd) }

func newBenchClusterCmd(m *Main) *cobra.Command {
	cfg := bench.DefaultClusterConfig()
	c := &cobra.Command{
		Use:   "cluster",
		Short: "Spawn a local cluster of agents and measure replication latency or catch-up",
		Long: `Start --nodes agents of this binary on 127.0.0.1 (data in a temp dir, removed after) and
write --rate one-row transactions per second through their HTTP APIs, round robin, for
--duration after a --warmup. Every node's update stream records when each row becomes
visible; the latency of a write is from its acknowledgement to its visibility on the last
of the other nodes. Prints p50/p99/max of that, per node pair, and of the writes.

With --catchup N it measures catch-up instead: the last node is stopped, about N changes
are written on the first, the node is restarted, and the time from its API answering to
every missed row being visible gives the catch-up rate in changes/s.`,
		Example: `  patina bench cluster --nodes 3 --rate 1000 --duration 10s
  patina bench cluster --nodes 10 --rate 100 --duration 10s
  patina bench cluster --nodes 3 --catchup 100000`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "agents to start")
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "write transactions per second, over all nodes")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured time")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured time first")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent HTTP writers per node")
	fs.IntVar(&cfg.CatchUp, "catchup", 0, "measure the catch-up of a restarted node that missed this many changes")
	fs.StringVar(&cfg.Dir, "data-dir", "", "where the agents keep their data (default: a temp dir, removed after)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the row values")
	fs.StringVar(&cfg.Compression, "compression", "", "every agent's gossip.compression: zstd or none (default: the agents' default)")
	c.RunE = func(c *cobra.Command, args []string) error {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary: %w", err)
		}
		cfg.Binary = exe
		cfg.Logf = func(format string, args ...any) { fmt.Fprintf(m.Stderr, format+"\n", args...) }
		if err := cfg.Validate(); err != nil {
			return &usageError{err}
		}
		if cfg.CatchUp > 0 {
			fmt.Fprintf(m.Stdout, "bench cluster: %d nodes, catch-up of %d changes (seed %d)\n", cfg.Nodes, cfg.CatchUp, cfg.Seed)
		} else {
			fmt.Fprintf(m.Stdout, "bench cluster: %d nodes, %d writes/s, %v (seed %d)\n", cfg.Nodes, cfg.Rate, cfg.Duration, cfg.Seed)
		}
		res, err := bench.RunCluster(c.Context(), cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, res)
		return nil
	}
	return c
}

func init() { register("bench", newBenchSchemaCmd) }

func newBenchSchemaCmd(m *Main) *cobra.Command {
	cfg := bench.DefaultSchemaStormConfig()
	c := &cobra.Command{
		Use:   "schema",
		Short: "Spawn a local cluster, load rows, migrate, and measure the bytes the migration sends",
		Long: `Start --nodes agents of this binary on 127.0.0.1, load --rows rows on the first (in
transactions of --batch rows) and wait until every node holds them. Then sum the bytes every
node's gossip sends (broadcast and sync frames) over an idle --window (the baseline), over a
window that starts with adding a nullable column, and over one that starts with adding an
index, each through POST /v1/migrations on the first node. A migration that re-sent rows
would show megabytes; a schema changeset is a few hundred bytes per node.`,
		Example: `  patina bench schema --rows 1000000
  patina bench schema --nodes 3 --rows 100000 --window 5s`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "agents to start")
	fs.IntVar(&cfg.Rows, "rows", cfg.Rows, "rows to load before migrating")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "rows per loading transaction")
	fs.DurationVar(&cfg.Window, "window", cfg.Window, "how long each measurement sums bytes")
	fs.StringVar(&cfg.Dir, "data-dir", "", "where the agents keep their data (default: a temp dir, removed after)")
	c.RunE = func(c *cobra.Command, args []string) error {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary: %w", err)
		}
		cfg.Binary = exe
		cfg.Logf = func(format string, args ...any) { fmt.Fprintf(m.Stderr, format+"\n", args...) }
		if err := cfg.Validate(); err != nil {
			return &usageError{err}
		}
		fmt.Fprintf(m.Stdout, "bench schema: %d nodes, %d rows, %v windows\n", cfg.Nodes, cfg.Rows, cfg.Window)
		res, err := bench.RunSchemaStorm(c.Context(), cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, res)
		return nil
	}
	return c
}
