package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/patinadb/patina/log"
	"github.com/vmihailenco/msgpack/v5"
)

// nodeMeta is memberlist node metadata (msgpack, under memberlist's 512-byte limit).
type nodeMeta struct {
	V       int      `msgpack:"v"`
	Site    wireSite `msgpack:"site"`
	Cluster string   `msgpack:"cluster"`
	QUIC    string   `msgpack:"quic"`
	API     string   `msgpack:"api,omitempty"`
	// Region is the node's Config.Region (empty: none).
	Region string `msgpack:"region,omitempty"`
	// Leaving is set just before a graceful leave, so that peers record the node as left
	// rather than dead and do not try to reconnect to it (memberlist's Node.State does not
	// tell them apart).
	Leaving bool `msgpack:"leaving,omitempty"`
	// Zstd says the node decodes zstd frames (compress.go); nodes from before compression
	// leave it out, and peers send them plain frames only.
	Zstd bool `msgpack:"zstd,omitempty"`
	// Digest: the node serves sync sessions that open with a vector digest (sync.go).
	// Nodes without it (older ones) are sent full vectors.
	Digest bool `msgpack:"sd,omitempty"`
	// Trace says the node reads traced frames (trace.go); the same rule as Zstd.
	Trace bool `msgpack:"trace,omitempty"`

	site log.SiteID
}

func decodeMeta(b []byte) (*nodeMeta, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: node without patina metadata", ErrProtocol)
	}
	var m nodeMeta
	if err := msgpack.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: node metadata: %w", ErrProtocol, err)
	}
	m.site = log.SiteID(m.Site)
	if m.site.IsZero() {
		return nil, fmt.Errorf("%w: node metadata: zero site id", ErrProtocol)
	}
	return &m, nil
}

// memberInfo is what this node remembers of a member, dead or alive.
type memberInfo struct {
	meta  *nodeMeta
	addr  string // gossip address
	state MemberState
	rtt   time.Duration
	since time.Time
	tls   trust       // what mutual TLS says of it (trust.go)
	shown MemberState // the state the members gauge counts it in (gaugeLocked)
}

// metaFor returns this node's membership metadata. host, when set, is the host the
// membership advertises: it fills in the QUIC address's host when the transport is bound
// to a wildcard address.
func (g *Gossip) metaFor(host string) []byte {
	g.mu.Lock()
	if h, port, err := net.SplitHostPort(g.quicAddr); err == nil && h == "" && host != "" {
		g.quicAddr = net.JoinHostPort(host, port)
	}
	quicAddr := g.quicAddr
	g.mu.Unlock()
	meta, err := msgpack.Marshal(&nodeMeta{V: 1, Site: wireSite(g.site), Cluster: g.cfg.ClusterID, QUIC: quicAddr,
		API: g.cfg.APIAddr, Region: g.cfg.Region, Leaving: g.leaving.Load(), Zstd: !g.cfg.oldWire, Trace: !g.cfg.oldWire,
		Digest: !g.cfg.SyncFullVectors})
	if err != nil {
		panic(err) // a fixed struct always encodes
	}
	return meta
}

// events is the MemberEvents gossip gives its Membership.
type events struct{ g *Gossip }

func (e events) Up(name, addr string, meta []byte) { e.g.memberUp(name, addr, meta) }
func (e events) Down(name, addr string)            { e.g.memberDown(name, addr) }

// memberUp adds or refreshes a live peer.
func (g *Gossip) memberUp(name, addr string, meta []byte) {
	if name == g.name {
		return
	}
	m, err := decodeMeta(meta)
	if err != nil || m.Cluster != g.cfg.ClusterID || m.site.String() != name {
		return // refused by the membership's checks already
	}
	site := m.site
	if g.faults != nil {
		g.faults.learn(addr, name)
		g.faults.learn(m.QUIC, name)
		if a, err := net.ResolveUDPAddr("udp", m.QUIC); err == nil {
			g.faults.learn(a.String(), name)
		}
	}
	g.mu.Lock()
	info := g.known[site]
	if info == nil {
		info = &memberInfo{}
		g.known[site] = info
	}
	g.setStateLocked(info, StateAlive)
	info.meta, info.addr, info.since = m, addr, g.clock.Now()
	p := g.peers[site]
	fresh := p == nil || p.addr != m.QUIC || p.region != m.Region || p.digest != m.Digest
	if info.tls == trustRefused {
		fresh = false // its certificate was refused: no broadcasts, no syncs (trust.go)
	}
	var old *peer
	if fresh && !g.closed.Load() {
		old = p
		np := g.newPeer(site, m.QUIC)
		np.region, np.digest = m.Region, m.Digest
		g.peers[site] = np
		g.setPeersLocked()
		p = np
	}
	if p != nil {
		p.zstd.Store(m.Zstd) // a restart with another version changes it in place
		p.trace.Store(m.Trace)
	}
	g.mu.Unlock()
	if old != nil {
		old.stop()
	}
	if fresh {
		// Dial it at once: under mutual TLS that verifies it; without, a node that peers
		// refuse learns (and logs) it now rather than at its first sync.
		if v, ok := g.tr.(interface{ verify(addr string) }); ok {
			v.verify(m.QUIC)
		}
	}
	if fresh {
		g.logger.Info("member up", "node", name, attrAddr, addr, "quic", m.QUIC)
		g.joinedOnce.Do(func() { close(g.joined) })
		// A new or returning member: sync soon, so that joins and healed partitions catch
		// up without waiting for the next interval.
		g.triggerSync()
	}
}

// memberDown removes a peer that died or left.
func (g *Gossip) memberDown(name, addr string) {
	site, err := log.ParseSiteID(name)
	if err != nil || site == g.site {
		return // itself, or a name the membership's checks refused
	}
	state := StateDead
	g.mu.Lock()
	if info := g.known[site]; info != nil {
		if info.meta != nil && info.meta.Leaving {
			state = StateLeft
		}
		info.tls = trustUnknown // a node that comes back is verified again
		g.setStateLocked(info, state)
		info.since = g.clock.Now()
	}
	p := g.peers[site]
	delete(g.peers, site)
	g.setPeersLocked()
	g.mu.Unlock()
	if p != nil {
		p.stop()
	}
	g.logger.Info("member down", "node", name, attrAddr, addr, "state", state)
}

// setStateLocked moves a known member to state st, and the members gauge with it. Needs g.mu.
func (g *Gossip) setStateLocked(info *memberInfo, st MemberState) {
	info.state = st
	g.gaugeLocked(info)
}

// gaugeLocked moves the members gauge to the state Members reports for info (its state as
// mutual TLS sees it, trust.go), one step per change: recounting every member on each event
// made a cluster's start cost n³ across its n nodes. Call it whenever info.state or info.tls
// changed. Needs g.mu.
func (g *Gossip) gaugeLocked(info *memberInfo) {
	st := g.memberState(info, info.state)
	if st == info.shown {
		return
	}
	if info.shown != "" {
		g.m.members.WithLabelValues(string(info.shown)).Dec()
	}
	info.shown = st
	g.m.members.WithLabelValues(string(st)).Inc()
}

// peer is a live member: its broadcast queue and the state of its flushes.
type peer struct {
	g      *Gossip
	site   log.SiteID  // its identity; its membership name is site.String()
	addr   string      // transport address (QUIC)
	region string      // its Config.Region
	zstd   atomic.Bool // its metadata says it decodes zstd frames
	digest bool        // it serves sync sessions that open with a digest
	trace  atomic.Bool // its metadata says it reads traced frames

	ctx    context.Context // ends when the peer stops
	cancel context.CancelFunc

	qmu      sync.Mutex
	queue    [][]byte // encoded changeset frames
	qbytes   int
	sending  bool // a flush is pending or running
	stopped  bool
	lastSend time.Time
	backoff  time.Duration
}

func (g *Gossip) newPeer(site log.SiteID, addr string) *peer {
	ctx, cancel := context.WithCancel(g.run)
	return &peer{g: g, site: site, addr: addr, ctx: ctx, cancel: cancel}
}

// memberlistMembership is production's Membership: hashicorp/memberlist (SWIM) with
// Patina's metadata, refusing nodes of other clusters, plus the join loop.
type memberlistMembership struct {
	g        *Gossip
	ml       *memberlist.Memberlist
	delegate *delegate
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

var _ Membership = (*memberlistMembership)(nil)

func newMemberlist(g *Gossip) *memberlistMembership {
	return &memberlistMembership{g: g, stop: make(chan struct{})}
}

// liveStates is memberlist's current view (suspects included), for Members.
func (m *memberlistMembership) liveStates() map[log.SiteID]MemberState {
	if m.ml == nil {
		return nil
	}
	live := map[log.SiteID]MemberState{}
	for _, n := range m.ml.Members() {
		if site, err := log.ParseSiteID(n.Name); err == nil {
			live[site] = stateOf(n.State)
		}
	}
	return live
}

func stateOf(s memberlist.NodeStateType) MemberState {
	switch s {
	case memberlist.StateAlive:
		return StateAlive
	case memberlist.StateSuspect:
		return StateSuspect
	case memberlist.StateLeft:
		return StateLeft
	}
	return StateDead
}

// delegate implements memberlist's Delegate, EventDelegate, AliveDelegate, MergeDelegate and
// PingDelegate for one node. Its methods run on memberlist's goroutines and must not block.
type delegate struct {
	g    *Gossip
	ev   MemberEvents
	host string
	meta func(host string) []byte
}

func (d *delegate) NodeMeta(limit int) []byte {
	meta := d.meta(d.host)
	if len(meta) > limit {
		d.g.logger.Error("node metadata exceeds memberlist's limit", "size", len(meta), "limit", limit)
		return nil
	}
	return meta
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// check refuses nodes of another cluster (or without Patina metadata).
func (d *delegate) check(n *memberlist.Node) error {
	if n.Name == d.g.name {
		return nil
	}
	m, err := decodeMeta(n.Meta)
	if err != nil {
		d.g.m.refusedCluster.Inc()
		return fmt.Errorf("refuse node %s: %w", n.Name, err)
	}
	if m.Cluster != d.g.cfg.ClusterID {
		d.g.m.refusedCluster.Inc()
		d.g.logger.Warn("refusing a node of another cluster", "node", n.Name, attrAddr, n.Address(),
			"their_cluster", m.Cluster, "our_cluster", d.g.cfg.ClusterID)
		return fmt.Errorf("refuse node %s: %w %q", n.Name, ErrWrongCluster, m.Cluster)
	}
	if m.site.String() != n.Name {
		return fmt.Errorf("refuse node %s: %w: name differs from its site id %v", n.Name, ErrProtocol, m.site)
	}
	return nil
}

func (d *delegate) NotifyAlive(n *memberlist.Node) error { return d.check(n) }

func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := d.check(n); err != nil {
			return err
		}
	}
	return nil
}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.ev.Up(n.Name, n.Address(), n.Meta) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.ev.Up(n.Name, n.Address(), n.Meta) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.ev.Down(n.Name, n.Address()) }

func (d *delegate) AckPayload() []byte { return nil }

func (d *delegate) NotifyPingComplete(n *memberlist.Node, rtt time.Duration, _ []byte) {
	site, err := log.ParseSiteID(n.Name)
	if err != nil {
		return // not a Patina node: check refused it
	}
	d.g.mu.Lock()
	if info := d.g.known[site]; info != nil {
		info.rtt = rtt
	}
	d.g.mu.Unlock()
}

// Start creates the memberlist and starts the join loop.
func (m *memberlistMembership) Start(meta func(host string) []byte, ev MemberEvents) (string, error) {
	g := m.g
	host, port, err := splitHostPort(g.cfg.GossipAddr)
	if err != nil {
		return "", fmt.Errorf("gossip addr: %w", err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	stdLogger := slog.NewLogLogger(g.logger.Handler(), slog.LevelDebug)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: port, Logger: stdLogger,
	})
	if err != nil {
		return "", fmt.Errorf("gossip listen %s: %w", g.cfg.GossipAddr, err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = g.name
	if g.faults != nil {
		mc.Transport = &faultTransport{NetTransport: nt, f: g.faults}
	} else {
		mc.Transport = nt
	}
	bound := nt.GetAutoBindPort()
	if adv := g.cfg.AdvertiseAddr; adv != "" {
		ahost, aport := adv, bound
		if h, p, err := splitHostPort(adv); err == nil {
			ahost, aport = h, p
		}
		ip, err := resolveIP(ahost)
		if err != nil {
			_ = nt.Shutdown()
			return "", fmt.Errorf("advertise addr %q: %w", adv, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ip.String(), aport
	}
	ip, _, err := mc.Transport.FinalAdvertiseAddr(mc.AdvertiseAddr, mc.AdvertisePort)
	if err != nil {
		_ = nt.Shutdown()
		return "", fmt.Errorf("advertise address: %w", err)
	}
	mc.ProbeInterval = g.cfg.ProbeInterval
	mc.ProbeTimeout = g.cfg.ProbeTimeout
	mc.SuspicionMult = g.cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = 3
	mc.GossipInterval = g.cfg.GossipInterval
	mc.GossipNodes = 4
	mc.GossipToTheDeadTime = 5 * time.Second
	mc.PushPullInterval = 0 // Patina's own schedule instead, flat per node in n (pushpull.go)
	mc.TCPTimeout = 2 * time.Second
	mc.DeadNodeReclaimTime = 2 * time.Second
	mc.SecretKey = g.cfg.SecretKey
	mc.Logger = stdLogger
	d := &delegate{g: g, ev: ev, host: ip.String(), meta: meta}
	meta(d.host) // fills in the transport's host before memberlist first reads it
	m.delegate = d
	mc.Delegate, mc.Events, mc.Alive, mc.Merge, mc.Ping = d, d, d, d, d
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return "", fmt.Errorf("memberlist: %w", err)
	}
	m.ml = ml
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.joinLoop()
	}()
	go func() {
		defer m.wg.Done()
		m.pushPullLoop()
	}()
	return ml.LocalNode().Address(), nil
}

// Leave gossips the leaving metadata, then leaves; each step is bounded.
func (m *memberlistMembership) Leave(timeout time.Duration) error {
	if m.ml == nil {
		return nil
	}
	if err := m.ml.UpdateNode(timeout / 2); err != nil {
		m.g.logger.Debug("announce leave", attrErr, err)
	}
	return m.ml.Leave(timeout)
}

// Rejoin announces this node with a fresh incarnation (memberlist's UpdateNode: other
// members that hold it suspect or dead take it back as alive, with its current metadata),
// then joins addrs with a full state exchange each. For gossip's Rejoin (admin.go).
func (m *memberlistMembership) Rejoin(addrs []string, timeout time.Duration) (int, error) {
	if m.ml == nil {
		return 0, errNotOpen
	}
	if err := m.ml.UpdateNode(timeout); err != nil {
		m.g.logger.Debug("rejoin: announce", attrErr, err)
	}
	if len(addrs) == 0 {
		return 0, nil
	}
	return m.ml.Join(addrs)
}

// Close stops the join loop and memberlist.
func (m *memberlistMembership) Close() error {
	var err error
	m.once.Do(func() {
		close(m.stop)
		if m.ml != nil {
			err = m.ml.Shutdown()
		}
		m.wg.Wait()
	})
	return err
}

func resolveIP(host string) (net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip, nil
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	return ips[0], nil
}

// joinLoop joins the bootstrap addresses, retrying with jittered exponential backoff while
// this node is alone, and keeps trying to rejoin members it lost (dead, not left), so that
// the sides of a healed partition find each other again: memberlist alone never does.
func (m *memberlistMembership) joinLoop() {
	g := m.g
	backoff := 100 * time.Millisecond
	attempts := 0
	for {
		wait := g.cfg.ReconnectInterval
		alone := m.ml.NumMembers() <= 1
		if alone && len(g.cfg.Bootstrap) > 0 {
			n, err := m.ml.Join(g.cfg.Bootstrap)
			attempts++
			g.joinTries.Add(1)
			if err != nil && n == 0 {
				lvl := slog.LevelDebug
				if attempts == 1 || attempts%10 == 0 {
					lvl = slog.LevelWarn
				}
				g.logger.Log(g.run, lvl, "join failed; retrying", "bootstrap", g.cfg.Bootstrap, "attempt", attempts, attrErr, err)
				wait = backoff
				backoff = min(backoff*2, g.cfg.JoinBackoffMax)
			} else {
				backoff = 100 * time.Millisecond
				if attempts == 1 || n > 1 {
					g.logger.Debug("joined", "contacted", n)
				}
			}
		}
		if addr := g.lostMember(); addr != "" {
			if n, err := m.ml.Join([]string{addr}); err == nil && n > 0 {
				g.logger.Info("rejoined a lost member", attrAddr, addr)
			}
		}
		t := time.NewTimer(wait + time.Duration(g.rand.IntN(int(wait)/4+1)))
		select {
		case <-m.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// lostMember picks a random member that is dead (not left) and not alive again.
func (g *Gossip) lostMember() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var lost []string
	for _, info := range g.known {
		if info.state == StateDead && g.clock.Now().Sub(info.since) < 72*time.Hour {
			lost = append(lost, info.addr)
		}
	}
	if len(lost) == 0 {
		return ""
	}
	return lost[g.rand.IntN(len(lost))]
}

// alivePeers returns the live peers (copy), this node excluded, sorted by name: a fixed
// order, so that the random choices made from it depend on the Rand alone.
func (g *Gossip) alivePeers() []*peer {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sortedLocked()
	return append([]*peer(nil), g.peerList...)
}

// setPeersLocked notes that peers changed; it needs g.mu. The sorted views are rebuilt
// on their next use, once for a burst of membership events (a node learns a whole
// cluster at once when it joins).
func (g *Gossip) setPeersLocked() { g.peersDirty = true }

// sortedLocked rebuilds peerList and byRegion from peers if they changed; it needs g.mu.
func (g *Gossip) sortedLocked() {
	if !g.peersDirty {
		return
	}
	g.peersDirty = false
	g.peerList = g.peerList[:0]
	for _, p := range g.peers {
		g.peerList = append(g.peerList, p)
	}
	slices.SortFunc(g.peerList, func(a, b *peer) int { return a.site.Compare(b.site) })
	if g.cfg.Region == "" {
		return
	}
	g.byRegion = map[string][]*peer{}
	for _, p := range g.peerList {
		g.byRegion[p.region] = append(g.byRegion[p.region], p)
	}
	g.regionList = g.regionList[:0:0]
	for r := range g.byRegion {
		g.regionList = append(g.regionList, r)
	}
	if _, ok := g.byRegion[g.cfg.Region]; !ok {
		g.regionList = append(g.regionList, g.cfg.Region) // no peer there: nothing to send
	}
	slices.Sort(g.regionList)
}

// regionPeers returns the live peers of region (copy), sorted by name.
func (g *Gossip) regionPeers(region string) []*peer {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sortedLocked()
	return append([]*peer(nil), g.byRegion[region]...)
}

// peerRegion is the region of the live peer site ("" when unknown).
func (g *Gossip) peerRegion(site log.SiteID) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.peers[site]; p != nil {
		return p.region
	}
	return ""
}
