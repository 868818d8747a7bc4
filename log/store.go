package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configure a Store.
type Options struct {
	// SiteID is the site id of a NEW data directory; zero means a random one. For an existing
	// directory a non-zero SiteID that differs from the stored one is ErrSiteMismatch.
	SiteID SiteID
	// MaxPartChanges is the most changes one stored part holds; larger changesets are cut.
	// Zero means DefaultMaxPartChanges.
	MaxPartChanges int
	// CacheBytes is the size of Pebble's block cache; 0 means DefaultCacheBytes. Tail and
	// Read follow arrival order, which jumps between sites in the data key space, so a cache
	// much smaller than the recent log makes every read decompress blocks again.
	CacheBytes int64
	// MemTableBytes is the most a Pebble memtable grows to before it is flushed; 0 means
	// DefaultMemTableBytes. Up to two may be held at once (one flushing). Bigger means far
	// less compaction and bigger steps of disk use (see DefaultMemTableBytes).
	MemTableBytes int64
	// MaxOpenFiles bounds the tables Pebble keeps open (its table cache); 0 means
	// DefaultMaxOpenFiles. A Get whose table is not open opens it first: several reads of
	// its footer and index.
	MaxOpenFiles int
	// NoSync skips fsync (benchmarks of the CPU path only; never in production).
	NoSync bool
	// ReadOnly opens an existing log for reading only (inspection, rebuild, backup of a
	// stopped node): nothing is written, a directory that is not a log is an error, and
	// Append, AppendLocal and SetMeta return ErrReadOnly.
	ReadOnly bool
	// FS is the filesystem Pebble keeps the log in; nil means the operating system's. The
	// simulator (package sim) gives each of its nodes an in-memory one (vfs.NewMem).
	FS vfs.FS
	// MinFreeBytes: writes are refused with ErrDiskFull while the disk has less free; 0
	// means DefaultMinFreeBytes, a negative value no check.
	MinFreeBytes int64
	// NoRepair: damage found while reading is reported but not repaired (Repair still
	// can be called). Tests of the damage reports use it.
	NoRepair bool
	// CommitDepth is how many group commits may be on their way to disk at once: while one
	// group's WAL sync runs, the next is collected, built and written behind it, so the disk
	// is never idle waiting for the committer. 0 means DefaultCommitDepth; 1 makes each group
	// wait for the previous group's sync before it is built (the store before pipelining).
	CommitDepth int
	// ScrubInterval: a background scrub pass (scrub.go) reads the whole log every this
	// long, verifying checksums and digests and repairing what it finds; 0 means none.
	ScrubInterval time.Duration
	// ScrubBytesPerSec paces a scrub pass; 0 means DefaultScrubBytesPerSec, negative no
	// limit.
	ScrubBytesPerSec int64
	// RecentChanges bounds the recent cache (recent.go): the decoded form of the last
	// versions Append stored, which Read returns without decoding them again. 0 means
	// DefaultRecentChanges, negative none.
	RecentChanges int
	Logger        *slog.Logger

	// stockTables opens Pebble with its own table sizes instead of smallTables' (the tests
	// compare the two).
	stockTables bool
	// tableBytes, when set, is the size of every table Pebble writes (tests that need many
	// tables from little data).
	tableBytes int64
}

// DefaultMaxPartChanges is the default Options.MaxPartChanges.
const DefaultMaxPartChanges = 4096

// AppendResult says what Append did with one changeset (or part).
type AppendResult struct {
	New      bool // it was not held before (false: a duplicate, skipped)
	Complete bool // its version is now complete (all parts held)
	Seq      Seq  // the version's local arrival seq, when Complete and New
	// Refused (Ingest only): ErrForged or ErrCollision when the changeset was refused; the
	// others of the call were stored all the same.
	Refused error
}

// Stats are counters for metrics.
type Stats struct {
	Versions  uint64 // complete versions held
	Partials  uint64 // versions held in part
	Changes   uint64 // changes (cells) held
	Bytes     uint64 // encoded bytes of changesets held
	DiskBytes uint64 // Pebble's size on disk
	LastSeq   Seq
	Sites     int
	Appends   uint64 // Append calls
	Syncs     uint64 // group commits (each waited for a WAL sync; pipelined groups may share one)
	// Compaction (see Compact): versions held cleared (part of Versions), changes dropped
	// and versions cleared by this node's compactions since the log was made, and the
	// oldest points a replay is exact from.
	Cleared        uint64
	Dropped        uint64
	ClearedByUs    uint64
	HorizonSeq     Seq
	HorizonTS      Timestamp
	CompactedBytes uint64 // encoded bytes compaction removed
}

// Store is the append-only log of changesets on Pebble. All methods are safe for concurrent
// use. Writes are group-committed one group at a time: by an appender that finds the
// committer idle, or by the committer goroutine for whatever callers queued while the
// previous group was being written; callers publish the groups, in order, once synced
// (commitLoop, awaitGroup).
type Store struct {
	fs      vfs.FS
	dir     string
	faults  faults
	db      *pebble.DB
	lock    *pebble.Lock
	site    SiteID
	maxPart int
	wopts   *pebble.WriteOptions
	logger  *slog.Logger
	hlc     *HLC
	// readOnly: no committer runs and every write is ErrReadOnly.
	readOnly bool
	// lenient (Inspect only): load skips persisted state it cannot read, into loadErrs.
	lenient  bool
	loadErrs []error
	metrics  *storeMetrics

	reqs     chan *appendReq
	compacts chan *compactReq // compaction and cleared ranges, applied by the committer
	quit     chan struct{}    // closed by Close: the committer stops
	done     chan struct{}    // closed when the committer has stopped
	closedCh chan struct{}    // closed by Close: wakes waiters

	// closeMu guards the db against Close while a reader or an enqueuer uses it.
	closeMu sync.RWMutex
	closed  bool

	// compactMu: one compaction pass at a time.
	compactMu sync.Mutex

	// localMu orders local appends: versions are reserved and queued in the same order.
	localMu   sync.Mutex
	nextLocal atomic.Uint64

	// Committer state: the vector, arrival seq and counters including the groups written
	// and not yet published (see commitLoop). commitMu guards it: the committer goroutine
	// holds it while it builds and writes a group (and around compactions and repairs), and
	// an appender that finds the committer idle holds it to write its own group
	// (tryCommit). queued counts appends sent to the committer and not yet written.
	commitMu         sync.Mutex
	queued           atomic.Int64
	work             *Vector
	wLastSeq         Seq
	wChanges, wBytes uint64

	// The commit pipeline: a token in slots per group on its way to disk. pubQ holds the
	// groups written and not yet published, in the order they were written (qMu guards
	// it); whoever holds pubMu publishes its head: a caller waiting for its own group or a
	// later one (awaitGroup), or the committer before a compaction, a repair or Close.
	slots chan struct{}
	pubMu sync.Mutex
	qMu   sync.Mutex
	pubQ  []*inflight

	// mu guards the published (durable) state below.
	mu      sync.RWMutex
	vec     *Vector
	lastSeq Seq
	changes uint64
	bytes   uint64
	compSt  compactionState
	notify  chan struct{} // closed and replaced whenever lastSeq grows
	failed  error         // a commit failed: the store refuses further writes

	forge forgeState // Ingest's refusals (forge.go)

	scrub    scrubState  // background scrub (scrub.go)
	rep      repairState // self-repair of damaged files (repair.go)
	ready    atomic.Bool // open is done: damage met from now on starts a repair
	repairs  chan *repairReq
	noRepair bool

	recent *recentCache // decoded recent versions (recent.go)

	appends atomic.Uint64
	syncs   atomic.Uint64
	waiting atomic.Int32 // callers blocked in Wait (tails at the end of the log)
}

type appendReq struct {
	items []item
	local bool
	res   []AppendResult // set by the committer before written is closed
	err   error          // the answer, set before done is closed
	done  chan struct{}
	// written is closed by the committer once the group is written (not synced) or the
	// request refused; wErr is then the refusal or the write's failure (AppendAsync).
	written chan struct{}
	wErr    error
	// f is the group the request was written in, set before written is closed (nil: answered
	// without one); its waiter may publish it itself (awaitGroup).
	f *inflight
}

// item is one part to store: cs is a part (a view of the caller's changeset), enc its
// encoded bytes, idx the index of the caller's changeset it came from.
type item struct {
	cs  *Changeset
	enc []byte
	idx int
}

// Open opens or creates the log in dir.
func Open(dir string, opts Options) (*Store, error) { return open(dir, opts, false) }

// open is Open; lenient (for Inspect, with ReadOnly) tolerates unreadable persisted state.
func open(dir string, opts Options, lenient bool) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "log")
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
		if !opts.ReadOnly {
			fs = privateFS{vfs.Default}
		}
	}
	// The store exists before Pebble opens: Pebble may report damage (a compaction that
	// reads a damaged file) before Open returns, and the listener records it on s.
	s := &Store{
		fs: fs, dir: dir,
		maxPart: opts.MaxPartChanges, wopts: pebble.Sync, logger: logger,
		hlc: NewHLC(), readOnly: opts.ReadOnly, lenient: lenient && opts.ReadOnly, metrics: newStoreMetrics(),
		reqs: make(chan *appendReq, 1024), compacts: make(chan *compactReq), quit: make(chan struct{}), done: make(chan struct{}),
		closedCh: make(chan struct{}), notify: make(chan struct{}),
		repairs: make(chan *repairReq), noRepair: opts.NoRepair,
	}
	recent := opts.RecentChanges
	if recent == 0 {
		recent = DefaultRecentChanges
	}
	s.recent = newRecentCache(max(recent, 0))
	popts := pebbleOptions(opts, fs, logger, s.onCorruption)
	if opts.ReadOnly {
		// Without this check Pebble reports a missing directory in its own words.
		if _, err := fs.Stat(dir); err != nil {
			return nil, fmt.Errorf("open log %s read-only: %w", dir, err)
		}
	} else if err := openPrivate(fs, dir, logger); err != nil {
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	// Take Pebble's directory lock ourselves, so that "another process has it" gets its own
	// error instead of being one of Pebble's many open failures.
	lock, err := pebble.LockDirectory(dir, fs)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w (a running node?): %w", dir, ErrLocked, err)
	}
	popts.Lock = lock
	db, err := pebble.Open(dir, popts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	s.db, s.lock = db, lock
	depth := opts.CommitDepth
	if depth <= 0 {
		depth = DefaultCommitDepth
	}
	s.slots = make(chan struct{}, depth)
	if s.maxPart <= 0 {
		s.maxPart = DefaultMaxPartChanges
	}
	s.faults.minFree.Store(uint64(DefaultMinFreeBytes))
	if opts.MinFreeBytes != 0 {
		s.faults.minFree.Store(uint64(max(opts.MinFreeBytes, 0)))
	}
	if opts.NoSync {
		s.wopts = pebble.NoSync
	}
	if err := s.load(opts.SiteID); err != nil {
		db.Close()
		lock.Close()
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	s.startScrub(opts)
	if s.readOnly {
		close(s.done)
		return s, nil
	}
	// A repair's table file left by a crash before its ingest (repair.go).
	_ = fs.RemoveAll(fs.PathJoin(dir, repairDir))
	if err := writeIdentity(fs, dir, s.site); err != nil {
		s.logger.Warn("could not write the copy of the site id (recover.go); open goes on", "err", err)
	}
	s.resetWork() // before the first append: an appender may write its own group (tryCommit)
	go s.commitLoop()
	s.ready.Store(true)
	if len(s.Damage()) > 0 { // met at open (recover.go): the repair re-writes the log
		s.repairSoon()
	}
	return s, nil
}

// Close closes the store; idempotent. Appends queued but not yet committed fail with
// ErrClosed; tails and waiters end with ErrClosed.
func (s *Store) Close() error {
	s.stopScrub() // a pass holds closeMu's read side while it sleeps
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	close(s.closedCh)
	s.closeMu.Unlock()
	<-s.done
	// Readers hold closeMu.RLock while they use the db; Lock waits for them.
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	// Pebble drops its reference to the lock on Close; ours goes last.
	return errors.Join(s.db.Close(), s.lock.Close())
}

// SiteID is this node's site id.
func (s *Store) SiteID() SiteID { return s.site }

// rlock takes the read side of closeMu, failing after Close.
func (s *Store) rlock() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Stats returns counters for metrics.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	st := Stats{LastSeq: s.lastSeq, Changes: s.changes, Bytes: s.bytes, Sites: len(s.vec.Sites)}
	st.Versions, st.Partials = s.vec.Counts()
	for _, sv := range s.vec.Sites {
		st.Cleared += sv.Cleared.Count()
	}
	st.Dropped, st.ClearedByUs, st.HorizonSeq, st.HorizonTS = s.compSt.dropped, s.compSt.cleared, s.compSt.horizonSeq, s.compSt.horizonTS
	st.CompactedBytes = s.compSt.bytes
	s.mu.RUnlock()
	st.Appends, st.Syncs = s.appends.Load(), s.syncs.Load()
	if s.rlock() == nil {
		st.DiskBytes = s.db.Metrics().DiskSpaceUsage()
		s.closeMu.RUnlock()
	}
	return st
}

// Meta reads a metadata value (nil, nil when unset); SetMeta writes one durably.
func (s *Store) Meta(key string) ([]byte, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	v, err := s.get(userMetaKey(key))
	if err != nil {
		return nil, fmt.Errorf("meta %q: %w", key, err)
	}
	return v, nil
}

// SetMeta writes a metadata value durably. A nil value deletes the key.
func (s *Store) SetMeta(key string, val []byte) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	s.rep.metaMu.RLock()
	defer s.rep.metaMu.RUnlock()
	var err error
	if val == nil {
		err = s.db.Delete(userMetaKey(key), pebble.Sync)
	} else {
		err = s.db.Set(userMetaKey(key), val, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("set meta %q: %w", key, err)
	}
	return nil
}

// pebbleLogger routes Pebble's own messages to slog at debug level (errors at warn), so the
// store is quiet unless asked.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "source", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Warn(fmt.Sprintf(format, args...), "source", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "source", "pebble")
	panic(msg) // Pebble's contract: Fatalf does not return.
}
