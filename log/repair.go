package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Self-repair of a damaged log (issue 12, item 2).
//
// Pebble reports damage per file, and a damaged block stays damaged: every read that meets it
// fails, and so does every compaction that takes the file as input. Neither DeleteRange nor a
// re-write of the affected keys removes the file (a tombstone or a newer value still makes
// reads and compactions open the block below it). What removes it is an excise, and the only
// atomic one is IngestAndExcise: it replaces everything in a key span by the contents of new
// table files in one manifest edit. So a repair is a re-write of the whole log, done once:
//
//  1. Under the committer (no append runs) and the compaction lock, every version the vector
//     holds is read back part by part; a version any of whose parts cannot be read (checksum,
//     decode, missing part) is removed, the others are copied into a new table file with
//     their digests. Arrival entries are copied where readable; a kept version whose entry
//     was lost gets a new arrival seq after LastSeq (it is folded again, which the CRDT merge
//     makes a no-op). Vector, partial and cleared entries and the metadata are written from
//     the store's memory, which is what the damaged file cannot take away; caller metadata
//     is copied where readable.
//  2. db.IngestAndExcise replaces the whole key space by that file: the damaged files leave
//     the LSM (and the disk) in the same atomic step that brings the new contents in. A crash
//     before it leaves the damaged log as it was (the repair runs again when the damage is
//     met again); a crash after it leaves the repaired log. The table file is written under
//     <log>/repair/, removed after and at the next open.
//  3. The removed versions are no longer in the vector, so they are gaps that the normal
//     sync path fetches from peers. Their digests are kept: a copy that comes back with
//     another digest is a collision (forge.go), and versions of this node's own site that
//     were removed are trusted back (TrustOwnVersions) up to the highest one removed.
//
// The cost is one read and one write of the whole log while appends wait (the committer runs
// the repair): a rare event, logged with its duration. The offline tools (Inspect, read-only
// opens) never repair: they report and exit 1.

// RepairResult says what a repair did.
type RepairResult struct {
	Files     []string            // damaged files removed from the log
	Removed   map[SiteID]RangeSet // unreadable versions removed, to be fetched from peers again
	Kept      uint64              // versions copied
	Rearrived uint64              // kept versions whose arrival entry was unreadable: new seqs
	Digests   uint64              // digests recomputed (their entry was unreadable)
	LostMeta  bool                // some caller metadata (Meta) could not be read
	Duration  time.Duration
}

// RemovedCount is the number of versions removed.
func (r RepairResult) RemovedCount() uint64 {
	var n uint64
	for _, rs := range r.Removed {
		n += rs.Count()
	}
	return n
}

// repairState is the store's side of repairs: one at a time, started by the first damage
// seen (onCorruption) or by Repair.
type repairState struct {
	runs    coalescer     // the repair goroutine: one at a time, no request lost
	done    atomic.Uint64 // repairs completed
	removed atomic.Uint64 // versions removed by them
	// pending are the removed versions not held again yet: a copy that arrives for one of
	// them is checked against the digest kept for it (forge.go).
	mu      sync.Mutex
	pending map[SiteID]RangeSet
	last    *RepairResult
	// mismatch are versions a scrub found whose data does not match their digest: the next
	// repair removes them, with the digest (either may be the damaged one), and sync
	// fetches them again.
	mismatch map[SiteID]RangeSet
	// metaMu keeps SetMeta and TrustOwnVersions (direct writes, outside the committer) out
	// of a repair's window, whose excise would drop them.
	metaMu sync.RWMutex
}

type repairReq struct {
	res  RepairResult
	err  error
	done chan struct{}
}

// ErrRepairFailed wraps what stopped a repair; the log is then as it was before it.
var ErrRepairFailed = errors.New("log: repair failed")

// metaSeqFloor: seq(8), the LastSeq of a log a repair left without any arrival entry, so
// that the seqs already given out are never given out again.
const metaSeqFloor = "seq_floor"

// repairDir holds the table file of a repair until it is ingested.
const repairDir = "repair"

// Repairs returns how many repairs completed since the store opened, how many versions they
// removed, and how many of those are not held again yet.
func (s *Store) Repairs() (done, removed, pending uint64) {
	s.rep.mu.Lock()
	s.mu.RLock()
	for site, rs := range s.rep.pending {
		if sv := s.vec.Sites[site]; sv != nil {
			rs = rs.Subtract(sv.Versions)
		}
		if len(rs) == 0 {
			delete(s.rep.pending, site) // all held again
			continue
		}
		s.rep.pending[site] = rs
		pending += rs.Count()
	}
	s.mu.RUnlock()
	s.rep.mu.Unlock()
	return s.rep.done.Load(), s.rep.removed.Load(), pending
}

// LastRepair is the result of the last repair since the store opened (nil: none).
func (s *Store) LastRepair() *RepairResult {
	s.rep.mu.Lock()
	defer s.rep.mu.Unlock()
	return s.rep.last
}

// repairPending reports whether (site, v) was removed by a repair and is not held again.
func (s *Store) repairPending(site SiteID, v Version) bool {
	s.rep.mu.Lock()
	defer s.rep.mu.Unlock()
	return s.rep.pending[site].Contains(uint64(v))
}

// repairSoon starts a repair in the background unless one runs (which then runs once more:
// the damage may be in a file it had already read).
func (s *Store) repairSoon() {
	if s.readOnly || s.lenient || s.noRepair || !s.ready.Load() {
		return
	}
	s.rep.runs.request(func() bool {
		if _, err := s.Repair(context.Background()); err != nil {
			if !errors.Is(err, ErrClosed) {
				s.logger.Error("log repair failed; the damaged range stays unserved (restore this node from a peer: patina backup on a healthy node, patina restore here)", "err", err)
			}
			return false
		}
		return true
	})
}

// Repair removes every damaged file from the log, with the versions it made unreadable,
// which then come back from peers through sync (see the comment at the top of repair.go). It
// does nothing while no damage is known. Appends wait while it runs.
func (s *Store) Repair(ctx context.Context) (RepairResult, error) {
	if s.readOnly {
		return RepairResult{}, ErrReadOnly
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if err := s.rlock(); err != nil {
		return RepairResult{}, err
	}
	defer s.closeMu.RUnlock()
	req := &repairReq{done: make(chan struct{})}
	select {
	case s.repairs <- req:
	case <-s.quit:
		return RepairResult{}, ErrClosed
	case <-ctx.Done():
		return RepairResult{}, ctx.Err()
	}
	<-req.done
	return req.res, req.err
}

// commitRepair runs a repair in the committer.
func (s *Store) commitRepair(r *repairReq) {
	s.rep.mu.Lock()
	mismatch := maps.Clone(s.rep.mismatch)
	s.rep.mu.Unlock()
	if len(s.Damage()) == 0 && len(mismatch) == 0 {
		return
	}
	s.rep.metaMu.Lock()
	defer s.rep.metaMu.Unlock()
	s.recent.clear() // a repair removes versions and rewrites the log (recent.go)
	start := time.Now()
	res, damage, err := s.repair(mismatch)
	res.Duration = time.Since(start)
	for _, d := range damage {
		res.Files = append(res.Files, d.Path)
	}
	if err != nil {
		r.err = fmt.Errorf("%w: %w", ErrRepairFailed, err)
		return
	}
	r.res = res
	// The damage known before the ingest is gone with the files; damage found since (a
	// reader of another file) stays listed.
	s.faults.damageMu.Lock()
	s.faults.damage = slices.DeleteFunc(s.faults.damage, func(d Damage) bool {
		return slices.ContainsFunc(damage, func(o Damage) bool { return o.Path == d.Path })
	})
	left := len(s.faults.damage)
	s.faults.damageMu.Unlock()
	if left == 0 {
		s.faults.corrupt.Store(nil)
	}
	s.rep.done.Add(1)
	s.rep.removed.Add(res.RemovedCount())
	s.rep.mu.Lock()
	s.rep.pending = addSiteRanges(s.rep.pending, res.Removed)
	s.rep.last = &res
	for site, rs := range mismatch {
		if left := s.rep.mismatch[site].Subtract(rs); len(left) > 0 {
			s.rep.mismatch[site] = left
		} else {
			delete(s.rep.mismatch, site)
		}
	}
	s.rep.mu.Unlock()
	removed := make([]string, 0, len(res.Removed))
	for _, site := range slices.SortedFunc(maps.Keys(res.Removed), func(a, b SiteID) int { return bytes.Compare(a[:], b[:]) }) {
		removed = append(removed, fmt.Sprintf("%v %s", site, fmtRanges(res.Removed[site], 8)))
	}
	s.logger.Warn("log repaired: damaged files removed; the unreadable versions are fetched again from peers",
		"files", res.Files, "removed", res.RemovedCount(), "removed_versions", removed, "kept", res.Kept,
		"rearrived", res.Rearrived, "digests_recomputed", res.Digests, "caller_meta_lost", res.LostMeta, "took", res.Duration)
}

// repair re-writes the log without its unreadable versions (committer only).
// It returns the damage known when the new log replaced the old one (all of it is gone).
func (s *Store) repair(mismatch map[SiteID]RangeSet) (res RepairResult, damage []Damage, err error) {
	s.mu.RLock()
	failed, lastSeq := s.failed, s.lastSeq
	s.mu.RUnlock()
	if failed != nil {
		return res, nil, failed
	}
	if s.db.FormatMajorVersion() < pebble.FormatVirtualSSTables {
		// Excise needs virtual tables; the ratchet rewrites nothing (no file is marked).
		if err := s.db.RatchetFormatMajorVersion(pebble.FormatVirtualSSTables); err != nil {
			return res, nil, fmt.Errorf("upgrade the Pebble format for excise: %w", err)
		}
	}
	dir := s.fs.PathJoin(s.dir, repairDir)
	if err := s.fs.RemoveAll(dir); err != nil {
		return res, nil, err
	}
	if err := s.fs.MkdirAll(dir, 0o700); err != nil {
		return res, nil, err
	}
	defer s.fs.RemoveAll(dir)
	path := s.fs.PathJoin(dir, "log.sst")
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return res, nil, err
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: s.db.TableFormat()})
	closed := false
	defer func() {
		if !closed {
			w.Close()
		}
	}()
	it, err := s.db.NewIter(nil)
	if err != nil {
		return res, nil, err
	}
	defer it.Close()

	rp := &repairPass{s: s, it: it, vec: s.work.Clone(), lastSeq: lastSeq, trusted: s.ownTrusted(), mismatch: mismatch}
	rp.res.Removed = map[SiteID]RangeSet{}
	rp.sites = slices.SortedFunc(maps.Keys(rp.vec.Sites), func(a, b SiteID) int { return bytes.Compare(a[:], b[:]) })
	// Each phase reads one key space of the old log into memory; the new log is written in
	// key order at the end, once the metadata (which sorts first) is known.
	rp.readUserMeta()
	rp.readData()
	rp.rebuildArrivals()
	rp.readDigests()
	metas := rp.metas()
	vecs, parts, cleared := rp.vectorKeys()
	for _, group := range [][]kvPair{metas, rp.userMeta, rp.data, rp.arrivals, vecs, parts, cleared, rp.digests} {
		for _, e := range group {
			if err := w.Set(e.k, e.v); err != nil {
				return rp.res, nil, fmt.Errorf("write the repaired log: %w", err)
			}
		}
	}
	closed = true
	if err := w.Close(); err != nil {
		return rp.res, nil, fmt.Errorf("write the repaired log: %w", err)
	}
	damage = s.Damage()
	if _, err := s.db.IngestAndExcise(context.Background(), []string{path}, nil, nil,
		pebble.KeyRange{Start: []byte{0x00}, End: []byte{0xff}}); err != nil {
		return rp.res, nil, fmt.Errorf("replace the log: %w", err)
	}
	rp.publish()
	return rp.res, damage, nil
}

// kvPair is one key and value of the repaired log.
type kvPair struct{ k, v []byte }

// repairPass is one repair's reading of the old log (through it) and what it will write.
type repairPass struct {
	s       *Store
	it      *pebble.Iterator
	vec     *Vector // the vector the repaired log holds
	sites   []SiteID
	lastSeq Seq
	newLast Seq
	trusted Version
	// mismatch: versions to remove whose data does not match their digest (scrub.go).
	mismatch map[SiteID]RangeSet
	res      RepairResult
	stats    struct{ changes, bytes uint64 }

	userMeta, data, arrivals, digests []kvPair
	keptComplete                      []keptVersion
}

// keptVersion is a complete version the repair kept, assembled (for a lost digest).
type keptVersion struct {
	site SiteID
	v    Version
	cs   *Changeset
}

// readUserMeta keeps the 0x02 caller metadata, where readable. (0x01 is written from
// memory, see metas.)
func (rp *repairPass) readUserMeta() {
	it := rp.it
	for ok := it.SeekGE([]byte{pfxUserMeta}); ok && it.Key()[0] == pfxUserMeta; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			break
		}
		rp.userMeta = append(rp.userMeta, kvPair{bytes.Clone(it.Key()), bytes.Clone(v)})
	}
	if it.Error() != nil {
		rp.res.LostMeta = true
	}
}

// readData reads every held version (0x03), part by part, keeping the readable ones and
// taking the others out of the vector.
func (rp *repairPass) readData() {
	s := rp.s
	for _, site := range rp.sites {
		sv := rp.vec.Sites[site]
		held := sv.Versions.Subtract(sv.Cleared)
		for v := range sv.Partials {
			held.Add(uint64(v), uint64(v))
		}
		var removed RangeSet
		for _, r := range held {
			for v := r.First; ; v++ {
				parts, cs, ok := readParts(rp.it, site, Version(v), sv.Partials[Version(v)])
				if ok && !rp.mismatch[site].Contains(v) {
					for _, p := range parts {
						rp.data = append(rp.data, p.kv)
						rp.stats.changes += uint64(p.changes)
						rp.stats.bytes += uint64(len(p.kv.v))
					}
					if cs != nil {
						rp.keptComplete = append(rp.keptComplete, keptVersion{site, Version(v), cs})
					}
					rp.res.Kept++
				} else {
					removed.Add(v, v)
				}
				if v == r.Last {
					break
				}
			}
		}
		if len(removed) == 0 {
			continue
		}
		rp.res.Removed[site] = removed
		sv.Versions = sv.Versions.Subtract(removed)
		for _, rr := range removed {
			for v := rr.First; ; v++ {
				delete(sv.Partials, Version(v))
				if v == rr.Last {
					break
				}
			}
		}
		if site == s.site {
			if m, ok := removed.Max(); ok && Version(m) > rp.trusted {
				rp.trusted = Version(m)
			}
		}
	}
}

// rebuildArrivals keeps the 0x04 arrival entries of kept versions, where readable; the
// other kept versions get new seqs after the last one.
func (rp *repairPass) rebuildArrivals() {
	vec := rp.vec
	arrived := map[SiteID]RangeSet{}
	keepEntry := func(k, val []byte) {
		if len(k) != 9 || len(val) != 24 {
			return
		}
		site, v := SiteID(val[:16]), binary.BigEndian.Uint64(val[16:])
		sv := vec.Sites[site]
		if sv == nil || !sv.Versions.Contains(v) || sv.Cleared.Contains(v) || arrived[site].Contains(v) {
			return
		}
		a := arrived[site]
		a.Add(v, v)
		arrived[site] = a
		rp.arrivals = append(rp.arrivals, kvPair{bytes.Clone(k), bytes.Clone(val)})
	}
	scanArrivals(rp.it, rp.lastSeq, keepEntry)
	rp.newLast = rp.lastSeq
	if n := len(rp.arrivals); n == 0 || binary.BigEndian.Uint64(rp.arrivals[n-1].k[1:]) != uint64(rp.lastSeq) {
		// The entry at LastSeq is gone: readers that wait for LastSeq need one there or
		// after it, so the newest kept version moves to a new seq.
		if n > 0 {
			last := rp.arrivals[n-1]
			rp.arrivals = rp.arrivals[:n-1]
			a := arrived[SiteID(last.v[:16])]
			a = a.Subtract(RangeSet{{First: binary.BigEndian.Uint64(last.v[16:]), Last: binary.BigEndian.Uint64(last.v[16:])}})
			arrived[SiteID(last.v[:16])] = a
		}
	}
	for _, site := range rp.sites {
		sv := vec.Sites[site]
		for _, r := range sv.Versions.Subtract(sv.Cleared).Subtract(arrived[site]) {
			for v := r.First; ; v++ {
				rp.newLast++
				rp.res.Rearrived++
				rp.arrivals = append(rp.arrivals, kvPair{arrivalKey(rp.newLast), arrivalValue(site, Version(v))})
				if v == r.Last {
					break
				}
			}
		}
	}
}

// readDigests keeps the 0x08 digests: of kept versions, read or recomputed; of removed
// ones, read (to check the copies that come back). The content sums follow them.
func (rp *repairPass) readDigests() {
	vec := rp.vec
	ki := 0
	for _, site := range rp.sites {
		sv := vec.Sites[site]
		want := sv.Versions.Subtract(sv.Cleared)
		want.AddSet(rp.res.Removed[site])
		for _, r := range want {
			for v := r.First; ; v++ {
				if !rp.mismatch[site].Contains(v) { // else the digest may be the damaged part: the copy that comes back brings its own
					rp.keepDigest(site, Version(v), &ki)
				}
				if v == r.Last {
					break
				}
			}
		}
	}
	for _, sv := range vec.Sites {
		sv.Content = ContentSum{}
	}
	for _, e := range rp.digests {
		if sv := vec.Sites[SiteID(e.k[1:17])]; sv != nil && sv.Versions.Contains(binary.BigEndian.Uint64(e.k[17:])) {
			sv.Content.Add(Digest(e.v))
		}
	}
}

// keepDigest keeps the digest of (site, v): read, or recomputed from the kept version (ki
// walks rp.keptComplete, in the same order as the calls).
func (rp *repairPass) keepDigest(site SiteID, v Version, ki *int) {
	it := rp.it
	k := digestKey(site, v)
	var cs *Changeset
	kc := rp.keptComplete
	for *ki < len(kc) && (bytes.Compare(kc[*ki].site[:], site[:]) < 0 || kc[*ki].site == site && kc[*ki].v < v) {
		*ki++
	}
	if *ki < len(kc) && kc[*ki].site == site && kc[*ki].v == v {
		cs = kc[*ki].cs
	}
	if it.SeekGE(k) && bytes.Equal(it.Key(), k) {
		if val, err := it.ValueAndErr(); err == nil && len(val) == len(Digest{}) {
			rp.digests = append(rp.digests, kvPair{k, bytes.Clone(val)})
			return
		}
	}
	if it.Error() != nil && cs != nil {
		if d, ok := cs.ComputeDigest(); ok {
			rp.digests = append(rp.digests, kvPair{k, d[:]})
			rp.res.Digests++
		}
	}
}

// metas is the 0x01 metadata of the repaired log, from memory, in key order.
func (rp *repairPass) metas() []kvPair {
	s := rp.s
	var st [16]byte
	binary.BigEndian.PutUint64(st[:], rp.stats.changes)
	binary.BigEndian.PutUint64(st[8:], rp.stats.bytes)
	var tr [8]byte
	binary.BigEndian.PutUint64(tr[:], uint64(rp.trusted))
	s.mu.RLock()
	comp := s.compSt.encode()
	s.mu.RUnlock()
	metas := []kvPair{
		{metaKey(metaCompaction), comp},
		{metaKey(metaFormat), []byte{FormatV1}},
		{metaKey(metaOwnTrusted), tr[:]},
		{metaKey(metaSiteID), s.site[:]},
		{metaKey(metaStats), st[:]},
	}
	if t := s.scrub.lastEnd.Load(); t > 0 { // the next scrub stays an interval after the last
		metas = append(metas, kvPair{metaKey(metaScrub), binary.BigEndian.AppendUint64(nil, uint64(t))})
	}
	if sv := rp.vec.Sites[s.site]; sv != nil {
		if m, ok := sv.Versions.Max(); ok || rp.trusted > 0 {
			metas = append(metas, kvPair{metaKey(metaOwnHead), binary.BigEndian.AppendUint64(nil, max(m, uint64(rp.trusted)))})
		}
	}
	if len(rp.arrivals) == 0 && rp.lastSeq > 0 {
		// Nothing readable is left: the seqs must still never be given out again.
		var f [8]byte
		binary.BigEndian.PutUint64(f[:], uint64(rp.lastSeq))
		metas = append(metas, kvPair{metaKey(metaSeqFloor), f[:]})
	}
	slices.SortFunc(metas, func(a, b kvPair) int { return bytes.Compare(a.k, b.k) })
	return metas
}

// vectorKeys are the vector, partial and cleared entries of the repaired log's vector.
func (rp *repairPass) vectorKeys() (vecs, parts, cleared []kvPair) {
	for _, site := range rp.sites {
		sv := rp.vec.Sites[site]
		if len(sv.Versions) > 0 {
			vecs = append(vecs, kvPair{vectorKey(site), AppendRanges(nil, sv.Versions)})
		}
		for _, v := range slices.Sorted(maps.Keys(sv.Partials)) {
			parts = append(parts, kvPair{partialKey(site, v), encodePartialValue(sv.Partials[v])})
		}
		if len(sv.Cleared) > 0 {
			cleared = append(cleared, kvPair{clearedKey(site), AppendRanges(nil, sv.Cleared)})
		}
	}
	return vecs, parts, cleared
}

// publish makes the repaired log's state the store's: the committer's and the readers'
// vector, the counters, the new seqs.
func (rp *repairPass) publish() {
	s := rp.s
	s.work = rp.vec
	s.forge.mu.Lock()
	s.forge.trusted, s.forge.loaded = rp.trusted, true
	s.forge.mu.Unlock()
	s.mu.Lock()
	s.vec = rp.vec.Clone()
	s.changes, s.bytes = rp.stats.changes, rp.stats.bytes
	if rp.newLast > s.lastSeq {
		s.lastSeq = rp.newLast
		close(s.notify)
		s.notify = make(chan struct{})
	}
	s.mu.Unlock()
}

type readPart struct {
	kv      struct{ k, v []byte }
	changes int
}

// readParts reads the stored parts of one version held (complete, or in part when p is not
// nil); ok is false when any part is unreadable or the parts do not make what the vector
// says is held. cs is the assembled version when complete.
func readParts(it *pebble.Iterator, site SiteID, v Version, p *Partial) (out []readPart, cs *Changeset, ok bool) {
	var prefix [25]byte
	prefix[0] = pfxData
	copy(prefix[1:], site[:])
	binary.BigEndian.PutUint64(prefix[17:], uint64(v))
	var seqs RangeSet
	var lastSeq uint64
	for ok := it.SeekGE(prefix[:]); ok && bytes.HasPrefix(it.Key(), prefix[:]); ok = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return nil, nil, false
		}
		part, err := DecodeChangeset(val)
		if err != nil || part.Site != site || part.Version != v || (len(out) > 0 && part.LastOrd != lastSeq) {
			return nil, nil, false
		}
		lastSeq = part.LastOrd
		seqs.Add(part.Span.First, part.Span.Last)
		var rp readPart
		rp.kv.k, rp.kv.v, rp.changes = bytes.Clone(it.Key()), bytes.Clone(val), len(part.Changes)
		out = append(out, rp)
		if cs == nil {
			cs = part
		} else {
			joinPart(cs, part)
		}
	}
	if it.Error() != nil || len(out) == 0 {
		return nil, nil, false
	}
	if p != nil {
		if p.LastOrd != lastSeq || len(p.Held.Subtract(seqs)) > 0 {
			return nil, nil, false
		}
		return out, nil, true
	}
	if !seqs.ContainsRange(0, lastSeq) || len(seqs) != 1 {
		return nil, nil, false
	}
	if cs.Compacted && cs.Kind != KindData {
		cs.Compacted = false
	}
	return out, cs, true
}

// scanArrivals calls keep with every readable arrival entry in seq order. An unreadable
// stretch is stepped over: the first readable seq after it is found by doubling steps, then
// by bisection, so a whole damaged file costs a few dozen seeks, not one per entry.
func scanArrivals(it *pebble.Iterator, lastSeq Seq, keep func(k, v []byte)) {
	inArrivals := func() bool { return it.Valid() && len(it.Key()) > 0 && it.Key()[0] == pfxArrival }
	readable := func(seq uint64) bool { // positions it at the first key >= seq's
		it.SeekGE(arrivalKey(Seq(seq)))
		if it.Error() != nil {
			return false
		}
		if inArrivals() {
			_, err := it.ValueAndErr()
			return err == nil
		}
		return true
	}
	seq := uint64(1)
	for seq <= uint64(lastSeq) {
		if !readable(seq) {
			// Find a readable seq after the bad one, then the first one.
			bad, step, good := seq, uint64(1), uint64(0)
			for bad+step <= uint64(lastSeq) {
				if readable(bad + step) {
					good = bad + step
					break
				}
				bad += step
				step *= 2
			}
			if good == 0 {
				return
			}
			for good-bad > 1 {
				mid := bad + (good-bad)/2
				if readable(mid) {
					good = mid
				} else {
					bad = mid
				}
			}
			readable(good)
		}
		// it is at the first key >= seq, and it is readable.
		if !inArrivals() {
			return
		}
		for inArrivals() {
			val, err := it.ValueAndErr()
			if err != nil {
				break
			}
			keep(it.Key(), val)
			if len(it.Key()) == 9 {
				seq = binary.BigEndian.Uint64(it.Key()[1:]) + 1
			}
			it.Next()
		}
		if it.Error() == nil {
			return // the end of the arrival entries
		}
		// Unreadable after the last good entry: the next turn seeks seq again.
	}
}

// addSiteRanges adds every site's ranges of src to dst (made when nil) and returns dst.
func addSiteRanges(dst, src map[SiteID]RangeSet) map[SiteID]RangeSet {
	if dst == nil {
		dst = map[SiteID]RangeSet{}
	}
	for site, rs := range src {
		m := dst[site]
		m.AddSet(rs)
		dst[site] = m
	}
	return dst
}
