package gossip

import (
	"bytes"
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
		s := from.g.clientSession(p)
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

// TestVectorFrameCompressed: when digests differ the vectors travel, and to a peer that
// decodes zstd a large one goes as a zstd frame that reads back as the same vector; to a
// peer that does not, or below CompressMinBytes, it goes plain.
func TestVectorFrameCompressed(t *testing.T) {
	v := log.NewVector()
	for i := range 300 { // a 300-node cluster's vector, each site with a gap
		site := log.SiteID{0: byte(i), 1: byte(i >> 8), 15: 7}
		for ver := log.Version(1); ver <= 40; ver++ {
			if ver != 20 {
				v.AddVersion(site, ver)
			}
		}
	}
	enc, err := encodeVector(v)
	if err != nil {
		t.Fatal(err)
	}
	cfg := TestConfig()
	newer, older := log.MustParseSiteID("00000000-0000-0000-0000-0000000000e1"), log.MustParseSiteID("00000000-0000-0000-0000-0000000000e2")
	g := &Gossip{cfg: cfg, m: newMetrics(), known: map[log.SiteID]*memberInfo{
		newer: {meta: &nodeMeta{Zstd: true}}, older: {meta: &nodeMeta{}},
	}}
	z := (&syncSession{g: g, peer: newer}).vectorFrame(enc)
	if len(z) >= len(enc) || z[uvarintLen(uint64(len(z)))] != frameZstd {
		t.Fatalf("to a zstd peer: %d bytes for a %d-byte vector, want a smaller zstd frame", len(z), len(enc))
	}
	typ, body, _ := readFrame(t, z)
	got, err := decodeVector(body)
	if typ != frameVector || err != nil || !got.Equal(v) {
		t.Fatalf("read back: type %d, err %v, equal %v", typ, err, err == nil && got.Equal(v))
	}
	if got := metricValue(t, g.m.zstdWire.WithLabelValues("sync", "sent")); got != float64(len(z)) {
		t.Fatalf("zstd sync bytes sent: %v, want %d", got, len(z))
	}
	plain := appendFrame(nil, frameVector, enc)
	if f := (&syncSession{g: g, peer: older}).vectorFrame(enc); !bytes.Equal(f, plain) {
		t.Fatal("to a peer without zstd: not the plain frame")
	}
	g.cfg.CompressMinBytes = len(enc) + 1
	if f := (&syncSession{g: g, peer: newer}).vectorFrame(enc); !bytes.Equal(f, plain) {
		t.Fatal("below CompressMinBytes: not the plain frame")
	}
}
