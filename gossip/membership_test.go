package gossip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestWrongClusterRefused starts a node of another cluster id that bootstraps through a
// cluster's node and also dials it over QUIC directly: it must never join, and no data may
// cross either way.
func TestWrongClusterRefused(t *testing.T) {
	nodes := cluster(t, 2, withCluster("a"))
	other := startNode(t, withCluster("b"), withBootstrap(nodes[0]))
	for i, n := range nodes {
		n.write(i, 1)
	}
	other.write(100, 1)
	testutil.WaitFor(t, 30*time.Second, "the cluster to refuse the stranger's joins", func() bool {
		return metricValue(t, nodes[0].g.m.refusedCluster) > 0 && other.g.joinTries.Load() >= 2
	})

	// Dial the cluster's QUIC port directly, as a misconfigured node that learned the
	// address elsewhere would: both the sync and the broadcast stream are refused.
	p := other.g.newPeer(nodes[0].site, nodes[0].g.QUICAddr())
	t.Cleanup(p.stop)
	refusedBefore := metricValue(t, nodes[0].g.m.refusedCluster)
	if err := other.g.syncWith(p); err == nil {
		t.Fatal("sync with a node of another cluster succeeded")
	}
	cs, err := other.st.Get(other.site, 1)
	if err != nil {
		t.Fatal(err)
	}
	p.enqueue(mustFrame(t)(changesetFrame(cs, 3)))
	testutil.WaitFor(t, 30*time.Second, "the QUIC hellos to be refused", func() bool {
		return metricValue(t, nodes[0].g.m.refusedCluster) >= refusedBefore+2
	})
	waitConverged(t, nodes, 2, 30*time.Second)
	for i, n := range nodes {
		if n.st.Contains(other.site, 1) {
			t.Fatalf("node %d holds the stranger's write", i)
		}
		for _, m := range n.g.Members() {
			if m.SiteID == other.site {
				t.Fatalf("node %d lists the stranger as a member: %+v", i, m)
			}
		}
	}
	if c := other.complete(); c != 1 {
		t.Fatalf("the stranger holds %d versions, want only its own", c)
	}
	if len(other.g.alivePeers()) != 0 {
		t.Fatalf("the stranger has peers: %d", len(other.g.alivePeers()))
	}
}

// TestEncryptionKey checks that nodes sharing a gossip key form a cluster and that a node
// with another key cannot join it.
func TestEncryptionKey(t *testing.T) {
	key := func(b byte) nodeOpt {
		return func(c *Config) {
			c.SecretKey = make([]byte, 32)
			for i := range c.SecretKey {
				c.SecretKey[i] = b
			}
		}
	}
	nodes := cluster(t, 2, key(1))
	nodes[0].write(0, 1)
	waitConverged(t, nodes, 1, 30*time.Second)
	wrong := startNode(t, key(2), withBootstrap(nodes[0]))
	noKey := startNode(t, withBootstrap(nodes[0]))
	testutil.WaitFor(t, 30*time.Second, "several join attempts", func() bool {
		return wrong.g.joinTries.Load() >= 3 && noKey.g.joinTries.Load() >= 3
	})
	for _, n := range []*testNode{wrong, noKey} {
		if len(n.g.alivePeers()) != 0 {
			t.Fatalf("a node without the cluster's key joined it")
		}
	}
	for i, n := range nodes {
		if got := len(n.g.alivePeers()); got != 1 {
			t.Fatalf("node %d has %d peers, want 1", i, got)
		}
	}
}

// TestMembers checks what Members reports, and that a graceful Close shows as left while
// a crash shows as dead.
func TestMembers(t *testing.T) {
	nodes := cluster(t, 4)
	ms := nodes[0].g.Members()
	if len(ms) != 4 {
		t.Fatalf("got %d members, want 4: %+v", len(ms), ms)
	}
	sites := map[log.SiteID]*testNode{}
	for _, n := range nodes {
		sites[n.site] = n
	}
	for _, m := range ms {
		n := sites[m.SiteID]
		if n == nil {
			t.Fatalf("unknown member %+v", m)
		}
		if m.State != StateAlive || m.ClusterID != "test" || m.Name != n.site.String() ||
			m.GossipAddr != n.g.GossipAddr() || m.QUICAddr != n.g.QUICAddr() || m.Self != (n == nodes[0]) {
			t.Fatalf("member %+v does not describe node %v (gossip %s, quic %s)", m, n.site, n.g.GossipAddr(), n.g.QUICAddr())
		}
	}
	state := func(of *testNode) MemberState {
		for _, m := range nodes[0].g.Members() {
			if m.SiteID == of.site {
				return m.State
			}
		}
		return ""
	}
	nodes[2].stop()
	testutil.WaitFor(t, 30*time.Second, "a closed node to show as left", func() bool { return state(nodes[2]) == StateLeft })

	// A crash: everything stops without the graceful leave.
	crashed := nodes[3]
	crashed.up = false
	if err := crashed.g.shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := crashed.st.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testutil.WaitFor(t, 30*time.Second, "a crashed node to show as dead", func() bool { return state(crashed) == StateDead })
	t.Logf("crash noticed after %v (test timers: probe %v)", time.Since(start), nodes[0].cfg.ProbeInterval)
	// Under load a live member may be suspected for a moment: poll, do not sample once.
	testutil.WaitFor(t, 30*time.Second, "stats to count one live member", func() bool { return nodes[0].g.Stats().Members == 1 })
}

// TestBootstrapRetry starts a node whose bootstrap address (a DNS name) answers only later:
// the node keeps retrying and joins once it does.
func TestBootstrapRetry(t *testing.T) {
	addr := testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	late := startNode(t, func(c *Config) { c.Bootstrap = []string{net.JoinHostPort("localhost", port)} })
	testutil.WaitFor(t, 30*time.Second, "join attempts while nothing answers", func() bool { return late.g.joinTries.Load() >= 2 })
	first := startNode(t, func(c *Config) { c.GossipAddr = addr })
	waitMembers(t, []*testNode{first, late})
	late.write(0, 1)
	waitConverged(t, []*testNode{first, late}, 1, 30*time.Second)
}

// TestMutualTLS runs nodes with certificates from GenerateCA/GenerateCert: nodes of one
// CA replicate; a node whose certificate another CA signed cannot exchange data even in
// the same cluster id.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tlsFor := func(ca string) nodeOpt {
		caCert, caKey, err := GenerateCA("patina test "+ca, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := GenerateCert(caCert, caKey, ServerCert, "node", []string{"127.0.0.1", "localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cfg := TLSConfig{CAFile: write(ca+"-ca.pem", caCert), CertFile: write(ca+"-cert.pem", cert), KeyFile: write(ca+"-key.pem", key)}
		return func(c *Config) { c.TLS = cfg }
	}
	good := tlsFor("one")
	nodes := cluster(t, 2, good)
	nodes[0].write(0, 1)
	nodes[1].write(1, 1)
	waitConverged(t, nodes, 2, 30*time.Second)

	// A rogue member (issue 12, item 9): a certificate from another CA, in the same cluster
	// id. Membership (memberlist) is not TLS, so it joins it; on main it was listed alive and
	// counted. Now the QUIC handshakes are refused, both sides log it at warn and count it,
	// and each side lists the other as untrusted, with no data crossing.
	var goodLog, rogueLog testutil.LockedBuffer
	stranger := startNode(t, tlsFor("two"), withBootstrap(nodes[0]), withLog(&rogueLog))
	watched := startNode(t, good, withBootstrap(nodes[0]), withLog(&goodLog))
	nodes = append(nodes, watched)
	stranger.write(2, 1)
	states := func(n *testNode) map[string]MemberState {
		out := map[string]MemberState{}
		for _, m := range n.g.Members() {
			if !m.Self {
				out[m.Name] = m.State
			}
		}
		return out
	}
	testutil.WaitFor(t, 60*time.Second, "the rogue member to be untrusted everywhere, and the good ones alive", func() bool {
		for _, n := range nodes {
			st := states(n)
			if st[stranger.site.String()] != StateUntrusted {
				return false
			}
			for _, o := range nodes {
				if o != n && st[o.site.String()] != StateAlive {
					return false
				}
			}
		}
		st := states(stranger)
		for _, n := range nodes {
			if st[n.site.String()] != StateUntrusted {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		if got := len(n.g.alivePeers()); got != len(nodes)-1 {
			t.Fatalf("a good node has %d live peers, want %d (the rogue one is not a peer)", got, len(nodes)-1)
		}
	}
	if len(stranger.g.alivePeers()) != 0 {
		t.Fatal("the rogue node kept peers")
	}
	if err := testutil.Poll(10*time.Second, func() bool {
		return strings.Contains(goodLog.String(), "level=WARN msg=\"refusing a peer under mutual TLS") &&
			strings.Contains(rogueLog.String(), "level=WARN msg=\"refusing a peer under mutual TLS")
	}); err != nil {
		t.Fatalf("no warn line on both sides:\ngood:\n%s\nrogue:\n%s", goodLog.String(), rogueLog.String())
	}
	refused := func(n *testNode) float64 {
		var total float64
		for _, dir := range []string{"in", "out"} {
			var m dto.Metric
			if err := n.g.m.tlsRefused.WithLabelValues(dir).Write(&m); err != nil {
				t.Fatal(err)
			}
			total += m.GetCounter().GetValue()
		}
		return total
	}
	if refused(watched) == 0 || refused(stranger) == 0 {
		t.Fatalf("patina_gossip_tls_refused_total: good %v, rogue %v", refused(watched), refused(stranger))
	}
	// A node with no certificate of its own (no CA: an ephemeral self-signed one) is
	// refused the same way; its handshakes are refused by the good nodes' servers ("in").
	var noCertLog testutil.LockedBuffer
	noCert := startNode(t, withBootstrap(nodes[0]), withLog(&noCertLog))
	testutil.WaitFor(t, 60*time.Second, "the member without a certificate to be untrusted", func() bool {
		for _, n := range nodes {
			if states(n)[noCert.site.String()] != StateUntrusted {
				return false
			}
		}
		return true
	})
	// Its own side: in TLS 1.3 a client's handshake completes before the server checks the
	// client certificate, so it sees a closed connection, not an alert; the good side logs.
	if err := testutil.Poll(10*time.Second, func() bool {
		return strings.Contains(goodLog.String(), "direction=in") || strings.Contains(goodLog.String(), noCert.site.String())
	}); err != nil {
		t.Fatalf("the good node did not log the refusal of the node without a certificate:\n%s", goodLog.String())
	}
	nodes[0].write(3, 1)
	waitConverged(t, nodes, 3, 30*time.Second)
	if stranger.complete() != 1 || nodes[0].st.Contains(stranger.site, 1) {
		t.Fatal("data crossed between nodes of different CAs")
	}
}

func withLog(w io.Writer) nodeOpt {
	return func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(w, nil)) }
}

func TestTLSGenerateErrors(t *testing.T) {
	caCert, caKey, err := GenerateCA("ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, leafKey, err := GenerateCert(caCert, caKey, ClientCert, "client", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func() error
	}{
		{"ca zero validity", func() error { _, _, err := GenerateCA("ca", 0); return err }},
		{"cert zero validity", func() error {
			_, _, err := GenerateCert(caCert, caKey, ServerCert, "n", nil, 0)
			return err
		}},
		{"garbage ca", func() error {
			_, _, err := GenerateCert([]byte("x"), []byte("y"), ServerCert, "n", nil, time.Hour)
			return err
		}},
		{"signer not a ca", func() error {
			_, _, err := GenerateCert(leaf, leafKey, ServerCert, "n", nil, time.Hour)
			return err
		}},
		{"unknown kind", func() error {
			_, _, err := GenerateCert(caCert, caKey, CertKind(9), "n", nil, time.Hour)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"bad gossip addr", func(c *Config) { c.GossipAddr = "nope" }},
		{"bad quic port", func(c *Config) { c.QUICAddr = "127.0.0.1:99999" }},
		{"bad bootstrap", func(c *Config) { c.Bootstrap = []string{"host-without-port"} }},
		{"key length", func(c *Config) { c.SecretKey = []byte("short") }},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }},
		{"ca without cert", func(c *Config) { c.TLS.CAFile = "ca.pem" }},
		{"zero fanout", func(c *Config) { c.Fanout = 0 }},
		{"probe timeout above interval", func(c *Config) { c.ProbeTimeout = 2 * c.ProbeInterval }},
		{"fault rules while disabled", func(c *Config) { c.Fault.Rules = []FaultRule{{Block: true}} }},
		{"fault drop above 1", func(c *Config) { c.Fault = FaultConfig{Enabled: true, Rules: []FaultRule{{Drop: 1.5}}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := TestConfig()
			tt.mod(&c)
			if err := c.Validate(); !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate: %v, want ErrConfig", err)
			}
		})
	}
	if c := DefaultConfig(); c.Validate() != nil {
		t.Fatalf("DefaultConfig is invalid: %v", c.Validate())
	}
	if c := TestConfig(); c.Validate() != nil {
		t.Fatalf("TestConfig is invalid: %v", c.Validate())
	}
}

// TestMetrics checks that the collectors are registered and move with traffic.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	nodes := []*testNode{startNode(t, func(c *Config) { c.Registerer = reg })}
	nodes = append(nodes, startNode(t, withBootstrap(nodes[0])))
	waitMembers(t, nodes)
	for i := range 10 {
		nodes[1].write(i, 1)
	}
	waitConverged(t, nodes, 10, 30*time.Second)
	m := nodes[0].g.m
	testutil.WaitFor(t, 30*time.Second, "a completed sync round", func() bool {
		return metricValue(t, m.syncRounds.WithLabelValues("client", "ok"))+
			metricValue(t, m.syncRounds.WithLabelValues("server", "ok")) > 0
	})
	// The counter moves after the append it counts returns, so the log can hold all ten
	// a moment before the metric says so.
	recv := func() float64 {
		return metricValue(t, m.versionsRecv.WithLabelValues("broadcast", "true")) +
			metricValue(t, m.versionsRecv.WithLabelValues("sync", "true"))
	}
	testutil.WaitFor(t, 30*time.Second, "ten new changesets counted", func() bool { return recv() >= 10 })
	if got := recv(); got != 10 {
		t.Fatalf("received %v new changesets, want 10", got)
	}
	if got := metricValue(t, m.members.WithLabelValues("alive")); got != 1 {
		t.Fatalf("members{alive} = %v, want 1", got)
	}
	var h dto.Metric
	if err := m.lag.Write(&h); err != nil || h.GetHistogram().GetSampleCount() == 0 {
		t.Fatalf("lag histogram has no samples (%v)", err)
	}
	if nodes[0].g.P99Lag() <= 0 {
		t.Fatal("no replication lag measured")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, want := range []string{"patina_gossip_members", "patina_gossip_changesets_received_total",
		"patina_gossip_replication_lag_seconds", "patina_gossip_sync_rounds_total", "patina_gossip_bytes_received_total"} {
		if !names[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
	// Close unregisters, so that an agent can open gossip again on the same registry.
	nodes[0].stop()
	startNode(t, func(c *Config) { c.Registerer = reg })
}

// TestMetricsAtZero checks that a lone node that has done nothing yet exports every
// patina_gossip_* series it will ever move, at zero, so that graphs and alerts see 0 rather
// than nothing (site_gaps, labelled by the sites it hears of, has none yet).
func TestMetricsAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	startNode(t, func(c *Config) { c.Registerer = reg })
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			series[f.GetName()]++
			if c := m.GetCounter(); c != nil && c.GetValue() != 0 {
				t.Errorf("%s %v = %v on a node that did nothing", f.GetName(), m.GetLabel(), c.GetValue())
			}
		}
	}
	// Every metric gossip has, whatever its labels: a new one that is not zeroed fails here.
	descs := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range newMetrics().collectors() {
			c.Describe(descs)
		}
		close(descs)
	}()
	for d := range descs {
		name := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())[1]
		if series[name] == 0 && name != "patina_gossip_site_gaps" {
			t.Errorf("%s: no series on a lone node (zero it in metrics.zero)", name)
		}
	}
	want := map[string]int{
		"patina_gossip_members": 4, "patina_gossip_broadcast_queue_length": 1, "patina_gossip_tls_refused_total": 2,
		"patina_gossip_broadcast_dropped_total": 1, "patina_gossip_sync_rounds_total": 9, "patina_gossip_admin_operations_total": 2,
		"patina_gossip_changesets_sent_total": 2, "patina_gossip_changesets_received_total": 4,
		"patina_gossip_bytes_sent_total": 2, "patina_gossip_bytes_received_total": 2,
		"patina_gossip_replication_lag_seconds": 1, "patina_gossip_refused_peers_total": 1,
		"patina_gossip_membership_push_pulls_total": 2, "patina_gossip_membership_push_pull_period_seconds": 1,
	}
	for name, n := range want {
		if series[name] != n {
			t.Errorf("%s: %d series, want %d", name, series[name], n)
		}
	}
}

// TestQueueDropsOldest checks the bounded per-peer queue and its batching.
func TestQueueDropsOldest(t *testing.T) {
	g := &Gossip{cfg: TestConfig(), m: newMetrics()}
	g.cfg.QueueLen = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// sending: a flush counts as pending, so that enqueue schedules none (no transport here).
	p := &peer{g: g, ctx: ctx, sending: true}
	for i := range 5 {
		p.enqueue([]byte{byte(i), 0, 0, 0})
	}
	if got := g.drops.Load(); got != 2 {
		t.Fatalf("drops %d, want 2", got)
	}
	if got := g.queued.Load(); got != 3 {
		t.Fatalf("queued %d, want 3", got)
	}
	tests := []struct {
		max   int
		first []byte
		n     int
	}{
		{max: 8, first: []byte{2, 0, 0, 0}, n: 2}, // two 4-byte frames fit in 8 bytes
		{max: 1, first: []byte{4, 0, 0, 0}, n: 1}, // at least one frame, even above max
		{max: 8, n: 0},
	}
	for _, tt := range tests {
		batch, _ := p.take(tt.max)
		if len(batch) != tt.n || (tt.n > 0 && batch[0][0] != tt.first[0]) {
			t.Fatalf("take(%d) = %v, want %d frames starting %v", tt.max, batch, tt.n, tt.first)
		}
	}
	if g.queued.Load() != 0 {
		t.Fatalf("queued %d after draining", g.queued.Load())
	}
}

// metricValue reads a counter or gauge (prometheus/testutil would add a dependency).
func metricValue(tb testing.TB, c prometheus.Metric) float64 {
	tb.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	tb.Fatalf("metric %v is neither a counter nor a gauge", c.Desc())
	return 0
}

// TestSyncBusyRetriesElsewhere makes one peer refuse syncs (it serves its limit already):
// the client gets ErrBusy from it, and a round moves on to another peer.
func TestSyncBusyRetriesElsewhere(t *testing.T) {
	nodes := cluster(t, 3, func(c *Config) { c.SyncInterval = time.Hour })
	busy, other := nodes[1], nodes[2]
	// Added, not stored: sessions in flight (joins trigger some) undo only their own count.
	busy.g.served.Add(int32(busy.cfg.MaxServedSyncs))
	t.Cleanup(func() { busy.g.served.Add(-int32(busy.cfg.MaxServedSyncs)) })
	var busyPeer *peer
	for _, p := range nodes[0].g.alivePeers() {
		if p.site == busy.site {
			busyPeer = p
		}
	}
	if err := nodes[0].g.syncWith(busyPeer); !errors.Is(err, ErrBusy) {
		t.Fatalf("sync with a busy peer: %v, want ErrBusy", err)
	}
	// Written without broadcast: only a sync can bring it.
	cs := &log.Changeset{Kind: log.KindData, Changes: []log.Change{{Table: "t", PK: log.MustPackPK(log.Integer(1)),
		CID: "v", Val: log.Integer(1), ColVersion: 1, CL: 1}}}
	if _, _, err := other.st.AppendLocal(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	// Make the busy peer look like the best source, so a round tries it first.
	nodes[0].g.mu.Lock()
	nodes[0].g.lack[busy.site] = 100
	nodes[0].g.mu.Unlock()
	// (Joins trigger background rounds too; only this round's own counts are checked.)
	if done, busy := nodes[0].g.syncRoundWait(); done != 1 || busy != 1 {
		t.Fatalf("round: %d sessions done, %d refused; want 1 and 1", done, busy)
	}
	if !nodes[0].st.Contains(other.site, 1) {
		t.Fatal("the round did not sync with the other peer")
	}
}
