package gossip

import (
	"slices"
	"time"
)

// Membership anti-entropy. memberlist's own periodic push-pull (a full exchange of the
// member list, about 200 bytes per member, with one random live member) repeats every
// PushPullInterval scaled by only ceil(log2 n - log2 32) + 1: the bytes each node sends for
// it grow almost linearly with n (2.2, 3.2 and 7.5 KB/node/s at 100, 300 and 1,000 nodes
// with a 10 s interval). Patina turns it off (PushPullInterval 0 in memberlist's config)
// and runs the same exchange itself on PushPullEvery's schedule, which grows in proportion
// to n above PushPullScaleNodes, so that per-node push-pull traffic is the same at any
// size. The simulator's membership model uses the same function.
//
// What push-pull is not needed for, and why a long period is safe: failure detection
// (probes) and the spread of alive, suspect and dead news (memberlist's piggybacked gossip)
// do not use it; a node's first push-pull is its join (memberlist.Join); and after a
// partition heals every node that lost members rejoins one of them every
// ReconnectInterval (joinLoop), a push-pull with the other side, whatever this period. What
// is left to it is repairing a view that missed some gossip, which the full exchange
// fixes within one period: 10 s up to 32 members, 31 s at 100, 94 s at 300, 5.2 min at
// 1,000 (memberlist's own WAN profile, 60 s scaled by log2, is 6 min at 1,000).

// PushPullScaleNodes is the member count above which the push-pull period grows with n:
// memberlist's own threshold (pushPullScaleThreshold), so small clusters keep its period.
const PushPullScaleNodes = 32

// PushPullEvery is the mean period between one node's push-pulls in a cluster of members
// live members: base up to PushPullScaleNodes, then base * members / PushPullScaleNodes.
// Each push-pull sends the whole member list each way, so one node sends about
// 2 * members * bytesPerMember / PushPullEvery per second: flat in members.
func PushPullEvery(base time.Duration, members int) time.Duration {
	if members <= PushPullScaleNodes {
		return base
	}
	return time.Duration(int64(base) * int64(members) / PushPullScaleNodes)
}

// pushPullLoop runs the anti-entropy schedule until Close. The first push-pull comes after
// a random stagger within one base period (as memberlist's own), each next one after
// PushPullEvery of the live members, jittered by +-25% so that nodes started together
// drift apart. It wakes at least once per base period to recompute the period, so that a
// cluster that shrank is not left waiting out a long one.
func (m *memberlistMembership) pushPullLoop() {
	g := m.g
	base := g.cfg.PushPullInterval
	last := time.Now()
	period := time.Duration(g.rand.Float64() * float64(base))
	jitter := 1.0
	g.m.pushPullPeriod.Set(PushPullEvery(base, m.alive()).Seconds())
	for {
		wait := min(time.Until(last.Add(period)), base)
		t := time.NewTimer(max(wait, 0))
		select {
		case <-m.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if time.Now().Before(last.Add(period)) {
			period = time.Duration(jitter * float64(PushPullEvery(base, m.alive())))
			continue
		}
		m.pushPull()
		last = time.Now()
		jitter = 0.75 + 0.5*g.rand.Float64()
		period = time.Duration(jitter * float64(PushPullEvery(base, m.alive())))
		g.m.pushPullPeriod.Set(period.Seconds())
	}
}

// alive counts the live members, this node included, from gossip's own record of
// membership events (memberlist's Members returns its internal nodes, which it goes on
// updating under its own lock: reading them here would race).
func (m *memberlistMembership) alive() int {
	return len(m.g.aliveAddrs()) + 1
}

// aliveAddrs returns the membership (memberlist) addresses of the live members, this node
// excluded, in a fixed order (so that the random pick depends on the Rand alone).
func (g *Gossip) aliveAddrs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var addrs []string
	for _, info := range g.known {
		if info.state == StateAlive && info.addr != "" {
			addrs = append(addrs, info.addr)
		}
	}
	slices.Sort(addrs)
	return addrs
}

// pushPull exchanges the member list with one random live member, through memberlist's
// Join (a push-pull with each address it is given; the only public way to start one).
func (m *memberlistMembership) pushPull() {
	addrs := m.g.aliveAddrs()
	if len(addrs) == 0 {
		return
	}
	addr := addrs[m.g.rand.IntN(len(addrs))]
	if _, err := m.ml.Join([]string{addr}); err != nil {
		m.g.m.pushPulls.WithLabelValues("error").Inc()
		m.g.logger.Debug("membership push-pull", attrAddr, addr, attrErr, err)
		return
	}
	m.g.m.pushPulls.WithLabelValues("ok").Inc()
}
