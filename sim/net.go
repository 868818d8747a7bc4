package sim

import (
	"math"
	"math/rand/v2"
	"time"
)

// The network model. Every message between two nodes (a batch of broadcast frames, or one
// leg of a sync session) goes through send, which decides when it arrives or that it is
// lost:
//
//   - Propagation: half the round trip between the two nodes' regions (the published
//     table, regions.go), or half of intraRegionRTT within a region.
//   - Bandwidth: each directed link serializes its messages at Bandwidth bits/s, one after
//     the other.
//   - Loss: QUIC carries gossip, so a lost packet delays its stream rather than losing
//     data. Each of a message's packets (maxPacket bytes) is lost with probability Loss;
//     every round with a loss costs one more round trip plus QUIC's ack delay before the
//     retransmission arrives, and a stream delivers in order (head-of-line blocking).
//   - Partitions and crashes: a message whose receiver is down, restarted since it was
//     sent, or on the other side of a partition is lost, and its sender learns it after
//     QUIC's idle timeout (lostAfter).
//   - Processing: each node handles what arrives one message at a time, PerMessage plus
//     PerByte of its size (from the real receive path's measurements, cost.go), so a busy
//     node queues.
type network struct {
	l     *loop
	rnd   *rand.Rand
	rtt   *rttTable
	cfg   NetConfig
	links map[[2]int]*linkState
	// counters of what was sent (every message, lost or not)
	msgs, bytes uint64
}

// NetConfig is the network model's parameters.
type NetConfig struct {
	// Bandwidth of each directed link, bits/s.
	Bandwidth float64
	// Loss is the probability that a packet is lost.
	Loss float64
	// PerMessage and PerByte are a receiver's processing time per message and per byte.
	PerMessage time.Duration
	PerByte    time.Duration
}

const (
	maxPacket = 1200 // QUIC payload bytes per packet, roughly
	ackDelay  = 25 * time.Millisecond
	// lostAfter is how long a sender waits before it notices a message was lost to a dead
	// or unreachable node: QUIC's idle timeout in gossip's transport.
	lostAfter = 5 * time.Second
)

type linkState struct {
	busyUntil   time.Duration // the link serializes
	lastArrival time.Duration // in order
}

func newNetwork(l *loop, rnd *rand.Rand, rtt *rttTable, cfg NetConfig) *network {
	return &network{l: l, rnd: rnd, rtt: rtt, cfg: cfg, links: map[[2]int]*linkState{}}
}

// oneWay is the propagation delay between two regions.
func (n *network) oneWay(ra, rb int) time.Duration { return n.rtt.rtt[ra][rb] / 2 }

// transit returns when a message of size bytes sent now from a (region ra) to b (region
// rb) arrives, queueing it on the link.
func (n *network) transit(a, b, ra, rb, size int) time.Duration {
	n.msgs++
	n.bytes += uint64(size)
	lk := n.links[[2]int{a, b}]
	if lk == nil {
		lk = &linkState{}
		n.links[[2]int{a, b}] = lk
	}
	start := max(n.l.now, lk.busyUntil)
	ser := time.Duration(float64(size*8) / n.cfg.Bandwidth * float64(time.Second))
	lk.busyUntil = start + ser
	at := lk.busyUntil + n.oneWay(ra, rb)
	if n.cfg.Loss > 0 {
		packets := max(1, (size+maxPacket-1)/maxPacket)
		rtt := n.rtt.rtt[ra][rb]
		// Each round, every packet still missing is lost again with probability Loss.
		for missing := packets; missing > 0; {
			lost := n.binomial(missing, n.cfg.Loss)
			if lost == 0 {
				break
			}
			at += rtt + ackDelay
			missing = lost
		}
	}
	at = max(at, lk.lastArrival)
	lk.lastArrival = at
	return at
}

// binomial draws how many of k packets are lost.
func (n *network) binomial(k int, p float64) int {
	if k > 64 {
		// Normal approximation for large messages.
		mean, sd := float64(k)*p, math.Sqrt(float64(k)*p*(1-p))
		return max(0, int(math.Round(mean+sd*n.rnd.NormFloat64())))
	}
	c := 0
	for range k {
		if n.rnd.Float64() < p {
			c++
		}
	}
	return c
}

// processing is a receiver's time to handle a message of size bytes.
func (n *network) processing(size int) time.Duration {
	return n.cfg.PerMessage + time.Duration(size)*n.cfg.PerByte
}
