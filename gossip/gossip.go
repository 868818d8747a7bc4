package gossip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patinadb/patina/log"
)

// Applier takes changesets (or parts) received from peers. *materializer.Materializer
// satisfies it. Apply may block (it appends durably); it is called concurrently from
// several streams. It answers, per changeset, whether it was new to the log: only new ones
// are forwarded, which is what makes broadcast storms impossible. Gossip does not keep or
// modify css after Apply returns.
type Applier interface {
	Apply(ctx context.Context, css []*log.Changeset) ([]bool, error)
}

// Log is what gossip reads of the local log for sync. *log.Store satisfies it. Its methods
// are called concurrently and must not block for long.
type Log interface {
	SiteID() log.SiteID
	// Vector returns a copy of what the log holds.
	Vector() *log.Vector
	// Missing returns what the log holds that theirs lacks.
	Missing(theirs *log.Vector) []log.SiteMissing
	// Scan yields stored changesets and parts of site with from <= version <= to, in
	// (version, first ordinal) order, partially held versions included.
	Scan(site log.SiteID, from, to log.Version) iter.Seq2[*log.Changeset, error]
	// AppendCleared records versions a peer holds cleared (compacted away entirely).
	AppendCleared(ctx context.Context, site log.SiteID, rs log.RangeSet) (uint64, error)
}

var (
	_ Log = (*log.Store)(nil)
)

// Gossip is one node's membership, transport, broadcast and sync.
type Gossip struct {
	cfg    Config
	log    Log
	app    Applier
	logger *slog.Logger
	site   log.SiteID
	name   string

	m      *metrics
	lags   *lagWindow
	faults *faults

	// The seams (seams.go), production's unless Config sets them.
	clock Clock
	rand  Rand
	tr    Transport
	mem   Membership

	quicAddr   string // advertised
	gossipAddr string // advertised

	mu         sync.Mutex
	peers      map[log.SiteID]*peer       // live peers by site id (a member's name is its site id's string)
	peerList   []*peer                    // the same, sorted by site id
	peersDirty bool                       // peers changed since peerList and byRegion were built (sortedLocked)
	byRegion   map[string][]*peer         // the same by region (Config.Region), sorted by site id
	regionList []string                   // byRegion's keys, sorted
	known      map[log.SiteID]*memberInfo // every member ever seen, for Members and reconnects
	// refusedAddrs: addresses refused under mutual TLS that are no known member (trust.go).
	refusedAddrs map[string]bool
	// lack is, per peer, how many complete versions the last vector it sent held
	// that this node lacked; a completed session brought them, so it is 0 then. Sync rounds
	// prefer peers with the most (sync.go). Only this count is kept, not the vectors: at
	// n nodes a vector has n sites, and one per peer would be n² per node.
	lack     map[log.SiteID]uint64
	heads    map[log.SiteID]uint64 // highest version seen per site
	diverged map[string]struct{}   // content divergences reported (content.go), by peer, site and sums

	joinTries  atomic.Uint64 // bootstrap join attempts, for tests and logs
	served     atomic.Int32
	syncRounds atomic.Uint64
	drops      atomic.Uint64
	queued     atomic.Int64
	joined     chan struct{}
	joinedOnce sync.Once

	// Sync scheduling (sync.go).
	smu         sync.Mutex
	syncTimer   Timer
	syncing     bool      // a round runs
	syncPending bool      // a round was asked for while one ran
	syncSoon    bool      // a round is armed to start at once (not the next interval's)
	gapsAt      time.Time // the gaps gauge's last refresh by a round (rounds never overlap)

	run     context.Context
	cancel  context.CancelCauseFunc
	wg      sync.WaitGroup // timer callbacks
	lifeMu  sync.RWMutex   // orders wg.Add of callbacks before shutdown's wg.Wait
	stopped bool           // under lifeMu: no more callbacks start
	opened  bool           // Open was called (Open and Close are not concurrent)
	ready   atomic.Bool    // Open succeeded: Broadcast, Members and Stats may use the parts
	closed  atomic.Bool
	leaving atomic.Bool // Close has begun the graceful leave (membership metadata says so)
	once    sync.Once
	err     error
}

// inbound is the Inbound gossip gives its Transport.
type inbound struct{ g *Gossip }

// Broadcast applies and forwards a peer's broadcast frames.
func (in inbound) Broadcast(from log.SiteID, r io.Reader) error {
	return in.g.receiveBroadcast(from, r)
}

// New checks cfg and returns a node that does no I/O until Open.
func New(cfg Config, l Log, app Applier) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if l == nil || app == nil {
		return nil, fmt.Errorf("%w: nil log or applier", ErrConfig)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	g := &Gossip{
		cfg:    cfg,
		log:    l,
		app:    app,
		logger: lg.With(attrComponent, "gossip"),
		m:      newMetrics(),
		lags:   newLagWindow(1024),
		peers:  map[log.SiteID]*peer{},
		known:  map[log.SiteID]*memberInfo{},
		lack:   map[log.SiteID]uint64{},
		heads:  map[log.SiteID]uint64{},
		joined: make(chan struct{}),
		clock:  cfg.Clock,
		rand:   cfg.Rand,
		tr:     cfg.Transport,
		mem:    cfg.Membership,
	}
	if cfg.Fault.Enabled {
		g.faults = newFaults(cfg.Fault.Rules)
	}
	if g.clock == nil {
		g.clock = wallClock{}
	}
	if g.rand == nil {
		g.rand = globalRand{}
	}
	if g.tr == nil {
		g.tr = newQUICTransport(g)
	}
	if g.mem == nil {
		g.mem = newMemberlist(g)
	}
	return g, nil
}

// Open starts the QUIC transport, memberlist and the background loops. ctx covers start-up
// only. Joining the bootstrap addresses happens in the background, retried with backoff, so
// that the first nodes of a cluster can start in any order.
func (g *Gossip) Open(ctx context.Context) (err error) {
	if g.opened {
		return errors.New("gossip: already open")
	}
	g.opened = true
	g.site = g.log.SiteID()
	if g.site.IsZero() {
		return fmt.Errorf("%w: log has a zero site id", ErrConfig)
	}
	g.name = g.site.String()
	g.run, g.cancel = context.WithCancelCause(context.Background())
	defer func() {
		if err != nil {
			g.shutdown()
		}
	}()
	if g.cfg.Registerer != nil {
		if err := g.m.register(g.cfg.Registerer); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	addr, err := g.tr.Listen(inbound{g})
	if err != nil {
		return err
	}
	g.quicAddr = addr
	g.gossipAddr, err = g.mem.Start(g.metaFor, events{g})
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	g.smu.Lock()
	g.scheduleSyncLocked()
	g.smu.Unlock()
	g.ready.Store(true)
	g.logger.Info("gossip started", "gossip_addr", g.gossipAddr, "quic_addr", g.quicAddr,
		attrSite, g.name, "cluster", g.cfg.ClusterID, "bootstrap", g.cfg.Bootstrap)
	return nil
}

// after runs f d from now on the clock, unless the node has stopped by then; shutdown
// waits for the calls that started.
func (g *Gossip) after(d time.Duration, f func()) Timer {
	return g.clock.AfterFunc(d, func() {
		g.lifeMu.RLock()
		if g.stopped {
			g.lifeMu.RUnlock()
			return
		}
		g.wg.Add(1)
		g.lifeMu.RUnlock()
		defer g.wg.Done()
		f()
	})
}

// Close leaves the cluster gracefully (bounded by LeaveTimeout), then stops everything.
// Idempotent; returns the first error.
func (g *Gossip) Close() error {
	g.once.Do(func() {
		if !g.opened {
			return
		}
		g.closed.Store(true)
		if g.ready.Load() {
			// Tell peers this is a leave, not a failure, then leave; each step is bounded.
			g.leaving.Store(true)
			if err := g.mem.Leave(g.cfg.LeaveTimeout); err != nil {
				g.logger.Warn("graceful leave", attrErr, err)
			}
		}
		g.err = g.shutdown()
	})
	return g.err
}

func (g *Gossip) shutdown() error {
	g.closed.Store(true)
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if g.cancel != nil {
		g.cancel(ErrClosed)
	}
	g.lifeMu.Lock()
	g.stopped = true
	g.lifeMu.Unlock()
	g.smu.Lock()
	if g.syncTimer != nil {
		g.syncTimer.Stop()
	}
	g.smu.Unlock()
	keep(g.mem.Close())
	g.mu.Lock()
	peers := g.peers
	g.peers, g.peerList, g.byRegion, g.peersDirty = map[log.SiteID]*peer{}, nil, nil, false
	g.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
	keep(g.tr.Close())
	g.wg.Wait()
	if g.cfg.Registerer != nil {
		g.m.unregister(g.cfg.Registerer)
	}
	return first
}

// Broadcast sends a changeset newly appended to the local log to LocalFanout random live
// members (region-aware: see Config.Region). It never blocks: full queues drop their oldest entries (sync repairs). Large
// changesets travel as the parts the log stored. cs must not be modified afterwards.
func (g *Gossip) Broadcast(cs *log.Changeset) {
	if g.closed.Load() || !g.ready.Load() || cs == nil {
		return
	}
	g.broadcast(cs, "")
}

// broadcast is Broadcast with the trace context tp ("" for none) for peers that read it.
func (g *Gossip) broadcast(cs *log.Changeset, tp string) {
	if g.closed.Load() || !g.ready.Load() || cs == nil {
		return
	}
	g.noteHead(cs.Site, cs.Version)
	if len(cs.Changes) > g.cfg.PartChanges {
		// Synchronous: it only reads the log and enqueues, and a goroutine started here
		// could race Close's wait for the others.
		g.broadcastLarge(cs, tp)
		return
	}
	g.broadcastOwn(cs, tp)
}

// SetFaults replaces the fault rules at run time (FOR TESTING ONLY). The fault hook must
// have been enabled in the config.
func (g *Gossip) SetFaults(rules []FaultRule) error {
	if g.faults == nil {
		return ErrFaultDisabled
	}
	for i, r := range rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("%w: fault rule %d: %w", ErrConfig, i, err)
		}
	}
	g.faults.set(rules)
	return nil
}

// Stats is a snapshot for health checks and GET /v1/health.
type Stats struct {
	Members    int           // alive members, this node excluded
	Suspect    int           // suspect members
	Gaps       uint64        // versions known to exist that this node lacks, summed over sites
	LagP50     time.Duration // replication lag of recent new changesets
	LagP99     time.Duration
	QueueSize  int    // changesets waiting in broadcast queues
	Drops      uint64 // changesets dropped from full queues, ever
	SyncRounds uint64 // sync sessions completed as client
	SiteGaps   map[log.SiteID]uint64
}

// SyncIdle says whether no sync round runs, is pending or is armed to start at once, and no
// session is served: what only the periodic rounds will change. Tests wait for it before
// moving data that only the sync under test may carry (a member coming up starts rounds on
// both sides, and a round asked for while one runs follows it).
func (g *Gossip) SyncIdle() bool {
	g.smu.Lock()
	defer g.smu.Unlock()
	return !g.syncing && !g.syncPending && !g.syncSoon && g.served.Load() == 0
}

// Stats computes a snapshot (it reads the log's vector).
func (g *Gossip) Stats() Stats {
	s := Stats{
		LagP50:     g.lags.quantile(0.50),
		LagP99:     g.lags.quantile(0.99),
		QueueSize:  int(g.queued.Load()),
		Drops:      g.drops.Load(),
		SyncRounds: g.syncRounds.Load(),
	}
	for _, mb := range g.Members() {
		if mb.Self {
			continue
		}
		switch mb.State {
		case StateAlive:
			s.Members++
		case StateSuspect:
			s.Suspect++
		}
	}
	s.SiteGaps = g.gaps()
	for _, n := range s.SiteGaps {
		s.Gaps += n
	}
	return s
}

// P99Lag is the 99th percentile replication lag (origin commit to append here) of the
// most recent changesets new to this node; 0 before any. For GET /v1/health.
func (g *Gossip) P99Lag() time.Duration { return g.lags.quantile(0.99) }

// Gaps is how many versions, summed over sites, this node knows exist (up to the highest
// version seen of each site) but does not hold completely. For GET /v1/health.
func (g *Gossip) Gaps() uint64 {
	var n uint64
	for _, c := range g.gaps() {
		n += c
	}
	return n
}

// gaps computes, per site, the versions up to the highest known that this node lacks, and
// updates the per-site gauge.
func (g *Gossip) gaps() map[log.SiteID]uint64 {
	ours := g.log.Vector()
	high := map[log.SiteID]uint64{}
	g.mu.Lock()
	for s, h := range g.heads {
		high[s] = h
	}
	g.mu.Unlock()
	out := map[log.SiteID]uint64{}
	for s, sv := range ours.Sites {
		if sv != nil {
			high[s] = max(high[s], uint64(sv.Head()))
		}
	}
	// A node is the only writer of its own site: versions of it that peers claim and it does
	// not hold were not written by it (forged, and refused by its log), not a gap to wait for.
	if sv := ours.Sites[g.site]; sv != nil {
		high[g.site] = uint64(sv.Head())
	} else {
		delete(high, g.site)
	}
	for s, h := range high {
		var have uint64
		if sv := ours.Sites[s]; sv != nil {
			have = sv.Versions.Count()
		}
		var n uint64
		if h > have {
			n = h - have
		}
		out[s] = n
		g.m.siteGaps.WithLabelValues(s.String()).Set(float64(n))
	}
	return out
}

func (g *Gossip) noteHead(site log.SiteID, v log.Version) {
	g.mu.Lock()
	if uint64(v) > g.heads[site] {
		g.heads[site] = uint64(v)
	}
	g.mu.Unlock()
}

// applyBatch hands received changesets to the Applier and records metrics; it returns which
// were new.
func (g *Gossip) applyBatch(ctx context.Context, css []*log.Changeset, path string) ([]bool, error) {
	news, err := g.app.Apply(ctx, css)
	if err != nil {
		return nil, fmt.Errorf("apply %d changesets: %w", len(css), err)
	}
	if len(news) != len(css) {
		return nil, fmt.Errorf("apply: %d answers for %d changesets", len(news), len(css))
	}
	now := g.clock.Now()
	nNew := 0
	for i, cs := range css {
		if !news[i] {
			if cs.Site != g.site { // our own, not new: held already, or refused as forged
				g.noteHead(cs.Site, cs.Version)
			}
			continue
		}
		g.noteHead(cs.Site, cs.Version)
		nNew++
		if cs.TS != 0 {
			lag := max(now.Sub(cs.TS.Time()), 0)
			g.m.lag.Observe(lag.Seconds())
			g.lags.add(lag)
		}
	}
	g.m.versionsRecv.WithLabelValues(path, "true").Add(float64(nNew))
	g.m.versionsRecv.WithLabelValues(path, "false").Add(float64(len(css) - nNew))
	return news, nil
}

// MemberState is a member's SWIM state.
type MemberState string

// Member states.
const (
	StateAlive   MemberState = "alive"
	StateSuspect MemberState = "suspect"
	StateDead    MemberState = "dead"
	StateLeft    MemberState = "left"
)

// Member is one cluster member as GET /v1/members shows it.
type Member struct {
	Name       string      `json:"name"`
	SiteID     log.SiteID  `json:"site_id"`
	ClusterID  string      `json:"cluster_id"`
	State      MemberState `json:"state"`
	GossipAddr string      `json:"gossip_addr"`
	QUICAddr   string      `json:"quic_addr"`
	APIAddr    string      `json:"api_addr,omitempty"`
	// RTT is the last measured memberlist probe round trip; 0 when unknown.
	RTT  time.Duration `json:"rtt_ns"`
	Self bool          `json:"self,omitempty"`
}

// Members lists this node and every member it knows of, sorted by name.
func (g *Gossip) Members() []Member {
	if !g.ready.Load() {
		return nil
	}
	var live map[log.SiteID]MemberState
	if l, ok := g.mem.(interface {
		liveStates() map[log.SiteID]MemberState
	}); ok {
		live = l.liveStates()
	}
	g.mu.Lock()
	out := make([]Member, 0, len(g.known)+1)
	for site, info := range g.known {
		mb := Member{Name: site.String(), SiteID: site, ClusterID: info.meta.Cluster, GossipAddr: info.addr,
			QUICAddr: info.meta.QUIC, APIAddr: info.meta.API, RTT: info.rtt, State: info.state}
		if st, ok := live[site]; ok {
			mb.State = st
		}
		mb.State = g.memberState(info, mb.State)
		out = append(out, mb)
	}
	g.mu.Unlock()
	out = append(out, Member{Name: g.name, SiteID: g.site, ClusterID: g.cfg.ClusterID, State: StateAlive,
		GossipAddr: g.gossipAddr, QUICAddr: g.quicAddr, APIAddr: g.cfg.APIAddr, Self: true})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GossipAddr and QUICAddr are the advertised addresses (known after Open).
func (g *Gossip) GossipAddr() string { return g.gossipAddr }

// QUICAddr is the advertised QUIC address (known after Open).
func (g *Gossip) QUICAddr() string { return g.quicAddr }

// SiteID is this node's site id (known after Open).
func (g *Gossip) SiteID() log.SiteID { return g.site }

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
