package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/gossip"
	"github.com/patinadb/patina/sim"
)

func init() { register("bench", newBenchSimCmd) }

func newBenchSimCmd(m *Main) *cobra.Command {
	cfg := sim.Config{Nodes: 100, Regions: 10, Seed: 1, Rate: 100, Duration: 10 * time.Second}
	var (
		output                  string
		fanout, localFanout     int
		maxHops                 int
		syncInterval            time.Duration
		bandwidth               float64
		perMessage, perByte     time.Duration
		flat, fullVectors       bool
		remoteRegions, regional int
	)
	c := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a large cluster over a WAN with the real gossip code on virtual time",
		Long: `Run --nodes nodes in --regions regions in this process, on a virtual clock and a virtual
network: each node is the real gossip code (broadcast, forwarding, queues, sync) over a
real log (Pebble on an in-memory filesystem). Round trips between regions come from
Microsoft's published Azure inter-region latency table, 1 ms within a region; links have
--bandwidth, packets are lost with --loss (QUIC retransmits them), receivers spend
measured processing time per message and byte. Membership is simulated with failure
detection delays from the real memberlist configuration.

--rate writes per second (cluster-wide, each at a random node) run for --duration of
virtual time; --crash crashes that fraction of nodes (restarted on their log a few
seconds later) and --partition cuts one region off for part of the run. Then the run
waits for every write to reach every node and for the logs to be equal. Same flags, same
figures (wall_s and cpu_s aside). With -o json the last line is one JSON object.`,
		Example: `  patina bench sim --nodes 1000 --regions 40 --seed 7 -o json
  patina bench sim --nodes 1000 --regions 40 --seed 7 --loss 0.05 --crash 0.02
  patina bench sim --nodes 100 --regions 10 --partition`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "nodes to simulate")
	fs.IntVar(&cfg.Regions, "regions", cfg.Regions, fmt.Sprintf("regions (1..%d), nodes spread evenly", sim.MaxRegions))
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of everything random in the run")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "writes per second, cluster-wide")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "virtual time of writes")
	fs.Float64Var(&cfg.Loss, "loss", 0, "packet loss probability of every link")
	fs.Float64Var(&cfg.Crash, "crash", 0, "fraction of nodes crashed and restarted during the writes")
	fs.BoolVar(&cfg.Partition, "partition", false, "cut one region off for part of the writes")
	fs.Float64Var(&bandwidth, "bandwidth", sim.DefaultBandwidth, "bits/s of each directed link")
	fs.DurationVar(&perMessage, "per-message", 0, "receiver processing time per message (default: measured)")
	fs.DurationVar(&perByte, "per-byte", 0, "receiver processing time per byte (default: measured)")
	d := gossip.DefaultConfig()
	fs.IntVar(&fanout, "fanout", d.Fanout, "gossip fanout of forwarded changesets")
	fs.IntVar(&localFanout, "local-fanout", d.LocalFanout, "gossip fanout of a node's own changesets")
	fs.IntVar(&maxHops, "max-hops", d.MaxHops, "gossip hop budget")
	fs.DurationVar(&syncInterval, "sync-interval", d.SyncInterval, "gossip sync interval")
	fs.BoolVar(&fullVectors, "full-vectors", false, "sync sessions open with full vectors, not digests (the protocol before digests)")
	fs.BoolVar(&flat, "flat", false, "no gossip region: region-blind random fanout (the protocol before region-aware broadcast)")
	fs.IntVar(&remoteRegions, "remote-fanout", d.RemoteFanout, "region-aware: nodes of each other region an origin sends to")
	fs.IntVar(&regional, "regional-fanout", d.RegionalFanout, "region-aware: nodes of its own region a receiver forwards to")
	fs.StringVarP(&output, "output", "o", "text", "text or json")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := checkOutput(output, "text", "json"); err != nil {
			return err
		}
		if cfg.Nodes < 2 || cfg.Regions < 1 || cfg.Regions > sim.MaxRegions || cfg.Regions > cfg.Nodes {
			return usagef("--nodes must be at least 2 and --regions 1..%d, at most --nodes", sim.MaxRegions)
		}
		if cfg.Rate <= 0 || cfg.Duration <= 0 || cfg.Loss < 0 || cfg.Loss >= 1 || cfg.Crash < 0 || cfg.Crash > 0.5 {
			return usagef("--rate and --duration must be positive, --loss in [0, 1), --crash in [0, 0.5]")
		}
		if cfg.Partition && cfg.Regions < 2 {
			return usagef("--partition cuts a region off from the others: it needs --regions 2 or more")
		}
		if fanout < 1 || localFanout < 1 || maxHops < 1 || syncInterval <= 0 || bandwidth <= 0 || remoteRegions < 1 || regional < 1 {
			return usagef("fanouts, --max-hops, --sync-interval and --bandwidth must be positive")
		}
		cfg.Net = sim.NetConfig{Bandwidth: bandwidth, PerMessage: perMessage, PerByte: perByte}
		cfg.Gossip = func(g *gossip.Config) {
			g.Fanout, g.LocalFanout, g.MaxHops, g.SyncInterval = fanout, localFanout, maxHops, syncInterval
			g.RemoteFanout, g.RegionalFanout = remoteRegions, regional
			g.SyncFullVectors = fullVectors
		}
		cfg.Flat = flat
		if output == "text" {
			fmt.Fprintf(m.Stdout, "bench sim: %d nodes in %d regions, %.0f writes/s for %v, loss %v, crash %v, partition %v (seed %d)\n",
				cfg.Nodes, cfg.Regions, cfg.Rate, cfg.Duration, cfg.Loss, cfg.Crash, cfg.Partition, cfg.Seed)
			last := time.Now()
			cfg.Progress = func(frac float64) {
				if time.Since(last) < time.Second {
					return
				}
				last = time.Now()
				n := int(frac * 30)
				fmt.Fprintf(m.Stderr, "\r[%s%s] %3.0f%%", strings.Repeat("=", n), strings.Repeat(" ", 30-n), frac*100)
			}
		}
		res, err := sim.Run(c.Context(), cfg)
		if output == "text" {
			fmt.Fprint(m.Stderr, "\r\033[K")
		}
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
		fmt.Fprintf(m.Stdout, "writes %d, delivered %.4f, converged %v (after %.1fs)\n", res.Writes, res.Delivered, res.Converged, res.ConvergedAtS)
		fmt.Fprintf(m.Stdout, "latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", res.P50Ms, res.P99Ms, res.MaxMs)
		fmt.Fprintf(m.Stdout, "per write: %.1f messages, %.0f bytes (broadcast %.1f messages, %.0f bytes)\n",
			res.MsgsPerWrite, res.BytesPerWrite, res.BroadcastMsgsPerWrite, res.BroadcastBytesPerWrite)
		fmt.Fprintf(m.Stdout, "idle per node, after the writes: %.0f bytes/s (sync %.0f, membership %.0f); sync before any write %.0f bytes/s\n",
			res.IdleBytesPerNodeS, res.IdleSyncBytesPerNodeS, res.IdleMembershipBytesPerNodeS, res.IdleSyncEmptyBytesPerNodeS)
		fmt.Fprintf(m.Stdout, "wall %.1fs, cpu %.1fs, %d events\n", res.WallS, res.CPUS, res.Events)
		return nil
	}
	return c
}
