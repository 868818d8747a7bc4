package gossip

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus collectors of one node. Path labels: "broadcast" or "sync".
type metrics struct {
	members        *prometheus.GaugeVec // by state
	queueLen       prometheus.Gauge
	drops          prometheus.Counter
	syncRounds     *prometheus.CounterVec // by role (client, server, reconcile) and result
	versionsSent   *prometheus.CounterVec // by path
	versionsRecv   *prometheus.CounterVec // by path and new (true/false)
	bytesSent      *prometheus.CounterVec // by path
	bytesRecv      *prometheus.CounterVec // by path
	siteGaps       *prometheus.GaugeVec   // by site
	lag            prometheus.Histogram
	refusedCluster prometheus.Counter
	tlsRefused     *prometheus.CounterVec // trust.go
	adminOps       *prometheus.CounterVec // by op (rejoin, reconcile): admin.go
	zstdPlain      *prometheus.CounterVec // by path and direction: zstd frames' bytes before compression
	zstdWire       *prometheus.CounterVec // by path and direction: the same frames' bytes on the wire
	damaged        *prometheus.CounterVec // by side: skipped (ours), peer (reported by a peer)
	divergent      prometheus.Counter     // content.go
	pushPulls      *prometheus.CounterVec // by result: membership anti-entropy (pushpull.go)
	pushPullPeriod prometheus.Gauge       // its current period, seconds
}

func newMetrics() *metrics {
	const ns, sub = "patina", "gossip"
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "members",
			Help: "Cluster members by state (this node excluded)."}, []string{"state"}),
		queueLen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "broadcast_queue_length",
			Help: "Changesets waiting in the per-peer broadcast queues, summed."}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "broadcast_dropped_total",
			Help: "Changesets dropped from full broadcast queues (oldest first; sync repairs)."}),
		syncRounds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sync_rounds_total",
			Help: "Sync sessions by role and result."}, []string{"role", "result"}),
		versionsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "changesets_sent_total",
			Help: "Changesets (or parts) sent, by path."}, []string{"path"}),
		versionsRecv: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "changesets_received_total",
			Help: "Changesets (or parts) received, by path and whether they were new to the log."}, []string{"path", "new"}),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_sent_total",
			Help: "Frame bytes sent, by path."}, []string{"path"}),
		bytesRecv: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_received_total",
			Help: "Frame bytes received, by path."}, []string{"path"}),
		siteGaps: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "site_gaps",
			Help: "Versions of a site known to exist (up to the highest seen) that this node lacks."}, []string{"site"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "replication_lag_seconds",
			Help:    "Time from a changeset's origin commit (ts) to its append here, for changesets new to this node.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}),
		refusedCluster: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "refused_peers_total",
			Help: "Peers refused because they belong to another cluster id."}),
		tlsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "patina_gossip_tls_refused_total",
			Help: "QUIC handshakes refused on certificate grounds under mutual TLS: in, a peer whose certificate is not from the cluster's CA (or none); out, a peer that refused ours or whose certificate we refused when dialling."},
			[]string{"direction"}),
		adminOps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "admin_operations_total",
			Help: "Operator-requested rejoins and gap reconciliations."}, []string{"op"}),
		zstdPlain: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "zstd_plain_bytes_total",
			Help: "Bytes of the frames sent or received zstd-compressed, before compression, by path and direction."}, []string{"path", "direction"}),
		zstdWire: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "zstd_wire_bytes_total",
			Help: "Bytes the same frames took on the wire (plain minus wire is what compression saved), by path and direction."}, []string{"path", "direction"}),
		damaged: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sync_damaged_versions_total",
			Help: "Versions a sync could not send because they lie in a damaged part of the sender's log: side=skipped for this node's, side=peer for what peers reported (the versions are then taken from another node)."}, []string{"side"}),
		divergent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sync_content_divergence_total",
			Help: "Sites a peer holds the same versions of with other content (content sums differ in a sync; the versions are then sent so that ingest names each colliding one)."}),
	}
	m.pushPulls = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "membership_push_pulls_total",
		Help: "Membership anti-entropy exchanges (the whole member list with one live member) this node started, by result (ok, error)."}, []string{"result"})
	m.pushPullPeriod = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "membership_push_pull_period_seconds",
		Help: "The current period between this node's membership push-pulls: it grows with the cluster so that their traffic per node stays flat."})
	m.zero()
	return m
}

// zero creates every labelled series the code can move, at zero, so that a lone node's
// /metrics lists them all from the start: a dashboard or an alert on rate() or absent()
// sees 0, not a missing series, until something happens.
func (m *metrics) zero() {
	for _, s := range []MemberState{StateAlive, StateSuspect, StateDead, StateLeft} {
		m.members.WithLabelValues(string(s))
	}
	for _, op := range []string{"rejoin", "reconcile"} {
		m.adminOps.WithLabelValues(op)
	}
	m.pushPulls.WithLabelValues("ok")
	m.pushPulls.WithLabelValues("error")
	m.tlsRefused.WithLabelValues("in")
	m.tlsRefused.WithLabelValues("out")
	m.damaged.WithLabelValues("skipped")
	m.damaged.WithLabelValues("peer")
	for _, role := range []string{"client", "server", "reconcile"} {
		for _, res := range []string{"ok", "busy", "error"} {
			m.syncRounds.WithLabelValues(role, res)
		}
	}
	for _, path := range []string{"broadcast", "sync"} {
		m.versionsSent.WithLabelValues(path)
		m.bytesSent.WithLabelValues(path)
		m.bytesRecv.WithLabelValues(path)
		m.versionsRecv.WithLabelValues(path, "true")
		m.versionsRecv.WithLabelValues(path, "false")
		for _, dir := range []string{"sent", "received"} {
			m.zstdPlain.WithLabelValues(path, dir)
			m.zstdWire.WithLabelValues(path, dir)
		}
	}
}

// collectors lists every metric gossip exports, for register, unregister and the test that
// checks a lone node exports them all.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.members, m.queueLen, m.drops, m.syncRounds, m.versionsSent,
		m.versionsRecv, m.bytesSent, m.bytesRecv, m.siteGaps, m.lag, m.refusedCluster, m.tlsRefused, m.adminOps, m.zstdPlain, m.zstdWire, m.damaged, m.divergent, m.pushPulls, m.pushPullPeriod}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}

// lagWindow keeps the most recent replication lags for a p99 without scraping Prometheus.
type lagWindow struct {
	mu   sync.Mutex
	buf  []time.Duration
	next int
	full bool
}

func newLagWindow(n int) *lagWindow { return &lagWindow{buf: make([]time.Duration, n)} }

func (w *lagWindow) add(d time.Duration) {
	w.mu.Lock()
	w.buf[w.next] = d
	w.next++
	if w.next == len(w.buf) {
		w.next, w.full = 0, true
	}
	w.mu.Unlock()
}

// quantile returns the q-quantile of the window, 0 when empty.
func (w *lagWindow) quantile(q float64) time.Duration {
	w.mu.Lock()
	n := w.next
	if w.full {
		n = len(w.buf)
	}
	s := append([]time.Duration(nil), w.buf[:n]...)
	w.mu.Unlock()
	if len(s) == 0 {
		return 0
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q * float64(len(s)-1))
	return s[i]
}
