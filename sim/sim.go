package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/patinadb/patina/gossip"
	"github.com/patinadb/patina/log"
)

// Config is one simulated run.
type Config struct {
	Nodes   int
	Regions int
	Seed    uint64
	// Rate is cluster-wide writes per second, each at a random live node, for Duration of
	// virtual time.
	Rate     float64
	Duration time.Duration
	// Loss is the packet loss probability of every link.
	Loss float64
	// Crash is the fraction of nodes that crash (no graceful leave) during the writes and
	// restart a few seconds later on the same log.
	Crash float64
	// Partition cuts one region off from the others for the middle of the writes.
	Partition bool
	// Flat gives the nodes no gossip Region: region-blind random fanout. Otherwise each
	// node's Config.Region is its region's name.
	Flat bool
	// Net overrides the network model's bandwidth and processing costs (zero: defaults).
	Net NetConfig
	// Idle is the window without writes over which idle traffic is measured (default 10 s).
	Idle time.Duration
	// Drain bounds the virtual time after the writes for delivery and convergence
	// (default 120 s).
	Drain time.Duration
	// Gossip adjusts the protocol's parameters (from gossip.DefaultConfig).
	Gossip func(*gossip.Config)
	// Progress, when set, is called with the fraction of the run done.
	Progress func(frac float64)
}

// Result is what a run measured. Times are virtual except WallS and CPUS.
type Result struct {
	Nodes     int     `json:"nodes"`
	Regions   int     `json:"regions"`
	Seed      uint64  `json:"seed"`
	Rate      float64 `json:"rate"`
	DurationS float64 `json:"duration_s"`
	Loss      float64 `json:"loss"`
	Crashes   int     `json:"crashes"`
	Partition bool    `json:"partition"`
	Flat      bool    `json:"flat"`

	Writes int `json:"writes"`
	// Delivered is the fraction of (write, other node) pairs whose write reached that
	// node's log by the end; Converged that every log holds the same versions.
	Delivered float64 `json:"delivered"`
	Converged bool    `json:"converged"`
	// P50Ms, P99Ms, MaxMs: from a write's commit at its origin to its append in another
	// node's log, over every delivered pair.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// MsgsPerWrite and BytesPerWrite count every message between nodes (broadcast batches
	// and sync legs) from the first write until every write was delivered everywhere (or
	// the drain ended), per write. Broadcast* count broadcast batches alone.
	MsgsPerWrite           float64 `json:"msgs_per_write"`
	BytesPerWrite          float64 `json:"bytes_per_write"`
	BroadcastMsgsPerWrite  float64 `json:"broadcast_msgs_per_write"`
	BroadcastBytesPerWrite float64 `json:"broadcast_bytes_per_write"`
	// IdleBytesPerNodeS is sync (measured) plus membership (modelled, membership.go)
	// traffic sent per node per second while nobody writes, after the writes (every log
	// holds versions of every node that wrote: what a sync vector carries grows with them).
	// IdleSyncEmptyBytesPerNodeS is the sync part before the first write (empty logs).
	IdleBytesPerNodeS           float64 `json:"idle_bytes_per_node_s"`
	IdleSyncBytesPerNodeS       float64 `json:"idle_sync_bytes_per_node_s"`
	IdleMembershipBytesPerNodeS float64 `json:"idle_membership_bytes_per_node_s"`
	IdleSyncEmptyBytesPerNodeS  float64 `json:"idle_sync_empty_bytes_per_node_s"`
	// ConvergedAtS is the virtual time from the first write until every write was
	// everywhere and the logs were equal (0 if never).
	ConvergedAtS float64 `json:"converged_at_s"`
	SyncSessions uint64  `json:"sync_sessions"`
	Events       uint64  `json:"events"`
	WallS        float64 `json:"wall_s"`
	CPUS         float64 `json:"cpu_s"`
}

// Defaults of the network model.
const (
	DefaultBandwidth = 1e9 // bits/s per directed link
)

type writeKey struct {
	site log.SiteID
	v    log.Version
}

// Sim is one run in progress.
type Sim struct {
	cfg   Config
	l     *loop
	net   *network
	mem   *membershipModel
	rnd   *rand.Rand // workload and faults
	fs    vfs.FS
	nodes []*node
	addr  map[string]*node
	gcfg  gossip.Config

	writes    map[writeKey]time.Duration
	lat       []time.Duration
	cut       int  // region cut off, -1 for none
	cutActive bool // the partition is on
	syncs     uint64
	bmsgs     uint64
	bbytes    uint64
}

// node is one simulated agent: a real log.Store (Pebble on the in-memory filesystem) and a
// real gossip.Gossip whose seams are the simulator's.
type node struct {
	s      *Sim
	idx    int
	region int
	site   log.SiteID
	name   string
	addr   string
	store  *log.Store
	g      *gossip.Gossip
	in     gossip.Inbound
	ev     gossip.MemberEvents
	meta   []byte
	up     bool
	epoch  int
	busy   time.Duration // processing queue
	view   []bool        // what this node's membership says is alive
	grand  *rand.Rand
	joined time.Duration
}

var discard = slog.New(slog.DiscardHandler)

// Run runs cfg to the end and returns its figures. Same cfg, same figures (wall_s and
// cpu_s aside). When ctx ends first, Run stops within a few milliseconds of wall time and
// returns an error that wraps ctx.Err() and says how far the run got.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Nodes < 2 {
		return nil, errors.New("nodes must be at least 2")
	}
	if cfg.Regions == 0 {
		cfg.Regions = 1
	}
	if cfg.Regions > cfg.Nodes {
		return nil, fmt.Errorf("regions (%d) must not exceed nodes (%d)", cfg.Regions, cfg.Nodes)
	}
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("rate and duration must be positive")
	}
	if cfg.Loss < 0 || cfg.Loss >= 1 || cfg.Crash < 0 || cfg.Crash > 0.5 {
		return nil, errors.New("loss must be in [0, 1) and crash in [0, 0.5]")
	}
	if cfg.Partition && cfg.Regions < 2 {
		return nil, errors.New("a partition cuts a region off from the others: it needs at least 2 regions")
	}
	if cfg.Idle == 0 {
		cfg.Idle = 10 * time.Second
	}
	if cfg.Drain == 0 {
		cfg.Drain = 120 * time.Second
	}
	if cfg.Net.Bandwidth == 0 {
		cfg.Net.Bandwidth = DefaultBandwidth
	}
	if cfg.Net.PerMessage == 0 && cfg.Net.PerByte == 0 {
		cfg.Net.PerMessage, cfg.Net.PerByte = measuredPerMessage, measuredPerByte
	}
	cfg.Net.Loss = cfg.Loss
	rtt, err := loadRTT(cfg.Regions)
	if err != nil {
		return nil, err
	}
	wall := time.Now()
	cpu0 := cpuTime()
	s := &Sim{cfg: cfg, l: &loop{done: ctx.Done()}, rnd: newRand(cfg.Seed, 1), fs: vfs.NewMem(), addr: map[string]*node{},
		writes: map[writeKey]time.Duration{}, cut: -1}
	s.net = newNetwork(s.l, newRand(cfg.Seed, 2), rtt, cfg.Net)
	s.gcfg = gossip.DefaultConfig()
	s.gcfg.ClusterID = "sim"
	s.gcfg.Logger = discard
	if cfg.Gossip != nil {
		cfg.Gossip(&s.gcfg)
	}
	s.mem = newMembershipModel(s, s.gcfg, newRand(cfg.Seed, 3))
	defer s.close()
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	// interrupted is the error of a run whose context ended: how far it got, and why.
	var t0, end time.Duration
	interrupted := func() error {
		if ctx.Err() == nil {
			return nil
		}
		what := "before the writes"
		if end > t0 {
			what = fmt.Sprintf("%.0f%% of the writes and drain", 100*float64(s.l.now-t0)/float64(end-t0))
		}
		return fmt.Errorf("interrupted at %.1fs of virtual time (%s, %d events): %w",
			s.l.now.Seconds(), what, s.l.events, ctxErr(ctx))
	}
	// Warm up (first syncs), then measure idle traffic.
	s.l.runUntil(2*time.Second, nil)
	idle0 := s.net.bytes
	idleStart := s.l.now
	s.l.runUntil(idleStart+cfg.Idle, nil)
	if err := interrupted(); err != nil {
		return nil, err
	}
	res := &Result{Nodes: cfg.Nodes, Regions: cfg.Regions, Seed: cfg.Seed, Rate: cfg.Rate,
		DurationS: cfg.Duration.Seconds(), Loss: cfg.Loss, Partition: cfg.Partition, Flat: cfg.Flat}
	res.IdleSyncEmptyBytesPerNodeS = float64(s.net.bytes-idle0) / float64(cfg.Nodes) / cfg.Idle.Seconds()

	// Writes and faults.
	t0 = s.l.now
	msgs0, bytes0, b0, bb0, syncs0 := s.net.msgs, s.net.bytes, s.bmsgs, s.bbytes, s.syncs
	nWrites := s.scheduleWrites(t0)
	res.Crashes = s.scheduleCrashes(t0)
	if cfg.Partition {
		s.schedulePartition(t0)
	}
	total := nWrites * (cfg.Nodes - 1)
	end = t0 + cfg.Duration + cfg.Drain
	done := func() bool { return len(s.lat) == total }
	report := func() {
		if cfg.Progress != nil {
			cfg.Progress(float64(s.l.now-t0) / float64(end-t0))
		}
	}
	for step := t0; step < t0+cfg.Duration; step += time.Second {
		s.l.runUntil(min(step+time.Second, t0+cfg.Duration), nil)
		if err := interrupted(); err != nil {
			return nil, err
		}
		report()
	}
	converged := false
	for !converged && s.l.now < end {
		if done() && s.converged() {
			converged = true
			break
		}
		s.l.runUntil(s.l.now+time.Second, func() bool { return done() })
		if err := interrupted(); err != nil {
			return nil, err
		}
		report()
	}
	if !converged && done() && s.converged() {
		converged = true
	}
	if converged {
		res.ConvergedAtS = (s.l.now - t0).Seconds()
	}
	res.Writes = nWrites
	res.Converged = converged
	if total > 0 {
		res.Delivered = float64(len(s.lat)) / float64(total)
	}
	slices.Sort(s.lat)
	if n := len(s.lat); n > 0 {
		q := func(p float64) float64 { return ms(s.lat[min(int(p*float64(n)), n-1)]) }
		res.P50Ms, res.P99Ms, res.MaxMs = q(0.50), q(0.99), ms(s.lat[n-1])
	}
	if nWrites > 0 {
		w := float64(nWrites)
		res.MsgsPerWrite = float64(s.net.msgs-msgs0) / w
		res.BytesPerWrite = float64(s.net.bytes-bytes0) / w
		res.BroadcastMsgsPerWrite = float64(s.bmsgs-b0) / w
		res.BroadcastBytesPerWrite = float64(s.bbytes-bb0) / w
	}
	res.SyncSessions = s.syncs - syncs0
	// Idle again, now with the writes in every log: a second of quiet for the last
	// sessions, then the window.
	s.l.runUntil(s.l.now+time.Second, nil)
	idle1, idleStart1 := s.net.bytes, s.l.now
	s.l.runUntil(idleStart1+cfg.Idle, nil)
	if err := interrupted(); err != nil {
		return nil, err
	}
	res.IdleSyncBytesPerNodeS = float64(s.net.bytes-idle1) / float64(cfg.Nodes) / cfg.Idle.Seconds()
	res.IdleMembershipBytesPerNodeS = s.mem.idleBytesPerNodeS(cfg.Nodes)
	res.IdleBytesPerNodeS = res.IdleSyncBytesPerNodeS + res.IdleMembershipBytesPerNodeS
	res.Events = s.l.events
	res.WallS = time.Since(wall).Seconds()
	res.CPUS = cpuTime() - cpu0
	return res, nil
}

// ctxErr is ctx.Err(), with the context's cause (say, the signal that stopped the
// program) in its text when it has one of its own.
func ctxErr(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return err
	}
	return fmt.Errorf("%w: %v", err, cause)
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// start opens every node's log and gossip and gives every node the full membership, as a
// cluster that formed before the run.
func (s *Sim) start(ctx context.Context) error {
	for i := range s.cfg.Nodes {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted while opening node %d of %d: %w", i, s.cfg.Nodes, ctxErr(ctx))
		}
		n := &node{s: s, idx: i, region: i % s.cfg.Regions, addr: fmt.Sprintf("n%d", i),
			view: make([]bool, s.cfg.Nodes), grand: newRand(s.cfg.Seed, 1000+uint64(i))}
		// Site ids from the seed: the same run makes the same ids, so the same order.
		var site log.SiteID
		for j := range site {
			site[j] = byte(n.grand.IntN(256))
		}
		site[0] |= 1 // never zero
		n.site, n.name = site, site.String()
		// RecentChanges -1: nothing here reads the log back, so nothing is kept decoded.
		st, err := log.Open(fmt.Sprintf("%d/log", i), log.Options{SiteID: site, FS: s.fs, CacheBytes: 1 << 20, NoSync: true, RecentChanges: -1, Logger: discard})
		if err != nil {
			return fmt.Errorf("node %d: open log: %w", i, err)
		}
		n.store = st
		s.nodes = append(s.nodes, n)
		s.addr[n.addr] = n
		if err := n.open(); err != nil {
			return err
		}
	}
	for _, o := range s.nodes {
		for _, x := range s.nodes {
			s.mem.reconsider(o, x)
		}
	}
	return nil
}

// open starts a new incarnation of the node's gossip on its log.
func (n *node) open() error {
	cfg := n.s.gcfg
	cfg.Clock = clock{n.s.l}
	cfg.Rand = n.grand
	cfg.Transport = &transport{n}
	cfg.Membership = &membership{n}
	if !n.s.cfg.Flat {
		cfg.Region = n.s.net.rtt.names[n.region]
	}
	g, err := gossip.New(cfg, n.store, applier{n})
	if err != nil {
		return fmt.Errorf("node %d: %w", n.idx, err)
	}
	n.epoch++
	n.up, n.g, n.joined = true, g, n.s.l.now
	clear(n.view)
	if err := g.Open(context.Background()); err != nil {
		return fmt.Errorf("node %d: open gossip: %w", n.idx, err)
	}
	return nil
}

// crash stops the node's gossip without a leave: queues and sessions are lost; the log,
// durable, survives.
func (n *node) crash() {
	n.up = false
	n.epoch++
	_ = n.g.Close()
}

func (s *Sim) close() {
	for _, n := range s.nodes {
		if n.up {
			n.up = false
			_ = n.g.Close()
		}
		_ = n.store.Close()
	}
}

// converged reports whether every log holds the same versions.
func (s *Sim) converged() bool {
	v0 := s.nodes[0].store.Vector()
	for _, n := range s.nodes[1:] {
		if !n.store.Vector().Equal(v0) {
			return false
		}
	}
	return true
}

// scheduleWrites schedules Poisson arrivals at Rate over Duration from t0, each at a random
// node that is up then (one one-change transaction), and returns how many.
func (s *Sim) scheduleWrites(t0 time.Duration) int {
	n := 0
	for t := t0; ; {
		t += time.Duration(s.rnd.ExpFloat64() / s.cfg.Rate * float64(time.Second))
		if t >= t0+s.cfg.Duration {
			return n
		}
		n++
		key, pick := n, s.rnd.Uint64()
		s.l.at(t, func() { s.write(key, pick) })
	}
}

func (s *Sim) write(key int, pick uint64) {
	var up []*node
	for _, n := range s.nodes {
		if n.up {
			up = append(up, n)
		}
	}
	n := up[pick%uint64(len(up))]
	cs := &log.Changeset{Kind: log.KindData, TS: log.Timestamp(epoch.Add(s.l.now).UnixNano()),
		Changes: []log.Change{{Table: "t", PK: log.MustPackPK(log.Integer(int64(key))), CID: "v",
			Val: log.Integer(int64(key)), ColVersion: 1, CL: 1}}}
	v, _, err := n.store.AppendLocal(context.Background(), cs)
	if err != nil {
		panic(fmt.Sprintf("sim: append local: %v", err)) // an in-memory log does not fail
	}
	s.writes[writeKey{n.site, v}] = s.l.now
	n.g.Broadcast(cs)
}

// arrived records a write's append at a node other than its origin.
func (s *Sim) arrived(site log.SiteID, v log.Version) {
	if at, ok := s.writes[writeKey{site, v}]; ok {
		s.lat = append(s.lat, s.l.now-at)
	}
}

// scheduleCrashes crashes Crash of the nodes at random times in the first 60% of the
// writes, each restarting 2-5 s later; it returns how many.
func (s *Sim) scheduleCrashes(t0 time.Duration) int {
	if s.cfg.Crash == 0 {
		return 0
	}
	k := max(1, int(math.Round(s.cfg.Crash*float64(s.cfg.Nodes))))
	perm := s.rnd.Perm(s.cfg.Nodes)
	for _, i := range perm[:k] {
		n := s.nodes[i]
		at := t0 + time.Duration((0.1+0.5*s.rnd.Float64())*float64(s.cfg.Duration))
		down := 2*time.Second + time.Duration(s.rnd.Float64()*float64(3*time.Second))
		s.l.at(at, func() {
			n.crash()
			s.mem.crashed(n)
		})
		s.l.at(at+down, func() {
			if err := n.open(); err != nil {
				panic(fmt.Sprintf("sim: restart: %v", err))
			}
			s.mem.restarted(n)
		})
	}
	return k
}

// schedulePartition cuts the last region off from 25% to 55% of the writes (at least 3 s).
func (s *Sim) schedulePartition(t0 time.Duration) {
	s.cut = s.cfg.Regions - 1 // Run refuses a partition of one region
	from := t0 + s.cfg.Duration/4
	to := from + max(3*time.Second, s.cfg.Duration*3/10)
	s.l.at(from, func() {
		s.cutActive = true
		s.mem.partitioned()
	})
	s.l.at(to, func() {
		s.cutActive = false
		s.mem.healed()
	})
}

// reachable reports whether a and b can talk now.
func (s *Sim) reachable(a, b *node) bool {
	if !s.cutActive {
		return true
	}
	return (a.region == s.cut) == (b.region == s.cut)
}

// deliver sends a message of size bytes from a to b through the network model. onArrive
// runs at b once it has been processed; onLost (optional) runs at the sender when QUIC
// would have told it the message is lost.
func (s *Sim) deliver(a, b *node, size int, onArrive, onLost func()) {
	lost := func() {
		if onLost != nil {
			s.l.after(lostAfter, onLost)
		}
	}
	epochB := b.epoch
	if !b.up || !s.reachable(a, b) {
		s.net.msgs++
		s.net.bytes += uint64(size)
		lost()
		return
	}
	at := s.net.transit(a.idx, b.idx, a.region, b.region, size)
	s.l.at(at, func() {
		if !b.up || b.epoch != epochB || !s.reachable(a, b) {
			lost()
			return
		}
		start := max(s.l.now, b.busy)
		b.busy = start + s.net.processing(size)
		s.l.at(b.busy, func() {
			if !b.up || b.epoch != epochB {
				lost()
				return
			}
			onArrive()
		})
	})
}

// applier appends what gossip received to the node's log and records arrivals.
type applier struct{ n *node }

func (a applier) Apply(ctx context.Context, css []*log.Changeset) ([]bool, error) {
	res, err := a.n.store.Append(ctx, css...)
	if err != nil {
		return nil, err
	}
	news := make([]bool, len(res))
	for i, r := range res {
		news[i] = r.New
		if r.New && r.Complete {
			a.n.s.arrived(css[i].Site, css[i].Version)
		}
	}
	return news, nil
}

// helloBytes approximates the hello frame that opens each QUIC stream (a sync session's,
// or a broadcast stream's once per connection, which the simulator does not count).
const helloBytes = 48

// transport is a node's gossip.Transport on the simulated network.
type transport struct{ n *node }

func (t *transport) Listen(in gossip.Inbound) (string, error) {
	t.n.in = in
	return t.n.addr, nil
}

func (t *transport) Send(_ context.Context, addr string, batch []byte) error {
	a, s := t.n, t.n.s
	b := s.addr[addr]
	if b == nil {
		return fmt.Errorf("no node at %s", addr)
	}
	msg := bytes.Clone(batch)
	s.bmsgs++
	s.bbytes += uint64(len(msg))
	s.deliver(a, b, len(msg), func() { _ = b.in.Broadcast(a.site, bytes.NewReader(msg)) }, nil)
	return nil
}

var errLost = errors.New("sim: message lost (peer down or unreachable)")

// Sync runs a session as the QUIC stream's exchange with each direction's bytes taken as
// one message: the client's opening (its vector or digest); the server's answer with, when
// the session allows it (SyncSession.Ready), what the client lacks; what the server lacks;
// and, when the server had to read the client's vector first, what the client lacks.
func (t *transport) Sync(_ context.Context, addr string, c gossip.SyncSession, done func(error)) {
	a, s := t.n, t.n.s
	b := s.addr[addr]
	finished := false
	finish := func(err error) {
		if !finished {
			finished = true
			if err == nil {
				s.syncs++
			}
			done(err)
		}
	}
	if b == nil {
		finish(fmt.Errorf("no node at %s", addr))
		return
	}
	var m1 bytes.Buffer
	if err := c.WriteVector(&m1); err != nil {
		finish(err)
		return
	}
	cr := &pipe{} // the client's end of the stream
	s.deliver(a, b, helloBytes+m1.Len(), func() {
		srv, err := b.in.ServeSync(a.site)
		if err != nil {
			s.deliver(b, a, 2, func() { finish(err) }, func() { finish(errLost) })
			return
		}
		sr := &pipe{} // the server's end
		sr.push(m1.Bytes())
		if err := srv.ReadVector(sr); err != nil {
			srv.End(err)
			s.deliver(b, a, 2, func() { finish(err) }, func() { finish(errLost) })
			return
		}
		var m2 bytes.Buffer
		err = srv.WriteVector(&m2)
		early := err == nil && srv.Ready()
		if early {
			err = srv.SendMissing(&m2)
		}
		if err != nil {
			srv.End(err)
			finish(err)
			return
		}
		s.deliver(b, a, m2.Len(), func() {
			cr.push(m2.Bytes())
			if err := c.ReadVector(cr); err != nil {
				finish(err)
				srv.End(err)
				return
			}
			var m3 bytes.Buffer
			sendErr := c.SendMissing(&m3)
			if sendErr != nil {
				srv.End(sendErr)
				finish(sendErr)
				return
			}
			if early {
				recvErr := c.Receive(cr)
				s.deliver(a, b, m3.Len(), func() {
					sr.push(m3.Bytes())
					srv.End(srv.Receive(sr))
				}, func() { srv.End(errLost) })
				finish(recvErr)
				return
			}
			s.deliver(a, b, m3.Len(), func() {
				sr.push(m3.Bytes())
				err := srv.Receive(sr)
				var m4 bytes.Buffer
				if err == nil {
					err = srv.SendMissing(&m4)
				}
				srv.End(err)
				if err != nil {
					s.deliver(b, a, 2, func() { finish(err) }, func() { finish(errLost) })
					return
				}
				s.deliver(b, a, m4.Len(), func() {
					cr.push(m4.Bytes())
					finish(c.Receive(cr))
				}, func() { finish(errLost) })
			}, func() {
				srv.End(errLost)
				finish(errLost)
			})
		}, func() {
			finish(errLost)
			srv.End(errLost)
		})
	}, func() { finish(errLost) })
}

func (t *transport) Forget(string) {}
func (t *transport) Close() error  { return nil }

// pipe is one end of a simulated stream: the messages that arrived, read in order; io.EOF
// when nothing more has arrived yet.
type pipe struct{ bufs [][]byte }

func (p *pipe) push(b []byte) { p.bufs = append(p.bufs, b) }

func (p *pipe) Read(b []byte) (int, error) {
	for len(p.bufs) > 0 && len(p.bufs[0]) == 0 {
		p.bufs = p.bufs[1:]
	}
	if len(p.bufs) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.bufs[0])
	p.bufs[0] = p.bufs[0][n:]
	return n, nil
}

// membership is a node's gossip.Membership: the membership model (membership.go) tells
// it who is alive.
type membership struct{ n *node }

func (m *membership) Start(meta func(string) []byte, ev gossip.MemberEvents) (string, error) {
	m.n.meta, m.n.ev = meta(""), ev
	return m.n.addr, nil
}

func (m *membership) Leave(time.Duration) error { return nil } // the simulator only crashes nodes
func (m *membership) Close() error              { return nil }
