package api

import (
	_ "embed"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/patinadb/patina/log"
)

// dashboardHTML is the page of GET /ui: one self-contained file (inline CSS and JS, no CDN,
// no build step) that polls GET /v1/dashboard. It holds no data, so it is served without a
// token; the data endpoint needs a read token, which the page asks for and keeps in the
// browser's localStorage.
//
//go:embed ui/index.html
var dashboardHTML []byte

// handleUI serves the dashboard page.
func (s *Server) handleUI(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// Everything the page needs is inline or on this origin; nothing else may load.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(dashboardHTML)
	return err
}

// dashboard is the answer of GET /v1/dashboard: one snapshot of what an operator looks at.
// Rates (writes per second) are left to the page, which diffs the counters of two polls.
type dashboard struct {
	SiteID  log.SiteID   `json:"site_id"`
	Time    float64      `json:"time"`   // Unix seconds, for the page's rates
	Uptime  float64      `json:"uptime"` // seconds since the API opened
	Members []memberJSON `json:"members"`
	Sites   []siteJSON   `json:"sites"`
	Log     logJSON      `json:"log"`
	Fold    foldJSON     `json:"fold"`
	Lag     *histJSON    `json:"lag"` // replication lag (write at the origin to visible here); null without gossip
	Subs    subsJSON     `json:"subscriptions"`
	Writes  writesJSON   `json:"writes"`
}

type siteJSON struct {
	SiteID   log.SiteID `json:"site_id"`
	Head     uint64     `json:"head"`     // newest version known
	Held     uint64     `json:"held"`     // versions held in full
	Gaps     uint64     `json:"gaps"`     // head - held
	Partials int        `json:"partials"` // versions held in part
	Self     bool       `json:"self"`
}

type logJSON struct {
	Versions  uint64  `json:"versions"`
	Partials  uint64  `json:"partials"`
	Changes   uint64  `json:"changes"`
	Bytes     uint64  `json:"bytes"`      // encoded changesets
	DiskBytes uint64  `json:"disk_bytes"` // Pebble on disk, after its compactions and compression
	LastSeq   log.Seq `json:"last_seq"`
	Appends   uint64  `json:"appends"`
	Syncs     uint64  `json:"syncs"`
}

type foldJSON struct {
	Position log.Seq `json:"position"`
	Queue    uint64  `json:"queue"`
}

type histJSON struct {
	Count   uint64       `json:"count"`
	Sum     float64      `json:"sum"`
	P50     float64      `json:"p50"`
	P99     float64      `json:"p99"`
	Buckets []bucketJSON `json:"buckets"` // not cumulative: the count in (previous le, le]
}

type bucketJSON struct {
	LE    float64 `json:"le"` // upper bound in seconds; the last one is +Inf, sent as -1
	Count uint64  `json:"count"`
}

type subsJSON struct {
	Subscriptions float64 `json:"subscriptions"`
	Clients       float64 `json:"clients"`
	Streams       float64 `json:"streams_open"`
}

type writesJSON struct {
	Transactions float64 `json:"transactions"`        // committed through this node's API
	Received     float64 `json:"changesets_received"` // from gossip and sync
	Versions     uint64  `json:"versions"`            // sum of every site's head: the cluster's writes as seen here
}

// Metric names the dashboard reads from the registry. They belong to other packages; a
// missing one shows as zero (a node without gossip has no lag). TestDashboardChromium sees
// the write figures of a real cluster move.
const (
	metricLag           = "patina_gossip_replication_lag_seconds"
	metricReceived      = "patina_gossip_changesets_received_total"
	metricSubscriptions = "patina_subscriptions"
	metricSubClients    = "patina_subscription_clients"
	metricTransactions  = "patina_transactions_total"
	metricStreams       = "patina_streams_open"
)

// handleDashboard answers the dashboard's snapshot. It reads the figures other components
// export through the shared registry rather than reaching into them, so the API keeps
// depending on nothing but its small interfaces.
func (s *Server) handleDashboard(w http.ResponseWriter, r *http.Request) error {
	now := time.Now()
	st := s.cfg.Log.Stats()
	self := s.cfg.Log.SiteID()
	out := dashboard{
		SiteID:  self,
		Time:    float64(now.UnixNano()) / 1e9,
		Uptime:  now.Sub(s.opened).Seconds(),
		Members: s.membersJSON(),
		Log: logJSON{Versions: st.Versions, Partials: st.Partials, Changes: st.Changes, Bytes: st.Bytes,
			DiskBytes: st.DiskBytes, LastSeq: st.LastSeq, Appends: st.Appends, Syncs: st.Syncs},
		Fold: foldJSON{Position: s.cfg.View.FoldPosition()},
	}
	out.Fold.Queue = foldQueue(st.LastSeq, out.Fold.Position)
	for site, sv := range s.cfg.Log.Vector().Sites {
		head, held := siteHead(sv)
		out.Sites = append(out.Sites, siteJSON{SiteID: site, Head: head, Held: held, Gaps: head - held, Partials: len(sv.Partials), Self: site == self})
		out.Writes.Versions += head
	}
	slices.SortFunc(out.Sites, func(a, b siteJSON) int { return strings.Compare(a.SiteID.String(), b.SiteID.String()) })

	fams, err := s.cfg.Registry.Gather()
	if err != nil {
		// A collector failed; show what was gathered rather than nothing.
		s.logger.Debug("dashboard: gather metrics", attrErr, err)
	}
	for _, f := range fams {
		switch f.GetName() {
		case metricLag:
			if len(f.Metric) > 0 && f.Metric[0].Histogram != nil {
				out.Lag = histogramJSON(f.Metric[0].Histogram)
			}
		case metricReceived:
			out.Writes.Received = sumMetric(f, nil)
		case metricSubscriptions:
			out.Subs.Subscriptions = sumMetric(f, nil)
		case metricSubClients:
			out.Subs.Clients = sumMetric(f, nil)
		case metricStreams:
			out.Subs.Streams = sumMetric(f, nil)
		case metricTransactions:
			out.Writes.Transactions = sumMetric(f, map[string]string{"result": "ok"})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sumMetric adds the values of a family's counters or gauges whose labels include match.
func sumMetric(f *dto.MetricFamily, match map[string]string) float64 {
	var sum float64
next:
	for _, m := range f.Metric {
		for k, v := range match {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		}
	}
	return sum
}

// histogramJSON turns Prometheus's cumulative buckets into counts per bucket, with p50 and
// p99 estimated as the upper bound of the bucket where they fall (what an operator can
// read off the bars, never a figure finer than the buckets).
func histogramJSON(h *dto.Histogram) *histJSON {
	out := &histJSON{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
	var prev uint64
	for _, b := range h.Bucket {
		c := b.GetCumulativeCount()
		out.Buckets = append(out.Buckets, bucketJSON{LE: b.GetUpperBound(), Count: c - prev})
		prev = c
	}
	out.Buckets = append(out.Buckets, bucketJSON{LE: -1, Count: out.Count - prev})
	quantile := func(q float64) float64 {
		if out.Count == 0 {
			return 0
		}
		rank := uint64(math.Ceil(q * float64(out.Count)))
		var cum uint64
		for _, b := range out.Buckets {
			cum += b.Count
			if cum >= rank {
				return b.LE
			}
		}
		return -1
	}
	out.P50, out.P99 = quantile(0.5), quantile(0.99)
	return out
}
