package log

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Background scrub (issue 12). Without it damage is found only when a read meets it, and
// the versions nobody reads (old ones, already folded everywhere) can rot unseen until the
// day a peer needs them or a rebuild reads them, when the copies elsewhere may be gone too.
// A scrub pass reads the whole log, at a bounded pace, in two phases:
//
//  1. Files: every live Pebble table file is read block by block, straight from the file
//     (not through the block cache, which would answer for a block damaged after it was
//     cached), and each block's checksum verified. A damaged file is recorded as a read's
//     damage is (Damage, Corruption, health, metrics) and the repair (repair.go) runs at
//     once: it removes the file and the versions it made unreadable, which sync fetches
//     again from peers.
//  2. Keys: Check's checker walks every key space the repair rebuilds (metadata, data,
//     arrivals, vector, partial and cleared entries, digests) in a snapshot, and checks each
//     complete version's data against its content digest. A version whose data does not
//     match its digest (bytes that passed Pebble's checksums but are not what was written)
//     is removed by the repair with its digest and fetched again as well.
//
// `patina log inspect --check` runs the same two phases, unpaced, on a stopped node.
//
// Pace: reads are charged to a budget of Options.ScrubBytesPerSec; a pass that gets ahead
// of it sleeps, so a scrub of a 10 GB log at 8 MiB/s takes about 40 minutes of mostly
// sleeping and never takes the disk from writes for long. The committer never waits for
// it. A pass holds a Pebble snapshot while it walks the keys (so that the cross-checks see
// one state); a repair that runs meanwhile makes that walk's findings moot and the pass
// says so (Interrupted).

// DefaultScrubBytesPerSec is the default Options.ScrubBytesPerSec.
const DefaultScrubBytesPerSec = 8 << 20

// metaScrub: end of the last complete scrub pass, unix nanoseconds (8 bytes): the next one
// is due an interval after it, across restarts.
const metaScrub = "scrub"

// ScrubResult is what one scrub pass found.
type ScrubResult struct {
	Files    int    // table files read
	Bytes    uint64 // bytes read (files and keys)
	Versions uint64 // complete versions checked against their digest
	// Damage lists the damaged files found; Mismatched the versions whose data does not
	// match their digest. Problems is everything found, as Check reports it.
	Damage     []Damage
	Mismatched map[SiteID]RangeSet
	Problems   []error
	// Repaired: a repair ran for what this pass found. Interrupted: a repair ran during
	// the key walk, whose other findings were dropped (the next pass looks again).
	Repaired, Interrupted bool
	Duration              time.Duration
}

// Found is the number of problems found: damaged files, mismatched versions and the rest.
func (r ScrubResult) Found() int { return len(r.Problems) }

// scrubState is the store's side of scrubbing.
type scrubState struct {
	mu       sync.Mutex // one pass at a time
	interval time.Duration
	rate     int64
	ctx      context.Context // ended by Close, before it waits for readers
	cancel   context.CancelFunc
	done     chan struct{} // closed when the background loop has stopped

	passes   atomic.Uint64
	bytes    atomic.Uint64
	found    atomic.Uint64
	lastEnd  atomic.Int64 // unix nanos of the last complete pass (0: none known)
	lastTook atomic.Int64 // its duration, ns
}

// startScrub starts the background scrub loop when the options ask for one.
func (s *Store) startScrub(opts Options) {
	sc := &s.scrub
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	sc.interval, sc.rate = opts.ScrubInterval, opts.ScrubBytesPerSec
	if sc.rate == 0 {
		sc.rate = DefaultScrubBytesPerSec
	}
	if raw, err := s.get(metaKey(metaScrub)); err == nil && len(raw) == 8 {
		sc.lastEnd.Store(int64(binary.BigEndian.Uint64(raw)))
	}
	if s.readOnly || sc.interval <= 0 {
		return
	}
	sc.done = make(chan struct{})
	go s.scrubLoop()
}

// stopScrub ends a running pass and the loop (Close calls it before it waits for readers:
// a pass holds a read lock while it sleeps).
func (s *Store) stopScrub() {
	if s.scrub.cancel == nil {
		return
	}
	s.scrub.cancel()
	if s.scrub.done != nil {
		<-s.scrub.done
	}
}

// scrubLoop runs a pass every interval, the first one an interval after the last pass
// recorded (a restart does not postpone it), or after a random part of an interval when
// none is (so that a fleet started together does not scrub together).
func (s *Store) scrubLoop() {
	defer close(s.scrub.done)
	sc := &s.scrub
	next := time.Now().Add(time.Duration(rand.Int64N(int64(sc.interval)) + 1))
	if last := sc.lastEnd.Load(); last > 0 {
		next = time.Unix(0, last).Add(sc.interval)
	}
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-sc.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := s.Scrub(sc.ctx); err != nil && sc.ctx.Err() == nil {
			s.logger.Error("log scrub failed; it runs again after the interval", "err", err, "interval", sc.interval)
		}
		next = time.Now().Add(sc.interval)
	}
}

// Scrub runs one scrub pass now (see the top of scrub.go), at Options.ScrubBytesPerSec, and
// starts the repair for what it finds. It returns an error only when it could not look
// (closed, cancelled); what it found is in the result, also logged and in the metrics.
func (s *Store) Scrub(ctx context.Context) (ScrubResult, error) {
	return s.scrubPass(ctx, s.scrub.rate)
}

func (s *Store) scrubPass(ctx context.Context, rate int64) (ScrubResult, error) {
	sc := &s.scrub
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.ctx != nil {
		var stop context.CancelFunc
		ctx, stop = mergeCtx(ctx, sc.ctx)
		defer stop()
	}
	start := time.Now()
	p := newPacer(ctx, rate)
	res := ScrubResult{Mismatched: map[SiteID]RangeSet{}}
	s.logger.Debug("log scrub: pass starts", "bytes_per_sec", rate)

	// Phase 1: the files.
	files, damage, err := s.checkFiles(p)
	res.Files = files
	if err != nil {
		return s.endScrub(res, p, start, err)
	}
	res.Damage = damage
	known := damage
	if len(damage) > 0 && !s.readOnly && !s.noRepair {
		if _, err := s.Repair(ctx); err != nil {
			return s.endScrub(res, p, start, err)
		}
		res.Repaired = true
		for _, d := range damage {
			res.Problems = append(res.Problems, s.damageProblem(d))
		}
		known = nil // gone with the repair
	}

	// Phase 2: the keys.
	repairsBefore := s.rep.done.Load()
	c, err := s.checkKeys(p, known)
	if err != nil {
		return s.endScrub(res, p, start, err)
	}
	res.Versions = c.versions
	if s.rep.done.Load() != repairsBefore {
		// A repair (started by a reader that met damage) replaced the log under the walk.
		res.Interrupted = true
	} else {
		res.Problems = append(res.Problems, c.problems...)
		res.Mismatched = c.mismatched
		for _, d := range s.Damage() { // met by the key walk (a file written since phase 1)
			if !slices.ContainsFunc(res.Damage, func(o Damage) bool { return o.Path == d.Path }) {
				res.Damage = append(res.Damage, d)
			}
		}
	}
	if s.readOnly || s.noRepair || len(res.Mismatched) == 0 && len(s.Damage()) == 0 {
		return s.endScrub(res, p, start, nil)
	}
	s.rep.mu.Lock()
	s.rep.mismatch = addSiteRanges(s.rep.mismatch, res.Mismatched)
	s.rep.mu.Unlock()
	if _, err := s.Repair(ctx); err != nil {
		return s.endScrub(res, p, start, err)
	}
	res.Repaired = true
	return s.endScrub(res, p, start, nil)
}

// endScrub records a pass: metrics, the slog line, and (complete passes) the time of it.
func (s *Store) endScrub(res ScrubResult, p *pacer, start time.Time, err error) (ScrubResult, error) {
	sc := &s.scrub
	res.Bytes = p.total
	res.Duration = time.Since(start)
	sc.bytes.Add(res.Bytes)
	if err != nil {
		return res, fmt.Errorf("log scrub: %w", err)
	}
	sc.passes.Add(1)
	sc.found.Add(uint64(res.Found()))
	end := time.Now()
	sc.lastEnd.Store(end.UnixNano())
	sc.lastTook.Store(int64(res.Duration))
	if !s.readOnly {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(end.UnixNano()))
		if err := s.rlock(); err == nil {
			s.rep.metaMu.RLock()
			_ = s.db.Set(metaKey(metaScrub), b[:], pebble.NoSync) // a lost time only makes the next pass early
			s.rep.metaMu.RUnlock()
			s.closeMu.RUnlock()
		}
	}
	attrs := []any{"files", res.Files, "bytes", res.Bytes, "versions", res.Versions, "took", res.Duration.Round(time.Millisecond),
		"damaged_files", len(res.Damage), "mismatched_versions", countSets(res.Mismatched), "problems", res.Found(),
		"repaired", res.Repaired, "interrupted", res.Interrupted}
	if res.Found() == 0 {
		s.logger.Info("log scrub: pass done, nothing found", attrs...)
		return res, nil
	}
	shown := res.Problems
	if len(shown) > 8 {
		shown = shown[:8]
	}
	attrs = append(attrs, "found", errors.Join(shown...).Error())
	s.logger.Error("log scrub: pass found damage", attrs...)
	return res, nil
}

func countSets(m map[SiteID]RangeSet) uint64 {
	var n uint64
	for _, rs := range m {
		n += rs.Count()
	}
	return n
}

// damageProblem is the problem Check reports for a damaged file.
func (s *Store) damageProblem(d Damage) error {
	return fmt.Errorf("%w: damaged file %s unreadable (the log repairs itself on a running node; on a stopped one, start it, or restore from a peer: patina backup on a healthy node, patina restore here): %v",
		ErrCorrupt, s.describeDamage(d), d.Err)
}

// noteDamage records damage found by a check of the files, as onCorruption does for
// damage a read meets, but without starting a repair (the caller decides).
func (s *Store) noteDamage(d Damage) {
	s.faults.corruptions.Add(1)
	s.faults.damageMu.Lock()
	if !slices.ContainsFunc(s.faults.damage, func(o Damage) bool { return o.Path == d.Path }) {
		s.faults.damage = append(s.faults.damage, d)
	}
	s.faults.damageMu.Unlock()
	err := fmt.Errorf("%w: %s, keys %s: %v", ErrCorrupt, d.Path, d.Keys(), d.Err)
	s.faults.corrupt.CompareAndSwap(nil, &err)
}

// checkFiles reads every live table file and verifies its blocks' checksums (phase 1); it
// records and returns the damaged ones.
func (s *Store) checkFiles(p *pacer) (files int, damage []Damage, err error) {
	if err := s.rlock(); err != nil {
		return 0, nil, err
	}
	levels, err := s.db.SSTables()
	s.closeMu.RUnlock()
	if err != nil {
		return 0, nil, err
	}
	// Virtual tables (left by a repair's excise) share their backing file: read it once,
	// with the union of their bounds.
	type backing struct {
		num        uint64
		start, end []byte
	}
	var backs []*backing
	for _, lvl := range levels {
		for _, t := range lvl {
			num := uint64(t.BackingSSTNum)
			i := slices.IndexFunc(backs, func(b *backing) bool { return b.num == num })
			if i < 0 {
				backs = append(backs, &backing{num: num, start: slices.Clone(t.Smallest.UserKey), end: slices.Clone(t.Largest.UserKey)})
				continue
			}
			b := backs[i]
			if string(t.Smallest.UserKey) < string(b.start) {
				b.start = slices.Clone(t.Smallest.UserKey)
			}
			if string(t.Largest.UserKey) > string(b.end) {
				b.end = slices.Clone(t.Largest.UserKey)
			}
		}
	}
	slices.SortFunc(backs, func(a, b *backing) int { return cmp.Compare(a.num, b.num) })
	for _, b := range backs {
		path := s.fs.PathJoin(s.dir, fmt.Sprintf("%06d.sst", b.num))
		verr := verifyTable(s.fs, path, p)
		if p.ctx.Err() != nil {
			return files, damage, p.ctx.Err()
		}
		if errors.Is(verr, errGone) {
			continue // compacted away since it was listed
		}
		files++
		if verr == nil {
			continue
		}
		if !pebble.IsCorruptionError(verr) && !errors.Is(verr, syscall.EIO) {
			return files, damage, fmt.Errorf("read %s: %w", path, verr)
		}
		d := Damage{Path: path, Start: b.start, End: b.end, EndInclusive: true, Err: verr}
		s.noteDamage(d)
		s.logger.Error("log scrub: damaged file; the log repairs itself (the damaged versions are removed and fetched again from peers)",
			"path", path, "keys", d.Keys(), "err", verr.Error())
		damage = append(damage, d)
	}
	return files, damage, nil
}

var errGone = errors.New("file gone")

// verifyTable reads one table file and verifies every block's checksum, charging the
// reads to p. It reads the file itself, not through Pebble's block cache, and fills no cache.
func verifyTable(fs vfs.FS, path string, p *pacer) (err error) {
	f, err := fs.Open(path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return errGone
		}
		return err
	}
	readable, err := objstorageprovider.NewFileReadable(pacedFile{File: f, p: p}, fs, objstorageprovider.NewReadaheadConfig(), path)
	if err != nil {
		f.Close()
		return err
	}
	r, err := sstable.NewReader(p.ctx, readable, sstable.ReaderOptions{})
	if err != nil {
		readable.Close()
		return err
	}
	defer r.Close()
	// A panic in Pebble's reader on garbage it did not expect is damage too, never a crash.
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: reading the table panicked: %v", ErrCorrupt, v)
		}
	}()
	return r.ValidateBlockChecksums()
}

// pacedFile charges every read of a table file to the scrub's budget.
type pacedFile struct {
	vfs.File
	p *pacer
}

func (f pacedFile) ReadAt(b []byte, off int64) (int, error) {
	if err := f.p.take(len(b)); err != nil {
		return 0, err
	}
	return f.File.ReadAt(b, off)
}

// pacer keeps a pass at rate bytes/s (rate <= 0: no limit): take sleeps while the bytes
// read so far are ahead of the time spent.
type pacer struct {
	ctx   context.Context
	rate  int64
	start time.Time
	total uint64
	mu    sync.Mutex
}

func newPacer(ctx context.Context, rate int64) *pacer {
	return &pacer{ctx: ctx, rate: rate, start: time.Now()}
}

func (p *pacer) take(n int) error {
	p.mu.Lock()
	p.total += uint64(n)
	total := p.total
	p.mu.Unlock()
	if err := p.ctx.Err(); err != nil {
		return err
	}
	if p.rate <= 0 {
		return nil
	}
	due := p.start.Add(time.Duration(float64(total) / float64(p.rate) * float64(time.Second)))
	wait := time.Until(due)
	if wait < 10*time.Millisecond {
		return nil // small debts are paid with the next sleep
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return p.ctx.Err()
	case <-t.C:
		return nil
	}
}

// mergeCtx ends when either a or b does.
func mergeCtx(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// ScrubStats are the scrub's counters since the store opened (LastEnd survives restarts).
type ScrubStats struct {
	Passes   uint64
	Bytes    uint64
	Found    uint64
	LastEnd  time.Time // zero: no pass recorded
	LastTook time.Duration
}

// ScrubStats returns the scrub's counters.
func (s *Store) ScrubStats() ScrubStats {
	sc := &s.scrub
	st := ScrubStats{Passes: sc.passes.Load(), Bytes: sc.bytes.Load(), Found: sc.found.Load(), LastTook: time.Duration(sc.lastTook.Load())}
	if n := sc.lastEnd.Load(); n > 0 {
		st.LastEnd = time.Unix(0, n)
	}
	return st
}

var (
	descScrubPasses = prometheus.NewDesc("patina_log_scrub_passes_total", "Complete scrub passes over the log (log.scrub_interval).", nil, nil)
	descScrubBytes  = prometheus.NewDesc("patina_log_scrub_bytes_total", "Bytes the scrub read (table files and keys).", nil, nil)
	descScrubFound  = prometheus.NewDesc("patina_log_scrub_found_total", "Problems scrub passes found: damaged files, versions whose data does not match their digest, inconsistencies.", nil, nil)
	descScrubLast   = prometheus.NewDesc("patina_log_scrub_last_timestamp_seconds", "End of the last complete scrub pass, unix seconds (0: none recorded).", nil, nil)
	descScrubTook   = prometheus.NewDesc("patina_log_scrub_last_duration_seconds", "Duration of the last scrub pass since the store opened.", nil, nil)
)

func (s *Store) describeScrub(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descScrubPasses, descScrubBytes, descScrubFound, descScrubLast, descScrubTook} {
		ch <- d
	}
}

func (s *Store) collectScrub(ch chan<- prometheus.Metric) {
	st := s.ScrubStats()
	ch <- prometheus.MustNewConstMetric(descScrubPasses, prometheus.CounterValue, float64(st.Passes))
	ch <- prometheus.MustNewConstMetric(descScrubBytes, prometheus.CounterValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(descScrubFound, prometheus.CounterValue, float64(st.Found))
	last := 0.0
	if !st.LastEnd.IsZero() {
		last = float64(st.LastEnd.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(descScrubLast, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(descScrubTook, prometheus.GaugeValue, st.LastTook.Seconds())
}
