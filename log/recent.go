package log

import (
	"math"
	"sync"
)

// The recent cache. A changeset a node receives is decoded by gossip (to validate and
// forward it), handed to Append, encoded and stored, and a few milliseconds later read back
// and decoded again by the materializer to fold it: the second decode was 3-4% of a
// cluster's CPU under 100-row batches. Append already holds the decoded form of what it
// stores, so the committer keeps the last versions it completed, by arrival seq, and Read
// returns them without touching Pebble's data keys.
//
// What Read returns from the cache equals what it would decode (TestRecentEqualsDecoded):
//   - only versions stored whole by one item are kept (not parts, not trimmed duplicates);
//   - only changesets already in the decoder's form (canonical): a value's unused fields
//     zero, blobs and keys non-nil, no negative zero, at least one change, so a
//     changeset made by hand (JSON, tests) that the codec would normalise is left out.
//
// This node's own versions are kept too: the writer reads them back when remote versions
// arrived between its local ones (its fold position lags behind them, see the
// materializer's "ahead"), and decoded them only to skip them.
//
// A kept changeset is shared by every reader and by whoever appended it (gossip forwards
// it): nobody may modify a changeset, its Changes or their payloads once it is appended or
// read (Append's contract), and Read hands each caller its own copy of the Changeset
// struct, so that setting Seq or Changes on it touches nobody else's.
//
// Entries whose stored form changes are dropped before the change is written: a compaction
// rewrite drops its version's seq, a repair drops everything. Read also checks that the
// arrival entry it found names the kept version.

// DefaultRecentChanges is the default Options.RecentChanges: about 4 MB of decoded 5-column
// rows, several times what a busy node appends between two folds.
const DefaultRecentChanges = 1 << 15

type recentEntry struct {
	seq  Seq
	cs   *Changeset // Seq zero; shared, never modified
	size uint64     // its encoded bytes, as stored
}

// recentCache is bounded by changes (every entry has at least one); the oldest entries go
// first. Seqs arrive in increasing order.
type recentCache struct {
	mu         sync.Mutex
	max        int // changes; 0: the cache is off
	byseq      map[Seq]recentEntry
	order      []Seq // seqs in arrival order; order[head:] are live or dropped
	head       int
	changes    int
	hits, miss uint64
}

func newRecentCache(maxChanges int) *recentCache {
	return &recentCache{max: maxChanges, byseq: map[Seq]recentEntry{}}
}

// add keeps the decoded form of versions a group commit completed (the publisher, pubMu held, before
// their seqs are published).
func (c *recentCache) add(ents []recentEntry) {
	if c.max <= 0 || len(ents) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range ents {
		n := len(e.cs.Changes)
		if n > c.max {
			continue
		}
		c.byseq[e.seq] = e
		c.order = append(c.order, e.seq)
		c.changes += n
	}
	for c.changes > c.max {
		seq := c.order[c.head]
		c.head++
		if e, ok := c.byseq[seq]; ok {
			c.changes -= len(e.cs.Changes)
			delete(c.byseq, seq)
		}
	}
	if c.head > 1024 && c.head > len(c.order)/2 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

// get returns the kept version at seq, if any.
func (c *recentCache) get(seq Seq) (recentEntry, bool) {
	if c.max <= 0 {
		return recentEntry{}, false
	}
	c.mu.Lock()
	e, ok := c.byseq[seq]
	if ok {
		c.hits++
	} else {
		c.miss++
	}
	c.mu.Unlock()
	return e, ok
}

// drop forgets the versions at seqs (their stored form is about to change).
func (c *recentCache) drop(seqs ...Seq) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, seq := range seqs {
		if e, ok := c.byseq[seq]; ok {
			c.changes -= len(e.cs.Changes)
			delete(c.byseq, seq)
		}
	}
}

// clear forgets everything (a repair rewrites the log).
func (c *recentCache) clear() {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.byseq)
	c.order, c.head, c.changes = c.order[:0], 0, 0
}

// counts returns the hits and misses of get so far.
func (c *recentCache) counts() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.miss
}

// canonical reports whether cs is exactly what decoding its encoding gives (see above):
// then the log may hand cs itself to readers instead of decoding what it stored.
func canonical(cs *Changeset) bool {
	if len(cs.Changes) == 0 || cs.IsPart() || cs.Seq != 0 || (cs.Compacted && cs.Kind != KindData) {
		return false
	}
	for i := range cs.Changes {
		c := &cs.Changes[i]
		if c.PK == nil || !canonicalValue(&c.Val) {
			return false
		}
	}
	return true
}

func canonicalValue(v *Value) bool {
	zeroReal := math.Float64bits(v.Real) == 0
	switch v.Type {
	case TypeNull:
		return v.Int == 0 && zeroReal && v.Text == "" && v.Blob == nil
	case TypeInteger:
		return zeroReal && v.Text == "" && v.Blob == nil
	case TypeReal:
		return v.Int == 0 && math.Float64bits(v.Real) != 1<<63 && v.Text == "" && v.Blob == nil
	case TypeText:
		return v.Int == 0 && zeroReal && v.Blob == nil
	case TypeBlob:
		return v.Int == 0 && zeroReal && v.Text == "" && v.Blob != nil
	}
	return false
}
