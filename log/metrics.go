package log

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// storeMetrics are recorded by every Store; Collector exposes them. Histograms are kept
// even when nobody collects them: an observation costs a few atomic adds.
type storeMetrics struct {
	appendSeconds prometheus.Histogram // Append latency, queueing and fsync included
	commitSeconds prometheus.Histogram // one group commit: batch build, write and fsync
	batchAppends  prometheus.Histogram // append calls per group commit
	// compaction
	compactSeconds prometheus.Histogram
	compactDropped prometheus.Counter
	compactCleared prometheus.Counter
	compactJudged  prometheus.Histogram
	// forged history (forge.go)
	forged     prometheus.Counter
	collisions prometheus.Counter
}

func newStoreMetrics() *storeMetrics {
	return &storeMetrics{
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_log_append_seconds",
			Help: "Latency of Append and AppendLocal calls, queueing and fsync included.", Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_log_commit_seconds",
			Help: "Duration of one group commit: Pebble batch and fsync.", Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16)}),
		batchAppends: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_log_commit_batch_appends",
			Help: "Append calls sharing one group commit (one fsync).", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		compactSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_log_compaction_seconds",
			Help: "Duration of one compaction pass.", Buckets: prometheus.ExponentialBuckets(1e-4, 2, 18)}),
		compactDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_log_compaction_dropped_changes_total",
			Help: "Superseded changes compaction dropped from the log (its rate is the compaction rate)."}),
		compactCleared: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_log_compaction_cleared_versions_total",
			Help: "Versions compaction cleared (all their changes superseded)."}),
		compactJudged: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "patina_log_compaction_judged_versions",
			Help: "Versions one compaction pass handed to the judge (an incremental pass judges only versions whose rows changed since they were judged).", Buckets: prometheus.ExponentialBuckets(1, 4, 12)}),
		forged: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_log_forged_refused_total",
			Help: "Changesets of this node's own site that it did not write, refused by ingest (gossip, sync, POST /v1/changes)."}),
		collisions: prometheus.NewCounter(prometheus.CounterOpts{Name: "patina_log_digest_collisions_total",
			Help: "Versions that arrived with another content digest than the copy held (refused; two writers of one site or a forgery)."}),
	}
}

var (
	descQueue    = prometheus.NewDesc("patina_log_append_queue_length", "Append calls queued for the committer.", nil, nil)
	descInflight = prometheus.NewDesc("patina_log_commit_groups_in_flight", "Group commits written and waiting for their WAL sync (at most the commit depth).", nil, nil)
	descLastSeq  = prometheus.NewDesc("patina_log_last_seq", "Local arrival seq of the newest complete version.", nil, nil)
	descVersions = prometheus.NewDesc("patina_log_versions", "Versions held, by state (complete or partial).", []string{"state"}, nil)
	descChanges  = prometheus.NewDesc("patina_log_changes", "Changes (cells) held.", nil, nil)
	descBytes    = prometheus.NewDesc("patina_log_bytes", "Encoded bytes of the changesets held.", nil, nil)
	descDisk     = prometheus.NewDesc("patina_log_disk_bytes", "Size of the log's Pebble store on disk.", nil, nil)
	descSites    = prometheus.NewDesc("patina_log_sites", "Sites with versions in the log.", nil, nil)
	descAppends  = prometheus.NewDesc("patina_log_appends_total", "Append and AppendLocal calls queued.", nil, nil)
	descSyncs    = prometheus.NewDesc("patina_log_syncs_total", "Group commits, each waited for a WAL sync (pipelined groups may share one fsync).", nil, nil)
	descWaiting  = prometheus.NewDesc("patina_log_tails_waiting", "Tails and Wait calls blocked at the end of the log.", nil, nil)
	descCleared  = prometheus.NewDesc("patina_log_cleared_versions", "Versions held cleared (all changes superseded; kept as ranges in the vector).", nil, nil)
	descHorizon  = prometheus.NewDesc("patina_log_compaction_horizon_seq", "Oldest arrival seq a replay is exact from (0: nothing compacted).", nil, nil)
	descHorizTS  = prometheus.NewDesc("patina_log_compaction_horizon_timestamp_seconds", "Oldest commit time a replay is exact from (0: nothing compacted).", nil, nil)
	// Faults of the disk (faults.go, damage.go).
	descCorruptions = prometheus.NewDesc("patina_log_corruptions_total", "Reads that met a damaged Pebble file (checksum mismatch); the damaged range is not served.", nil, nil)
	descDamaged     = prometheus.NewDesc("patina_log_damaged_files", "Pebble files found damaged since the store opened.", nil, nil)
	descDiskFull    = prometheus.NewDesc("patina_log_disk_full", "1 while writes are refused because the log's disk has less than db.min_free_bytes free.", nil, nil)
	descRefused     = prometheus.NewDesc("patina_log_refused_writes_total", "Appends refused because the log's disk was full (HTTP 507).", nil, nil)
	descRepairs     = prometheus.NewDesc("patina_log_repairs_total", "Repairs of a damaged log (damaged files removed, unreadable versions dropped to be fetched again from peers).", nil, nil)
	descRepairedOut = prometheus.NewDesc("patina_log_repair_removed_versions_total", "Unreadable versions repairs removed from the log.", nil, nil)
	descRepairWait  = prometheus.NewDesc("patina_log_repair_pending_versions", "Versions a repair removed that are not held again yet (sync fetches them from peers).", nil, nil)
	descFreeBytes   = prometheus.NewDesc("patina_log_disk_free_bytes", "Free bytes of the log's disk at the last check (0 before the first write).", nil, nil)
	descWALFsync    = prometheus.NewDesc("patina_log_wal_fsync_seconds", "Duration of the WAL's fsyncs, as Pebble measures them: the disk's part of every group commit (on a busy machine it includes the wait for a CPU to finish the sync).", nil, nil)
	descTables      = prometheus.NewDesc("patina_log_tables", "Pebble tables (sstables) of the log.", nil, nil)
	descOpenTables  = prometheus.NewDesc("patina_log_open_tables", "Tables Pebble holds open in its table cache (at most db.log_max_open_files less a few for its own files).", nil, nil)
	descTableOpens  = prometheus.NewDesc("patina_log_table_cache_lookups_total", "Reads of a table, by whether the table cache held it open (hit) or the read opened it first (miss: its footer and index read again).", []string{"result"}, nil)
	descRecentReads = prometheus.NewDesc("patina_log_recent_reads_total", "Versions Read returned, by whether the recent cache held them decoded (hit) or they were read and decoded from Pebble (miss).", []string{"result"}, nil)
)

type storeCollector struct{ s *Store }

// Collector returns a Prometheus collector of the store's metrics (patina_log_*): queue
// length, last seq, versions, changes and bytes held, appends and syncs, and histograms of
// append latency, commit duration and group-commit size. Register it once per store.
func (s *Store) Collector() prometheus.Collector { return storeCollector{s} }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueue, descInflight, descLastSeq, descVersions, descChanges, descBytes, descDisk, descSites, descAppends, descSyncs, descWaiting, descCleared, descHorizon, descHorizTS,
		descCorruptions, descDamaged, descDiskFull, descRefused, descFreeBytes, descRepairs, descRepairedOut, descRepairWait, descRecentReads, descWALFsync, descTables, descOpenTables, descTableOpens} {
		ch <- d
	}
	c.s.describeScrub(ch)
	c.s.metrics.compactSeconds.Describe(ch)
	c.s.metrics.compactDropped.Describe(ch)
	c.s.metrics.compactCleared.Describe(ch)
	c.s.metrics.compactJudged.Describe(ch)
	c.s.metrics.forged.Describe(ch)
	c.s.metrics.collisions.Describe(ch)
	c.s.metrics.appendSeconds.Describe(ch)
	c.s.metrics.commitSeconds.Describe(ch)
	c.s.metrics.batchAppends.Describe(ch)
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descQueue, float64(len(c.s.reqs)))
	gauge(descInflight, float64(len(c.s.slots)))
	gauge(descLastSeq, float64(st.LastSeq))
	gauge(descVersions, float64(st.Versions), "complete")
	gauge(descVersions, float64(st.Partials), "partial")
	gauge(descChanges, float64(st.Changes))
	gauge(descBytes, float64(st.Bytes))
	gauge(descDisk, float64(st.DiskBytes))
	gauge(descSites, float64(st.Sites))
	gauge(descWaiting, float64(c.s.waiting.Load()))
	gauge(descCleared, float64(st.Cleared))
	gauge(descHorizon, float64(st.HorizonSeq))
	gauge(descHorizTS, float64(st.HorizonTS)/1e9)
	ch <- prometheus.MustNewConstMetric(descAppends, prometheus.CounterValue, float64(st.Appends))
	ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(st.Syncs))
	f := &c.s.faults
	ch <- prometheus.MustNewConstMetric(descCorruptions, prometheus.CounterValue, float64(f.corruptions.Load()))
	gauge(descDamaged, float64(len(c.s.Damage())))
	full := 0.0
	if f.diskFull.Load() {
		full = 1
	}
	gauge(descDiskFull, full)
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(f.refused.Load()))
	gauge(descFreeBytes, float64(f.freeBytes.Load()))
	done, removed, pending := c.s.Repairs()
	ch <- prometheus.MustNewConstMetric(descRepairs, prometheus.CounterValue, float64(done))
	ch <- prometheus.MustNewConstMetric(descRepairedOut, prometheus.CounterValue, float64(removed))
	gauge(descRepairWait, float64(pending))
	hits, misses := c.s.recent.counts()
	ch <- prometheus.MustNewConstMetric(descRecentReads, prometheus.CounterValue, float64(hits), "hit")
	ch <- prometheus.MustNewConstMetric(descRecentReads, prometheus.CounterValue, float64(misses), "miss")
	c.s.collectPebble(ch)
	c.s.collectScrub(ch)
	c.s.metrics.appendSeconds.Collect(ch)
	c.s.metrics.commitSeconds.Collect(ch)
	c.s.metrics.batchAppends.Collect(ch)
	c.s.metrics.compactSeconds.Collect(ch)
	c.s.metrics.compactDropped.Collect(ch)
	c.s.metrics.compactCleared.Collect(ch)
	c.s.metrics.compactJudged.Collect(ch)
	c.s.metrics.forged.Collect(ch)
	c.s.metrics.collisions.Collect(ch)
}

// collectPebble sends what Pebble's metrics say of the log's tables and its WAL, from one
// read of them (nothing once the store is closed).
func (s *Store) collectPebble(ch chan<- prometheus.Metric) {
	if err := s.rlock(); err != nil {
		return
	}
	defer s.closeMu.RUnlock()
	pm := s.db.Metrics()
	ch <- prometheus.MustNewConstMetric(descTables, prometheus.GaugeValue, float64(pm.Total().TablesCount))
	ch <- prometheus.MustNewConstMetric(descOpenTables, prometheus.GaugeValue, float64(pm.FileCache.TableCount))
	ch <- prometheus.MustNewConstMetric(descTableOpens, prometheus.CounterValue, float64(pm.FileCache.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(descTableOpens, prometheus.CounterValue, float64(pm.FileCache.Misses), "miss")
	if m := walFsyncMetric(pm); m != nil {
		ch <- m
	}
}

// walFsyncMetric is Pebble's histogram of WAL fsync latencies in seconds (Pebble keeps it in
// nanoseconds, unnamed), or nil when Pebble has none (read-only).
func walFsyncMetric(pm *pebble.Metrics) prometheus.Metric {
	h := pm.LogWriter.FsyncLatency
	if h == nil {
		return nil
	}
	var pb dto.Metric
	if err := h.Write(&pb); err != nil || pb.Histogram == nil {
		return nil
	}
	buckets := make(map[float64]uint64, len(pb.Histogram.Bucket))
	for _, b := range pb.Histogram.Bucket {
		buckets[b.GetUpperBound()/1e9] = b.GetCumulativeCount()
	}
	m, err := prometheus.NewConstHistogram(descWALFsync, pb.Histogram.GetSampleCount(), pb.Histogram.GetSampleSum()/1e9, buckets)
	if err != nil {
		return nil
	}
	return m
}
