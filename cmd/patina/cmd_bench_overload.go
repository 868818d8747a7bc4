package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/bench"
)

func init() { register("bench", newBenchOverloadCmd) }

func newBenchOverloadCmd(m *Main) *cobra.Command {
	cfg := bench.DefaultOverloadConfig()
	c := &cobra.Command{
		Use:   "overload",
		Short: "Open-loop write load with the admission queue off, then on: 503s of each",
		Long: `Start an agent of this binary on 127.0.0.1 and send --rate single-row write transactions
per second, open loop (each write at its time whatever the earlier ones took, with no
client-side connection limit), for --duration; then the same on a fresh agent. The first pass
runs with the admission queue off (api.queue_depth -1: a request that finds every
api.max_concurrency slot taken is refused with 503 at once), the second with the defaults.
Prints the writes sent, served, refused with 503, and the served writes' latency, of each.`,
		Example: `  patina bench overload --rate 1000 --duration 10s
  patina bench overload --rate 1000 --max-concurrency 16`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "writes per second, open loop")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long writes are sent, per pass")
	fs.IntVar(&cfg.MaxConcurrency, "max-concurrency", 0, "the agent's api.max_concurrency (0: its default)")
	fs.DurationVar(&cfg.QueueTimeout, "queue-timeout", 0, "the agent's api.queue_timeout in the pass with the queue (0: its default)")
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
		fmt.Fprintf(m.Stdout, "bench overload: %d writes/s for %v, queue off then on\n", cfg.Rate, cfg.Duration)
		res, err := bench.RunOverload(c.Context(), cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, res)
		return nil
	}
	return c
}
