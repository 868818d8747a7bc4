package log

import (
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleOptions are the Pebble options the log opens with: its cache and memtable sizes,
// its table sizes (smallTables) and table cache (DefaultMaxOpenFiles), and damage reported
// to onCorruption instead of Pebble's Fatalf.
func pebbleOptions(opts Options, fs vfs.FS, logger *slog.Logger, onCorruption func(pebble.DataCorruptionInfo)) *pebble.Options {
	popts := &pebble.Options{Logger: pebbleLogger{logger}, ReadOnly: opts.ReadOnly, CacheSize: opts.CacheBytes, FS: fs}
	// Damage found while reading is an error of that read, recorded and logged by the
	// store, not Pebble's default Fatalf: the node keeps serving what is intact.
	popts.EventListener = &pebble.EventListener{DataCorruption: onCorruption}
	if popts.CacheSize <= 0 {
		popts.CacheSize = DefaultCacheBytes
	}
	popts.MemTableSize = DefaultMemTableBytes
	popts.MaxOpenFiles = opts.MaxOpenFiles
	if popts.MaxOpenFiles <= 0 {
		popts.MaxOpenFiles = DefaultMaxOpenFiles()
	}
	if !opts.stockTables {
		smallTables(popts)
	}
	if opts.tableBytes > 0 {
		for i := range popts.TargetFileSizes {
			popts.TargetFileSizes[i] = opts.tableBytes
		}
	}
	if opts.MemTableBytes > 0 {
		popts.MemTableSize = uint64(opts.MemTableBytes)
	}
	return popts
}

// smallTables sets the sizes of the tables Pebble writes: 1 MiB at every level (Pebble: 2 MB
// in L0, doubling per level) and flushes split every 16 KiB of an L0 interval (Pebble: 4 MB).
// The log's keys grow at several tails at once (each site's data, the arrival index, the
// vectors and stats each commit rewrites), and a table that holds two tails spans every key
// between them: with Pebble's sizes every compaction rewrote the arrival index and the data
// tables beside it. Small tables end where a tail ends, so most new tables reach the bottom
// by a move, not a rewrite, with L0 holding up to Pebble's 500-file threshold in one sublevel
// (its files overlap nothing) and range reads no slower. The cost is several times as many
// tables, which the table cache (DefaultMaxOpenFiles) must hold for a random Get not to open
// its table first. The figures are in bench/RESULTS.md, issue 14 rounds 13 and 14.
func smallTables(o *pebble.Options) {
	o.FlushSplitBytes = 16 << 10
	for i := range o.TargetFileSizes {
		o.TargetFileSizes[i] = 1 << 20
	}
}

// DefaultCacheBytes is the default Options.CacheBytes.
const DefaultCacheBytes = 64 << 20

// DefaultMemTableBytes is the default Options.MemTableBytes: Pebble's own 4 MB. Every flush
// of the log's memtable is an L0 table whose key range spans the arrival index and the keys
// each commit rewrites (the stats, the vector), so every L0 compaction rewrites the arrival
// index below it and the tails of the sites' data; a bigger memtable rewrites it less often
// (bench/RESULTS.md, issue 14 round 11). The default stays small because the disk use
// moves by about twice the memtable at once (Pebble preallocates each WAL file at 110% of
// it, and a flush writes a table as big), and MinFreeBytes must cover such a step for the
// disk-full refusal to come before Pebble meets a full disk.
const DefaultMemTableBytes = 4 << 20
