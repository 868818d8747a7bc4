package api

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus metrics. Figures the log and the view already count (log
// size, versions, fold position) are read at scrape time by a collector rather than
// duplicated in counters that could drift.
type metrics struct {
	requests        *prometheus.CounterVec   // route, code
	requestDuration *prometheus.HistogramVec // route
	inFlight        *prometheus.GaugeVec     // route
	transactions    *prometheus.CounterVec   // result
	txDuration      prometheus.Histogram
	rowsWritten     prometheus.Counter
	queries         *prometheus.CounterVec // result
	queryDuration   prometheus.Histogram
	rowsRead        prometheus.Counter
	ingested        *prometheus.CounterVec // new: true|false
	applyDuration   prometheus.Histogram
	streamed        prometheus.Counter
	streamsOpen     prometheus.Gauge
	shed            prometheus.Counter
	state           prometheus.Collector
}

// latencyBuckets span 100 us to 10 s: local writes are a fsync (~0.1-1 ms), reads faster.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 12)

func newMetrics(s *Server) *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patina_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patina_http_request_duration_seconds", Help: "HTTP request duration by route (streams: until they end).",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patina_http_requests_in_flight", Help: "HTTP requests being served, by route (streams included).",
		}, []string{"route"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patina_transactions_total", Help: "Write transactions through the API by result (ok, error).",
		}, []string{"result"}),
		txDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "patina_transaction_duration_seconds", Help: "Duration of committed write transactions (durable and visible).",
			Buckets: latencyBuckets,
		}),
		rowsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_rows_written_total", Help: "Rows affected by committed write transactions.",
		}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patina_queries_total", Help: "Read queries by result (ok, error).",
		}, []string{"result"}),
		queryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "patina_query_duration_seconds", Help: "Duration of read queries, until the last row is sent.",
			Buckets: latencyBuckets,
		}),
		rowsRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_query_rows_total", Help: "Rows streamed by read queries.",
		}),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patina_changesets_ingested_total", Help: "Changesets received on POST /v1/changes, by whether they were new to the log.",
		}, []string{"new"}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "patina_ingest_apply_duration_seconds", Help: "Time from receiving ingested changesets to their being folded into the view.",
			Buckets: latencyBuckets,
		}),
		streamed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_changesets_streamed_total", Help: "Changesets sent on GET /v1/changes.",
		}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patina_streams_open", Help: "Long-lived streams open (changes with follow=true, subscriptions).",
		}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_requests_shed_total", Help: "Requests refused with 503 because the concurrency limit was reached.",
		}),
		state: &stateCollector{s: s},
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{
		m.requests, m.requestDuration, m.inFlight, m.transactions, m.txDuration, m.rowsWritten, m.queries,
		m.queryDuration, m.rowsRead, m.ingested, m.applyDuration, m.streamed, m.streamsOpen,
		m.shed, m.state,
	} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

var (
	descVersions  = prometheus.NewDesc("patina_log_versions", "Complete versions held in the log, all sites.", nil, nil)
	descPartials  = prometheus.NewDesc("patina_log_partial_versions", "Versions held only in part.", nil, nil)
	descChanges   = prometheus.NewDesc("patina_log_changes", "Changes (cells) held in the log.", nil, nil)
	descBytes     = prometheus.NewDesc("patina_log_bytes", "Encoded bytes of the changesets held.", nil, nil)
	descDisk      = prometheus.NewDesc("patina_log_disk_bytes", "Size of the log on disk.", nil, nil)
	descSites     = prometheus.NewDesc("patina_log_sites", "Sites the log holds changesets of.", nil, nil)
	descLastSeq   = prometheus.NewDesc("patina_log_last_seq", "Local arrival seq of the newest complete version.", nil, nil)
	descAppends   = prometheus.NewDesc("patina_log_appends_total", "Append calls to the log.", nil, nil)
	descSyncs     = prometheus.NewDesc("patina_log_syncs_total", "Group commits (fsyncs) of the log.", nil, nil)
	descFoldPos   = prometheus.NewDesc("patina_fold_position", "Last log seq folded into the view.", nil, nil)
	descFoldQueue = prometheus.NewDesc("patina_fold_queue", "Changesets in the log not yet folded into the view (fold lag, in changesets).", nil, nil)
	descGaps      = prometheus.NewDesc("patina_version_gaps", "Versions below a site's newest that this node does not hold in full.", nil, nil)
	stateDescs    = []*prometheus.Desc{descVersions, descPartials, descChanges, descBytes, descDisk, descSites, descLastSeq, descAppends, descSyncs, descFoldPos, descFoldQueue, descGaps}
)

// stateCollector reads the log's and the view's counters at scrape time.
type stateCollector struct{ s *Server }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateDescs {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.cfg.Log.Stats()
	fold := c.s.cfg.View.FoldPosition()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(descVersions, float64(st.Versions))
	gauge(descPartials, float64(st.Partials))
	gauge(descChanges, float64(st.Changes))
	gauge(descBytes, float64(st.Bytes))
	gauge(descDisk, float64(st.DiskBytes))
	gauge(descSites, float64(st.Sites))
	gauge(descLastSeq, float64(st.LastSeq))
	counter(descAppends, float64(st.Appends))
	counter(descSyncs, float64(st.Syncs))
	gauge(descFoldPos, float64(fold))
	gauge(descFoldQueue, float64(foldQueue(st.LastSeq, fold)))
	gauge(descGaps, float64(vectorGaps(c.s.cfg.Log.Vector())))
}
