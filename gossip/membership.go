package gossip

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
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
	// Leaving is set just before a graceful leave, so that peers record the node as left
	// rather than dead and do not try to reconnect to it (memberlist's Node.State does not
	// tell them apart).
	Leaving bool `msgpack:"leaving,omitempty"`

	site log.SiteID
}

func decodeMeta(b []byte) (*nodeMeta, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: node without patina metadata", ErrProtocol)
	}
	var m nodeMeta
	if err := msgpack.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: node metadata: %v", ErrProtocol, err)
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
}

// delegate implements memberlist's Delegate, EventDelegate, AliveDelegate, MergeDelegate and
// PingDelegate for one node. Its methods run on memberlist's goroutines and must not block.
type delegate struct {
	g    *Gossip
	meta atomic.Pointer[[]byte]
}

func (d *delegate) NodeMeta(limit int) []byte {
	meta := *d.meta.Load()
	if len(meta) > limit {
		d.g.logger.Error("node metadata exceeds memberlist's limit", "size", len(meta), "limit", limit)
		return nil
	}
	return meta
}

// setMeta (re)builds this node's metadata.
func (d *delegate) setMeta(leaving bool) error {
	g := d.g
	meta, err := msgpack.Marshal(&nodeMeta{V: 1, Site: wireSite(g.site), Cluster: g.cfg.ClusterID, QUIC: g.quicAddr,
		API: g.cfg.APIAddr, Leaving: leaving})
	if err != nil {
		return fmt.Errorf("node metadata: %w", err)
	}
	d.meta.Store(&meta)
	return nil
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

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.g.memberUp(n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.g.memberUp(n) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.g.memberDown(n) }

func (d *delegate) AckPayload() []byte { return nil }

func (d *delegate) NotifyPingComplete(n *memberlist.Node, rtt time.Duration, _ []byte) {
	d.g.mu.Lock()
	if info := d.g.known[n.Name]; info != nil {
		info.rtt = rtt
	}
	d.g.mu.Unlock()
}

func (g *Gossip) memberUp(n *memberlist.Node) {
	if n.Name == g.name {
		return
	}
	m, err := decodeMeta(n.Meta)
	if err != nil || m.Cluster != g.cfg.ClusterID {
		return // refused by the alive delegate already
	}
	if g.faults != nil {
		g.faults.learn(n.Address(), n.Name)
		g.faults.learn(m.QUIC, n.Name)
		if a, err := net.ResolveUDPAddr("udp", m.QUIC); err == nil {
			g.faults.learn(a.String(), n.Name)
		}
	}
	g.mu.Lock()
	info := g.known[n.Name]
	if info == nil {
		info = &memberInfo{}
		g.known[n.Name] = info
	}
	info.meta, info.addr, info.state, info.since = m, n.Address(), StateAlive, time.Now()
	p := g.peers[n.Name]
	fresh := p == nil || p.quicAddr != m.QUIC
	if fresh && !g.closed.Load() {
		if p != nil {
			p.stop()
		}
		g.peers[n.Name] = g.newPeer(n.Name, m.site, m.QUIC)
	}
	g.updateMemberGauges()
	g.mu.Unlock()
	if fresh {
		g.logger.Info("member up", "node", n.Name, attrAddr, n.Address(), "quic", m.QUIC)
		g.joinedOnce.Do(func() { close(g.joined) })
		// A new or returning member: sync soon, so that joins and healed partitions catch
		// up without waiting for the next interval.
		g.triggerSync()
	}
}

func (g *Gossip) memberDown(n *memberlist.Node) {
	if n.Name == g.name {
		return
	}
	state := StateDead
	g.mu.Lock()
	if info := g.known[n.Name]; info != nil {
		if info.meta != nil && info.meta.Leaving {
			state = StateLeft
		}
		info.state, info.since = state, time.Now()
	}
	p := g.peers[n.Name]
	delete(g.peers, n.Name)
	g.updateMemberGauges()
	g.mu.Unlock()
	if p != nil {
		p.stop()
	}
	g.logger.Info("member down", "node", n.Name, attrAddr, n.Address(), "state", state)
}

// updateMemberGauges needs g.mu.
func (g *Gossip) updateMemberGauges() {
	counts := map[MemberState]int{StateAlive: 0, StateSuspect: 0, StateDead: 0, StateLeft: 0}
	for _, info := range g.known {
		counts[info.state]++
	}
	for s, n := range counts {
		g.m.members.WithLabelValues(string(s)).Set(float64(n))
	}
}

func (g *Gossip) openMemberlist() error {
	host, port, err := splitHostPort(g.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip addr: %w", err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	stdLogger := slog.NewLogLogger(g.logger.Handler(), slog.LevelDebug)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: port, Logger: stdLogger,
	})
	if err != nil {
		return fmt.Errorf("gossip listen %s: %w", g.cfg.GossipAddr, err)
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
			return fmt.Errorf("advertise addr %q: %w", adv, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ip.String(), aport
	}
	if g.quicAddr == "" {
		ip, _, err := mc.Transport.FinalAdvertiseAddr(mc.AdvertiseAddr, mc.AdvertisePort)
		if err != nil {
			_ = nt.Shutdown()
			return fmt.Errorf("advertise address: %w", err)
		}
		g.quicAddr = hostPort(ip.String(), g.quicPort)
	}
	mc.ProbeInterval = g.cfg.ProbeInterval
	mc.ProbeTimeout = g.cfg.ProbeTimeout
	mc.SuspicionMult = g.cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = 3
	mc.GossipInterval = g.cfg.GossipInterval
	mc.GossipNodes = 4
	mc.GossipToTheDeadTime = 5 * time.Second
	mc.PushPullInterval = 10 * time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.DeadNodeReclaimTime = 2 * time.Second
	mc.SecretKey = g.cfg.SecretKey
	mc.Logger = stdLogger
	d := &delegate{g: g}
	if err := d.setMeta(false); err != nil {
		_ = nt.Shutdown()
		return err
	}
	g.delegate = d
	mc.Delegate, mc.Events, mc.Alive, mc.Merge, mc.Ping = d, d, d, d, d
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return fmt.Errorf("memberlist: %w", err)
	}
	g.ml = ml
	g.gossipAddr = ml.LocalNode().Address()
	return nil
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
func (g *Gossip) joinLoop() {
	backoff := 100 * time.Millisecond
	attempts := 0
	for {
		wait := g.cfg.ReconnectInterval
		alone := g.ml.NumMembers() <= 1
		if alone && len(g.cfg.Bootstrap) > 0 {
			n, err := g.ml.Join(g.cfg.Bootstrap)
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
			if n, err := g.ml.Join([]string{addr}); err == nil && n > 0 {
				g.logger.Info("rejoined a lost member", attrAddr, addr)
			}
		}
		jitter := time.Duration(rand.Int64N(int64(wait)/4 + 1))
		select {
		case <-g.run.Done():
			return
		case <-time.After(wait + jitter):
		}
	}
}

// lostMember picks a random member that is dead (not left) and not alive again.
func (g *Gossip) lostMember() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var lost []string
	for _, info := range g.known {
		if info.state == StateDead && time.Since(info.since) < 72*time.Hour {
			lost = append(lost, info.addr)
		}
	}
	if len(lost) == 0 {
		return ""
	}
	return lost[rand.IntN(len(lost))]
}

// alivePeers returns the live peers (copy), this node excluded.
func (g *Gossip) alivePeers() []*peer {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*peer, 0, len(g.peers))
	for _, p := range g.peers {
		out = append(out, p)
	}
	return out
}
