package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/bench"
)

func init() { register("bench", newBenchCompactCmd) }

func newBenchCompactCmd(m *Main) *cobra.Command {
	cfg := bench.DefaultCompactConfig()
	c := &cobra.Command{
		Use:   "compact",
		Short: "Measure log compaction: log and disk bytes, catch-up and rebuild, against compaction off",
		Long: `Measure what log compaction saves, with compaction off (retention forever) as the baseline
in the same run. For each --updates history length, one in-process node (a real Pebble log
and SQLite view in a temp dir) inserts --rows rows, then --writers goroutines make that many
single-row UPDATE transactions of them; once with compaction off, once with retention 0s
(the background loop running, then one last pass and Pebble's space reclaimed). Printed per
run: write throughput and latency, the log's encoded bytes, Pebble's size, the log
directory's allocated bytes (du), views.db, cleared versions, the time a fresh node takes to
catch up (cleared ranges, then every changeset in arrival order, folded; its rows and
vector are checked against the source) and the time to rebuild the view from the log; then
the ratios to the baseline, and the catch-up of the longest history against the shortest.`,
		Example: `  patina bench compact
  patina bench compact --rows 10000 --updates 10000,1000000`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.IntVar(&cfg.Rows, "rows", cfg.Rows, "rows the updates churn")
	fs.IntSliceVar(&cfg.Updates, "updates", cfg.Updates, "history lengths to measure (comma-separated)")
	fs.IntVar(&cfg.Writers, "writers", cfg.Writers, "concurrent writers")
	fs.StringVar(&cfg.Dir, "data-dir", "", "where the nodes keep their data (default: a temp dir, removed after)")
	c.RunE = func(c *cobra.Command, args []string) error {
		cfg.Logf = func(format string, args ...any) { fmt.Fprintf(m.Stderr, format+"\n", args...) }
		if err := cfg.Validate(); err != nil {
			return &usageError{err}
		}
		res, err := bench.RunCompact(c.Context(), cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, res)
		return nil
	}
	return c
}
