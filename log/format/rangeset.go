package format

import (
	"math"
	"slices"
	"sort"
)

// Range is an inclusive range of versions or ordinals.
type Range struct {
	First, Last uint64
}

// Count is the number of members of r.
func (r Range) Count() uint64 { return r.Last - r.First + 1 }

// RangeSet is a sorted set of disjoint, non-adjacent inclusive ranges. Compact even for
// millions of members when they are mostly contiguous.
type RangeSet []Range

// touchesFrom reports whether a range ending at l overlaps or abuts a range starting at
// first, without overflowing at math.MaxUint64.
func touchesFrom(l, first uint64) bool { return l >= first || l+1 == first }

// Add inserts first..last (inclusive) and reports whether any member was new. Appending at
// the end, the common case for versions arriving in order, is O(1).
func (s *RangeSet) Add(first, last uint64) bool {
	if first > last {
		return false
	}
	rs := *s
	n := len(rs)
	if n == 0 || (rs[n-1].Last < first && !touchesFrom(rs[n-1].Last, first)) {
		*s = append(rs, Range{first, last})
		return true
	}
	if tl := &rs[n-1]; touchesFrom(tl.Last, first) && tl.First <= first {
		// Extends (or lies inside) the last range.
		if last <= tl.Last {
			return false
		}
		tl.Last = last
		return true
	}
	// i: first range that touches or follows [first, last]; j: first range wholly after it.
	i := sort.Search(n, func(k int) bool { return touchesFrom(rs[k].Last, first) })
	j := sort.Search(n, func(k int) bool { return rs[k].First > last && rs[k].First-1 > last })
	if i == j {
		rs = slices.Insert(rs, i, Range{first, last})
		*s = rs
		return true
	}
	if j == i+1 && rs[i].First <= first && rs[i].Last >= last {
		return false
	}
	merged := Range{min(first, rs[i].First), max(last, rs[j-1].Last)}
	rs[i] = merged
	rs = slices.Delete(rs, i+1, j)
	*s = rs
	return true
}

// AddSet adds every range of o and reports whether any member was new.
func (s *RangeSet) AddSet(o RangeSet) bool {
	added := false
	for _, r := range o {
		if s.Add(r.First, r.Last) {
			added = true
		}
	}
	return added
}

// Contains reports whether x is a member.
func (s RangeSet) Contains(x uint64) bool { return s.ContainsRange(x, x) }

// ContainsRange reports whether every member of first..last is in s.
func (s RangeSet) ContainsRange(first, last uint64) bool {
	i := sort.Search(len(s), func(k int) bool { return s[k].Last >= first })
	return i < len(s) && s[i].First <= first && s[i].Last >= last
}

// Intersects reports whether any member of first..last is in s.
func (s RangeSet) Intersects(first, last uint64) bool {
	i := sort.Search(len(s), func(k int) bool { return s[k].Last >= first })
	return i < len(s) && s[i].First <= last
}

// Count is the number of members; it saturates at math.MaxUint64.
func (s RangeSet) Count() uint64 {
	var n uint64
	for _, r := range s {
		c := r.Count()
		if c == 0 || n+c < n { // 0..MaxUint64 wraps to 0
			return math.MaxUint64
		}
		n += c
	}
	return n
}

// Max is the greatest member; ok is false when s is empty.
func (s RangeSet) Max() (x uint64, ok bool) {
	if len(s) == 0 {
		return 0, false
	}
	return s[len(s)-1].Last, true
}

// Gaps returns the members of lo..hi not in s.
func (s RangeSet) Gaps(lo, hi uint64) RangeSet {
	if lo > hi {
		return nil
	}
	var out RangeSet
	next := lo
	i := sort.Search(len(s), func(k int) bool { return s[k].Last >= lo })
	for ; i < len(s) && s[i].First <= hi; i++ {
		r := s[i]
		if r.First > next {
			out = append(out, Range{next, r.First - 1})
		}
		if r.Last >= hi {
			return out
		}
		next = r.Last + 1
	}
	return append(out, Range{next, hi})
}

// Subtract returns the members of s not in o.
func (s RangeSet) Subtract(o RangeSet) RangeSet {
	if len(s) == 0 {
		return nil
	}
	// Each range of o can split at most one range of s in two: one allocation suffices.
	out := make(RangeSet, 0, len(s)+len(o))
	j := 0
	for _, r := range s {
		for j < len(o) && o[j].Last < r.First {
			j++
		}
		cur := r.First
		done := false
		for k := j; k < len(o) && o[k].First <= r.Last; k++ {
			if o[k].First > cur {
				out = append(out, Range{cur, o[k].First - 1})
			}
			if o[k].Last >= r.Last {
				done = true
				break
			}
			cur = o[k].Last + 1
		}
		if !done {
			out = append(out, Range{cur, r.Last})
		}
	}
	return out
}

// Intersect returns the members in both s and o.
func (s RangeSet) Intersect(o RangeSet) RangeSet {
	var out RangeSet
	i, j := 0, 0
	for i < len(s) && j < len(o) {
		lo, hi := max(s[i].First, o[j].First), min(s[i].Last, o[j].Last)
		if lo <= hi {
			out = append(out, Range{lo, hi})
		}
		if s[i].Last < o[j].Last {
			i++
		} else {
			j++
		}
	}
	return out
}

// Clone returns a copy that shares no memory with s.
func (s RangeSet) Clone() RangeSet {
	if s == nil {
		return nil
	}
	return slices.Clone(s)
}

// Valid reports whether s is sorted, disjoint and non-adjacent, as every method assumes.
func (s RangeSet) Valid() error {
	for i, r := range s {
		if r.First > r.Last {
			return invalidf("range %d: [%d, %d] is reversed", i, r.First, r.Last)
		}
		if i > 0 && touchesFrom(s[i-1].Last, r.First) {
			return invalidf("range %d: [%d, %d] overlaps or abuts [%d, %d]", i, r.First, r.Last, s[i-1].First, s[i-1].Last)
		}
	}
	return nil
}
