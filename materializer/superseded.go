package materializer

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patinadb/patina/log"
)

// superseded collects, between compaction passes, the versions that may have lost a change
// since they were last judged, so that a pass judges those and not every live version (which
// it did before, on the writer the writes need too: at 1M updates of 10k rows that cost
// half the write throughput). A change can only become superseded when a later change to
// its row is folded, and the fold sees that happen: a record of the row's clock (sentinel or
// column) that names another origin after the merge than before was displaced, and an
// incoming change that no record names after the merge lost on arrival. Either version is
// marked. Marking more than needed costs a judge; marking less would leave a superseded
// change in the log until a full pass (the tests compare every incremental pass with a full
// one). The judge stays the only authority on what is dropped.
//
// Marks are kept by the second after which their winner was committed, so that with a
// retention window a pass takes only the marks old enough to be droppable; versions the log
// could not drop yet come back (log.Retry) into the bucket of their own time.
//
// Marks do not survive a restart, a rebuild of the view, or an overflow of the bound: the
// next pass is then a full one over every version up to the log's end at that moment
// (needFull), as every pass was before.
type superseded struct {
	on atomic.Bool // marks are kept (compaction configured, or CompactLog called once)

	mu        sync.Mutex
	buckets   map[int64]map[log.SiteID][]log.Version // by unix second, rounded up
	n         int                                    // marks held (duplicates included)
	fullUntil log.Seq                                // > 0: a full pass must cover up to this seq
}

// maxSuperseded bounds the marks held (8 bytes each, about 16 MB): beyond it they are
// dropped for one full pass. Only a long retention window under a high write rate holds
// that many (a 1h window at 600 displacing writes/s).
const maxSuperseded = 1 << 21

// enable starts keeping marks; what was displaced before is covered by a full pass over the
// log up to last.
func (t *superseded) enable(last log.Seq) {
	if t.on.Swap(true) {
		return
	}
	t.needFull(last)
}

// needFull makes the next pass a full one over every version up to last (marks were lost).
func (t *superseded) needFull(last log.Seq) {
	t.mu.Lock()
	t.fullUntil = max(t.fullUntil, last, 1)
	t.mu.Unlock()
}

// mark records version v of site as possibly holding a superseded change, its winner
// committed before at (unix nanoseconds; 0 is now). It reports whether the bound
// overflowed (the caller then asks for a full pass).
func (t *superseded) mark(site log.SiteID, v log.Version, at int64) bool {
	if v == 0 || !t.on.Load() {
		return false
	}
	if at == 0 {
		at = time.Now().UnixNano()
	}
	sec := (at + 1e9 - 1) / 1e9
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n >= maxSuperseded {
		t.buckets, t.n = nil, 0
		return true
	}
	if t.buckets == nil {
		t.buckets = map[int64]map[log.SiteID][]log.Version{}
	}
	b := t.buckets[sec]
	if b == nil {
		b = map[log.SiteID][]log.Version{}
		t.buckets[sec] = b
	}
	b[site] = append(b[site], v)
	t.n++
	return false
}

// take removes and returns the marks whose winner was committed before horizon (0: all),
// as ranges per site, with how many distinct versions they name, and the seq a full pass
// must reach first (0: none needed).
func (t *superseded) take(horizon log.Timestamp) (map[log.SiteID]log.RangeSet, int, log.Seq) {
	t.mu.Lock()
	per := map[log.SiteID][]log.Version{}
	for sec, b := range t.buckets {
		if horizon != 0 && sec*1e9 > int64(horizon) {
			continue
		}
		for site, vs := range b {
			per[site] = append(per[site], vs...)
			t.n -= len(vs)
		}
		delete(t.buckets, sec)
	}
	full := t.fullUntil
	t.mu.Unlock()
	out := make(map[log.SiteID]log.RangeSet, len(per))
	n := 0
	for site, vs := range per {
		slices.Sort(vs)
		vs = slices.Compact(vs)
		n += len(vs)
		var rs log.RangeSet
		for _, v := range vs {
			rs.Add(uint64(v), uint64(v)) // in order: appends
		}
		out[site] = rs
	}
	return out, n, full
}

// fullDone records a full pass, begun when a full pass up to until was needed, that covered
// every version up to next. Marks lost while it ran (until moved) need another.
func (t *superseded) fullDone(until, next log.Seq) {
	t.mu.Lock()
	if t.fullUntil == until && next >= until {
		t.fullUntil = 0
	}
	t.mu.Unlock()
}

// retry puts back versions a pass could not drop yet.
func (t *superseded) retry(rs []log.Retry) {
	for _, r := range rs {
		t.mark(r.Site, r.Version, int64(r.NotBefore))
	}
}

// putBack returns taken marks after a failed pass.
func (t *superseded) putBack(c map[log.SiteID]log.RangeSet) {
	for site, rs := range c {
		for _, r := range rs {
			for v := r.First; v <= r.Last && v >= r.First; v++ {
				t.mark(site, log.Version(v), 0)
			}
		}
	}
}

// held is how many marks wait (duplicates included).
func (t *superseded) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// markDisplaced marks the versions whose records of a row's clock the fold or a local
// transaction replaced: a record of old that new does not hold at the same place. (A
// record that moved, as a column change R4 also made the synthetic sentinel of, is marked
// too: one judge more, never a change missed.)
func (m *Materializer) markDisplaced(old, new *rowClock) {
	if !m.sup.on.Load() {
		return
	}
	if displaced(&old.Sentinel, &new.Sentinel) {
		m.markVersion(old.Sentinel.Site, old.Sentinel.Version)
	}
	for k := range old.Cols {
		var cur cellClock
		if k < len(new.Cols) {
			cur = new.Cols[k]
		}
		if displaced(&old.Cols[k], &cur) {
			m.markVersion(old.Cols[k].Site, old.Cols[k].Version)
		}
	}
}

// displaced reports whether record old is no longer what cur holds.
func displaced(old, cur *cellClock) bool {
	return old.Present && old.Version != 0 &&
		(!cur.Present || cur.Site != old.Site || cur.Version != old.Version || cur.Seq != old.Seq)
}

// markVersion marks one version (superseded) and asks for a full pass when the bound
// overflowed.
func (m *Materializer) markVersion(site log.SiteID, v log.Version) {
	if m.sup.mark(site, v, 0) {
		m.sup.needFull(m.store.LastSeq())
		m.logger.Warn("compaction: too many superseded versions waiting for the retention window; the next pass judges every version")
	}
}

// recordsOf copies rc's records into dst (reused scratch).
func recordsOf(dst *rowClock, rc *rowClock) {
	dst.Sentinel = rc.Sentinel
	dst.Cols = append(dst.Cols[:0], rc.Cols...)
}

// markLost marks cs when one of its changes ch (of one row) is not recorded in the row's
// merged clock rc: it lost on arrival (or waits for a column: the judge says live).
func (m *Materializer) markLost(t *table, cs *log.Changeset, ch []log.Change, rc *rowClock) {
	if !m.sup.on.Load() {
		return
	}
	for k := range ch {
		c := &ch[k]
		rec := &rc.Sentinel
		if !c.IsSentinel() && c.CL%2 == 1 {
			ord, ok := t.ordOf(c.CID)
			if !ok || ord >= len(rc.Cols) {
				m.markVersion(cs.Site, cs.Version)
				return
			}
			rec = &rc.Cols[ord]
		}
		if !names(rec, cs, c.Ord) {
			m.markVersion(cs.Site, cs.Version)
			return
		}
	}
}
