package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/sim"
)

func init() { register("bench", newBenchMembershipCmd) }

func newBenchMembershipCmd(m *Main) *cobra.Command {
	cfg := sim.MembershipConfig{Nodes: 10, Rounds: 5}
	var output string
	c := &cobra.Command{
		Use:   "membership",
		Short: "Measure real memberlist's failure detection, heal and join delays on loopback",
		Long: `Start --nodes real gossip nodes (memberlist and QUIC on 127.0.0.1, production's failure
detection settings) in this process. Each of --rounds rounds cuts one node off (every
packet it sends is dropped, so to the others it has crashed) and times how long each other
node takes to see it dead, then lifts the cut and times how long each takes to see it alive
again; at the end a new node joins and each node's view of it is timed. These delays are
what the simulator's membership model (patina bench sim) is calibrated with.`,
		Example: `  patina bench membership --nodes 10 --rounds 5 -o json`,
		Args:    noArgs,
	}
	fs := c.Flags()
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "nodes (at least 3)")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "cut-and-heal rounds")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Minute, "bound of each wait")
	fs.StringVarP(&output, "output", "o", "text", "text or json")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := checkOutput(output, "text", "json"); err != nil {
			return err
		}
		if cfg.Nodes < 3 || cfg.Rounds < 1 || cfg.Timeout <= 0 {
			return usagef("--nodes must be at least 3, --rounds and --timeout positive")
		}
		res, err := sim.MeasureMembership(c.Context(), cfg)
		if err != nil {
			return err
		}
		if output == "json" {
			b, err := json.Marshal(res)
			if err != nil {
				return err
			}
			fmt.Fprintln(m.Stdout, string(b))
			return nil
		}
		fmt.Fprintf(m.Stdout, "bench membership: %d nodes, %d rounds (wall %.1fs)\n", res.Nodes, res.Rounds, res.WallS)
		for _, d := range []struct {
			name string
			d    sim.Delays
		}{{"detect", res.Detect}, {"heal", res.Heal}, {"join", res.Join}} {
			fmt.Fprintf(m.Stdout, "%-7s first %.0f ms, last %.0f ms, p50 %.0f ms, p90 %.0f ms, max %.0f ms\n",
				d.name, d.d.FirstMs, d.d.LastMs, d.d.P50Ms, d.d.P90Ms, d.d.MaxMs)
		}
		return nil
	}
	return c
}
