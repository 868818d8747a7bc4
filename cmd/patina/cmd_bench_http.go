package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/bench"
)

func init() { register("bench", newBenchHTTPCmd) }

func newBenchHTTPCmd(m *Main) *cobra.Command {
	cfg := bench.DefaultHTTPConfig()
	c := &cobra.Command{
		Use:   "http",
		Short: "Load the HTTP API: write transactions or point reads from concurrent clients",
		Long: `Measure the HTTP API: --clients concurrent clients write transactions of --rows rows
(one INSERT each), or with --reads read single rows by primary key, for --duration after a
--warmup. Without --addr it starts a node in this process (log and view in a temp dir, API
on 127.0.0.1); --direct calls that node's materializer without HTTP, for comparison; --floor
answers the writes without a node or a database, each at the next tick of a --floor-wait
clock (a stand-in for a group commit), to show what the HTTP exchange alone costs. Prints
operations/s, rows/s, the latency p50/p99/max each client saw and this process's CPU time
per operation (the clients and, without --addr, the node); with --addr also the agent's own
CPU time per operation, read from its /metrics before and after the measured window.`,
		Example: `  patina bench http --clients 32 --rows 1 --duration 10s
  patina bench http --clients 32 --rows 1 --duration 10s --write-listener
  patina bench http --clients 32 --rows 1 --duration 10s --direct
  patina bench http --clients 32 --rows 1 --duration 10s --floor --floor-wait 1ms
  patina bench http --clients 1 --reads --duration 10s
  patina bench http --addr 127.0.0.1:8080 --clients 8`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.StringVar(&cfg.Addr, "addr", "", "an agent's API to load (default: a node in this process)")
	fs.StringVar(&cfg.Dir, "data-dir", "", "data dir of the in-process node (default: a temp dir, removed after)")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent clients")
	fs.IntVar(&cfg.Rows, "rows", cfg.Rows, "rows per write transaction")
	fs.BoolVar(&cfg.Reads, "reads", false, "point reads instead of writes")
	fs.IntVar(&cfg.Preload, "preload", cfg.Preload, "rows written before a read run")
	fs.BoolVar(&cfg.Direct, "direct", false, "call the materializer in-process instead of HTTP")
	fs.BoolVar(&cfg.Floor, "floor", false, "answer the writes in-process without a node or database (the HTTP exchange alone)")
	fs.BoolVar(&cfg.Socket, "socket", false, "reach the in-process node (or --floor) through a Unix socket instead of TCP on 127.0.0.1")
	fs.BoolVar(&cfg.WriteListener, "write-listener", false, "send the writes to the in-process node's write listener (api.write_addr) instead of its API address")
	fs.StringVar(&cfg.WriteAddr, "write-addr", "", "with --addr, send the writes to this write listener of the agent (its api.write_addr)")
	fs.DurationVar(&cfg.FloorWait, "floor-wait", cfg.FloorWait, "with --floor, answer the waiting writes together at every tick of this clock (0: at once)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured time")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured time first")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the read keys")
	fs.StringVar(&cfg.Token, "token", "", "bearer token of the agent at --addr")
	fs.IntVar(&cfg.ReadConns, "read-conns", 0, "read connections of the in-process node (0: the default)")
	fs.IntVar(&cfg.CommitDepth, "commit-depth", 0, "the in-process node's log commit depth: append groups on their way to disk at once (0: the default, 2)")
	fs.IntVar(&cfg.WriterDepth, "writer-depth", 0, "the in-process node's writer groups on their way at once (0 or 1: none overlaps; 2: a group's SQL runs while the previous group's fsync runs)")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := cfg.Validate(); err != nil {
			return &usageError{err}
		}
		what := fmt.Sprintf("%d-row write transactions", cfg.Rows)
		if cfg.Reads {
			what = "point reads"
		}
		fmt.Fprintf(m.Stdout, "bench http: %d clients, %s, %v (seed %d)\n", cfg.Clients, what, cfg.Duration, cfg.Seed)
		res, err := bench.RunHTTP(c.Context(), cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, res)
		if res.AgentCPUErr != nil {
			fmt.Fprintf(m.Stderr, "bench http: no agent CPU figure: %v\n", res.AgentCPUErr)
		}
		return nil
	}
	return c
}
