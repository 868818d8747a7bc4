package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/bench"
)

func init() { register("bench", newBenchChaosCmd) }

func newBenchChaosCmd(m *Main) *cobra.Command {
	cfg := bench.DefaultChaosConfig()
	c := &cobra.Command{
		Use:   "chaos",
		Short: "Run agents under faults (kill -9, restarts, loss, partitions, damaged log files, disk full) and check nothing acknowledged is lost",
		Long: `Start --nodes agents of this binary on 127.0.0.1 and write on every node while faults
come one at a time, every --step, for --duration: kill -9 (restarted at the next step),
SIGTERM restarts, 30% loss with 50 ms delay on one node's gossip, a partition of one node
(the [gossip.fault] hook, re-read on SIGHUP), a damaged table file in one node's log (64
bytes overwritten while it is stopped, then met by an online backup: the node repairs
itself), and, as root, disk full on node 0 (its data on a tmpfs shrunk to leave less
than db.min_free_bytes free) and faults through the kernel's network stack: each agent then runs in
a network namespace of its own (ip netns, veth links to two bridges: one for gossip, one
for its API), and the faults are its gossip link set down (a partition while its API takes
writes), netem loss and delay (30%, 50 ms ± 20 ms, when the kernel has sch_netem) and a
slow link (tbf, 1 Mbit/s). A kind the machine cannot make is left out with a notice. --seed fixes the order and targets; --kinds fixes the order of the
kinds. Then the faults end and it checks that every acknowledged write is on every node,
that dumps and heads are identical, gaps 0 and no damage left, and that no agent panicked. Prints writes acknowledged,
lost, and the time to converge after the faults ended; exit 1 when an invariant failed.`,
		Example: `  patina bench chaos --seed 1 --duration 10m`,
		Args:    noArgs,
	}
	fs := c.Flags()
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "agents to start")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "time under faults")
	fs.DurationVar(&cfg.Step, "step", cfg.Step, "time between faults")
	fs.IntVar(&cfg.StepWrites, "step-writes", 0, "end a step early once every node the fault leaves able to write has acknowledged this many writes under it (0: every step lasts --step)")
	fs.DurationVar(&cfg.Converge, "converge", cfg.Converge, "longest wait for convergence after the faults")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the fault schedule and writes")
	netns := true
	fs.BoolVar(&netns, "netns", true, "as root, run each agent in a network namespace of its own and add the kernel-network faults (link down, netem loss and delay, slow link)")
	fs.StringVar(&cfg.Dir, "data-dir", "", "where the agents keep their data (default: a temp dir, removed after)")
	fs.StringSliceVar(&cfg.Kinds, "kinds", nil, "fault kinds in this order, cycling (default: drawn by the seed): "+strings.Join(bench.ChaosKinds, ", "))
	c.RunE = func(c *cobra.Command, args []string) error {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary: %w", err)
		}
		cfg.Binary, cfg.NoNetns = exe, !netns
		cfg.Logf = func(format string, args ...any) { fmt.Fprintf(m.Stderr, format+"\n", args...) }
		if err := cfg.Validate(); err != nil {
			return &usageError{err}
		}
		fmt.Fprintf(m.Stdout, "bench chaos: %d nodes, %v of faults every %v (seed %d)\n", cfg.Nodes, cfg.Duration, cfg.Step, cfg.Seed)
		res, err := bench.RunChaos(c.Context(), cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, res)
		if err := res.Err(); err != nil {
			return fmt.Errorf("bench chaos: invariants failed: %w", err)
		}
		return nil
	}
	return c
}
