package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sort"
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
	Logger           *slog.Logger
}

// DefaultCacheBytes is the default Options.CacheBytes.
const DefaultCacheBytes = 64 << 20

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
// use. Writes go through one committer goroutine that group-commits whatever callers queued
// while the previous group was being written, and one goroutine that waits for each group's
// sync and answers its callers (commitLoop).
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

	// Committer-only state: the vector, arrival seq and counters including the groups
	// written and not yet published (see commitLoop).
	work             *Vector
	wLastSeq         Seq
	wChanges, wBytes uint64

	// The commit pipeline: a token in slots per group on its way to disk; synced carries
	// them from commitLoop to syncLoop, which closes syncDone when it ends.
	slots    chan struct{}
	synced   chan *inflight
	syncDone chan struct{}

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

	appends atomic.Uint64
	syncs   atomic.Uint64
	waiting atomic.Int32 // callers blocked in Wait (tails at the end of the log)
}

type appendReq struct {
	items []item
	local bool
	res   []AppendResult
	err   error
	done  chan struct{}
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
	popts := &pebble.Options{Logger: pebbleLogger{logger}, ReadOnly: opts.ReadOnly, CacheSize: opts.CacheBytes, FS: fs}
	// Damage found while reading is an error of that read, recorded and logged by the
	// store, not Pebble's default Fatalf: the node keeps serving what is intact.
	popts.EventListener = &pebble.EventListener{DataCorruption: s.onCorruption}
	if popts.CacheSize <= 0 {
		popts.CacheSize = DefaultCacheBytes
	}
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
	s.slots, s.synced, s.syncDone = make(chan struct{}, depth), make(chan *inflight, depth), make(chan struct{})
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
	go s.commitLoop()
	s.ready.Store(true)
	if len(s.Damage()) > 0 { // met at open (recover.go): the repair re-writes the log
		s.repairSoon()
	}
	return s, nil
}

// load reads (or, in a new directory, writes) the metadata and the persisted vector. A
// writable open that meets damage there rebuilds them from the data (recover.go).
func (s *Store) load(want SiteID) error {
	err := s.loadStored(want)
	if err == nil || s.readOnly || !isCorrupt(err) {
		return err
	}
	return s.loadFromData(want, err)
}

func (s *Store) loadStored(want SiteID) error {
	if err := s.loadMeta(want); err != nil {
		return err
	}
	vec, err := s.loadVector()
	if err != nil {
		return err
	}
	if raw, err := s.get(metaKey(metaCompaction)); err != nil {
		return err
	} else if len(raw) >= 32 {
		s.compSt = decodeCompactionState(raw)
	}
	s.sumContent(vec)
	s.vec = vec
	s.work = vec.Clone()
	if err := s.loadLastSeq(); err != nil {
		return err
	}
	var next uint64 = 1
	if sv := vec.Sites[s.site]; sv != nil {
		next = uint64(sv.Head()) + 1
	}
	if t := uint64(s.ownTrusted()); t >= next { // a restore as this site (forge.go)
		next = t + 1
	}
	s.nextLocal.Store(next)
	return nil
}

// loadMeta reads (or, in a new directory, writes) the site id and the format, and reads the
// counters.
func (s *Store) loadMeta(want SiteID) error {
	raw, err := s.get(metaKey(metaSiteID))
	if err != nil {
		return err
	}
	if raw == nil && s.readOnly {
		return fmt.Errorf("%w: no site id: not a Patina log", ErrInvalid)
	}
	if raw == nil {
		s.site = want
		if s.site.IsZero() {
			s.site = NewSiteID()
		}
		b := s.db.NewBatch()
		b.Set(metaKey(metaSiteID), s.site[:], nil)
		b.Set(metaKey(metaFormat), []byte{FormatV1}, nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("write site id: %w", err)
		}
		s.logger.Debug("new log", "site", s.site)
	} else {
		if len(raw) != len(s.site) {
			return &DecodeError{What: "site id", Err: fmt.Errorf("%d bytes", len(raw))}
		}
		copy(s.site[:], raw)
		if !want.IsZero() && want != s.site {
			return fmt.Errorf("%w: the directory belongs to site %v, not %v", ErrSiteMismatch, s.site, want)
		}
	}
	if f, err := s.get(metaKey(metaFormat)); err != nil {
		return err
	} else if len(f) != 1 || f[0] != FormatV1 {
		return fmt.Errorf("%w: unknown log format %x", ErrInvalid, f)
	}
	if st, err := s.get(metaKey(metaStats)); err != nil {
		return err
	} else if len(st) == 16 {
		s.changes, s.bytes = binary.BigEndian.Uint64(st), binary.BigEndian.Uint64(st[8:])
	}
	return nil
}

// loadBad is what load does with what it cannot read: a lenient (inspecting) open notes it
// and goes on with the rest, so that Inspect and Check can still show a damaged log; a
// normal open refuses it.
func (s *Store) loadBad(err error) error {
	if !s.lenient {
		return err
	}
	s.loadErrs = append(s.loadErrs, err)
	return nil
}

// loadKeys calls fn on every key of one key space; what fn cannot read goes to loadBad.
func (s *Store) loadKeys(pfx byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfx}, UpperBound: []byte{pfx + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			if err := s.loadBad(err); err != nil {
				it.Close()
				return err
			}
		}
	}
	return it.Close()
}

// loadVector reads the persisted vector: complete versions, partial ones and cleared ones.
func (s *Store) loadVector() (*Vector, error) {
	vec := NewVector()
	err := s.loadKeys(pfxVector, func(k, v []byte) error {
		if len(k) != 17 {
			return &DecodeError{What: "vector key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}
		}
		rs, err := DecodeRanges("vector", v, false)
		if err != nil {
			return fmt.Errorf("vector of %v: %w", SiteID(k[1:17]), err)
		}
		vec.Site(SiteID(k[1:17])).Versions = rs
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.loadKeys(pfxPartial, func(k, v []byte) error {
		if len(k) != 25 {
			return &DecodeError{What: "partial key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}
		}
		p, err := decodePartialValue(v)
		if err != nil {
			return fmt.Errorf("partial %v/%d: %w", SiteID(k[1:17]), binary.BigEndian.Uint64(k[17:]), err)
		}
		sv := vec.Site(SiteID(k[1:17]))
		ver := Version(binary.BigEndian.Uint64(k[17:]))
		if err := CheckPartial(sv, ver, p); err != nil {
			return fmt.Errorf("stored partial %v/%d: %w", SiteID(k[1:17]), ver, err)
		}
		if sv.Partials == nil {
			sv.Partials = map[Version]*Partial{}
		}
		sv.Partials[ver] = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.loadKeys(pfxCleared, func(k, v []byte) error {
		if len(k) != 17 {
			return &DecodeError{What: "cleared key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}
		}
		rs, err := DecodeRanges("cleared", v, false)
		if err != nil {
			return fmt.Errorf("cleared versions of %v: %w", SiteID(k[1:17]), err)
		}
		sv := vec.Sites[SiteID(k[1:17])]
		if sv == nil || len(rs.Subtract(sv.Versions)) > 0 {
			return &DecodeError{What: "cleared versions", Err: fmt.Errorf("site %v: cleared %s are not all held", SiteID(k[1:17]), fmtRanges(rs, 4))}
		}
		sv.Cleared = rs
		return nil
	})
	if err != nil {
		return nil, err
	}
	return vec, nil
}

// loadLastSeq finds the log's last arrival seq: the last arrival key, or the floor a repair
// left (repair.go) if higher.
func (s *Store) loadLastSeq() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxArrival}, UpperBound: []byte{pfxArrival + 1}})
	if err != nil {
		return err
	}
	if it.Last() {
		if k := it.Key(); len(k) == 9 {
			s.lastSeq = Seq(binary.BigEndian.Uint64(k[1:]))
		} else if err := s.loadBad(&DecodeError{What: "arrival key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if raw, err := s.get(metaKey(metaSeqFloor)); err == nil && len(raw) == 8 {
		s.lastSeq = max(s.lastSeq, Seq(binary.BigEndian.Uint64(raw))) // repair.go
	}
	return nil
}

// sumContent fills in each site's content sum from the digests held (one pass over the
// 0x08 keys, 41 bytes a version). A digest that cannot be read leaves every sum zero: the
// sums are then not compared, which is what versions without digests get anyway.
func (s *Store) sumContent(vec *Vector) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxDigest}, UpperBound: []byte{pfxDigest + 1}})
	if err != nil {
		return
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, val := it.Key(), it.Value()
		if len(k) != 25 || len(val) != len(Digest{}) {
			continue
		}
		if sv := vec.Sites[SiteID(k[1:17])]; sv != nil && sv.Versions.Contains(binary.BigEndian.Uint64(k[17:])) {
			sv.Content.Add(Digest(val))
		}
	}
	if err := it.Error(); err != nil {
		s.logger.Warn("content digests unreadable: versions are not compared by content until a repair", "err", err.Error())
		for _, sv := range vec.Sites {
			sv.Content = ContentSum{}
		}
	}
}

func (s *Store) get(key []byte) ([]byte, error) {
	v, c, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(v)
	c.Close()
	return out, nil
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

// Append stores changesets or parts made elsewhere. Idempotent: ordinals already held are
// skipped (a part that overlaps held ordinals stores only the new ones). Durable on return;
// concurrent callers are group-committed. Every changeset is validated first and an invalid
// one fails the whole call before anything is stored. Once queued, a call waits for the
// commit's outcome even if ctx ends, so that its answer is always true.
func (s *Store) Append(ctx context.Context, css ...*Changeset) ([]AppendResult, error) {
	if len(css) == 0 {
		return nil, nil
	}
	start := time.Now()
	req := &appendReq{res: make([]AppendResult, len(css)), done: make(chan struct{})}
	copied := false
	for i, cs := range css {
		if cs == nil {
			return nil, invalidf("append: changeset %d is nil", i)
		}
		if err := cs.Validate(); err != nil {
			return nil, fmt.Errorf("append: %w", err)
		}
		withDigest, err := checkDigest(cs)
		if err != nil {
			return nil, fmt.Errorf("append: %w", err)
		}
		if withDigest != cs && cs.Site == s.site {
			// This node's own new version (the materializer's writer, a migration, a
			// restore): the caller owns it and broadcasts it next, carrying the digest.
			cs.Digest = withDigest.Digest
		} else if withDigest != cs {
			if !copied { // the caller's slice is not ours to write
				css, copied = slices.Clone(css), true
			}
			css[i] = withDigest
		}
	}
	// Versions already held complete are answered at once: in a cluster every changeset
	// reaches a node several times (broadcast fan-out, forwarding, sync), and a duplicate
	// must not be encoded again nor wait behind another caller's fsync. The published vector
	// only grows, so "held" read here stays true.
	held := s.heldComplete(css)
	for i, cs := range css {
		if held[i] {
			req.res[i].Complete = true
			continue
		}
		var err error
		if req.items, err = s.split(req.items, cs, i); err != nil {
			return nil, fmt.Errorf("append: %w", err)
		}
	}
	if len(req.items) == 0 {
		if err := s.rlock(); err != nil {
			return nil, err
		}
		s.closeMu.RUnlock()
		s.appends.Add(1)
		return req.res, nil
	}
	if err := s.checkFree(); err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	if err := s.enqueue(ctx, req); err != nil {
		return nil, err
	}
	<-req.done
	s.metrics.appendSeconds.Observe(time.Since(start).Seconds())
	if req.err != nil {
		return nil, req.err
	}
	return req.res, nil
}

// split cuts cs into parts of at most maxPart changes and encodes each.
func (s *Store) split(items []item, cs *Changeset, idx int) ([]item, error) {
	if len(cs.Changes) <= s.maxPart {
		part := *cs
		part.Seq = 0
		enc, err := EncodeChangeset(&part)
		if err != nil {
			return nil, err
		}
		return append(items, item{cs: &part, enc: enc, idx: idx}), nil
	}
	first := cs.Span.First
	for off := 0; off < len(cs.Changes); off += s.maxPart {
		end := min(off+s.maxPart, len(cs.Changes))
		part := *cs
		part.Seq = 0
		part.Changes = cs.Changes[off:end:end]
		part.Span = OrdRange{First: part.Changes[0].Ord, Last: part.Changes[len(part.Changes)-1].Ord}
		if cs.Compacted {
			// The parts of a compacted changeset tile its ordinals, superseded ones included.
			part.Span.First = first
			if end == len(cs.Changes) {
				part.Span.Last = cs.Span.Last
			}
			first = part.Span.Last + 1
		}
		enc, err := EncodeChangeset(&part)
		if err != nil {
			return nil, err
		}
		items = append(items, item{cs: &part, enc: enc, idx: idx})
	}
	return items, nil
}

func (s *Store) enqueue(ctx context.Context, req *appendReq) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	s.appends.Add(1)
	select {
	case s.reqs <- req:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// AppendLocal stores a changeset of this node under the next local version (it sets Site,
// Version, Span/LastOrd and each change's Ord from Changes, and TS when zero) and returns the
// version and its arrival seq. A data changeset needs at least one change.
func (s *Store) AppendLocal(ctx context.Context, cs *Changeset) (Version, Seq, error) {
	if cs == nil {
		return 0, 0, invalidf("append local: nil changeset")
	}
	if cs.Kind == KindData && len(cs.Changes) == 0 {
		return 0, 0, invalidf("append local: a data changeset without changes")
	}
	if err := s.checkFree(); err != nil {
		return 0, 0, fmt.Errorf("append local: %w", err)
	}
	start := time.Now()
	s.localMu.Lock()
	ver := Version(s.nextLocal.Load())
	cs.Site, cs.Version, cs.Seq = s.site, ver, 0
	if cs.TS == 0 {
		cs.TS = s.hlc.Now()
	}
	cs.LastOrd = 0
	if n := len(cs.Changes); n > 0 {
		cs.LastOrd = uint64(n - 1)
	}
	cs.Span = OrdRange{First: 0, Last: cs.LastOrd}
	for i := range cs.Changes {
		cs.Changes[i].Ord = uint64(i)
	}
	if err := cs.Validate(); err != nil {
		s.localMu.Unlock()
		return 0, 0, fmt.Errorf("append local: %w", err)
	}
	if !noDigests {
		cs.Digest, _ = cs.ComputeDigest()
	}
	req := &appendReq{res: make([]AppendResult, 1), done: make(chan struct{}), local: true}
	var err error
	if req.items, err = s.split(nil, cs, 0); err != nil {
		s.localMu.Unlock()
		return 0, 0, fmt.Errorf("append local: %w", err)
	}
	if err := s.enqueue(ctx, req); err != nil {
		s.localMu.Unlock()
		return 0, 0, err
	}
	// Reserved only once queued: a refused call leaves no gap in the local versions.
	s.nextLocal.CompareAndSwap(uint64(ver), uint64(ver)+1)
	s.localMu.Unlock()
	<-req.done
	s.metrics.appendSeconds.Observe(time.Since(start).Seconds())
	if req.err != nil {
		return 0, 0, req.err
	}
	return ver, req.res[0].Seq, nil
}

// NextLocalVersion is the version AppendLocal would give next.
func (s *Store) NextLocalVersion() Version { return Version(s.nextLocal.Load()) }

// maxBatchItems bounds one group commit, so that one huge queue does not make one huge batch.
const maxBatchItems = 8192

// DefaultCommitDepth is the default Options.CommitDepth: one group syncing while the next is
// built and written behind it.
const DefaultCommitDepth = 2

// The commit pipeline. commitLoop collects a group of queued appends, builds its Pebble
// batch on the working vector and writes it to the WAL and memtable without waiting for the
// sync (ApplyNoSyncWait); syncLoop then waits for each group's sync in the order the groups
// were written and only then publishes it (vector, last seq, counters) and answers its
// callers. So an answer never precedes the durability of what it answers, and Pebble's WAL
// being one ordered file means a group is durable only once every earlier one is. While
// group N's fsync runs, group N+1 is collected, built and written behind it, and its sync
// starts as soon as N's ends. A token in slots stands for a group on its way (CommitDepth
// at most); a group with nothing to write (every item already held by the working vector,
// or refused) goes through syncLoop too, because "held" there may mean "held by a group not
// synced yet".

// inflight is one group between commitLoop and syncLoop.
type inflight struct {
	reqs    []*appendReq
	b       *pebble.Batch // nil: nothing to write
	wait    bool          // b was applied without waiting for its sync: SyncWait before publishing
	err     error         // writing b failed
	ops     []pubOp
	lastSeq Seq
	changes uint64 // totals after this group
	bytes   uint64
	start   time.Time
}

// commitLoop is the only writer of the db after Open.
func (s *Store) commitLoop() {
	defer close(s.done)
	go s.syncLoop()
	s.resetWork()
	lastBatch := 0
	for {
		var batch []*appendReq
		select {
		case <-s.quit:
			s.flushPipeline()
			s.drain(ErrClosed)
			close(s.synced)
			<-s.syncDone
			return
		case req := <-s.reqs:
			batch = append(make([]*appendReq, 0, 8), req)
		case cr := <-s.compacts:
			s.flushPipeline()
			s.commitCompaction(cr)
			s.resetWork()
			close(cr.done)
			continue
		case rr := <-s.repairs:
			s.flushPipeline()
			s.commitRepair(rr)
			s.resetWork()
			close(rr.done)
			continue
		}
		// Wait for room in the pipeline; what queues meanwhile joins this group.
		s.slots <- struct{}{}
		n := len(batch[0].items)
		// Yield once, and only when the last batch was shared: a lone writer has nobody
		// to wait for.
		canYield := lastBatch >= 2
	more:
		for n < maxBatchItems {
			select {
			case req := <-s.reqs:
				batch = append(batch, req)
				n += len(req.items)
			default:
				// Writers woken by the last commit are still encoding their next append;
				// one yield lets them queue it for this group instead of the next.
				if !canYield {
					break more
				}
				canYield = false
				runtime.Gosched()
			}
		}
		lastBatch = len(batch)
		s.synced <- s.commit(batch)
	}
}

// flushPipeline waits until every group written has been synced and published (committer
// only): compaction and repair read and replace the published state.
func (s *Store) flushPipeline() {
	for range cap(s.slots) {
		s.slots <- struct{}{}
	}
	for range cap(s.slots) {
		<-s.slots
	}
}

// resetWork takes the committer's running arrival seq and counters from the published
// state (committer only, with nothing in flight).
func (s *Store) resetWork() {
	s.mu.RLock()
	s.wLastSeq, s.wChanges, s.wBytes = s.lastSeq, s.changes, s.bytes
	s.mu.RUnlock()
}

// syncLoop publishes the groups commitLoop wrote, in order, each once it is durable, and
// answers their callers.
func (s *Store) syncLoop() {
	defer close(s.syncDone)
	for f := range s.synced {
		if s.publish(f) {
			s.metrics.commitSeconds.Observe(time.Since(f.start).Seconds())
			s.metrics.batchAppends.Observe(float64(len(f.reqs)))
		}
		for _, r := range f.reqs {
			close(r.done)
		}
		<-s.slots
	}
}

// drain fails every queued request; Close holds closeMu so no more can arrive.
func (s *Store) drain(err error) {
	for {
		select {
		case req := <-s.reqs:
			req.err = err
			close(req.done)
		default:
			return
		}
	}
}

// pubOp is one change to the published vector, applied once its batch is durable.
type pubOp struct {
	site        SiteID
	ver         Version
	lastSeq     uint64
	first, last uint64
	digest      Digest // of the version this part completes (zero: none, or not complete)
}

// commit builds one group of requests into one Pebble batch on the working vector and
// writes it without waiting for its sync (committer only); syncLoop publishes it.
func (s *Store) commit(reqs []*appendReq) *inflight {
	f := &inflight{reqs: reqs, start: time.Now()}
	s.mu.RLock()
	failed := s.failed
	s.mu.RUnlock()
	if failed != nil {
		for _, r := range reqs {
			r.err = failed
		}
		return f
	}
	g := groupCommit{b: s.db.NewBatch(), lastSeq: s.wLastSeq, dirtySites: map[SiteID]struct{}{}, dirtyParts: map[partKey]struct{}{}}
	for _, r := range reqs {
		if err := s.check(r); err != nil {
			r.err = err
			continue
		}
		for _, it := range r.items {
			s.batchItem(&g, it, &r.res[it.idx])
		}
	}
	if len(g.ops) == 0 {
		g.b.Close()
		return f
	}
	f.changes, f.bytes = s.persistAppends(&g)
	f.b, f.ops, f.lastSeq = g.b, g.ops, g.lastSeq
	s.wLastSeq, s.wChanges, s.wBytes = g.lastSeq, f.changes, f.bytes
	if s.wopts.Sync {
		f.err = s.db.ApplyNoSyncWait(f.b, s.wopts)
		f.wait = f.err == nil
	} else {
		f.err = f.b.Commit(s.wopts)
	}
	return f
}

// publish waits for a written group's sync and publishes it (syncLoop only); it reports
// whether the group wrote (and synced) anything.
func (s *Store) publish(f *inflight) bool {
	if f.b == nil {
		return false
	}
	err := f.err
	if f.wait {
		err = f.b.SyncWait()
	}
	if f.err == nil {
		// Pebble forbids closing a batch whose failed apply may still be in its pipeline.
		defer f.b.Close()
	}
	s.syncs.Add(1)
	s.mu.Lock()
	if err == nil && s.failed != nil {
		// An earlier group failed: what this one adds assumes that one published.
		err = s.failed
	}
	if err != nil {
		// The committer's working vector is now ahead of the disk; rather than unwind it,
		// refuse every later write. Reopening reads the truth back from disk.
		if s.failed == nil {
			s.failed = fmt.Errorf("log commit failed, reopen the store: %w", err)
			s.logger.Error("commit failed", "err", err)
		}
		for _, r := range f.reqs {
			if r.err == nil {
				r.err = s.failed
			}
		}
		s.mu.Unlock()
		return false
	}
	for _, op := range f.ops {
		s.vec.AddPart(op.site, op.ver, op.lastSeq, op.first, op.last)
		if !op.digest.IsZero() {
			s.vec.Site(op.site).Content.Add(op.digest)
		}
	}
	s.changes, s.bytes = f.changes, f.bytes
	if f.lastSeq > s.lastSeq {
		s.lastSeq = f.lastSeq
		close(s.notify)
		s.notify = make(chan struct{})
	}
	s.mu.Unlock()
	return true
}

// groupCommit is one group of appends on its way into a Pebble batch: the batch, what it
// adds, and what to publish once it is durable.
type groupCommit struct {
	b              *pebble.Batch
	lastSeq        Seq // the arrival seq of the last version the batch completes
	ops            []pubOp
	changes, bytes uint64 // what the batch adds
	dirtySites     map[SiteID]struct{}
	dirtyParts     map[partKey]struct{}
	key            []byte
}

// batchItem adds one checked changeset (or part) to the batch, on the work vector: the
// parts of it not held yet, and for a version it completes, its arrival entry and digest.
func (s *Store) batchItem(g *groupCommit, it item, res *AppendResult) {
	cs := it.cs
	sv := s.work.Site(cs.Site)
	if sv.Versions.Contains(uint64(cs.Version)) {
		res.Complete = true
		return
	}
	parts := []*Changeset{cs}
	encs := [][]byte{it.enc}
	if p := sv.Partials[cs.Version]; p != nil {
		newOrds := RangeSet{{First: cs.Span.First, Last: cs.Span.Last}}.Subtract(p.Held)
		if len(newOrds) == 0 {
			return
		}
		if len(newOrds) != 1 || newOrds[0] != (Range{First: cs.Span.First, Last: cs.Span.Last}) {
			parts, encs = trim(cs, newOrds)
		}
	}
	for i, part := range parts {
		g.key = dataKey(g.key[:0], part.Site, part.Version, part.Span.First)
		g.b.Set(g.key, encs[i], nil)
		g.changes += uint64(len(part.Changes))
		g.bytes += uint64(len(encs[i]))
		// Shape was checked by s.check, so AddPart cannot fail here.
		_, complete, _ := s.work.AddPart(part.Site, part.Version, part.LastOrd, part.Span.First, part.Span.Last)
		g.ops = append(g.ops, pubOp{site: part.Site, ver: part.Version, lastSeq: part.LastOrd, first: part.Span.First, last: part.Span.Last})
		res.New = true
		pk := partKey{part.Site, part.Version}
		if complete {
			g.lastSeq++
			res.Complete, res.Seq = true, g.lastSeq
			g.b.Set(arrivalKey(g.lastSeq), arrivalValue(part.Site, part.Version), nil)
			if !part.Digest.IsZero() {
				g.b.Set(digestKey(part.Site, part.Version), part.Digest[:], nil)
				s.work.Site(part.Site).Content.Add(part.Digest)
				g.ops[len(g.ops)-1].digest = part.Digest
			}
			if part.IsPart() { // a partial key may be on disk from an earlier batch
				g.b.Delete(partialKey(pk.site, pk.ver), nil)
			}
			delete(g.dirtyParts, pk)
		} else {
			g.dirtyParts[pk] = struct{}{}
		}
		g.dirtySites[part.Site] = struct{}{}
	}
}

// persistAppends adds to the batch the vector of every site and the partial of every
// version it touched, and the counters; it returns the counters.
func (s *Store) persistAppends(g *groupCommit) (changes, bytes uint64) {
	for site := range g.dirtySites {
		g.b.Set(vectorKey(site), AppendRanges(nil, s.work.Sites[site].Versions), nil)
	}
	for pk := range g.dirtyParts {
		g.b.Set(partialKey(pk.site, pk.ver), encodePartialValue(s.work.Partial(pk.site, pk.ver)), nil)
	}
	changes, bytes = s.wChanges+g.changes, s.wBytes+g.bytes
	var st [16]byte
	binary.BigEndian.PutUint64(st[:], changes)
	binary.BigEndian.PutUint64(st[8:], bytes)
	g.b.Set(metaKey(metaStats), st[:], nil)
	if _, ok := g.dirtySites[s.site]; ok {
		// The own head again, in the metadata, away from the vector entries: what open
		// needs if the vector's block is damaged (recover.go).
		if m, ok := s.work.Sites[s.site].Versions.Max(); ok {
			g.b.Set(metaKey(metaOwnHead), binary.BigEndian.AppendUint64(nil, m), nil)
		}
	}
	return changes, bytes
}

type partKey struct {
	site SiteID
	ver  Version
}

// check refuses a request whose parts disagree about last_seq with what is held or with each
// other, before any of it is applied, and a local version that is somehow held already.
func (s *Store) check(r *appendReq) error {
	var seen map[partKey]uint64
	for _, it := range r.items {
		cs := it.cs
		if r.local && s.work.ContainsOrdinals(cs.Site, cs.Version, cs.Span.First, cs.Span.Last) {
			return fmt.Errorf("%w: local version %d is already held", ErrInvalid, cs.Version)
		}
		if p := s.work.Partial(cs.Site, cs.Version); p != nil && p.LastOrd != cs.LastOrd {
			return invalidf("append: %v/%d: last_seq %d, but a held part says %d", cs.Site, cs.Version, cs.LastOrd, p.LastOrd)
		}
		if !it.cs.IsPart() {
			continue
		}
		if seen == nil {
			seen = map[partKey]uint64{}
		}
		k := partKey{cs.Site, cs.Version}
		if ls, ok := seen[k]; ok && ls != cs.LastOrd {
			return invalidf("append: %v/%d: parts say last_seq %d and %d", cs.Site, cs.Version, ls, cs.LastOrd)
		}
		seen[k] = cs.LastOrd
	}
	if !r.local {
		// Changesets of our own site (a restore) move the local counter past them.
		for _, it := range r.items {
			if it.cs.Site != s.site {
				continue
			}
			for {
				cur := s.nextLocal.Load()
				if uint64(it.cs.Version) < cur || s.nextLocal.CompareAndSwap(cur, uint64(it.cs.Version)+1) {
					break
				}
			}
		}
	}
	return nil
}

// trim cuts cs down to the ordinals in keep (a subset of cs.Span), one part per range.
func trim(cs *Changeset, keep RangeSet) ([]*Changeset, [][]byte) {
	parts := make([]*Changeset, 0, len(keep))
	encs := make([][]byte, 0, len(keep))
	for _, r := range keep {
		part := *cs
		part.Span = OrdRange(r)
		switch {
		case cs.Compacted:
			// Changes are a sparse subset of the ordinals: pick them by ordinal.
			lo := sort.Search(len(cs.Changes), func(i int) bool { return cs.Changes[i].Ord >= r.First })
			hi := sort.Search(len(cs.Changes), func(i int) bool { return cs.Changes[i].Ord > r.Last })
			part.Changes = cs.Changes[lo:hi:hi]
		case len(cs.Changes) > 0:
			lo, hi := r.First-cs.Span.First, r.Last-cs.Span.First+1
			part.Changes = cs.Changes[lo:hi:hi]
		}
		enc, err := EncodeChangeset(&part)
		if err != nil {
			// The whole changeset encoded, so a slice of it does too.
			panic(fmt.Sprintf("log: re-encode part: %v", err))
		}
		parts = append(parts, &part)
		encs = append(encs, enc)
	}
	return parts, encs
}

// Get returns a whole version, its parts assembled, without its arrival Seq.
// ErrNotFound, ErrIncomplete.
func (s *Store) Get(site SiteID, v Version) (*Changeset, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	s.mu.RLock()
	complete := s.vec.Contains(site, v)
	partial := s.vec.Partial(site, v) != nil
	s.mu.RUnlock()
	if !complete {
		if partial {
			return nil, fmt.Errorf("get %v/%d: %w", site, v, ErrIncomplete)
		}
		return nil, fmt.Errorf("get %v/%d: %w", site, v, ErrNotFound)
	}
	// Bounds of just this version let Pebble skip every file that cannot hold it.
	lower := dataKey(nil, site, v, 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: incPrefix(lower[:25])})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	cs, _, err := readVersion(it, site, v)
	return cs, err
}

// readVersion reads and assembles the parts of a complete version with the data iterator;
// size is the encoded bytes of its stored parts.
func readVersion(it *pebble.Iterator, site SiteID, v Version) (out *Changeset, size uint64, err error) {
	return readVersionParts(it, site, v, nil)
}

// readVersionParts is readVersion; with firsts it also appends the first ordinal of each
// stored part (the last element of its data key) to *firsts.
func readVersionParts(it *pebble.Iterator, site SiteID, v Version, firsts *[]uint64) (out *Changeset, size uint64, err error) {
	var prefix [25]byte
	prefix[0] = pfxData
	copy(prefix[1:], site[:])
	binary.BigEndian.PutUint64(prefix[17:], uint64(v))
	for ok := it.SeekGE(prefix[:]); ok && bytes.HasPrefix(it.Key(), prefix[:]); ok = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return nil, 0, err
		}
		part, err := DecodeChangeset(val)
		if err != nil {
			return nil, 0, fmt.Errorf("read %v/%d: %w", site, v, err)
		}
		if part.Site != site || part.Version != v {
			return nil, 0, fmt.Errorf("read %v/%d: %w", site, v, &DecodeError{What: "stored part", Err: fmt.Errorf("holds %v/%d", part.Site, part.Version)})
		}
		size += uint64(len(val))
		if firsts != nil {
			*firsts = append(*firsts, part.Span.First)
		}
		if out == nil {
			out = part
			continue
		}
		if part.Span.First != out.Span.Last+1 || part.LastOrd != out.LastOrd {
			return nil, 0, fmt.Errorf("read %v/%d: %w", site, v, &DecodeError{What: "stored part", Err: fmt.Errorf("seqs [%d, %d] after [%d, %d]", part.Span.First, part.Span.Last, out.Span.First, out.Span.Last)})
		}
		out.Span.Last = part.Span.Last
		out.Changes = append(out.Changes, part.Changes...)
		out.Compacted = out.Compacted || part.Compacted
		if part.Kind == KindData {
			out.Kind = KindData
		}
	}
	if err := it.Error(); err != nil {
		return nil, 0, err
	}
	if out == nil || out.Span.First != 0 || out.Span.Last != out.LastOrd {
		return nil, 0, fmt.Errorf("read %v/%d: stored parts do not cover the version: %w", site, v, ErrIncomplete)
	}
	if out.Compacted && out.Kind != KindData {
		out.Compacted = false // only data changesets are compacted
	}
	return out, size, nil
}

// scanChunk is how many parts Scan reads per visit to the db: it holds no iterator while
// its caller works, so a slow consumer pins nothing and Close never waits on it.
const scanChunk = 256

// Scan yields the stored changesets and parts of site with from <= version <= to, in
// (version, first ordinal) order, partially held versions included (for sync).
func (s *Store) Scan(site SiteID, from, to Version) iter.Seq2[*Changeset, error] {
	return func(yield func(*Changeset, error) bool) {
		lower := dataKey(nil, site, from, 0)
		var upper []byte
		if to == math.MaxUint64 {
			upper = append([]byte{pfxData}, site[:]...)
			upper = incPrefix(upper)
		} else {
			upper = dataKey(nil, site, to+1, 0)
		}
		if from > to {
			return
		}
		for {
			chunk, next, err := s.scanChunk(lower, upper)
			// What was read before an error is good: hand it out first, so that a damaged
			// block costs only the versions in it (sync skips them and sends the rest).
			for _, cs := range chunk {
				if !yield(cs, nil) {
					return
				}
			}
			if err != nil {
				yield(nil, corruptErr(err))
				return
			}
			if next == nil {
				return
			}
			lower = next
		}
	}
}

func (s *Store) scanChunk(lower, upper []byte) ([]*Changeset, []byte, error) {
	if err := s.rlock(); err != nil {
		return nil, nil, err
	}
	defer s.closeMu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	var out []*Changeset
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == scanChunk {
			return out, bytes.Clone(it.Key()), nil
		}
		val, err := it.ValueAndErr()
		if err != nil {
			return out, nil, err
		}
		cs, err := DecodeChangeset(val)
		if err != nil {
			return out, nil, fmt.Errorf("scan: %w", err)
		}
		out = append(out, cs)
	}
	return out, nil, it.Error()
}

// Read returns up to max complete changesets with arrival seq > after, in arrival order,
// without blocking. Each has its Seq set. Seqs of versions compaction cleared are gone, so
// the seqs returned may jump; Read returns nothing only when the log holds nothing after
// after (the version at LastSeq is never cleared, see Compact).
func (s *Store) Read(after Seq, max int) ([]*Changeset, error) {
	css, _, err := s.read(after, max, false)
	return css, corruptErr(err)
}

// read is Read; with sizes it also returns the encoded bytes stored for each version.
func (s *Store) read(after Seq, max int, sizes bool) ([]*Changeset, []uint64, error) {
	if err := s.rlock(); err != nil {
		return nil, nil, err
	}
	defer s.closeMu.RUnlock()
	last := s.LastSeq()
	if after >= last || max <= 0 {
		return nil, nil, nil
	}
	ait, err := s.db.NewIter(&pebble.IterOptions{LowerBound: arrivalKey(after + 1), UpperBound: arrivalKey(last + 1)})
	if err != nil {
		return nil, nil, err
	}
	defer ait.Close()
	dit, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxData}, UpperBound: []byte{pfxData + 1}})
	if err != nil {
		return nil, nil, err
	}
	defer dit.Close()
	var szs []uint64
	out := make([]*Changeset, 0, min(uint64(max), uint64(last-after)))
	for ok := ait.First(); ok && len(out) < max; ok = ait.Next() {
		if k := ait.Key(); len(k) != 9 {
			return nil, nil, &DecodeError{What: "arrival key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}
		}
		seq := Seq(binary.BigEndian.Uint64(ait.Key()[1:]))
		val, err := ait.ValueAndErr()
		if err != nil {
			return nil, nil, err
		}
		if len(val) != 24 {
			return nil, nil, &DecodeError{What: "arrival entry", Err: fmt.Errorf("seq %d: %d bytes", seq, len(val))}
		}
		cs, size, err := readVersion(dit, SiteID(val[:16]), Version(binary.BigEndian.Uint64(val[16:])))
		if err != nil {
			return nil, nil, fmt.Errorf("read seq %d: %w", seq, err)
		}
		cs.Seq = seq
		out = append(out, cs)
		if sizes {
			szs = append(szs, size)
		}
	}
	return out, szs, ait.Error()
}

// tailChunk is how many changesets Tail reads per visit to the db.
const tailChunk = 256

// Tail yields complete changesets with arrival seq > after in arrival order, blocking for
// new ones until ctx ends. A slow reader never blocks appends: it reads in chunks and holds
// nothing between them. When ctx ends it yields the context's error once and stops; after
// Close it yields ErrClosed. after > LastSeq is ErrSeqBeyondLog.
func (s *Store) Tail(ctx context.Context, after Seq) iter.Seq2[*Changeset, error] {
	return func(yield func(*Changeset, error) bool) {
		if last := s.LastSeq(); after > last {
			yield(nil, fmt.Errorf("tail after %d, log ends at %d: %w", after, last, ErrSeqBeyondLog))
			return
		}
		for {
			last := s.LastSeq()
			chunk, err := s.Read(after, tailChunk)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, cs := range chunk {
				if !yield(cs, nil) {
					return
				}
				after = cs.Seq
			}
			if len(chunk) == 0 {
				// Nothing up to last: its seqs are holes (versions a repair removed), and
				// waiting for LastSeq > after would not wait.
				after = max(after, last)
				if err := s.Wait(ctx, after); err != nil {
					yield(nil, err)
					return
				}
			}
		}
	}
}

// Wait blocks until LastSeq() > after or ctx ends (the context's error) or the store
// closes (ErrClosed).
func (s *Store) Wait(ctx context.Context, after Seq) error {
	for {
		s.mu.RLock()
		last, ch := s.lastSeq, s.notify
		s.mu.RUnlock()
		if last > after {
			return nil
		}
		s.waiting.Add(1)
		select {
		case <-ch:
		case <-s.closedCh:
			s.waiting.Add(-1)
			return ErrClosed
		case <-ctx.Done():
			s.waiting.Add(-1)
			return context.Cause(ctx)
		}
		s.waiting.Add(-1)
	}
}

// LastSeq is the arrival seq of the newest complete version.
func (s *Store) LastSeq() Seq {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastSeq
}

// Vector returns a copy of the vector of durable versions. Like Missing it copies one site
// per turn of the read lock (a thousand sites with gaps take milliseconds to copy, which a
// commit's publication must not wait for): each site is exact at the moment it was copied,
// and since the log only grows, the copy never claims more than is held.
func (s *Store) Vector() *Vector {
	s.mu.RLock()
	sites := make([]SiteID, 0, len(s.vec.Sites))
	for site := range s.vec.Sites {
		sites = append(sites, site)
	}
	s.mu.RUnlock()
	out := &Vector{Sites: make(map[SiteID]*SiteVector, len(sites))}
	for _, site := range sites {
		s.mu.RLock()
		out.Sites[site] = s.vec.Sites[site].Clone()
		s.mu.RUnlock()
	}
	return out
}

// heldComplete reports, per changeset, whether its version is held completely, under one
// read lock.
func (s *Store) heldComplete(css []*Changeset) []bool {
	held := make([]bool, len(css))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, cs := range css {
		held[i] = s.vec.Contains(cs.Site, cs.Version)
	}
	return held
}

// Contains reports whether version v of site is held completely.
func (s *Store) Contains(site SiteID, v Version) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.vec.Contains(site, v)
}

// Missing returns what this log holds that theirs lacks. It takes the read lock once per
// site rather than for the whole call, so that a large vector (milliseconds for a thousand
// sites) never holds up a commit's publication; each site's answer is exact at the moment it
// was computed, and the log only grows, so the whole is never more than what is held.
func (s *Store) Missing(theirs *Vector) []SiteMissing {
	s.mu.RLock()
	sites := s.vec.SortedSites()
	s.mu.RUnlock()
	var out []SiteMissing
	for _, site := range sites {
		s.mu.RLock()
		m, ok := MissingSite(site, s.vec.Sites[site], theirs)
		s.mu.RUnlock()
		if ok {
			out = append(out, m)
		}
	}
	return out
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
