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
	txOK, txError   prometheus.Counter       // transactions' two results, looked up once
	txDuration      prometheus.Histogram
	rowsWritten     prometheus.Counter
	queries         *prometheus.CounterVec // result
	queryDuration   prometheus.Histogram
	rowsRead        prometheus.Counter
	ingested        *prometheus.CounterVec // new: true|false
	applyDuration   prometheus.Histogram
	streamed        prometheus.Counter
	backupStreamed  prometheus.Counter // backup.go
	streamsOpen     prometheus.Gauge
	shed            prometheus.Counter
	queued          prometheus.Gauge
	queueWait       prometheus.Histogram
	slowBodies      prometheus.Counter
	authFailures    *prometheus.CounterVec // code: 401 or 403
	writeConns      prometheus.Gauge       // the write listener's open connections
	state           prometheus.Collector
}

// latencyBuckets span 100 us to 10 s: local writes are a fsync (~0.1-1 ms), reads faster.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 12)

func newMetrics(s *Server) *metrics {
	m := &metrics{
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
		backupStreamed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_backup_changesets_total", Help: "Changesets sent by GET /v1/backup (online backups).",
		}),
		streamed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_changesets_streamed_total", Help: "Changesets sent on GET /v1/changes.",
		}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patina_streams_open", Help: "Long-lived streams open (changes with follow=true, subscriptions).",
		}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_requests_shed_total", Help: "Requests refused with 503 because the concurrency limit was reached (the admission queue full, or no slot within its timeout).",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patina_requests_queued", Help: "Data requests waiting in the admission queue for a concurrency slot.",
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "patina_request_queue_wait_seconds", Help: "Time data requests admitted from the queue waited for a slot.",
			Buckets: latencyBuckets,
		}),
		slowBodies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_request_body_timeouts_total", Help: "Requests refused with 408 because their body took longer than the body read timeout.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patina_http_auth_failures_total", Help: "Requests refused by the token check: 401 (no or unknown token, malformed header) or 403 (scope too small).",
		}, []string{"code"}),
		writeConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patina_write_listener_connections", Help: "Connections open on the write listener (api.write_addr): how many clients write through it; its requests count in patina_http_requests_total{route=\"POST /v1/transactions\"} with the API's.",
		}),
		state: &stateCollector{s: s},
	}
	m.txOK, m.txError = m.transactions.WithLabelValues("ok"), m.transactions.WithLabelValues("error")
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{
		m.requests, m.requestDuration, m.inFlight, m.transactions, m.txDuration, m.rowsWritten, m.queries,
		m.queryDuration, m.rowsRead, m.ingested, m.applyDuration, m.streamed, m.backupStreamed, m.streamsOpen,
		m.shed, m.queued, m.queueWait, m.slowBodies, m.authFailures, m.writeConns, m.state,
	} {
		errs = append(errs, reg.Register(c))
	}
	if lc, ok := m.state.(*stateCollector).s.cfg.Log.(logCollector); ok {
		errs = append(errs, reg.Register(lc.Collector()))
	}
	return errors.Join(errs...)
}

var (
	descFoldPos   = prometheus.NewDesc("patina_fold_position", "Last log seq folded into the view.", nil, nil)
	descFoldQueue = prometheus.NewDesc("patina_fold_queue", "Changesets in the log not yet folded into the view (fold lag, in changesets).", nil, nil)
	descGaps      = prometheus.NewDesc("patina_version_gaps", "Versions below a site's newest that this node does not hold in full.", nil, nil)
	stateDescs    = []*prometheus.Desc{descFoldPos, descFoldQueue, descGaps}
)

// logCollector is implemented by a ChangeLog that exports its own metrics (*log.Store does:
// patina_log_*). The server registers it, so that the log's figures appear exactly once
// however the node is assembled.
type logCollector interface {
	Collector() prometheus.Collector
}

// stateCollector reads the view's fold position and the vector's gaps at scrape time.
type stateCollector struct{ s *Server }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateDescs {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	fold := c.s.cfg.View.FoldPosition()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(descFoldPos, float64(fold))
	gauge(descFoldQueue, float64(foldQueue(c.s.cfg.Log.LastSeq(), fold)))
	gauge(descGaps, float64(vectorGaps(c.s.cfg.Log.Vector())))
}
