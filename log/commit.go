package log

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Append stores changesets or parts made elsewhere. Idempotent: ordinals already held are
// skipped (a part that overlaps held ordinals stores only the new ones). Durable on return;
// concurrent callers are group-committed. Every changeset is validated first and an invalid
// one fails the whole call before anything is stored. Once queued, a call waits for the
// commit's outcome even if ctx ends, so that its answer is always true. The log may keep
// the changesets given (their Changes and payloads, not the Changeset structs) and hand
// them to readers (recent.go): the caller must not modify them after the call.
func (s *Store) Append(ctx context.Context, css ...*Changeset) ([]AppendResult, error) {
	p, err := s.appendAsync(ctx, css, false)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// AppendAsync is Append in two steps, for a caller with work to do while the group's WAL
// sync runs (the materializer's writer): it returns once the call is queued, and the
// Pending it returns says when the committer has written the group to the WAL and the
// memtable, not yet synced (Written, with the arrival seqs in Results), and when it is
// durable and published (Wait). Nothing of the call is published (LastSeq, the vector,
// Read, tails) before it is durable; a write that fails after Written fails Wait and every
// later group (the store refuses writes until reopened, as for Append). The same rules for
// the changesets as Append's hold.
func (s *Store) AppendAsync(ctx context.Context, css ...*Changeset) (*Pending, error) {
	return s.appendAsync(ctx, css, false)
}

// Pending is an append on its way to disk (AppendAsync).
type Pending struct {
	req   *appendReq
	start time.Time // zero: answered without a commit (nothing to write)
	s     *Store
}

// Written is closed once the committer has handled the call's group: written to the WAL and
// the memtable without waiting for its sync, or refused (Results says which).
func (p *Pending) Written() <-chan struct{} { return p.req.written }

// Results, once Written is closed, are what the append did, with the arrival seqs of the
// versions it completed, or why it was refused or failed to be written. The seqs are not
// durable nor published yet: Wait says when they are. Results before Written is closed is
// a programming error.
func (p *Pending) Results() ([]AppendResult, error) {
	if p.req.wErr != nil {
		return nil, p.req.wErr
	}
	return p.req.res, nil
}

// Done is closed once the call is answered: durable and published, or failed. Its group is
// published by a caller waiting for it or for a later group (Wait), or at Close: a caller of
// AppendAsync must call Wait.
func (p *Pending) Done() <-chan struct{} { return p.req.done }

// Wait waits until the append is durable and published and returns its results (Append's
// answer), or the error that refused or failed it. A call whose Results succeeded can still
// fail here: its WAL sync failed.
func (p *Pending) Wait() ([]AppendResult, error) {
	p.s.await(p.req)
	if !p.start.IsZero() {
		p.s.metrics.appendSeconds.Observe(time.Since(p.start).Seconds())
	}
	if p.req.err != nil {
		return nil, p.req.err
	}
	return p.req.res, nil
}

// closedCh is a closed channel: Written of a call answered without a commit.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// appendAsync is AppendAsync; checked says that every changeset of css was validated and
// carries a checked digest already (Ingest did it: the digest is a SHA-256 over every
// change, not to be computed twice).
func (s *Store) appendAsync(ctx context.Context, css []*Changeset, checked bool) (*Pending, error) {
	req := &appendReq{res: make([]AppendResult, len(css)), done: make(chan struct{})}
	p := &Pending{req: req, s: s}
	if len(css) == 0 {
		req.written = closedCh
		close(req.done)
		return p, nil
	}
	start := time.Now()
	copied := false
	for i, cs := range css {
		if cs == nil {
			return nil, invalidf("append: changeset %d is nil", i)
		}
		if checked {
			continue
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
		req.written = closedCh
		close(req.done)
		return p, nil
	}
	if err := s.checkFree(); err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	req.written = make(chan struct{})
	if err := s.enqueue(ctx, req); err != nil {
		return nil, err
	}
	p.start = start
	return p, nil
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
	if s.tryCommit(req) {
		return nil
	}
	s.queued.Add(1)
	select {
	case s.reqs <- req:
		return nil
	case <-ctx.Done():
		s.queued.Add(-1)
		return context.Cause(ctx)
	}
}

// tryCommit writes req as a group of its own on the caller's goroutine when the committer
// is idle (nothing queued, nothing being written) and the pipeline has room; it reports
// whether it did. A caller that then waits for its group (await) makes the whole commit
// path one goroutine: the committer's hand-offs (queue, written) each cost a turn in the
// scheduler's run queue, and on a node busy with HTTP requests a turn is about half
// a millisecond, more than the fsync itself. Appends queued meanwhile, and every append
// while the committer is busy, group-commit behind it as before. Called with closeMu's read
// side held, so Close waits for it.
func (s *Store) tryCommit(req *appendReq) bool {
	if s.queued.Load() > 0 || !s.commitMu.TryLock() {
		return false
	}
	defer s.commitMu.Unlock()
	// queued is read again under the lock: an append queued before this one (AppendLocal's
	// order, localMu) is written first.
	if s.queued.Load() > 0 {
		return false
	}
	select {
	case s.slots <- struct{}{}:
	default:
		return false // groups ahead are still syncing: queue and join the next group
	}
	s.write([]*appendReq{req})
	return true
}

// write commits batch as one group and hands it on (commitMu held, a slot taken): to the
// publishing queue and to its callers (written).
func (s *Store) write(batch []*appendReq) {
	f := s.commit(batch)
	for _, r := range batch {
		r.wErr = r.err // what commit refused; once f is queued its publisher may set err
		if r.wErr == nil && f.err != nil {
			r.wErr = s.failedErr()
		}
		r.f = f
	}
	s.qMu.Lock()
	s.pubQ = append(s.pubQ, f)
	s.qMu.Unlock()
	for _, r := range batch {
		close(r.written)
	}
}

// await returns once req is answered: a request written in a group publishes the groups up
// to its own, unless a caller of a later group already did (awaitGroup).
func (s *Store) await(req *appendReq) {
	<-req.written
	if req.f != nil {
		s.awaitGroup(req.f)
	}
	<-req.done
}

// awaitGroup publishes, in write order, every group up to f, each once durable. Whoever
// holds pubMu publishes the head of pubQ; a caller whose group a later group's caller
// published finds it done. The caller waiting on the fsync itself is woken by Pebble's flush
// loop directly: one scheduler hand-off, where a goroutine of the log's own that published
// and then answered would add two more, and readying it would also push the flush loop back
// in the run queue, delaying the fsync.
func (s *Store) awaitGroup(f *inflight) {
	if f.published.Load() {
		return
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	for !f.published.Load() {
		s.qMu.Lock()
		head := s.pubQ[0]
		s.qMu.Unlock()
		s.finish(head)
	}
}

// finish publishes the written group f once it is durable and answers its callers (pubMu
// held, f the head of pubQ).
func (s *Store) finish(f *inflight) {
	if s.publish(f) {
		s.metrics.commitSeconds.Observe(time.Since(f.start).Seconds())
		s.metrics.batchAppends.Observe(float64(len(f.reqs)))
	}
	s.qMu.Lock()
	s.pubQ[0] = nil
	s.pubQ = s.pubQ[1:]
	s.qMu.Unlock()
	f.published.Store(true)
	for _, r := range f.reqs {
		close(r.done)
	}
	<-s.slots
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
	req := &appendReq{res: make([]AppendResult, 1), done: make(chan struct{}), written: make(chan struct{}), local: true}
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
	s.await(req)
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

// The commit pipeline. A group of appends (one idle appender's, or what queued for
// commitLoop) is built into one Pebble batch on the working vector and written to the WAL
// and memtable without waiting for the sync (ApplyNoSyncWait); the groups' callers then wait
// for each group's sync in the order the groups were written and only then publish it
// (vector, last seq, counters) and answer its callers (awaitGroup). So an answer never
// precedes the durability of what it answers, and Pebble's WAL being one ordered file means a
// group is durable only once every earlier one is. While group N's fsync runs, group N+1 is
// built and written behind it, and its sync starts as soon as N's ends. A token in slots
// stands for a group on its way (CommitDepth at most); a group with nothing to write (every
// item already held by the working vector, or refused) is published in its turn too,
// because "held" there may mean "held by a group not synced yet". Why an appender writes and
// publishes its own group, and the order both keep: doc.go, "Group commit".

// inflight is one group written and not yet published (pubQ).
type inflight struct {
	reqs    []*appendReq
	b       *pebble.Batch // nil: nothing to write
	wait    bool          // b was applied without waiting for its sync: SyncWait before publishing
	err     error         // writing b failed
	ops     []pubOp
	recent  []recentEntry // for the recent cache, once published
	lastSeq Seq
	changes uint64 // totals after this group
	bytes   uint64
	start   time.Time
	// published: the group is durable and published (or failed) and its callers answered.
	published atomic.Bool
}

// commitLoop is the only writer of the db after Open.
func (s *Store) commitLoop() {
	defer close(s.done)
	lastBatch := 0
	for {
		var batch []*appendReq
		select {
		case <-s.quit:
			s.commitMu.Lock()
			s.flushPipeline()
			s.drain(ErrClosed)
			s.commitMu.Unlock()
			return
		case req := <-s.reqs:
			batch = append(make([]*appendReq, 0, 8), req)
		case cr := <-s.compacts:
			s.commitMu.Lock()
			s.flushPipeline()
			s.commitCompaction(cr)
			s.resetWork()
			s.commitMu.Unlock()
			close(cr.done)
			continue
		case rr := <-s.repairs:
			s.commitMu.Lock()
			s.flushPipeline()
			s.commitRepair(rr)
			s.resetWork()
			s.commitMu.Unlock()
			close(rr.done)
			continue
		}
		s.commitMu.Lock()
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
		s.write(batch)
		s.queued.Add(-int64(len(batch)))
		s.commitMu.Unlock()
	}
}

// flushPipeline publishes every group written (commitMu held, so that none is being
// written): compaction and repair read and replace the published state, and Close answers
// every caller. Every group has a caller that waits for it, but one may not have come yet.
func (s *Store) flushPipeline() {
	s.qMu.Lock()
	var last *inflight
	if n := len(s.pubQ); n > 0 {
		last = s.pubQ[n-1]
	}
	s.qMu.Unlock()
	if last != nil {
		s.awaitGroup(last)
	}
}

// resetWork takes the committer's running arrival seq and counters from the published
// state (committer only, with nothing in flight).
func (s *Store) resetWork() {
	s.mu.RLock()
	s.wLastSeq, s.wChanges, s.wBytes = s.lastSeq, s.changes, s.bytes
	s.mu.RUnlock()
}

// drain fails every queued request; Close holds closeMu so no more can arrive.
func (s *Store) drain(err error) {
	for {
		select {
		case req := <-s.reqs:
			s.queued.Add(-1)
			req.err, req.wErr = err, err
			close(req.written)
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
// writes it without waiting for its sync (commitMu held); its callers publish it.
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
	s.faults.appended.Add(g.bytes)
	f.b, f.ops, f.lastSeq, f.recent = g.b, g.ops, g.lastSeq, g.recent
	s.wLastSeq, s.wChanges, s.wBytes = g.lastSeq, f.changes, f.bytes
	if s.wopts.Sync {
		f.err = s.db.ApplyNoSyncWait(f.b, s.wopts)
		f.wait = f.err == nil
	} else {
		f.err = f.b.Commit(s.wopts)
	}
	if f.err != nil {
		// Fail the store now, not when this group is published: the next group is
		// built on this one's working vector and must not reach the WAL without it.
		s.mu.Lock()
		s.failLocked(f.err)
		s.mu.Unlock()
	}
	return f
}

// failedErr is the store's commit failure, or nil.
func (s *Store) failedErr() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.failed
}

// failLocked makes every later write fail (s.mu held): the committer's working vector is
// ahead of the disk, and rather than unwind it the store refuses until reopened, which
// reads the truth back from disk.
func (s *Store) failLocked(err error) {
	if s.failed == nil {
		s.failed = fmt.Errorf("log commit failed, reopen the store: %w", err)
		s.logger.Error("commit failed", "err", err.Error()) // %+v of a Pebble error is its stack
	}
}

// publish waits for a written group's sync and publishes it (pubMu held); it reports
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
		s.failLocked(err)
		for _, r := range f.reqs {
			if r.err == nil {
				r.err = s.failed
			}
		}
		s.mu.Unlock()
		return false
	}
	// Kept before the seqs are published, so that a reader woken by them finds them.
	s.recent.add(f.recent)
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
	recent         []recentEntry // versions completed whole by one canonical item
	changes, bytes uint64        // what the batch adds
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
			if part == cs && canonical(part) {
				g.recent = append(g.recent, recentEntry{seq: g.lastSeq, cs: part, size: uint64(len(encs[i]))})
			}
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

// CommitDepth is how many groups may be on their way to disk at once (Options.CommitDepth):
// a caller pipelining its own appends (AppendAsync) keeps at most this many outstanding.
func (s *Store) CommitDepth() int { return cap(s.slots) }
