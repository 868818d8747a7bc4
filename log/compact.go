package log

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Dominator names the version holding the change that supersedes a given change (the
// current winner of its cell, or of its row for a change a higher causal length beat). The
// zero Dominator means the change is live: it must be kept.
type Dominator struct {
	Site    SiteID
	Version Version
}

// IsZero reports whether d names nothing (the change is live).
func (d Dominator) IsZero() bool { return d.Version == 0 }

// Judge decides, for complete data changesets this node has folded, which changes are
// superseded: for each changeset a slice with one Dominator per change (the zero Dominator
// for a live change). The log cannot judge itself (it knows no merge rule); the
// materializer, which knows the winners, does. A judge that is unsure must answer live.
type Judge func(ctx context.Context, css []*Changeset) ([][]Dominator, error)

// CompactOptions bound one compaction pass.
type CompactOptions struct {
	// Through: only versions with arrival seq <= Through are considered (the caller's fold
	// position: a change not yet folded cannot be judged).
	Through Seq
	// After: start after this arrival seq (a cursor from an earlier pass's Next); 0 starts
	// at the beginning.
	After Seq
	// Horizon, when non-zero, is the retention window's edge: a change is dropped only if
	// its own version and the version that supersedes it were both committed (TS) before
	// Horizon, so that everything committed at or after the edge stays exact.
	Horizon Timestamp
	// Batch is how many versions are judged and rewritten per Pebble batch; 0 means 256.
	// Each batch is one short turn of the committer, so appends never wait long behind a
	// compaction.
	Batch int
	// MaxVersions stops the pass after this many versions (0: no limit); Next says where to
	// resume (a full pass), or the versions not reached come back in Retry (a pass over
	// Candidates).
	MaxVersions int
	// Candidates, when not nil, makes the pass incremental: it judges only these versions
	// (those held complete with data, folded by Through, and committed before Horizon),
	// whatever their seq, instead of every version in (After, Through]. A version's changes
	// can only become superseded when a later change to their rows is folded, so the caller
	// names the versions a fold displaced from a row's clock, or that lost as they arrived,
	// since they were last judged; a version judged live stays live until it is named again.
	// After is ignored and Next is left as given.
	Candidates map[SiteID]RangeSet
	Judge      Judge
}

// Retry is a version that holds a superseded change that could not go yet: its winner
// arrived after the pass began, or it or its winner is inside the retention window. A pass
// over Candidates must name it again once NotBefore has left the window (0: at once).
type Retry struct {
	Site      SiteID
	Version   Version
	NotBefore Timestamp
}

// CompactResult says what one pass did.
type CompactResult struct {
	Scanned   int    // versions read
	Judged    int    // data versions handed to the judge
	Rewritten int    // versions that kept only their live changes
	Cleared   int    // versions whose changes were all dropped
	Dropped   uint64 // changes dropped
	Bytes     uint64 // encoded bytes removed
	Next      Seq    // where a later pass resumes (After for its options)
	Retry     []Retry
}

// compactionState is persisted under metaCompaction.
type compactionState struct {
	// horizonSeq: a replay up to a seq >= this is exact (every compacted version, and the
	// arrival seq of every winner a dropped change lost to, is at or before it).
	horizonSeq Seq
	// horizonTS: a replay up to a time >= this is exact (every winner a dropped change lost
	// to, and every version a peer sent already cleared, was committed at or before it).
	horizonTS Timestamp
	dropped   uint64
	cleared   uint64
	bytes     uint64
}

func (c compactionState) encode() []byte {
	b := make([]byte, 0, 40)
	for _, x := range []uint64{uint64(c.horizonSeq), uint64(c.horizonTS), c.dropped, c.cleared, c.bytes} {
		b = binary.BigEndian.AppendUint64(b, x)
	}
	return b
}

func decodeCompactionState(b []byte) compactionState {
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[i*8:]) }
	c := compactionState{horizonSeq: Seq(u(0)), horizonTS: Timestamp(u(1)), dropped: u(2), cleared: u(3)}
	if len(b) >= 40 {
		c.bytes = u(4)
	}
	return c
}

// rewrite is one version compaction trims or clears.
type rewrite struct {
	site     SiteID
	ver      Version
	seq      Seq
	dropped  uint64
	oldBytes uint64
	keep     *Changeset // the survivors, Compacted; nil clears the version
	// parts, when known, are the first ordinals of the stored parts: they go by point
	// deletes. A range delete would do, but every range tombstone costs each new iterator
	// (and Pebble's table statistics) until it is compacted away, and a pass writes one
	// per version.
	parts []uint64
}

// compactReq is work for the committer: the rewrites of one compaction batch, or cleared
// ranges received from a peer.
type compactReq struct {
	rewrites   []rewrite
	horizonSeq Seq
	horizonTS  Timestamp
	cleared    []SiteMissing // Site and Cleared only
	res        CompactResult
	added      uint64 // versions newly held by cleared ranges
	err        error
	done       chan struct{}
}

// ErrCompactBusy: another compaction pass is running.
var ErrCompactBusy = errors.New("log: a compaction is already running")

// Compact drops superseded changes from complete data versions with arrival seq in
// (After, Through]: judge names, per change, what supersedes it; a version keeps only its
// live changes (marked Compacted) and a version left with none is cleared: its data and
// arrival entry go, and it stays in the vector as cleared (never a gap; sync sends it as a
// range). Changesets of any other kind (schema, empty) are never touched. The version at
// LastSeq is never cleared (it is kept as an empty compacted version) so that Read always has
// something to return before the end of the log.
//
// Safe because merging is order-independent and a superseded change can never win again:
// folding what survives gives exactly the rows and clocks folding everything gives. Only one
// pass runs at a time (ErrCompactBusy).
func (s *Store) Compact(ctx context.Context, opts CompactOptions) (CompactResult, error) {
	res := CompactResult{Next: opts.After}
	if s.readOnly {
		return res, ErrReadOnly
	}
	if opts.Judge == nil {
		return res, invalidf("compact: no judge")
	}
	if !s.compactMu.TryLock() {
		return res, ErrCompactBusy
	}
	defer s.compactMu.Unlock()
	batch := opts.Batch
	if batch <= 0 {
		batch = 256
	}
	through := min(opts.Through, s.LastSeq())
	// The replay horizon must cover the arrival seq of every winner a dropped change lost
	// to (a replay to a seq before it would miss both); the judge may see winners folded
	// after through, so their seqs are looked up, and a change whose winner arrived after
	// this snapshot is kept (a later pass drops it).
	arrived, err := s.arrivals(s.LastSeq())
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	p := &compactPass{s: s, horizon: opts.Horizon, arrived: arrived, tsCache: map[Dominator]Timestamp{}}
	start := time.Now()
	defer func() {
		s.metrics.compactSeconds.Observe(time.Since(start).Seconds())
		s.metrics.compactJudged.Observe(float64(res.Judged))
	}()
	if opts.Candidates != nil {
		err := p.candidates(ctx, opts, through, batch, &res)
		return res, err
	}
	for res.Next < through {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if opts.MaxVersions > 0 && res.Scanned >= opts.MaxVersions {
			break
		}
		css, sizes, err := s.read(res.Next, batch, true)
		if err != nil {
			return res, fmt.Errorf("compact: %w", err)
		}
		b := p.take(css, sizes, through)
		if b.scanned == 0 {
			break
		}
		if b.stop {
			through = b.next // ends the pass after this batch
		}
		res.Scanned += b.scanned
		if err := p.judge(ctx, opts.Judge, b, through, &res); err != nil {
			return res, err
		}
		res.Next = b.next
	}
	return res, nil
}

// judge has one batch judged and applies the verdicts: one short turn of the committer.
// base is the least replay horizon the batch's drops move the store's to.
func (p *compactPass) judge(ctx context.Context, judge Judge, b compactBatch, base Seq, res *CompactResult) error {
	if len(b.data) == 0 {
		return nil
	}
	res.Judged += len(b.data)
	verdicts, err := judge(ctx, b.data)
	if err != nil {
		return fmt.Errorf("compact: judge: %w", err)
	}
	if err := p.prefetchTS(verdicts); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	req, err := p.rewrites(b, verdicts, base, res)
	if err != nil {
		return err
	}
	if len(req.rewrites) == 0 {
		return nil
	}
	if err := p.s.submitCompaction(ctx, req); err != nil {
		return err
	}
	res.Rewritten += req.res.Rewritten
	res.Cleared += req.res.Cleared
	res.Dropped += req.res.Dropped
	res.Bytes += req.res.Bytes
	return nil
}

// candidates is a pass over opts.Candidates: they are read by (site, version) in batches,
// one data iterator a batch, and judged; the rest of the log is not read.
func (p *compactPass) candidates(ctx context.Context, opts CompactOptions, through Seq, batch int, res *CompactResult) error {
	type cand struct {
		site SiteID
		ver  Version
		seq  Seq
	}
	var list []cand
	sites := make([]SiteID, 0, len(opts.Candidates))
	for site := range opts.Candidates {
		sites = append(sites, site)
	}
	slices.SortFunc(sites, func(a, b SiteID) int { return a.Compare(b) })
	for _, site := range sites {
		held := p.arrived[site] // by version; cleared and partial versions have no entry
		for _, r := range opts.Candidates[site] {
			// Walk what is held in the range, not the range: a wide range costs nothing.
			i, _ := slices.BinarySearchFunc(held, Version(r.First), func(e verSeq, v Version) int { return cmp.Compare(e.ver, v) })
			for ; i < len(held) && uint64(held[i].ver) <= r.Last; i++ {
				if held[i].seq > through {
					// Not folded yet when the pass began: the judge would answer live.
					res.Retry = append(res.Retry, Retry{Site: site, Version: held[i].ver})
					continue
				}
				list = append(list, cand{site, held[i].ver, held[i].seq})
			}
		}
	}
	for i := 0; i < len(list); i += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		if opts.MaxVersions > 0 && res.Scanned >= opts.MaxVersions {
			for _, c := range list[i:] {
				res.Retry = append(res.Retry, Retry{Site: c.site, Version: c.ver})
			}
			return nil
		}
		part := list[i:min(i+batch, len(list))]
		refs := make([]verRef, len(part))
		for j, c := range part {
			refs[j] = verRef{c.site, c.ver}
		}
		css, sizes, parts, err := p.s.readVersions(refs)
		if err != nil {
			return fmt.Errorf("compact: %w", err)
		}
		res.Scanned += len(part)
		var b compactBatch
		for j, cs := range css {
			if cs == nil {
				continue // cleared or gone since the arrival index was read
			}
			cs.Seq = part[j].seq
			if p.horizon != 0 && cs.TS >= p.horizon {
				res.Retry = append(res.Retry, Retry{Site: cs.Site, Version: cs.Version, NotBefore: cs.TS})
				continue
			}
			if cs.Kind == KindData && len(cs.Changes) > 0 {
				b.data = append(b.data, cs)
				b.dataSizes = append(b.dataSizes, sizes[j])
				b.dataParts = append(b.dataParts, parts[j])
			}
		}
		if err := p.judge(ctx, opts.Judge, b, 0, res); err != nil {
			return err
		}
	}
	return nil
}

// compactPass is what one Compact call knows across its batches.
type compactPass struct {
	s       *Store
	horizon Timestamp // 0: no retention window
	arrived arrivals
	tsCache map[Dominator]Timestamp
}

// compactBatch is one batch of a pass: the changesets scanned and the data versions among
// them that the judge sees.
type compactBatch struct {
	scanned   int
	next      Seq  // the last seq scanned
	stop      bool // the retention window starts in this batch: the pass ends with it
	data      []*Changeset
	dataSizes []uint64
	dataParts [][]uint64 // when known, the first ordinals of each version's stored parts
}

// take cuts what was read at through and at the retention window, and picks the data
// versions (with changes) to judge.
func (p *compactPass) take(css []*Changeset, sizes []uint64, through Seq) compactBatch {
	var b compactBatch
	for i, cs := range css {
		if cs.Seq > through {
			css = css[:i]
			break
		}
		if p.horizon != 0 && cs.TS >= p.horizon {
			// The window starts here. Arrival order follows commit time closely, so the
			// pass stops rather than read the whole window to find older stragglers (a
			// site whose clock runs ahead delays compaction by its lead, nothing worse).
			css, b.stop = css[:i], true
			break
		}
		if cs.Kind == KindData && len(cs.Changes) > 0 {
			b.data = append(b.data, cs)
			b.dataSizes = append(b.dataSizes, sizes[i])
		}
	}
	if b.scanned = len(css); b.scanned > 0 {
		b.next = css[len(css)-1].Seq
	}
	return b
}

// prefetchTS reads the commit times of the winners the verdicts name, with one iterator
// (a Get each, an iterator each, cost the pass as much as the judge).
func (p *compactPass) prefetchTS(verdicts [][]Dominator) error {
	var refs []verRef
	seen := map[Dominator]bool{}
	for _, v := range verdicts {
		for _, d := range v {
			if d.IsZero() || seen[d] {
				continue
			}
			seen[d] = true
			if _, ok := p.tsCache[d]; !ok {
				refs = append(refs, verRef{d.Site, d.Version})
			}
		}
	}
	if len(refs) == 0 {
		return nil
	}
	slices.SortFunc(refs, func(a, b verRef) int {
		if c := a.site.Compare(b.site); c != 0 {
			return c
		}
		return cmp.Compare(a.ver, b.ver)
	})
	css, _, _, err := p.s.readVersions(refs)
	if err != nil {
		return err
	}
	if len(p.tsCache)+len(refs) > 1<<16 {
		clear(p.tsCache)
	}
	for i, r := range refs {
		var ts Timestamp
		if css[i] != nil {
			ts = css[i].TS
		}
		p.tsCache[Dominator{r.site, r.ver}] = ts
	}
	return nil
}

// dominatorTS is the commit time of the version d names (false when it cannot be read).
func (p *compactPass) dominatorTS(d Dominator) (Timestamp, bool) {
	if ts, ok := p.tsCache[d]; ok {
		return ts, ts != 0
	}
	cs, err := p.s.Get(d.Site, d.Version)
	var ts Timestamp
	if err == nil {
		ts = cs.TS
	}
	if len(p.tsCache) > 1<<16 {
		clear(p.tsCache)
	}
	p.tsCache[d] = ts
	return ts, ts != 0
}

// rewrites turns the judge's verdicts on a batch into the committer's request: per version
// with a change to drop, its survivors (none: cleared), and the horizon the drops move (at
// least base). A version with a superseded change that cannot go yet goes to res.Retry.
func (p *compactPass) rewrites(b compactBatch, verdicts [][]Dominator, base Seq, res *CompactResult) (*compactReq, error) {
	if len(verdicts) != len(b.data) {
		return nil, fmt.Errorf("compact: judge answered %d of %d changesets", len(verdicts), len(b.data))
	}
	req := &compactReq{done: make(chan struct{}), horizonSeq: base}
	for i, cs := range b.data {
		v := verdicts[i]
		if len(v) != len(cs.Changes) {
			return nil, fmt.Errorf("compact: judge answered %d of %d changes of %v/%d", len(v), len(cs.Changes), cs.Site, cs.Version)
		}
		var keep []Change
		dropped := uint64(0)
		retry := Retry{Site: cs.Site, Version: cs.Version}
		waits := false
		for j, d := range v {
			dseq, ok := p.droppable(cs, d)
			if !ok {
				if !d.IsZero() && p.later(d) {
					// Superseded, but not droppable yet: when both it and its winner
					// have left the window (or, without a window, at the next pass).
					waits = true
					if p.horizon != 0 {
						ts, _ := p.dominatorTS(d)
						retry.NotBefore = max(retry.NotBefore, cs.TS, ts)
					}
				}
				if dropped > 0 {
					keep = append(keep, cs.Changes[j])
				}
				continue
			}
			if dropped == 0 {
				keep = append(make([]Change, 0, len(cs.Changes)), cs.Changes[:j]...)
			}
			dropped++
			req.horizonSeq = max(req.horizonSeq, dseq, cs.Seq)
			if ts, ok := p.dominatorTS(d); ok && ts > req.horizonTS {
				req.horizonTS = ts
			}
		}
		if waits {
			res.Retry = append(res.Retry, retry)
		}
		if dropped == 0 {
			continue
		}
		rw := rewrite{site: cs.Site, ver: cs.Version, seq: cs.Seq, dropped: dropped, oldBytes: b.dataSizes[i]}
		if b.dataParts != nil {
			rw.parts = b.dataParts[i]
		}
		if len(keep) > 0 {
			k := *cs
			k.Seq, k.Changes, k.Compacted = 0, keep, true
			rw.keep = &k
		}
		req.rewrites = append(req.rewrites, rw)
	}
	return req, nil
}

// droppable says whether a change of cs that the judge says d supersedes may go now, and
// the arrival seq of d: not when nothing supersedes it, when d's arrival is not in this
// pass's snapshot (too recent to say), or when either is inside the retention window.
func (p *compactPass) droppable(cs *Changeset, d Dominator) (Seq, bool) {
	if d.IsZero() {
		return 0, false
	}
	dseq, ok := p.arrived.seq(d)
	if !ok {
		return 0, false
	}
	if p.horizon != 0 {
		if ts, ok := p.dominatorTS(d); !ok || ts >= p.horizon || cs.TS >= p.horizon {
			return 0, false
		}
	}
	return dseq, true
}

// later reports whether a change d supersedes, not droppable now, may be later: d is held
// with data (so it arrived after this pass's snapshot, or is in the window). A winner the
// log does not hold keeps the change, as a full pass does, until a later change to its row
// names it again: retried, it would be judged at every pass for nothing.
func (p *compactPass) later(d Dominator) bool {
	p.s.mu.RLock()
	defer p.s.mu.RUnlock()
	sv := p.s.vec.Sites[d.Site]
	return sv != nil && sv.Versions.Contains(uint64(d.Version)) && !sv.Cleared.Contains(uint64(d.Version))
}

// AppendCleared records versions a peer holds cleared: they become held (and cleared)
// without data, and parts of them held here are dropped (their changes were all
// superseded). Versions already held complete are left alone. It returns how many versions
// were new. Durable on return.
func (s *Store) AppendCleared(ctx context.Context, site SiteID, rs RangeSet) (uint64, error) {
	if s.readOnly {
		return 0, ErrReadOnly
	}
	if site.IsZero() {
		return 0, invalidf("cleared ranges: zero site id")
	}
	if err := rs.Valid(); err != nil {
		return 0, fmt.Errorf("cleared ranges: %w", err)
	}
	if len(rs) == 0 {
		return 0, nil
	}
	if rs[0].First == 0 {
		return 0, invalidf("cleared ranges: version 0")
	}
	req := &compactReq{done: make(chan struct{}), cleared: []SiteMissing{{Site: site, Cleared: rs}}}
	if err := s.submitCompaction(ctx, req); err != nil {
		return 0, err
	}
	return req.added, nil
}

func (s *Store) submitCompaction(ctx context.Context, req *compactReq) error {
	if err := s.rlock(); err != nil {
		return err
	}
	select {
	case s.compacts <- req:
		s.closeMu.RUnlock()
	case <-s.quit:
		s.closeMu.RUnlock()
		return ErrClosed
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return context.Cause(ctx)
	}
	<-req.done
	return req.err
}

// versionBounds are the data keys of all parts of one version.
func versionBounds(site SiteID, v Version) (lo, hi []byte) {
	lo = dataKey(nil, site, v, 0)
	return lo, incPrefix(lo[:25])
}

// commitCompaction runs on the committer: it applies one compaction request as one Pebble
// batch. Compaction never needs an fsync of its own (losing it in a crash only leaves the
// superseded changes in place), so the batch rides on the next append's sync.
func (s *Store) commitCompaction(r *compactReq) {
	s.mu.RLock()
	failed := s.failed
	a := compactApply{lastSeq: s.lastSeq, changes: s.changes, bytes: s.bytes, cst: s.compSt, dirty: map[SiteID]struct{}{}}
	s.mu.RUnlock()
	if failed != nil {
		r.err = failed
		return
	}
	a.b = s.db.NewBatch()
	defer a.b.Close()
	// Read must not return a kept decoded copy of what this batch rewrites (recent.go).
	for _, rw := range r.rewrites {
		s.recent.drop(rw.seq)
	}
	for _, rw := range r.rewrites {
		if r.err = s.applyRewrite(&a, r, rw); r.err != nil {
			return
		}
	}
	for _, c := range r.cleared {
		if r.err = s.applyPeerCleared(&a, r, c); r.err != nil {
			return
		}
	}
	if r.err = s.persistCompaction(&a, r); r.err != nil || a.b.Empty() {
		return
	}
	wo := pebble.NoSync
	if len(r.cleared) > 0 {
		wo = s.wopts // a peer's cleared ranges are acknowledged: durable like an append
	}
	err := a.b.Commit(wo)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failed = fmt.Errorf("log commit failed, reopen the store: %w", err)
		s.logger.Error("compaction commit failed", "err", err)
		r.err = s.failed
		return
	}
	s.publishCompaction(&a, r)
}

// compactApply is one compaction request on its way into a Pebble batch: the batch, the
// counters as they will be after it, and what to publish once it is committed.
type compactApply struct {
	b              *pebble.Batch
	lastSeq        Seq
	changes, bytes uint64 // the log's totals after the batch
	cst            compactionState
	cleared        []siteRanges // versions cleared here: added to the published Cleared
	held           []siteRanges // versions a peer holds cleared: held and cleared here now
	dropPartials   []partKey    // partial versions those replaced
	digests        []siteDigest // digests of versions cleared here: out of the content sums
	dirty          map[SiteID]struct{}
}

type siteDigest struct {
	site SiteID
	d    Digest
}

type siteRanges struct {
	site SiteID
	rs   RangeSet
}

// applyRewrite adds one rewritten or cleared version to the batch (on the work vector).
func (s *Store) applyRewrite(a *compactApply, r *compactReq, rw rewrite) error {
	sv := s.work.Sites[rw.site]
	if sv == nil || !sv.Versions.Contains(uint64(rw.ver)) || sv.Cleared.Contains(uint64(rw.ver)) {
		return nil // cannot happen: only compaction changes complete versions, one pass at a time
	}
	lo, hi := versionBounds(rw.site, rw.ver)
	keep := rw.keep
	if keep == nil && rw.seq == a.lastSeq {
		// Read must always find the version at LastSeq: keep it, empty.
		var cs Changeset
		if err := s.getInto(rw.site, rw.ver, &cs); err != nil {
			return err
		}
		cs.Changes, cs.Compacted, cs.Seq, cs.Span = nil, true, 0, OrdRange{First: 0, Last: cs.LastOrd}
		keep = &cs
	}
	var newBytes uint64
	var parts []item
	if keep != nil {
		var err error
		if parts, err = s.split(nil, keep, 0); err != nil {
			return fmt.Errorf("compact %v/%d: %w", rw.site, rw.ver, err)
		}
		for _, p := range parts {
			newBytes += uint64(len(p.enc))
		}
	}
	if rw.parts != nil {
		for _, first := range rw.parts {
			if err := a.b.Delete(dataKey(nil, rw.site, rw.ver, first), nil); err != nil {
				return err
			}
		}
	} else if err := a.b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	for _, p := range parts {
		if err := a.b.Set(dataKey(nil, rw.site, rw.ver, p.cs.Span.First), p.enc, nil); err != nil {
			return err
		}
	}
	if keep == nil {
		if err := a.b.Delete(arrivalKey(rw.seq), nil); err != nil {
			return err
		}
		// Its digest goes too: kept, it would cost a key per version ever written, the
		// history growth compaction is for. A copy of a cleared version that arrives
		// again is held already and dropped unread, whatever its content.
		if d, err := s.heldDigest(rw.site, rw.ver); err == nil && !d.IsZero() {
			// And out of the site's content sum, as a reopened log would count it.
			sv.Content.Remove(d)
			a.digests = append(a.digests, siteDigest{rw.site, d})
		}
		if err := a.b.Delete(digestKey(rw.site, rw.ver), nil); err != nil {
			return err
		}
		sv.Cleared.Add(uint64(rw.ver), uint64(rw.ver))
		a.cleared = append(a.cleared, siteRanges{rw.site, RangeSet{{First: uint64(rw.ver), Last: uint64(rw.ver)}}})
		a.dirty[rw.site] = struct{}{}
		r.res.Cleared++
		a.cst.cleared++
	} else {
		r.res.Rewritten++
	}
	r.res.Dropped += rw.dropped
	r.res.Bytes += rw.oldBytes - min(newBytes, rw.oldBytes)
	a.changes -= min(rw.dropped, a.changes)
	a.bytes = a.bytes - min(rw.oldBytes, a.bytes) + newBytes
	return nil
}

// applyPeerCleared adds versions a peer holds cleared to the batch (on the work vector):
// those not held here become held and cleared, and parts held of them go (all superseded).
func (s *Store) applyPeerCleared(a *compactApply, r *compactReq, c SiteMissing) error {
	sv := s.work.Site(c.Site)
	newVers := c.Cleared.Subtract(sv.Versions)
	if len(newVers) == 0 {
		return nil
	}
	for ver := range sv.Partials {
		if !newVers.Contains(uint64(ver)) {
			continue
		}
		ch, nb, err := s.partSizes(c.Site, ver)
		if err != nil {
			return err
		}
		lo, hi := versionBounds(c.Site, ver)
		if err := a.b.DeleteRange(lo, hi, nil); err != nil {
			return err
		}
		if err := a.b.Delete(partialKey(c.Site, ver), nil); err != nil {
			return err
		}
		a.changes -= min(ch, a.changes)
		a.bytes -= min(nb, a.bytes)
		a.dropPartials = append(a.dropPartials, partKey{c.Site, ver})
	}
	for _, pk := range a.dropPartials {
		if pk.site == c.Site {
			delete(sv.Partials, pk.ver)
		}
	}
	sv.Versions.AddSet(newVers)
	sv.Cleared.AddSet(newVers)
	r.added += newVers.Count()
	// What those versions held, and when it lost, is unknown here: a replay to a time
	// before now could miss it.
	r.horizonTS = max(r.horizonTS, s.hlc.Now())
	a.held = append(a.held, siteRanges{c.Site, newVers})
	a.dirty[c.Site] = struct{}{}
	if c.Site == s.site {
		top, _ := newVers.Max()
		for {
			cur := s.nextLocal.Load()
			if top < cur || s.nextLocal.CompareAndSwap(cur, top+1) {
				break
			}
		}
	}
	return nil
}

// persistCompaction adds to the batch the vector and cleared keys of every site touched,
// the compaction state and the counters.
func (s *Store) persistCompaction(a *compactApply, r *compactReq) error {
	for site := range a.dirty {
		sv := s.work.Sites[site]
		if err := a.b.Set(clearedKey(site), AppendRanges(nil, sv.Cleared), nil); err != nil {
			return err
		}
		if err := a.b.Set(vectorKey(site), AppendRanges(nil, sv.Versions), nil); err != nil {
			return err
		}
	}
	if r.res.Dropped > 0 || r.added > 0 {
		a.cst.dropped += r.res.Dropped
		a.cst.bytes += r.res.Bytes
		a.cst.horizonSeq = max(a.cst.horizonSeq, r.horizonSeq)
		a.cst.horizonTS = max(a.cst.horizonTS, r.horizonTS)
		if err := a.b.Set(metaKey(metaCompaction), a.cst.encode(), nil); err != nil {
			return err
		}
	}
	var st [16]byte
	binary.BigEndian.PutUint64(st[:], a.changes)
	binary.BigEndian.PutUint64(st[8:], a.bytes)
	return a.b.Set(metaKey(metaStats), st[:], nil)
}

// publishCompaction makes a committed compaction visible: the published vector, counters
// and metrics. The caller holds s.mu.
func (s *Store) publishCompaction(a *compactApply, r *compactReq) {
	for _, p := range a.digests {
		if sv := s.vec.Sites[p.site]; sv != nil {
			sv.Content.Remove(p.d)
		}
	}
	for _, c := range a.cleared {
		s.vec.Site(c.site).Cleared.AddSet(c.rs)
	}
	for _, c := range a.held {
		sv := s.vec.Site(c.site)
		sv.Versions.AddSet(c.rs)
		sv.Cleared.AddSet(c.rs)
	}
	for _, pk := range a.dropPartials {
		if sv := s.vec.Sites[pk.site]; sv != nil {
			delete(sv.Partials, pk.ver)
		}
	}
	s.changes, s.bytes, s.compSt = a.changes, a.bytes, a.cst
	s.metrics.compactDropped.Add(float64(r.res.Dropped))
	s.metrics.compactCleared.Add(float64(r.res.Cleared))
}

// getInto reads version v of site (complete) into cs.
func (s *Store) getInto(site SiteID, v Version, cs *Changeset) error {
	lo, hi := versionBounds(site, v)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	out, _, err := readVersion(it, site, v)
	if err != nil {
		return err
	}
	*cs = *out
	return nil
}

// partSizes counts the changes and encoded bytes of the stored parts of one version.
func (s *Store) partSizes(site SiteID, v Version) (changes, nbytes uint64, err error) {
	lo, hi := versionBounds(site, v)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return 0, 0, err
		}
		part, err := DecodeChangeset(val)
		if err != nil {
			return 0, 0, fmt.Errorf("part of %v/%d: %w", site, v, err)
		}
		changes += uint64(len(part.Changes))
		nbytes += uint64(len(val))
	}
	return changes, nbytes, it.Error()
}

// ReclaimSpace asks Pebble to compact the key ranges compaction rewrote, so that the space
// of dropped changes comes back now rather than whenever Pebble's own heuristics get there.
func (s *Store) ReclaimSpace(ctx context.Context) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	// Every key space, one at a time: besides the data, arrival and digest entries
	// compaction deletes, the vector, cleared and stats keys are rewritten by every batch.
	for pfx := pfxMeta; pfx <= pfxDigest; pfx++ {
		if err := s.db.Compact(ctx, []byte{pfx}, []byte{pfx + 1}, false); err != nil {
			return fmt.Errorf("reclaim space: %w", err)
		}
	}
	return nil
}

// arrivals maps complete versions to their arrival seqs: the arrival index read once, per
// site sorted by version (16 bytes a version held with data; cleared ones have no entry).
type arrivals map[SiteID][]verSeq

type verSeq struct {
	ver Version
	seq Seq
}

// arrivals reads the arrival index up to seq last.
func (s *Store) arrivals(last Seq) (arrivals, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: arrivalKey(1), UpperBound: arrivalKey(last + 1)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := arrivals{}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		val, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		if len(k) != 9 || len(val) != 24 {
			return nil, &DecodeError{What: "arrival entry", Err: fmt.Errorf("key %x: %d bytes", k, len(val))}
		}
		site := SiteID(val[:16])
		out[site] = append(out[site], verSeq{Version(binary.BigEndian.Uint64(val[16:])), Seq(binary.BigEndian.Uint64(k[1:]))})
	}
	for _, vs := range out {
		// Mostly sorted already: a site's versions usually arrive in order.
		slices.SortFunc(vs, func(a, b verSeq) int { return cmp.Compare(a.ver, b.ver) })
	}
	return out, it.Error()
}

// seq is the arrival seq of d's version, if it was read.
func (a arrivals) seq(d Dominator) (Seq, bool) {
	vs := a[d.Site]
	i, ok := slices.BinarySearchFunc(vs, d.Version, func(e verSeq, v Version) int { return cmp.Compare(e.ver, v) })
	if !ok {
		return 0, false
	}
	return vs[i].seq, true
}

// verRef names one version.
type verRef struct {
	site SiteID
	ver  Version
}

// readVersions reads complete versions by name with one data iterator (refs sorted by site
// and version keep it moving forward); a version no longer held complete reads as nil.
// sizes are the encoded bytes stored for each, parts the first ordinals of its stored parts
// (their keys, for point deletes).
func (s *Store) readVersions(refs []verRef) (css []*Changeset, sizes []uint64, parts [][]uint64, err error) {
	if err := s.rlock(); err != nil {
		return nil, nil, nil, err
	}
	defer s.closeMu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxData}, UpperBound: []byte{pfxData + 1}})
	if err != nil {
		return nil, nil, nil, err
	}
	defer it.Close()
	css = make([]*Changeset, len(refs))
	sizes = make([]uint64, len(refs))
	parts = make([][]uint64, len(refs))
	for i, r := range refs {
		var firsts []uint64
		cs, size, err := readVersionParts(it, r.site, r.ver, &firsts)
		if errors.Is(err, ErrIncomplete) {
			continue
		}
		if err != nil {
			return nil, nil, nil, err
		}
		css[i], sizes[i], parts[i] = cs, size, firsts
	}
	return css, sizes, parts, nil
}
