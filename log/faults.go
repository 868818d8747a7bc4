package log

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Faults of the disk under the log (issue 12). Pebble's defaults turn both into a process
// exit (its Logger.Fatalf); the store turns them into errors a node can live with. A read
// that meets a damaged Pebble block (a checksum mismatch) fails with an error wrapping
// ErrCorrupt (inspect.go): the range it covers is not served, Store.Corruption reports the
// first damage found, and a restore from a peer repairs it.
var (
	// ErrDiskFull is returned by writes while the log's disk has less than
	// Options.MinFreeBytes free: they are refused before Pebble could fail halfway (which it
	// treats as fatal). Reads go on; writes resume by themselves once space is freed.
	ErrDiskFull = errors.New("log: disk full")
)

// DefaultMinFreeBytes is the default Options.MinFreeBytes.
const DefaultMinFreeBytes = 64 << 20

// faults keeps what the store learned about its disk.
type faults struct {
	corrupt atomic.Pointer[error] // the first corruption seen
	// corruptions counts DataCorruption events (one per damaged file and read).
	corruptions atomic.Uint64
	// damage lists the damaged files, once each, in the order found (damage.go).
	damageMu sync.Mutex
	damage   []Damage
	// refused counts appends refused on a full disk; freeBytes is the last free space seen.
	refused   atomic.Uint64
	freeBytes atomic.Uint64

	// free-space check, at most once per freeEvery unless freeBudget bytes were appended
	// since the last one
	minFree    atomic.Uint64
	freeMu     sync.Mutex
	freeAt     time.Time
	freeErr    error
	appended   atomic.Uint64 // bytes the committer has written since open (no lock on the append path)
	bytesAt    uint64        // appended at the last check
	freeBudget uint64        // bytes that may be appended before the next check
	diskFull   atomic.Bool
}

// freeEvery bounds how often the free space is asked of the file system while the headroom
// (the free space above MinFreeBytes) is at least freeNear.
const freeEvery = 250 * time.Millisecond

// freeNear: below this headroom every append asks the file system (a statfs costs about
// 1.5 us, one per append call, not per changeset). The appended bytes are a poor measure
// of the disk a write takes: the log stores changesets encoded and compressed, the view
// stores the values as they are, in the table, its primary key index and the clock table,
// and a subscription may keep them once more. 64 KiB of repeated bytes cost some hundred
// bytes in the log and 650 KB on disk in TestDiskFullOnTmpfs, which outran a budget of
// appended bytes by 30 MiB.
const freeNear = 1 << 30

// freeBudgetShare: above freeNear, appends may also write at most this share of the
// headroom between two checks, so a fast writer of big changesets asks again sooner.
const freeBudgetShare = 8

// onCorruption is Pebble's DataCorruption listener: it records the damage and logs it once
// per store (Pebble's default listener calls Fatalf). The read that met it fails with an
// error Pebble returns on its own, wrapped in ErrCorrupt by the store.
func (s *Store) onCorruption(info pebble.DataCorruptionInfo) {
	s.faults.corruptions.Add(1)
	s.recordDamage(info)
	err := fmt.Errorf("%w: %s, keys %s: %v", ErrCorrupt, info.Path, info.Bounds.String(), info.Details)
	if s.faults.corrupt.CompareAndSwap(nil, &err) {
		s.logger.Error("log corruption: the damaged range is not served until the log repairs itself (damaged versions are removed and fetched again from peers)",
			"path", info.Path, "keys", describeKeys(info.Bounds.Start, info.Bounds.End.Key), "err", info.Details.Error())
	}
	s.repairSoon()
}

// Corruption returns the first on-disk corruption the store met (wrapping ErrCorrupt), or
// nil.
func (s *Store) Corruption() error {
	if p := s.faults.corrupt.Load(); p != nil {
		return *p
	}
	return nil
}

// CommitFailure is the error that failed a commit of the log's disk (a WAL write or sync
// that returned an error), nil while commits succeed. Once set the store refuses every
// write until it is reopened.
func (s *Store) CommitFailure() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.failed
}

// SetMinFreeBytes changes Options.MinFreeBytes of an open store (0: no check) and makes
// the next write ask the file system again. Operators' tools and tests use it to move the
// threshold without a restart.
func (s *Store) SetMinFreeBytes(n int64) {
	s.faults.freeMu.Lock()
	defer s.faults.freeMu.Unlock()
	s.faults.minFree.Store(uint64(max(n, 0)))
	s.faults.freeAt = time.Time{}
}

// CheckFree asks the file system for the free space now, not at the next append: the
// view's SQLite files share the disk and may find it full first (SQLITE_FULL), and then
// DiskFull, the health answer and the refusal of the next append must say so at once.
// It returns ErrDiskFull (wrapped) when the disk has less than MinFreeBytes free.
func (s *Store) CheckFree() error {
	s.faults.freeMu.Lock()
	s.faults.freeAt = time.Time{}
	s.faults.freeMu.Unlock()
	return s.checkFree()
}

// DiskFull reports whether the last free-space check found less than MinFreeBytes.
func (s *Store) DiskFull() bool { return s.faults.diskFull.Load() }

// corruptErr wraps a Pebble corruption error in ErrCorrupt; other errors pass unchanged.
func corruptErr(err error) error {
	if err != nil && pebble.IsCorruptionError(err) && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// checkFree refuses a write when the disk has less than MinFreeBytes free. The answer is
// cached for freeEvery, so a burst of appends asks the file system once.
func (s *Store) checkFree() error {
	minFree := s.faults.minFree.Load()
	if minFree == 0 || s.fs == nil {
		return nil
	}
	f := &s.faults
	f.freeMu.Lock()
	defer f.freeMu.Unlock()
	appended := f.appended.Load()
	if time.Since(f.freeAt) < freeEvery && f.freeBudget > 0 && (f.freeErr != nil || appended-f.bytesAt < f.freeBudget) {
		if f.freeErr != nil {
			f.refused.Add(1)
		}
		return f.freeErr
	}
	f.freeAt, f.bytesAt = time.Now(), appended
	du, err := s.fs.GetDiskUsage(s.dir)
	if err != nil {
		f.freeErr, f.freeBudget = nil, math.MaxUint64 // a file system that cannot tell: let Pebble find out
		return nil
	}
	was := f.diskFull.Load()
	f.freeBytes.Store(du.AvailBytes)
	f.freeBudget = 0 // near: the next append asks again
	if du.AvailBytes >= minFree+freeNear {
		f.freeBudget = (du.AvailBytes - minFree) / freeBudgetShare
	}
	if du.AvailBytes < minFree {
		f.refused.Add(1)
		f.freeErr = fmt.Errorf("%w: %d bytes free under %s, want at least %d; writes are refused until space is freed", ErrDiskFull, du.AvailBytes, s.dir, minFree)
		f.diskFull.Store(true)
		if !was {
			s.logger.Error("disk full: refusing writes (reads go on)", "dir", s.dir, "free", du.AvailBytes, "min_free", minFree)
		}
		return f.freeErr
	}
	f.freeErr = nil
	f.diskFull.Store(false)
	if was {
		s.logger.Info("disk space freed: writes resume", "dir", s.dir, "free", du.AvailBytes)
	}
	return nil
}
