package gossip

import (
	"context"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// TestSyncDigest: sessions between nodes that serve digests open with one; equal logs end
// after the digests (no vector travels), different ones exchange vectors and converge; a
// node configured with full vectors (as a node from before digests) is sent full vectors
// and syncs both ways with the others.
func TestSyncDigest(t *testing.T) {
	hour := func(c *Config) { c.SyncInterval = time.Hour }
	a := startNode(t, hour)
	b := startNode(t, hour, withBootstrap(a))
	c := startNode(t, hour, withBootstrap(a), func(c *Config) { c.SyncFullVectors = true })
	nodes := []*testNode{a, b, c}
	waitMembers(t, nodes)
	peerOf := func(from, to *testNode) *peer {
		for _, p := range from.g.alivePeers() {
			if p.site == to.site {
				return p
			}
		}
		t.Fatalf("no peer %v at %v", to.site, from.site)
		return nil
	}
	if !peerOf(a, b).digest || peerOf(a, c).digest || !peerOf(c, a).digest {
		t.Fatal("metadata: b should advertise digests, c not")
	}
	session := func(from, to *testNode) *syncSession {
		t.Helper()
		p := peerOf(from, to)
		s := &syncSession{g: from.g, name: p.name, digest: p.digest && !from.cfg.SyncFullVectors}
		ch := make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		from.g.tr.Sync(ctx, p.addr, s, func(err error) { ch <- err })
		if err := <-ch; err != nil {
			t.Fatalf("sync %v -> %v: %v", from.site, to.site, err)
		}
		return s
	}
	// Written without broadcast: only sync can carry them.
	write := func(n *testNode, key int64) {
		cs := &log.Changeset{Kind: log.KindData, Changes: []log.Change{{Table: "t", PK: log.MustPackPK(log.Integer(key)),
			CID: "v", Val: log.Integer(key), ColVersion: 1, CL: 1}}}
		if _, _, err := n.st.AppendLocal(context.Background(), cs); err != nil {
			t.Fatal(err)
		}
	}
	// (Joins may have triggered rounds already; the logs hold nothing yet, so they are equal.)
	if s := session(a, b); !s.digest || !s.same || s.theirs != nil {
		t.Fatalf("equal logs: digest %v, same %v, vector read %v; want the digests alone", s.digest, s.same, s.theirs != nil)
	}
	write(a, 1)
	write(b, 2)
	if s := session(a, b); !s.digest || s.same || s.theirs == nil {
		t.Fatalf("different logs: digest %v, same %v", s.digest, s.same)
	}
	// The client's outcome comes once it received; the server applies on its own time.
	testutil.WaitFor(t, 30*time.Second, "both writes on a and b", func() bool {
		return a.st.Contains(b.site, 1) && b.st.Contains(a.site, 1)
	})
	// With the full-vector node, both ways.
	write(c, 3)
	if s := session(a, c); s.digest || s.theirs == nil {
		t.Fatalf("a -> c: digest %v; want full vectors", s.digest)
	}
	write(a, 4)
	if s := session(c, a); s.digest {
		t.Fatal("c -> a opened with a digest")
	}
	testutil.WaitFor(t, 30*time.Second, "a and c equal", func() bool {
		return c.st.Vector().Equal(a.st.Vector()) && a.st.Contains(c.site, 1) && c.st.Contains(a.site, 2)
	})
	if s := session(b, a); s.same {
		t.Fatal("b lacks c's write and a's second, yet the digests matched")
	}
	testutil.WaitFor(t, 30*time.Second, "a and b equal", func() bool { return b.st.Vector().Equal(a.st.Vector()) })
	if s := session(b, a); !s.same {
		t.Fatal("b caught up, yet the digests differ")
	}
}
