package gossip

import (
	"context"
	"io"
	"math/rand/v2"
	"time"

	"github.com/patinadb/patina/log"
)

// The seams: gossip takes its clock, its randomness, its transport and its membership
// through the four small interfaces below. A zero Config field means production's: the
// wall clock, the global (locked) random source, QUIC (quic-go) and memberlist. The
// simulator (package sim) fills them with a virtual clock, a seeded source, a virtual
// network and simulated membership, and then drives the very same protocol code on one
// goroutine: every protocol decision (peer choice, hop budget, queues and batching, sync
// scheduling, vector exchange, range streaming) is made here, in gossip, never in an
// implementation of a seam. See doc.go for the contract each one keeps.

// Clock is gossip's time: Now for timestamps and lags, AfterFunc for every protocol timer
// (batch delays, send backoff, sync rounds).
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once, d from now, unless stopped first. The wall clock calls it on
	// its own goroutine (time.AfterFunc); a virtual clock calls it from its event loop.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it did.
	Stop() bool
}

// Rand is gossip's randomness (peer choice, jitter). Production's is safe for concurrent
// use; a simulator's is seeded and called from one goroutine.
type Rand interface {
	// IntN returns a uniform int in [0, n); n > 0.
	IntN(n int) int
	// Float64 returns a uniform float64 in [0, 1).
	Float64() float64
}

// Transport carries gossip's two kinds of streams between nodes. It moves bytes only:
// what to send, to whom and when is decided by gossip.
type Transport interface {
	// Listen starts serving streams from peers with in and returns the address peers reach
	// this node at. Its host is empty when bound to a wildcard address; the membership's
	// advertised host is used then.
	Listen(in Inbound) (addr string, err error)
	// Send writes batch (whole broadcast frames) to the peer at addr, after whatever was
	// sent to it before. It may block; an error means the batch is lost (sync repairs it).
	// Send is never called concurrently for one addr.
	Send(ctx context.Context, addr string, batch []byte) error
	// Sync runs session s as the client of the peer at addr: s.WriteVector, then
	// s.ReadVector and, on success, s.SendMissing alongside s.Receive. It calls done
	// exactly once with the outcome (ErrBusy when the peer refused), before returning or
	// later. ctx bounds the session.
	Sync(ctx context.Context, addr string, s SyncSession, done func(error))
	// Forget drops what the transport keeps for the peer at addr (it left or moved).
	Forget(addr string)
	// Close stops serving and closes every connection.
	Close() error
}

// Inbound is gossip's side of what a Transport receives. A Transport identifies the
// sending node (production: the QUIC stream's hello, checked against the cluster id).
type Inbound interface {
	// Broadcast applies the broadcast frames read from r until EOF, sent by from, and
	// forwards what was new to this node.
	Broadcast(from log.SiteID, r io.Reader) error
	// ServeSync opens a session served to from: ReadVector, WriteVector, then SendMissing
	// alongside Receive, then End. ErrBusy (and no session) when this node serves
	// MaxServedSyncs already; the transport tells the client so.
	ServeSync(from log.SiteID) (SyncSession, error)
}

// SyncSession is one side of one sync session: vectors (or digests of them) are swapped,
// then each side streams what the other lacks and a done frame. Every read of one session
// passes the same reader.
type SyncSession interface {
	WriteVector(w io.Writer) error
	ReadVector(r io.Reader) error
	SendMissing(w io.Writer) error
	Receive(r io.Reader) error
	// Ready reports whether SendMissing can run before Receive has read anything: a
	// served session whose client opened with a digest that differed needs the client's
	// vector first, which Receive reads, and its SendMissing waits for it. A transport
	// that runs SendMissing alongside Receive (QUIC) need not ask; one that runs a
	// session's steps one after the other (the simulator) calls Receive first when Ready
	// is false.
	Ready() bool
	// End records the outcome of a served session and frees its slot (the client's outcome
	// goes to Transport.Sync's done instead; End is a no-op for it).
	End(err error)
}

// Membership tells gossip which nodes are alive. Production's is memberlist (SWIM); the
// simulator's reports joins and failures with delays measured from that configuration.
type Membership interface {
	// Start joins the cluster and reports other nodes to ev from then on, on any
	// goroutine. meta returns this node's metadata (opaque to the membership); call it
	// again whenever it may have changed. Its argument is the host the membership
	// advertises, which fills in an empty host of the transport's address. Start returns
	// the advertised gossip address.
	Start(meta func(host string) []byte, ev MemberEvents) (addr string, err error)
	// Leave tells the others that this node leaves (its metadata now says so), then
	// leaves, within timeout.
	Leave(timeout time.Duration) error
	// Close stops it; safe to call when Start failed or never ran.
	Close() error
}

// MemberEvents receives membership changes; gossip implements it.
type MemberEvents interface {
	// Up reports a node alive (joined, or its metadata changed) at gossip address addr.
	Up(name, addr string, meta []byte)
	// Down reports a node dead or left.
	Down(name, addr string)
}

// wallClock is production's Clock.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// globalRand is production's Rand: math/rand/v2's global source, safe for concurrent use.
type globalRand struct{}

func (globalRand) IntN(n int) int   { return rand.IntN(n) }
func (globalRand) Float64() float64 { return rand.Float64() }

// shuffle is rand.Shuffle over a Rand.
func shuffle(r Rand, n int, swap func(i, j int)) {
	for i := n - 1; i > 0; i-- {
		swap(i, r.IntN(i+1))
	}
}

// pick moves k uniformly chosen elements of s to its front (a partial Fisher-Yates
// shuffle: k draws, not len(s)).
func pick[T any](r Rand, s []T, k int) {
	for i := 0; i < k && i < len(s)-1; i++ {
		j := i + r.IntN(len(s)-i)
		s[i], s[j] = s[j], s[i]
	}
}

// jitter returns d scaled by a uniform factor in [1-f, 1+f).
func jitter(r Rand, d time.Duration, f float64) time.Duration {
	return time.Duration(float64(d) * (1 - f + 2*f*r.Float64()))
}
