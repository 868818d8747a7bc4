package log

// SKELETON: the API below is the contract other packages code against; the bodies are
// being written (issue 3). Keep the signatures; add what is missing.

import (
	"context"
	"errors"
	"iter"
	"log/slog"
)

var errTODO = errors.New("log: not implemented yet")

// Options configure a Store.
type Options struct {
	// SiteID is the site id of a NEW data directory; zero means a random one. For an existing
	// directory a non-zero SiteID that differs from the stored one is ErrSiteMismatch.
	SiteID SiteID
	// MaxPartChanges is the most changes one stored part holds; larger changesets are cut.
	MaxPartChanges int
	// NoSync skips fsync (benchmarks of the CPU path only; never in production).
	NoSync bool
	Logger *slog.Logger
}

// AppendResult says what Append did with one changeset (or part).
type AppendResult struct {
	New      bool // it was not held before (false: a duplicate, skipped)
	Complete bool // its version is now complete (all parts held)
	Seq      Seq  // the version's local arrival seq, when Complete and New
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
	Syncs     uint64 // group commits (fsyncs)
}

// Store is the append-only log of changesets on Pebble.
type Store struct{}

// Open opens or creates the log in dir.
func Open(dir string, opts Options) (*Store, error) { return nil, errTODO }

// Close closes the store; idempotent.
func (s *Store) Close() error { return nil }

// SiteID is this node's site id.
func (s *Store) SiteID() SiteID { return SiteID{} }

// Append stores changesets or parts made elsewhere. Idempotent; durable on return;
// concurrent callers are group-committed.
func (s *Store) Append(ctx context.Context, css ...*Changeset) ([]AppendResult, error) {
	return nil, errTODO
}

// AppendLocal stores a changeset of this node under the next local version (it sets Site,
// Version and Seqs/LastSeq from Changes) and returns the version and its arrival seq.
func (s *Store) AppendLocal(ctx context.Context, cs *Changeset) (Version, Seq, error) {
	return 0, 0, errTODO
}

// NextLocalVersion is the version AppendLocal would give next.
func (s *Store) NextLocalVersion() Version { return 0 }

// Get returns a whole version, its parts assembled. ErrNotFound, ErrIncomplete.
func (s *Store) Get(site SiteID, v Version) (*Changeset, error) { return nil, errTODO }

// Scan yields the stored changesets and parts of site with from <= version <= to, in
// (version, first seq) order, partially held versions included (for sync).
func (s *Store) Scan(site SiteID, from, to Version) iter.Seq2[*Changeset, error] {
	return func(yield func(*Changeset, error) bool) { yield(nil, errTODO) }
}

// Read returns up to max complete changesets with arrival seq > after, in arrival order,
// without blocking. Each has its Seq set.
func (s *Store) Read(after Seq, max int) ([]*Changeset, error) { return nil, errTODO }

// Tail yields complete changesets with arrival seq > after in arrival order, blocking for
// new ones until ctx ends. A slow reader never blocks appends. after > LastSeq is
// ErrSeqBeyondLog.
func (s *Store) Tail(ctx context.Context, after Seq) iter.Seq2[*Changeset, error] {
	return func(yield func(*Changeset, error) bool) { yield(nil, errTODO) }
}

// Wait blocks until LastSeq() > after or ctx ends.
func (s *Store) Wait(ctx context.Context, after Seq) error { return errTODO }

// LastSeq is the arrival seq of the newest complete version.
func (s *Store) LastSeq() Seq { return 0 }

// Vector returns a copy of the vector.
func (s *Store) Vector() *Vector { return NewVector() }

// Missing returns what this log holds that theirs lacks.
func (s *Store) Missing(theirs *Vector) []SiteMissing { return nil }

// Stats returns counters for metrics.
func (s *Store) Stats() Stats { return Stats{} }

// Meta reads a metadata value (nil, nil when unset); SetMeta writes one durably.
func (s *Store) Meta(key string) ([]byte, error) { return nil, errTODO }

// SetMeta writes a metadata value durably.
func (s *Store) SetMeta(key string, val []byte) error { return errTODO }
