package gossip

import (
	"context"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// Issue 12, item 4: two nodes that hold the same versions of a site, one of them with other
// content (each node has its own copy of version 5, digests that match their content), hold
// equal vectors, so a plain sync sends nothing. The content sums in the vector frame show the
// difference: each node counts and logs it, sends the site's versions, and each ingest names
// the colliding version (a collision, in health's collisions) and keeps its own copy.
func TestSyncDetectsContentDivergence(t *testing.T) {
	siteX := log.SiteID{7}
	var xs, forged []*log.Changeset
	for v := log.Version(1); v <= 20; v++ {
		xs = append(xs, foreignCS(siteX, v, 4))
		cs := foreignCS(siteX, v, 4)
		if v == 5 {
			cs.Changes[2].Val = log.Text("other content")
		}
		forged = append(forged, cs)
	}
	seed := func(n *testNode, css []*log.Changeset) {
		st, err := log.Open(n.dir+"/log", log.Options{SiteID: n.site, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Ingest(context.Background(), css...); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	mk := func(css []*log.Changeset, opts ...nodeOpt) *testNode {
		cfg := TestConfig()
		cfg.ClusterID, cfg.Logger = "test", testLogger()
		for _, o := range opts {
			o(&cfg)
		}
		n := &testNode{tb: t, dir: t.TempDir(), site: log.NewSiteID(), cfg: cfg, ingest: true}
		seed(n, css)
		n.start()
		t.Cleanup(n.stop)
		return n
	}
	a := mk(xs)
	b := mk(forged, withBootstrap(a))
	if !a.st.Vector().Equal(b.st.Vector()) {
		t.Fatal("the vectors differ before the sync")
	}
	if sa, sb := a.st.Vector().Sites[siteX].Content, b.st.Vector().Sites[siteX].Content; sa.N != 20 || sa.N != sb.N || sa.Xor == sb.Xor {
		t.Fatalf("content sums: %+v and %+v, want 20 versions each, different", sa, sb)
	}
	testutil.WaitFor(t, 30*time.Second, "both nodes to see the divergence and name the version", func() bool {
		return counterValue(a.g.m.divergent) > 0 && counterValue(b.g.m.divergent) > 0 &&
			a.st.Forgeries().Collisions > 0 && b.st.Forgeries().Collisions > 0
	})
	// Each keeps its own copy: never silently the other one.
	for n, want := range map[*testNode]*log.Changeset{a: xs[4], b: forged[4]} {
		got, err := n.st.Get(siteX, 5)
		if err != nil || got.Changes[2].Val.Text != want.Changes[2].Val.Text {
			t.Fatalf("%v/5 after the sync: %v, %v", siteX, got, err)
		}
	}
	// Reported once per peer and state, not at every round.
	before := counterValue(a.g.m.divergent)
	a.g.triggerSync()
	b.g.triggerSync()
	waitSyncIdle(t, []*testNode{a, b})
	if after := counterValue(a.g.m.divergent); after != before {
		t.Fatalf("divergence counted again: %v -> %v", before, after)
	}
}
