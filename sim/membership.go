package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/patinadb/patina/gossip"
)

// membershipModel stands in for memberlist, which runs on wall time and cannot be driven
// by the virtual clock. It tells each node's gossip (through MemberEvents) that another
// node is up or down after delays measured on real memberlist nodes with gossip's
// configuration (`patina bench membership`, calibrate.go; the figures and the method are in
// bench/RESULTS.md), scaled to n nodes by memberlist's own formulas:
//
//   - A crashed node is found dead by its first observer calDetect after the crash
//     (measured at calNodes nodes: a probe within one ProbeInterval, the failed direct and
//     indirect probes, then the suspicion timeout). The suspicion timeout grows with
//     SuspicionMult * max(1, log10(n)) * ProbeInterval, so at n nodes the detection is
//     calDetect plus the difference of that timeout between n and calNodes. The other nodes
//     hear of it uniformly within the measured spread (last observer minus first), scaled
//     by the gossip rounds dissemination takes, ceil(log_GossipNodes(n)).
//   - A restarted node joins through a push-pull with one member (a round trip) and the
//     others see it alive within the measured join delays, scaled the same way.
//   - A partition is detected like crashes on both sides; after it heals, the first
//     reconnect (each node retries lost members every ReconnectInterval) comes after the
//     measured heal delay at calNodes, shorter with more nodes retrying (by n/calNodes),
//     and the news spreads as above.
//
// Membership traffic is not sent through the network model; idleBytesPerNodeS estimates
// it from memberlist's message sizes.
type membershipModel struct {
	s   *Sim
	cfg gossip.Config
	rnd *rand.Rand
}

const gossipNodes = 4 // mc.GossipNodes in gossip's openMemberlist

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

// Measured with `patina bench membership --nodes 5 --rounds 3` (real memberlist and QUIC
// on loopback, gossip.DefaultConfig's failure detection) on the shared 2-core machine:
// the first observer saw a cut-off node dead after 913 ms and the last after 941 ms; a
// node whose cut ended was seen alive again after 987 ms (first) to 1,038 ms (last); a
// joiner was seen by the first member after 125 ms and by the last after 250 ms. (At 3
// nodes: 918 ms; 1,043 to 1,083 ms; 10 to 50 ms.)
const (
	calNodes        = 5
	calDetect       = 913 * time.Millisecond
	calDetectSpread = (941 - 913) * time.Millisecond
	calHeal         = 987 * time.Millisecond
	calHealSpread   = (1038 - 987) * time.Millisecond
	calJoin         = 125 * time.Millisecond
	calJoinSpread   = (250 - 125) * time.Millisecond
)

// rounds is how many gossip rounds memberlist takes to tell n nodes (GossipNodes each).
func rounds(n int) float64 { return math.Max(1, math.Ceil(math.Log(float64(n))/math.Log(gossipNodes))) }

// spread is how long gossip takes to carry news to one more node: uniform up to the
// measured spread, scaled from calNodes to n nodes by the rounds it takes.
func (m *membershipModel) spread(measured time.Duration) time.Duration {
	scale := rounds(len(m.s.nodes)) / rounds(calNodes)
	return time.Duration(m.rnd.Float64() * scale * float64(measured))
}

// suspicion is memberlist's minimum suspicion timeout at n nodes.
func (m *membershipModel) suspicion(n int) time.Duration {
	return time.Duration(float64(m.cfg.SuspicionMult) * math.Max(1, math.Log10(float64(n))) * float64(m.cfg.ProbeInterval))
}

// detect is the time from a node's failure to its first observer declaring it dead: the
// measured delay, with the suspicion timeout of n nodes instead of calNodes, and the
// probe's phase (uniform within an interval) around the measured mean.
func (m *membershipModel) detect() time.Duration {
	n := len(m.s.nodes)
	phase := time.Duration((m.rnd.Float64() - 0.5) * float64(m.cfg.ProbeInterval))
	return calDetect + m.suspicion(n) - m.suspicion(calNodes) + phase
}

func (m *membershipModel) crashed(x *node) {
	t := m.s.l.now + m.detect()
	for _, o := range m.s.nodes {
		o := o
		m.s.l.at(t+m.spread(calDetectSpread), func() { m.reconsider(o, x) })
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
	// The others see it alive as measured (the join's first observer, then the spread).
	for _, o := range m.s.nodes {
		o := o
		m.s.l.at(t+calJoin+m.spread(calJoinSpread), func() { m.reconsider(o, x) })
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
		m.s.l.at(detected[x.idx]+m.spread(calDetectSpread), func() { m.reconsider(o, x) })
	})
}

func (m *membershipModel) healed() {
	// The first retry of any node on either side reconnects the two memberlists; a
	// push-pull later every node hears of the other side by gossip.
	// measured at calNodes (uniform around it), sooner with more nodes retrying.
	first := time.Duration(2 * m.rnd.Float64() * float64(calHeal) / math.Max(1, float64(len(m.s.nodes))/calNodes))
	t := m.s.l.now + first + m.s.net.rtt.rtt[0][m.s.cfg.Regions-1]
	m.across(func(o, x *node) {
		m.s.l.at(t+m.spread(calHealSpread), func() { m.reconsider(o, x) })
	})
}

// Membership traffic, estimated from memberlist's messages: each node sends a ping
// (about 90 bytes of payload plus 28 of UDP/IP) every ProbeInterval and answers one
// (about 20 plus 28), and takes part in a push-pull of the whole member list (about 200
// bytes per member: name, address, Patina's metadata, incarnation, state) on gossip's own
// anti-entropy schedule, gossip.PushPullEvery: the function production's push-pull loop
// waits by (gossip/pushpull.go), so the model and the code cannot drift apart. Before it,
// memberlist's own push-pull ran every 10 s scaled by ceil(log2(n) - log2(32)) + 1 above
// 32 nodes, which left this figure growing with n (2,163, 3,230 and 7,497 B/node/s at 100,
// 300 and 1,000 nodes).
func (m *membershipModel) idleBytesPerNodeS(n int) float64 {
	const ping, ack, perMember = 90 + 28, 20 + 28, 200
	probes := float64(ping+ack) / m.cfg.ProbeInterval.Seconds()
	interval := gossip.PushPullEvery(m.cfg.PushPullInterval, n).Seconds()
	// As initiator it sends its list once per interval; as responder, once more on average.
	pushPull := 2 * float64(n*perMember) / interval
	return probes + pushPull
}
