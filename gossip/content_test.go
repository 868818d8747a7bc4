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

// Two nodes that cleared different versions of a site, as many of them, hold equal versions
// and equal counts with different sums: that is compaction, not divergence, and must not
// start a resend (it did, at every new state of a churning site, before sums were compared
// only when they cover every version held).
func TestClearedVersionsAreNotDivergence(t *testing.T) {
	siteX := log.SiteID{9}
	var xs []*log.Changeset
	for v := log.Version(1); v <= 20; v++ {
		xs = append(xs, foreignCS(siteX, v, 4))
	}
	a := startNode(t)
	ctx := context.Background()
	if _, err := a.st.Ingest(ctx, xs[1:]...); err != nil {
		t.Fatal(err)
	}
	if _, err := a.st.AppendCleared(ctx, siteX, log.RangeSet{{First: 1, Last: 1}}); err != nil {
		t.Fatal(err)
	}
	ours := a.st.Vector().Sites[siteX]
	if ours == nil || ours.Versions.Count() != 20 || ours.Content.N != 19 {
		t.Fatalf("our site vector %+v, want 20 versions, 19 summed", ours)
	}
	// Theirs: the same versions, version 2 cleared instead of 1.
	var sum log.ContentSum
	for i, cs := range xs {
		if i == 1 {
			continue
		}
		d, ok := cs.ComputeDigest()
		if !ok {
			t.Fatal("no digest")
		}
		sum.Add(d)
	}
	theirs := log.NewVector()
	theirs.Sites[siteX] = &log.SiteVector{Versions: ours.Versions.Clone(), Content: sum}
	if sum.N != ours.Content.N || sum.Xor == ours.Content.Xor {
		t.Fatalf("the test's sums: %+v and %+v, want equal counts, different sums", sum, ours.Content)
	}
	if got := a.g.divergentSites(log.MustParseSiteID("00000000-0000-0000-0000-0000000000ee"), theirs); len(got) != 0 {
		t.Fatalf("divergent sites %v: cleared versions taken for divergence", got)
	}
	if n := counterValue(a.g.m.divergent); n != 0 {
		t.Fatalf("divergence counted %v times", n)
	}
}
