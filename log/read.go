package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

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
// after (the version at LastSeq is never cleared, see Compact). Each Changeset struct is the
// caller's, but its Changes may be shared with other readers (recent.go): read-only.
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
	var dit *pebble.Iterator // opened at the first version the recent cache does not hold
	defer func() {
		if dit != nil {
			dit.Close()
		}
	}()
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
		site, ver := SiteID(val[:16]), Version(binary.BigEndian.Uint64(val[16:]))
		var cs *Changeset
		var size uint64
		if e, ok := s.recent.get(seq); ok && e.cs.Site == site && e.cs.Version == ver {
			// The caller's own copy of the shared one (recent.go); Changes capped, so that
			// an append by one reader cannot write where another reads.
			c := *e.cs
			c.Changes = c.Changes[:len(c.Changes):len(c.Changes)]
			cs, size = &c, e.size
		} else {
			if dit == nil {
				if dit, err = s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxData}, UpperBound: []byte{pfxData + 1}}); err != nil {
					return nil, nil, err
				}
			}
			if cs, size, err = readVersion(dit, site, ver); err != nil {
				return nil, nil, fmt.Errorf("read seq %d: %w", seq, err)
			}
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
