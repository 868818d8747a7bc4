package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/patinadb/patina/gossip"
	"github.com/patinadb/patina/log"
)

// Calibration of the membership model (membership.go) against real memberlist: n real
// gossip nodes (memberlist on UDP and TCP over loopback, QUIC, logs on an in-memory
// filesystem) with production's failure-detection settings (gossip.DefaultConfig), on
// wall time. Each round one node is cut off (the fault hook drops every packet it sends,
// so to the others it is a crash: it neither answers probes nor refutes suspicion), and
// every other node's view of it is polled until it is dead; then the cut is lifted and the
// views polled until it is alive again (memberlist's reconnect loop, as after a healed
// partition). At the end one new node joins through node 0. `patina bench membership`
// prints the figures; bench/RESULTS.md keeps them, and the model's constants come from
// them.

// MembershipConfig is one calibration.
type MembershipConfig struct {
	Nodes  int
	Rounds int
	// Poll is how often every node's view is read (default 5 ms): the resolution of the
	// figures.
	Poll time.Duration
	// Timeout bounds each wait (default 60 s).
	Timeout time.Duration
}

// Delays are the delays from an event to each other node's view of it, summarised: the
// first and last observer of each round, averaged over rounds, and quantiles over every
// (round, observer) pair.
type Delays struct {
	FirstMs float64 `json:"first_ms"` // mean over rounds of the earliest observer
	LastMs  float64 `json:"last_ms"`  // mean over rounds of the latest observer
	P50Ms   float64 `json:"p50_ms"`
	P90Ms   float64 `json:"p90_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// MembershipResult is what a calibration measured.
type MembershipResult struct {
	Nodes  int `json:"nodes"`
	Rounds int `json:"rounds"`
	// Detect: from a node's cut to each other node seeing it dead. Heal: from the cut's end
	// to each seeing it alive again. Join: from a new node's start to each seeing it alive.
	Detect Delays  `json:"detect"`
	Heal   Delays  `json:"heal"`
	Join   Delays  `json:"join"`
	WallS  float64 `json:"wall_s"`
}

type calNode struct {
	g    *gossip.Gossip
	st   *log.Store
	site log.SiteID
}

type nopApplier struct{}

func (nopApplier) Apply(_ context.Context, css []*log.Changeset) ([]bool, error) {
	return make([]bool, len(css)), nil
}

// MeasureMembership runs cfg and returns its figures.
func MeasureMembership(ctx context.Context, cfg MembershipConfig) (*MembershipResult, error) {
	if cfg.Nodes < 3 || cfg.Rounds < 1 {
		return nil, errors.New("membership calibration: nodes must be at least 3 and rounds at least 1")
	}
	if cfg.Poll == 0 {
		cfg.Poll = 5 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute
	}
	start := time.Now()
	fs := vfs.NewMem()
	var nodes []*calNode
	defer func() {
		for _, n := range nodes {
			_ = n.g.Close()
			_ = n.st.Close()
		}
	}()
	open := func(i int, bootstrap []string) (*calNode, error) {
		st, err := log.Open(fmt.Sprintf("cal%d", i), log.Options{FS: fs, NoSync: true, CacheBytes: 1 << 20, RecentChanges: -1, Logger: discard})
		if err != nil {
			return nil, err
		}
		gc := gossip.DefaultConfig()
		gc.ClusterID, gc.Logger = "calibrate", discard
		gc.GossipAddr, gc.QUICAddr, gc.APIAddr = "127.0.0.1:0", "127.0.0.1:0", ""
		gc.Bootstrap = bootstrap
		gc.Fault.Enabled = true
		g, err := gossip.New(gc, st, nopApplier{})
		if err == nil {
			err = g.Open(ctx)
		}
		if err != nil {
			_ = g.Close()
			_ = st.Close()
			return nil, err
		}
		return &calNode{g: g, st: st, site: st.SiteID()}, nil
	}
	var boot []string
	for i := range cfg.Nodes {
		n, err := open(i, boot)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		nodes = append(nodes, n)
		if i == 0 {
			boot = []string{n.g.GossipAddr()}
		}
	}
	// Everyone sees everyone alive.
	if _, err := waitViews(ctx, cfg, nodes, nil, gossip.StateAlive, time.Now()); err != nil {
		return nil, fmt.Errorf("forming the cluster: %w", err)
	}
	res := &MembershipResult{Nodes: cfg.Nodes, Rounds: cfg.Rounds}
	var detect, heal [][]time.Duration
	for r := range cfg.Rounds {
		victim := nodes[1+r%(cfg.Nodes-1)]
		t0 := time.Now()
		if err := victim.g.SetFaults([]gossip.FaultRule{{Block: true}}); err != nil {
			return nil, err
		}
		d, err := waitViews(ctx, cfg, nodes, victim, gossip.StateDead, t0)
		if err != nil {
			return nil, fmt.Errorf("round %d, detection: %w", r, err)
		}
		detect = append(detect, d)
		t1 := time.Now()
		if err := victim.g.SetFaults(nil); err != nil {
			return nil, err
		}
		h, err := waitViews(ctx, cfg, nodes, victim, gossip.StateAlive, t1)
		if err != nil {
			return nil, fmt.Errorf("round %d, heal: %w", r, err)
		}
		heal = append(heal, h)
		// Let memberlist settle (refutations, push-pulls) before the next round.
		if _, err := waitViews(ctx, cfg, nodes, nil, gossip.StateAlive, time.Now()); err != nil {
			return nil, err
		}
	}
	t2 := time.Now()
	joiner, err := open(cfg.Nodes, boot)
	if err != nil {
		return nil, fmt.Errorf("joiner: %w", err)
	}
	nodes = append(nodes, joiner)
	j, err := waitViews(ctx, cfg, nodes[:cfg.Nodes], joiner, gossip.StateAlive, t2)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	res.Detect, res.Heal, res.Join = summarize(detect), summarize(heal), summarize([][]time.Duration{j})
	res.WallS = time.Since(start).Seconds()
	return res, nil
}

// waitViews polls until every node but target sees target in state want (target nil:
// every node sees every other alive) and returns, per observer, when it first did.
func waitViews(ctx context.Context, cfg MembershipConfig, nodes []*calNode, target *calNode, want gossip.MemberState, t0 time.Time) ([]time.Duration, error) {
	seen := map[*calNode]time.Duration{}
	deadline := time.Now().Add(cfg.Timeout)
	for {
		for _, o := range nodes {
			if o == target {
				continue
			}
			if _, ok := seen[o]; ok {
				continue
			}
			if views(o, nodes, target, want) {
				seen[o] = time.Since(t0)
			}
		}
		if len(seen) == len(nodes)-btoi(target != nil && slices.Contains(nodes, target)) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d nodes saw %s within %v", len(seen), len(nodes)-1, want, cfg.Timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.Poll):
		}
	}
	out := make([]time.Duration, 0, len(seen))
	for _, d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

// views reports whether o sees target in state want (target nil: all of nodes alive).
func views(o *calNode, nodes []*calNode, target *calNode, want gossip.MemberState) bool {
	state := map[log.SiteID]gossip.MemberState{}
	for _, m := range o.g.Members() {
		state[m.SiteID] = m.State
	}
	if target != nil {
		return state[target.site] == want
	}
	for _, x := range nodes {
		if x != o && state[x.site] != gossip.StateAlive {
			return false
		}
	}
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func summarize(rounds [][]time.Duration) Delays {
	var all []time.Duration
	var first, last time.Duration
	for _, r := range rounds {
		first += r[0]
		last += r[len(r)-1]
		all = append(all, r...)
	}
	slices.Sort(all)
	q := func(p float64) float64 { return ms(all[min(int(p*float64(len(all))), len(all)-1)]) }
	n := time.Duration(len(rounds))
	return Delays{FirstMs: ms(first / n), LastMs: ms(last / n), P50Ms: q(0.5), P90Ms: q(0.9), MaxMs: ms(all[len(all)-1])}
}
