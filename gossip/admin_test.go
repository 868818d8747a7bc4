package gossip

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// TestReconcile: with periodic sync an hour apart, versions that were never broadcast stay
// missing until Reconcile fetches them from every peer at once.
func TestReconcile(t *testing.T) {
	hourly := func(c *Config) { c.SyncInterval = time.Hour }
	nodes := cluster(t, 3, hourly)
	a, b, c := nodes[0], nodes[1], nodes[2]
	// Each member-up event triggers a round; one still running would carry the versions
	// below before Reconcile does (it did once in CI: b had 1 gap of a's, not 3).
	waitSyncIdle(t, nodes)
	// Versions appended without a broadcast: only sync can carry them.
	quiet := func(n *testNode, key int) {
		cs := &log.Changeset{Kind: log.KindData, Changes: []log.Change{{Table: "t",
			PK: log.MustPackPK(log.Integer(int64(key))), CID: "v", Val: log.Integer(1), ColVersion: 1, CL: 1}}}
		if _, _, err := n.st.AppendLocal(context.Background(), cs); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		quiet(a, i)
		quiet(c, 10+i)
	}
	// One broadcast from a tells b that a's head is 4: b knows of a gap of 3 versions.
	a.write(100, 1)
	testutil.WaitFor(t, 30*time.Second, "b to receive a's broadcast", func() bool { return b.st.Contains(a.site, 4) })
	if got := b.g.SiteGaps(); got[a.site] != 3 {
		t.Fatalf("b's gaps before %v, want 3 of a's", got)
	}

	res, err := b.g.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Before[a.site] != 3 || len(res.After) != 0 || res.Peers != 2 || res.Sessions < 2 || res.Passes < 1 {
		t.Errorf("reconcile %+v", res)
	}
	// b holds everything a and c hold, c's versions included (no one had announced them).
	if got := b.complete(); got != 7 {
		t.Errorf("b holds %d versions after reconcile, want 7", got)
	}
	if g := b.g.Gaps(); g != 0 {
		t.Errorf("b reports %d gaps after reconcile", g)
	}

	// A lone node has nothing to reconcile with, and says so at once.
	lone := startNode(t, hourly)
	res, err = lone.g.Reconcile(context.Background())
	if err != nil || res.Passes != 0 || res.Peers != 0 {
		t.Errorf("lone reconcile %+v %v", res, err)
	}
	// A deadline that has passed stops it with an error, never a hang.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.g.Reconcile(ctx); err == nil {
		t.Error("reconcile with an ended context: no error")
	}
}

// TestRejoin: two nodes cut apart until each declares the other dead, with the reconnect
// loop an hour away, are one cluster again right after one of them rejoins.
func TestRejoin(t *testing.T) {
	slowReconnect := func(c *Config) { c.ReconnectInterval = time.Hour }
	nodes := cluster(t, 2, slowReconnect, withFaults())
	a, b := nodes[0], nodes[1]
	for _, p := range [][2]*testNode{{a, b}, {b, a}} {
		if err := p[0].g.SetFaults([]FaultRule{{Peers: []string{p[1].site.String()}, Block: true}}); err != nil {
			t.Fatal(err)
		}
	}
	apart := func() bool { return len(a.g.alivePeers()) == 0 && len(b.g.alivePeers()) == 0 }
	testutil.WaitFor(t, 60*time.Second, "each node to declare the other dead", apart)
	// memberlist keeps gossiping to a dead node for 5 s (GossipToTheDeadTime), and a node
	// that hears it is dead refutes it: healing within that window needs no rejoin. That
	// window has no observable end, so the cut is held past it: the one wait on time here.
	if testutil.Poll(6*time.Second, func() bool { return !apart() }) == nil {
		t.Fatal("the nodes found each other through a blocked link")
	}
	for _, n := range nodes {
		if err := n.g.SetFaults(nil); err != nil {
			t.Fatal(err)
		}
	}
	// Healed links alone do not bring them back (the reconnect loop is an hour away).
	if testutil.Poll(2*time.Second, func() bool { return !apart() }) == nil {
		t.Fatal("the nodes rejoined without Rejoin: this test shows nothing")
	}
	b.write(1, 1) // lost: no live peer to broadcast to
	res, err := a.g.Rejoin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Contacted < 1 || !slices.Contains(res.Addresses, b.g.GossipAddr()) {
		t.Errorf("rejoin %+v; want b's address %s contacted", res, b.g.GossipAddr())
	}
	waitMembers(t, nodes)
	// The rejoin also started a sync round: b's write arrives without waiting for broadcast.
	waitConverged(t, nodes, 1, 30*time.Second)

	// A node alone, with no bootstrap and no members known, has no one to contact: not an error.
	lone := startNode(t, slowReconnect)
	if res, err := lone.g.Rejoin(context.Background()); err != nil || len(res.Addresses) != 0 {
		t.Errorf("lone rejoin %+v %v", res, err)
	}
}

// TestSyncSessionsComplete: back-to-back sessions between two idle nodes all complete. The
// side that finishes first stops reading once it has the other's done frame; a FIN sent
// after that used to fail the session ("close called for canceled stream") although both
// done frames had gone through (1 session in 10 to 30 under -race).
func TestSyncSessionsComplete(t *testing.T) {
	nodes := cluster(t, 2, func(c *Config) { c.SyncInterval = time.Hour })
	waitSyncIdle(t, nodes)
	a, b := nodes[0], nodes[1]
	peer := func(n *testNode) *peer {
		ps := n.g.alivePeers()
		if len(ps) != 1 {
			t.Fatalf("%d alive peers, want 1", len(ps))
		}
		return ps[0]
	}
	pa, pb := peer(a), peer(b)
	for i := range 100 {
		n, p := a, pa
		if i%2 == 1 {
			n, p = b, pb
		}
		if err := n.g.syncNow(context.Background(), p); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
}
