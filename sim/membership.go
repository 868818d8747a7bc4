package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/patinadb/patina/gossip"
)

// membershipModel stands in for memberlist, which runs on wall time and cannot be driven
// by the virtual clock. It tells each node's gossip (through MemberEvents) that another
// node is up or down after the delays memberlist's configuration gives (gossip's
// openMemberlist: DefaultLANConfig with Patina's probe, suspicion and gossip settings):
//
//   - A crashed node is probed within one ProbeInterval (every node probes one member per
//     interval), found unresponsive at the end of that interval (direct then indirect
//     probes), suspected, and declared dead after memberlist's suspicion timeout,
//     SuspicionMult * max(1, log10(n)) * ProbeInterval; the news then spreads by gossip,
//     GossipNodes members per GossipInterval, so each node hears it within
//     ceil(log_GossipNodes(n)) intervals.
//   - A restarted node joins through a push-pull with one member (a round trip) and its
//     alive message spreads the same way; it learns every member from that push-pull.
//   - A partition is detected like crashes on both sides; after it heals, each side's
//     join loop retries lost members every ReconnectInterval (+25% jitter).
//
// These delays follow memberlist's own formulas for gossip's configuration; they have not
// yet been checked against a measurement of real memberlist nodes (bench/RESULTS.md says
// so). Membership traffic is not sent through the network model; idleBytesPerNodeS
// estimates it from memberlist's message sizes.
type membershipModel struct {
	s   *Sim
	cfg gossip.Config
	rnd *rand.Rand
}

const (
	gossipNodes      = 4                // mc.GossipNodes in gossip's openMemberlist
	pushPullInterval = 10 * time.Second // mc.PushPullInterval
)

func newMembershipModel(s *Sim, cfg gossip.Config, rnd *rand.Rand) *membershipModel {
	return &membershipModel{s: s, cfg: cfg, rnd: rnd}
}

// reconsider makes o's view of x the truth now (x up and reachable from o), telling o's
// gossip when it changes.
func (m *membershipModel) reconsider(o, x *node) {
	if o == x || !o.up {
		return
	}
	want := x.up && m.s.reachable(o, x)
	if o.view[x.idx] == want {
		return
	}
	o.view[x.idx] = want
	if want {
		o.ev.Up(x.name, x.addr, x.meta)
	} else {
		o.ev.Down(x.name, x.addr)
	}
}

// spread is how long gossip takes to carry news to one more node: uniform up to the
// dissemination time.
func (m *membershipModel) spread() time.Duration {
	n := float64(len(m.s.nodes))
	rounds := math.Ceil(math.Log(n) / math.Log(gossipNodes))
	return time.Duration(m.rnd.Float64() * rounds * float64(m.cfg.GossipInterval))
}

// detect is the time from a node's failure to its being declared dead by its prober.
func (m *membershipModel) detect() time.Duration {
	n := float64(len(m.s.nodes))
	suspicion := time.Duration(float64(m.cfg.SuspicionMult) * math.Max(1, math.Log10(n)) * float64(m.cfg.ProbeInterval))
	probe := time.Duration(m.rnd.Float64() * float64(m.cfg.ProbeInterval))
	return probe + m.cfg.ProbeInterval + suspicion
}

func (m *membershipModel) crashed(x *node) {
	t := m.s.l.now + m.detect()
	for _, o := range m.s.nodes {
		o := o
		m.s.l.at(t+m.spread(), func() { m.reconsider(o, x) })
	}
}

func (m *membershipModel) restarted(x *node) {
	// The push-pull with a member: one round trip to a random node.
	peer := m.s.nodes[m.rnd.IntN(len(m.s.nodes))]
	t := m.s.l.now + m.s.net.rtt.rtt[x.region][peer.region]
	m.s.l.at(t, func() {
		for _, o := range m.s.nodes {
			m.reconsider(x, o)
		}
	})
	for _, o := range m.s.nodes {
		o := o
		m.s.l.at(t+m.spread(), func() { m.reconsider(o, x) })
	}
}

// across calls f for every ordered pair of nodes on the two sides of the cut.
func (m *membershipModel) across(f func(o, x *node)) {
	for _, o := range m.s.nodes {
		for _, x := range m.s.nodes {
			if (o.region == m.s.cut) != (x.region == m.s.cut) {
				f(o, x)
			}
		}
	}
}

func (m *membershipModel) partitioned() {
	// Each node on one side is found dead by the other side as a crash would be.
	detected := make([]time.Duration, len(m.s.nodes))
	for i := range detected {
		detected[i] = m.s.l.now + m.detect()
	}
	m.across(func(o, x *node) {
		m.s.l.at(detected[x.idx]+m.spread(), func() { m.reconsider(o, x) })
	})
}

func (m *membershipModel) healed() {
	// The first retry of any node on either side reconnects the two memberlists; a
	// push-pull later every node hears of the other side by gossip.
	first := time.Duration(m.rnd.Float64() * float64(m.cfg.ReconnectInterval) * 1.25 /
		math.Max(1, float64(len(m.s.nodes))/4))
	t := m.s.l.now + first + m.s.net.rtt.rtt[0][m.s.cfg.Regions-1]
	m.across(func(o, x *node) {
		m.s.l.at(t+m.spread(), func() { m.reconsider(o, x) })
	})
}

// Membership traffic, estimated from memberlist's messages: each node sends a ping
// (about 90 bytes of payload plus 28 of UDP/IP) every ProbeInterval and answers one
// (about 20 plus 28), and takes part in a push-pull of the whole member list (about 200
// bytes per member: name, address, Patina's metadata, incarnation, state) every
// PushPullInterval, which memberlist scales up by ceil(log2(n) - log2(32)) + 1 above 32
// nodes.
func (m *membershipModel) idleBytesPerNodeS(n int) float64 {
	const ping, ack, perMember = 90 + 28, 20 + 28, 200
	probes := float64(ping+ack) / m.cfg.ProbeInterval.Seconds()
	interval := pushPullInterval.Seconds()
	if n > 32 {
		interval *= math.Ceil(math.Log2(float64(n))-math.Log2(32)) + 1
	}
	// As initiator it sends its list once per interval; as responder, once more on average.
	pushPull := 2 * float64(n*perMember) / interval
	return probes + pushPull
}
