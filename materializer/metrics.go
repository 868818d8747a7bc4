package materializer

import (
	"time"

	"github.com/patinadb/patina/log"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	foldLag     prometheus.Gauge
	queue       prometheus.Gauge
	foldBatch   prometheus.Histogram
	txGroup     prometheus.Histogram
	txLatency   prometheus.Histogram
	foldLatency prometheus.Histogram
	cells       prometheus.Counter
	commits     prometheus.Counter
	failed      prometheus.Counter
	// compaction
	compactLag     prometheus.Gauge
	compactPasses  prometheus.Counter
	compactFull    prometheus.Counter
	compactWaiting prometheus.Gauge
	// interrupted statements
	interrupted prometheus.Counter
	txRetried   prometheus.Counter
	txAbandoned prometheus.Counter
	// txViewDeferred: transactions the log took after the view failed to commit them.
	txViewDeferred prometheus.Counter
	writerFailures prometheus.Counter

	schemaChangesets prometheus.Counter
	schemaRebuilds   prometheus.Counter
	// schemaTableRebuilds: tables recreated and refolded alone (migrate.go's recreateTable).
	schemaTableRebuilds prometheus.Counter
	schemaLagging       prometheus.Counter
	schemaConflicts     prometheus.Gauge
	schemaWaiting       prometheus.Gauge

	// a damaged view (heal.go)
	viewCorruptions prometheus.Counter
	viewCorrupt     prometheus.Gauge
	viewHeals       *prometheus.CounterVec
	// the writer's pipeline (group.go)
	pipeDepth         prometheus.Gauge
	viewAheadRebuilds *prometheus.CounterVec
	// the view's WAL checkpoints (checkpoint.go)
	checkpoints        prometheus.Counter
	checkpointFailures prometheus.Counter
	checkpointSeconds  prometheus.Histogram
	walFrames          prometheus.Gauge
	walBehind          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		foldLag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_materializer_fold_lag",
			Help: "Complete versions in the log not yet folded into the view."}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_materializer_queue_length",
			Help: "Requests waiting for the writer loop."}),
		foldBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_materializer_fold_batch_changesets",
			Help: "Changesets folded per SQLite transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		txGroup: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_materializer_tx_group_size",
			Help: "Local transactions committed per SQLite commit and log sync.", Buckets: prometheus.ExponentialBuckets(1, 2, 8)}),
		txLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_materializer_tx_seconds",
			Help: "Latency of local transactions, queueing included.", Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16)}),
		foldLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_materializer_commit_seconds",
			Help: "Duration of writer transactions that folded remote changesets.", Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16)}),
		cells: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_materializer_cells_total",
			Help: "Cells (changes) folded or written locally."}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_materializer_commits_total",
			Help: "SQLite commits of the writer loop."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_materializer_refused_changesets_total",
			Help: "Changesets the view refused (kept in the log, listed in __patina_failed)."}),
		compactLag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_log_compaction_lag_versions",
			Help: "Versions folded since the last log compaction pass started (not yet judged)."}),
		compactPasses: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_log_compaction_passes_total",
			Help: "Log compaction passes completed."}),
		compactFull: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_log_compaction_full_passes_total",
			Help: "Compaction passes that judged every version (after a start, a rebuild, or too many superseded versions waiting); the others judge only versions whose rows changed."}),
		compactWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_log_compaction_waiting_versions",
			Help: "Versions the fold marked as possibly superseded that no compaction pass has judged yet (waiting for the next pass or the retention window)."}),
		interrupted: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_materializer_interrupted_statements_total",
			Help: "Statements of local transactions interrupted at their deadline, when their client left, or at shutdown."}),
		txRetried: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_materializer_tx_retried_total",
			Help: "Local transactions run again because an interrupted statement of their group rolled the writer transaction back."}),
		txAbandoned: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_materializer_tx_abandoned_total",
			Help: "Local transactions whose caller's deadline passed (or who left) while they waited for the writer; they never ran."}),
		writerFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_materializer_writer_failures_total",
			Help: "Writer iterations that failed (a full disk, an I/O error, a damaged view); the writer retries every 100 ms, and logs one line per 10 s."}),
		txViewDeferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_materializer_tx_view_deferred_total",
			Help: "Local transactions committed in the log whose view commit failed (a full disk, an I/O error); the view folds them from the log once it can commit again."}),

		schemaChangesets: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_schema_changesets_total",
			Help: "Schema changesets folded into the view (local and remote)."}),
		schemaRebuilds: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_schema_rebuilds_total",
			Help: "Whole-view rebuilds a schema changeset caused (only when a recreated table's own indexes no longer fit the merged columns)."}),
		schemaTableRebuilds: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_schema_table_rebuilds_total",
			Help: "Tables a schema changeset made the view recreate and refold from the log alone (concurrent columns reordered, or a conflict won by a definition the view had not applied)."}),
		schemaLagging: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_schema_file_lagging_total",
			Help: "Schema file statements skipped at start because they lag the replicated schema."}),
		schemaConflicts: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_schema_conflicts",
			Help: "Schema elements that lost the merge (a table or column defined otherwise elsewhere, or refused); see GET /v1/schema."}),
		schemaWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_schema_waiting_elements",
			Help: "Schema elements for tables whose definition has not arrived yet."}),

		viewCorruptions: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_view_corruptions_total",
			Help: "Statements (and start-up checks) that found views.db damaged."}),
		viewCorrupt: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_view_corrupt",
			Help: "1 while views.db is known damaged and its rebuild from the log has not finished."}),
		viewHeals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "patina_view_heals_total",
			Help: "Rebuilds of a damaged view from the log, by result (ok, failed)."}, []string{"result"}),
		pipeDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_materializer_groups_syncing",
			Help: "Writer groups on their way: being built, or committed to the view and waiting for their log sync (at most the log's commit depth)."}),
		viewAheadRebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "patina_view_ahead_rebuilds_total",
			Help: "Rebuilds of a view that held changesets its log did not make durable (a crash between a commit and its sync: at open; a failed WAL sync: running)."}, []string{"when"}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_view_checkpoints_total",
			Help: "PASSIVE checkpoints of views.db's WAL run by the checkpointer, beside the writer."}),
		checkpointFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_view_checkpoint_failures_total",
			Help: "Checkpointer runs that failed (the writer then checkpoints itself past its safety threshold)."}),
		checkpointSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_view_checkpoint_seconds",
			Help: "Time of one checkpointer run: copying the WAL's new pages into views.db and syncing both.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		walFrames: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_view_wal_frames",
			Help: "Frames in views.db's WAL at the last checkpoint (the WAL restarts from its start after a complete one)."}),
		walBehind: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patina_view_wal_frames_not_checkpointed",
			Help: "Frames the last checkpoint could not copy: a reader's snapshot still needs them. Growing: a long read holds the WAL."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.foldLag, m.queue, m.foldBatch, m.txGroup, m.txLatency, m.foldLatency, m.cells, m.commits, m.failed, m.compactLag, m.compactPasses, m.compactFull, m.compactWaiting, m.interrupted, m.txRetried, m.txAbandoned, m.txViewDeferred, m.writerFailures,
			m.schemaChangesets, m.schemaRebuilds, m.schemaTableRebuilds, m.schemaLagging, m.schemaConflicts, m.schemaWaiting,
			m.viewCorruptions, m.viewCorrupt, m.viewHeals, m.pipeDepth, m.viewAheadRebuilds,
			m.checkpoints, m.checkpointFailures, m.checkpointSeconds, m.walFrames, m.walBehind} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observeCommit(folded, local, cells int, _ time.Duration, lag log.Seq) {
	m.commits.Inc()
	if folded > 0 {
		m.foldBatch.Observe(float64(folded))
	}
	if local > 0 {
		m.txGroup.Observe(float64(local))
	}
	m.cells.Add(float64(cells))
	m.foldLag.Set(float64(lag))
}

// registerClockFilterMetrics exports the clock filter's counters (clock.go). They are plain
// atomics on the fold's path, read only when the registry is scraped.
func (m *Materializer) registerClockFilterMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "patina_materializer_clock_reads_skipped_total",
			Help: "Clock lookups of new rows the per-table clock filter proved unnecessary (keys above every stored clock row, never written above it); a random-key workload skips few."},
			func() float64 { return float64(m.clockSkips.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "patina_materializer_clock_filter_loads_total",
			Help: "Loads of a table's clock filter from the view's clock table (first use, after a rebuild or a migration, or when it filled up)."},
			func() float64 { return float64(m.clockFilterLoads.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
