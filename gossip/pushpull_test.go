package gossip

import (
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
)

// TestPushPullEvery: the membership push-pull period is the base up to PushPullScaleNodes
// members and grows in proportion to them above, so that the member-list bytes one node
// sends per second (2 * members * bytes per member / period) are the same at 100, 300
// and 1,000 nodes; memberlist's own log2 scaling (what Patina used before) is not flat.
func TestPushPullEvery(t *testing.T) {
	base := 10 * time.Second
	for _, c := range []struct {
		n    int
		want time.Duration
	}{
		{0, base}, {1, base}, {5, base}, {32, base},
		{64, 20 * time.Second}, {100, 31250 * time.Millisecond},
		{300, 93750 * time.Millisecond}, {1000, 312500 * time.Millisecond},
	} {
		if got := PushPullEvery(base, c.n); got != c.want {
			t.Errorf("PushPullEvery(%v, %d) = %v, want %v", base, c.n, got, c.want)
		}
	}
	perNode := func(n int, period time.Duration) float64 { return 2 * float64(n) * 200 / period.Seconds() }
	flat := perNode(PushPullScaleNodes, base)
	for n := PushPullScaleNodes; n <= 10_000; n += 7 {
		if got := perNode(n, PushPullEvery(base, n)); got < flat*0.999 || got > flat*1.001 {
			t.Fatalf("%d members: %.1f B/node/s, want %.1f (flat)", n, got, flat)
		}
		if PushPullEvery(base, n+1) < PushPullEvery(base, n) {
			t.Fatalf("period shrinks from %d to %d members", n, n+1)
		}
	}
	// memberlist's own schedule (pushPullScale): 3.2x the flat figure at 1,000 nodes.
	memberlist := 6 * base // ceil(log2(1000) - log2(32)) + 1 = 6
	if r := perNode(1000, memberlist) / flat; r < 5 || r > 5.5 {
		t.Fatalf("memberlist's schedule at 1,000 nodes: %.2fx the flat traffic, want about 5.2x", r)
	}
}

// TestPushPullRuns: with memberlist's own push-pull off, every node of a real 3-node
// cluster runs Patina's (a full member-list exchange through memberlist.Join), and they
// succeed.
func TestPushPullRuns(t *testing.T) {
	nodes := cluster(t, 3, func(c *Config) { c.PushPullInterval = 50 * time.Millisecond })
	waitMembers(t, nodes)
	testutil.WaitFor(t, 30*time.Second, "two push-pulls on every node", func() bool {
		for _, n := range nodes {
			if metricValue(t, n.g.m.pushPulls.WithLabelValues("ok")) < 2 {
				return false
			}
		}
		return true
	})
	for i, n := range nodes {
		if got := metricValue(t, n.g.m.pushPullPeriod); got <= 0 || got > 0.07 {
			t.Errorf("node %d: push-pull period gauge %v s, want about 0.05 (3 members: the base)", i, got)
		}
	}
}

// TestHealWithoutPushPull: a node cut off until the others declare it dead (and it them)
// is seen alive again after the cut ends, with the push-pull period an hour: healing comes
// from the reconnect loop (every ReconnectInterval each node rejoins a member it lost),
// not from anti-entropy, so a long push-pull period at 1,000 nodes does not delay it.
// README's Scale section gives the bound: about 1.25 ReconnectInterval plus a gossip
// round (0.4 s and a little here; the deadline is loose for a loaded machine).
func TestHealWithoutPushPull(t *testing.T) {
	nodes := cluster(t, 3, withFaults(), func(c *Config) { c.PushPullInterval = time.Hour })
	waitMembers(t, nodes)
	cut := nodes[2]
	others := []string{nodes[0].site.String(), nodes[1].site.String()}
	for _, n := range nodes[:2] {
		if err := n.g.SetFaults([]FaultRule{{Peers: []string{cut.site.String()}, Block: true}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cut.g.SetFaults([]FaultRule{{Peers: others, Block: true}}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the cut node and the others to declare each other dead", func() bool {
		return len(cut.g.alivePeers()) == 0 && len(nodes[0].g.alivePeers()) == 1 && len(nodes[1].g.alivePeers()) == 1
	})
	for _, n := range nodes {
		if err := n.g.SetFaults(nil); err != nil {
			t.Fatal(err)
		}
	}
	healed := time.Now()
	waitMembers(t, nodes)
	t.Logf("seen alive again %v after the cut ended (reconnect interval %v, push-pull period 1h)",
		time.Since(healed), nodes[0].cfg.ReconnectInterval)
	for i, n := range nodes {
		if got := metricValue(t, n.g.m.pushPulls.WithLabelValues("ok")); got != 0 {
			t.Errorf("node %d ran %v push-pulls with an hour's period", i, got)
		}
	}
}
