package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// Range is an inclusive range of versions or seqs.
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

// Partial is a version held only in part: the seqs held, of 0..LastSeq.
type Partial struct {
	LastSeq uint64
	Seqs    RangeSet
}

// Needs returns the seqs of the version not held.
func (p *Partial) Needs() RangeSet { return p.Seqs.Gaps(0, p.LastSeq) }

// complete reports whether every seq 0..LastSeq is held.
func (p *Partial) complete() bool { return p.Seqs.ContainsRange(0, p.LastSeq) }

// SiteVector is what a node holds of one site: complete versions, and versions held in part.
// Cleared is the subset of Versions whose changes were all superseded and dropped by
// compaction (Corrosion's cleared versions): held, never a gap, but stored as ranges only.
// It is local knowledge: EncodeVector does not send it, and Equal ignores it.
type SiteVector struct {
	Versions RangeSet
	Partials map[Version]*Partial
	Cleared  RangeSet
}

// Head is the greatest version held, in whole or in part (0 when none).
func (sv *SiteVector) Head() Version {
	h, _ := sv.Versions.Max()
	for v := range sv.Partials {
		h = max(h, uint64(v))
	}
	return Version(h)
}

// Needs returns the versions 1..Head not held completely (partially held ones included).
func (sv *SiteVector) Needs() RangeSet {
	h := sv.Head()
	if h == 0 {
		return nil
	}
	return sv.Versions.Gaps(1, uint64(h))
}

// Clone returns a deep copy.
func (sv *SiteVector) Clone() *SiteVector {
	c := &SiteVector{Versions: sv.Versions.Clone(), Cleared: sv.Cleared.Clone()}
	if len(sv.Partials) > 0 {
		c.Partials = make(map[Version]*Partial, len(sv.Partials))
		for v, p := range sv.Partials {
			c.Partials[v] = &Partial{LastSeq: p.LastSeq, Seqs: p.Seqs.Clone()}
		}
	}
	return c
}

// Vector is, per site, the versions a node holds. Not safe for concurrent mutation.
type Vector struct {
	Sites map[SiteID]*SiteVector
}

// SiteMissing is what one site's data a peer lacks: whole versions, and seq ranges of
// versions the peer holds in part. Cleared is the subset of Versions that the sender holds
// cleared: they travel as ranges, with no payload.
type SiteMissing struct {
	Site     SiteID
	Versions RangeSet
	Parts    map[Version]RangeSet
	Cleared  RangeSet
}

// NewVector returns an empty vector.
func NewVector() *Vector { return &Vector{Sites: map[SiteID]*SiteVector{}} }

// Site returns s's entry, adding an empty one when v has none (for building vectors).
func (v *Vector) Site(s SiteID) *SiteVector {
	if v.Sites == nil {
		v.Sites = map[SiteID]*SiteVector{}
	}
	sv := v.Sites[s]
	if sv == nil {
		sv = &SiteVector{}
		v.Sites[s] = sv
	}
	return sv
}

// AddVersion records version ver of site as held completely; it reports whether that is new.
func (v *Vector) AddVersion(site SiteID, ver Version) bool {
	if ver == 0 {
		return false
	}
	sv := v.Site(site)
	delete(sv.Partials, ver)
	return sv.Versions.Add(uint64(ver), uint64(ver))
}

// AddPart records seqs first..last of version ver (whose seqs are 0..lastSeq) of site as
// held. It reports whether any seq was new and whether the version is now complete. A part
// that disagrees with a held part about lastSeq, or lies outside it, is refused with an
// error wrapping ErrInvalid.
func (v *Vector) AddPart(site SiteID, ver Version, lastSeq, first, last uint64) (added, complete bool, err error) {
	if ver == 0 {
		return false, false, invalidf("vector: version 0")
	}
	if first > last || last > lastSeq {
		return false, false, invalidf("vector: seqs [%d, %d] outside last_seq %d", first, last, lastSeq)
	}
	sv := v.Site(site)
	if sv.Versions.Contains(uint64(ver)) {
		return false, true, nil
	}
	p := sv.Partials[ver]
	if p == nil {
		if first == 0 && last == lastSeq {
			sv.Versions.Add(uint64(ver), uint64(ver))
			return true, true, nil
		}
		p = &Partial{LastSeq: lastSeq}
		if sv.Partials == nil {
			sv.Partials = map[Version]*Partial{}
		}
		sv.Partials[ver] = p
	} else if p.LastSeq != lastSeq {
		return false, false, invalidf("vector: %v/%d: last_seq %d, but a held part says %d", site, ver, lastSeq, p.LastSeq)
	}
	added = p.Seqs.Add(first, last)
	if p.complete() {
		delete(sv.Partials, ver)
		sv.Versions.Add(uint64(ver), uint64(ver))
		return added, true, nil
	}
	return added, false, nil
}

// Contains reports whether version ver of site is held completely.
func (v *Vector) Contains(site SiteID, ver Version) bool {
	sv := v.Sites[site]
	return sv != nil && sv.Versions.Contains(uint64(ver))
}

// ContainsSeqs reports whether seqs first..last of version ver of site are all held.
func (v *Vector) ContainsSeqs(site SiteID, ver Version, first, last uint64) bool {
	sv := v.Sites[site]
	if sv == nil {
		return false
	}
	if sv.Versions.Contains(uint64(ver)) {
		return true
	}
	p := sv.Partials[ver]
	return p != nil && p.Seqs.ContainsRange(first, last)
}

// Partial returns the partially held version ver of site, or nil.
func (v *Vector) Partial(site SiteID, ver Version) *Partial {
	if sv := v.Sites[site]; sv != nil {
		return sv.Partials[ver]
	}
	return nil
}

// Heads returns, per site, the greatest version held in whole or in part.
func (v *Vector) Heads() map[SiteID]Version {
	out := make(map[SiteID]Version, len(v.Sites))
	for s, sv := range v.Sites {
		if h := sv.Head(); h > 0 {
			out[s] = h
		}
	}
	return out
}

// Needs returns, per site with gaps, the versions below its head not held completely.
func (v *Vector) Needs() map[SiteID]RangeSet {
	out := map[SiteID]RangeSet{}
	for s, sv := range v.Sites {
		if n := sv.Needs(); len(n) > 0 {
			out[s] = n
		}
	}
	return out
}

// Counts returns how many versions are held completely and in part.
func (v *Vector) Counts() (complete, partial uint64) {
	for _, sv := range v.Sites {
		complete += sv.Versions.Count()
		partial += uint64(len(sv.Partials))
	}
	return complete, partial
}

// Clone returns a deep copy.
func (v *Vector) Clone() *Vector {
	c := &Vector{Sites: make(map[SiteID]*SiteVector, len(v.Sites))}
	for s, sv := range v.Sites {
		c.Sites[s] = sv.Clone()
	}
	return c
}

// Equal reports whether v and o hold the same versions and parts.
func (v *Vector) Equal(o *Vector) bool {
	a, b := v.Canonical(), o.Canonical()
	if len(a.Sites) != len(b.Sites) {
		return false
	}
	for s, sa := range a.Sites {
		sb := b.Sites[s]
		if sb == nil || !slices.Equal(sa.Versions, sb.Versions) || len(sa.Partials) != len(sb.Partials) {
			return false
		}
		for ver, pa := range sa.Partials {
			pb := sb.Partials[ver]
			if pb == nil || pa.LastSeq != pb.LastSeq || !slices.Equal(pa.Seqs, pb.Seqs) {
				return false
			}
		}
	}
	return true
}

// Canonical returns v without empty sites and empty partials (a copy when it differs).
func (v *Vector) Canonical() *Vector {
	c := &Vector{Sites: make(map[SiteID]*SiteVector, len(v.Sites))}
	for s, sv := range v.Sites {
		n := &SiteVector{Versions: sv.Versions}
		for ver, p := range sv.Partials {
			if len(p.Seqs) == 0 {
				continue
			}
			if n.Partials == nil {
				n.Partials = map[Version]*Partial{}
			}
			n.Partials[ver] = p
		}
		if len(n.Versions) > 0 || len(n.Partials) > 0 {
			c.Sites[s] = n
		}
	}
	return c
}

// SortedSites returns the site ids of v in byte order, for deterministic output.
func (v *Vector) SortedSites() []SiteID {
	ids := slices.Collect(maps.Keys(v.Sites))
	slices.SortFunc(ids, SiteID.Compare)
	return ids
}

// Missing returns what v holds that theirs lacks, per site in site order: the versions v
// holds completely and theirs holds not at all (or only in part, when v cannot tell their
// last seq), and, for versions theirs holds in part or v holds in part, the seqs to send.
// Applying the result to theirs makes it cover v.
func (v *Vector) Missing(theirs *Vector) []SiteMissing {
	var out []SiteMissing
	for _, s := range v.SortedSites() {
		if m, ok := MissingSite(s, v.Sites[s], theirs); ok {
			out = append(out, m)
		}
	}
	return out
}

// MissingSite is Missing for one site; ok is false when theirs lacks nothing of mine. The
// result shares no memory with mine or theirs.
func MissingSite(s SiteID, mine *SiteVector, theirs *Vector) (m SiteMissing, ok bool) {
	var other *SiteVector
	if theirs != nil {
		other = theirs.Sites[s]
	}
	if other == nil {
		other = &SiteVector{}
	}
	m.Site = s
	// Whole versions: mine minus their complete ones; those they hold in part go to
	// Parts with just the seqs they lack. Their partials are few: sort them once and
	// find each range's by binary search.
	diff := mine.Versions.Subtract(other.Versions)
	if len(other.Partials) == 0 {
		m.Versions = diff
	} else {
		held := slices.Sorted(maps.Keys(other.Partials))
		for _, r := range diff {
			i := sort.Search(len(held), func(k int) bool { return uint64(held[k]) >= r.First })
			cur, done := r.First, false
			for ; i < len(held) && uint64(held[i]) <= r.Last; i++ {
				ver := held[i]
				if uint64(ver) > cur {
					m.Versions = append(m.Versions, Range{cur, uint64(ver) - 1})
				}
				m.addPart(ver, other.Partials[ver].Needs())
				if uint64(ver) == r.Last {
					done = true
					break
				}
				cur = uint64(ver) + 1
			}
			if !done {
				m.Versions = append(m.Versions, Range{cur, r.Last})
			}
		}
	}
	for ver, p := range mine.Partials {
		if other.Versions.Contains(uint64(ver)) {
			continue
		}
		// A copy: the store keeps adding to its partials in place.
		want := p.Seqs.Clone()
		if op := other.Partials[ver]; op != nil {
			want = p.Seqs.Subtract(op.Seqs)
		}
		m.addPart(ver, want)
	}
	if len(mine.Cleared) > 0 {
		m.Cleared = m.Versions.Intersect(mine.Cleared)
	}
	return m, len(m.Versions) > 0 || len(m.Parts) > 0
}

func (m *SiteMissing) addPart(ver Version, seqs RangeSet) {
	if len(seqs) == 0 {
		return
	}
	if m.Parts == nil {
		m.Parts = map[Version]RangeSet{}
	}
	m.Parts[ver] = seqs
}

// Count is the number of whole versions plus partly missing versions.
func (m *SiteMissing) Count() uint64 { return m.Versions.Count() + uint64(len(m.Parts)) }

// Vector binary layout (format 1), after the format byte, one msgpack array of sites, in site
// order:
//
//	[[site bin16, versions [first, last, first, last, ...],
//	  partials [[version, last_seq, seqs [first, last, ...]], ...]], ...]
//
// Ranges are flat uint pairs so a mostly contiguous vector costs a few bytes per site.

// EncodeVector returns the binary (msgpack) form of v.
func EncodeVector(v *Vector) ([]byte, error) {
	w := &byteWriter{b: []byte{FormatV1}}
	e := encPool.Get().(*msgpack.Encoder)
	e.Reset(w)
	defer func() { e.Reset(nil); encPool.Put(e) }()
	c := v.Canonical()
	sites := c.SortedSites()
	e.EncodeArrayLen(len(sites))
	for _, s := range sites {
		sv := c.Sites[s]
		e.EncodeArrayLen(3)
		e.EncodeBytes(s[:])
		encodeRanges(e, sv.Versions)
		vers := slices.Sorted(maps.Keys(sv.Partials))
		e.EncodeArrayLen(len(vers))
		for _, ver := range vers {
			p := sv.Partials[ver]
			e.EncodeArrayLen(3)
			e.EncodeUint(uint64(ver))
			e.EncodeUint(p.LastSeq)
			encodeRanges(e, p.Seqs)
		}
	}
	return w.b, nil
}

// MustEncode is EncodeVector for tests; it panics on error.
func (v *Vector) MustEncode() []byte {
	b, err := EncodeVector(v)
	if err != nil {
		panic(err)
	}
	return b
}

func encodeRanges(e *msgpack.Encoder, rs RangeSet) {
	e.EncodeArrayLen(2 * len(rs))
	for _, r := range rs {
		e.EncodeUint(r.First)
		e.EncodeUint(r.Last)
	}
}

// AppendRanges is the stored form of one site's complete versions (format byte, ranges).
func AppendRanges(b []byte, rs RangeSet) []byte {
	w := &byteWriter{b: append(b, FormatV1)}
	e := encPool.Get().(*msgpack.Encoder)
	e.Reset(w)
	encodeRanges(e, rs)
	e.Reset(nil)
	encPool.Put(e)
	return w.b
}

// DecodeRanges reads what AppendRanges wrote.
func DecodeRanges(what string, b []byte, allowZero bool) (RangeSet, error) {
	if len(b) == 0 || b[0] != FormatV1 {
		return nil, &DecodeError{What: what, Err: errors.New("unknown format")}
	}
	d := newDecoder(what, b[1:])
	defer d.release()
	rs, err := d.ranges(allowZero)
	if err != nil {
		return nil, err
	}
	if d.r.Len() != 0 {
		return nil, d.fail(errors.New("trailing bytes"))
	}
	return rs, nil
}

func (d *decoder) ranges(allowZero bool) (RangeSet, error) {
	n, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	if n%2 != 0 {
		return nil, d.fail(fmt.Errorf("range array of odd length %d", n))
	}
	rs := make(RangeSet, 0, n/2)
	for range n / 2 {
		var r Range
		if r.First, err = d.uint(); err != nil {
			return nil, err
		}
		if r.Last, err = d.uint(); err != nil {
			return nil, err
		}
		if !allowZero && r.First == 0 {
			return nil, d.fail(invalidf("version 0 in a range"))
		}
		rs = append(rs, r)
	}
	if err := rs.Valid(); err != nil {
		return nil, d.fail(err)
	}
	return rs, nil
}

// DecodeVector decodes the binary form. It returns an error, never panics, on any malformed
// input; a vector it returns has valid range sets and partials that are neither complete nor
// also held completely.
func DecodeVector(b []byte) (*Vector, error) {
	if len(b) == 0 {
		return nil, &DecodeError{What: "vector", Err: io.ErrUnexpectedEOF}
	}
	if b[0] != FormatV1 {
		return nil, &DecodeError{What: "vector", Err: fmt.Errorf("unknown format version %d", b[0])}
	}
	d := newDecoder("vector", b[1:])
	defer d.release()
	n, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	v := NewVector()
	for range n {
		fields, err := d.arrayLen()
		if err != nil {
			return nil, err
		}
		if fields < 3 {
			return nil, d.fail(fmt.Errorf("site array of %d fields, want at least 3", fields))
		}
		raw, err := d.bin()
		if err != nil {
			return nil, err
		}
		var s SiteID
		if len(raw) != len(s) {
			return nil, d.fail(fmt.Errorf("site id of %d bytes", len(raw)))
		}
		copy(s[:], raw)
		if _, dup := v.Sites[s]; dup {
			return nil, d.fail(fmt.Errorf("site %v twice", s))
		}
		sv := &SiteVector{}
		if sv.Versions, err = d.ranges(false); err != nil {
			return nil, err
		}
		np, err := d.arrayLen()
		if err != nil {
			return nil, err
		}
		for range np {
			pf, err := d.arrayLen()
			if err != nil {
				return nil, err
			}
			if pf < 3 {
				return nil, d.fail(fmt.Errorf("partial array of %d fields, want at least 3", pf))
			}
			ver, err := d.uint()
			if err != nil {
				return nil, err
			}
			p := &Partial{}
			if p.LastSeq, err = d.uint(); err != nil {
				return nil, err
			}
			if p.Seqs, err = d.ranges(true); err != nil {
				return nil, err
			}
			if err := d.skipExtra(pf - 3); err != nil {
				return nil, err
			}
			if err := CheckPartial(sv, Version(ver), p); err != nil {
				return nil, d.fail(err)
			}
			if sv.Partials == nil {
				sv.Partials = map[Version]*Partial{}
			}
			sv.Partials[Version(ver)] = p
		}
		if err := d.skipExtra(fields - 3); err != nil {
			return nil, err
		}
		if len(sv.Versions) > 0 || len(sv.Partials) > 0 {
			v.Sites[s] = sv
		}
	}
	if d.r.Len() != 0 {
		return nil, d.fail(errors.New("trailing bytes"))
	}
	return v, nil
}

// CheckPartial reports whether p is a consistent held part of version ver of a site whose
// complete versions are sv (read back from disk, so it is checked, not trusted).
func CheckPartial(sv *SiteVector, ver Version, p *Partial) error {
	switch {
	case ver == 0:
		return invalidf("partial of version 0")
	case sv.Partials[ver] != nil:
		return invalidf("partial version %d twice", ver)
	case sv.Versions.Contains(uint64(ver)):
		return invalidf("version %d both complete and partial", ver)
	case len(p.Seqs) == 0:
		return invalidf("partial version %d holds no seqs", ver)
	case p.Seqs[len(p.Seqs)-1].Last > p.LastSeq:
		return invalidf("partial version %d: seqs beyond last_seq %d", ver, p.LastSeq)
	case p.complete():
		return invalidf("partial version %d holds every seq", ver)
	}
	return nil
}

// The JSON form, for GET /v1/sync/state: per site its head (greatest version held in whole
// or in part), needs (versions 1..head not held completely, as [first, last] pairs), and the
// partially held versions with their last seq, the seqs held and the seqs needed:
//
//	{"sites":{"<uuid>":{"head":12,"needs":[[3,4]],
//	  "partials":{"4":{"last_seq":9999,"seqs":[[0,4095]],"needs":[[4096,9999]]}}}}}
//
// needs is derivable from the rest; it is there for people and for Corrosion-style peers.

type vectorJSON struct {
	Sites map[SiteID]siteVectorJSON `json:"sites"`
}

type siteVectorJSON struct {
	Head     Version                `json:"head"`
	Needs    [][2]uint64            `json:"needs"`
	Partials map[string]partialJSON `json:"partials,omitempty"`
}

type partialJSON struct {
	LastSeq uint64      `json:"last_seq"`
	Seqs    [][2]uint64 `json:"seqs"`
	Needs   [][2]uint64 `json:"needs"`
}

func pairs(rs RangeSet) [][2]uint64 {
	out := make([][2]uint64, len(rs))
	for i, r := range rs {
		out[i] = [2]uint64{r.First, r.Last}
	}
	return out
}

func fromPairs(ps [][2]uint64) (RangeSet, error) {
	rs := make(RangeSet, len(ps))
	for i, p := range ps {
		rs[i] = Range{p[0], p[1]}
	}
	return rs, rs.Valid()
}

// MarshalJSON writes the sync-state form described above.
func (v *Vector) MarshalJSON() ([]byte, error) {
	j := vectorJSON{Sites: make(map[SiteID]siteVectorJSON, len(v.Sites))}
	for s, sv := range v.Canonical().Sites {
		sj := siteVectorJSON{Head: sv.Head(), Needs: pairs(sv.Needs())}
		if len(sv.Partials) > 0 {
			sj.Partials = make(map[string]partialJSON, len(sv.Partials))
			for ver, p := range sv.Partials {
				sj.Partials[strconv.FormatUint(uint64(ver), 10)] = partialJSON{LastSeq: p.LastSeq, Seqs: pairs(p.Seqs), Needs: pairs(p.Needs())}
			}
		}
		j.Sites[s] = sj
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the sync-state form; needs of partial versions are ignored (they follow
// from seqs), and everything is checked as DecodeVector checks it.
func (v *Vector) UnmarshalJSON(b []byte) error {
	var j vectorJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&j); err != nil {
		return invalidf("vector json: %v", err)
	}
	out := NewVector()
	for s, sj := range j.Sites {
		needs, err := fromPairs(sj.Needs)
		if err != nil {
			return fmt.Errorf("vector json: site %v: needs: %w", s, err)
		}
		sv := &SiteVector{}
		if sj.Head > 0 {
			if len(needs) > 0 && (needs[0].First == 0 || needs[len(needs)-1].Last > uint64(sj.Head)) {
				return invalidf("vector json: site %v: needs outside 1..head %d", s, sj.Head)
			}
			sv.Versions = RangeSet{{1, uint64(sj.Head)}}.Subtract(needs)
		} else if len(needs) > 0 {
			return invalidf("vector json: site %v: needs without a head", s)
		}
		for key, pj := range sj.Partials {
			ver, err := strconv.ParseUint(key, 10, 64)
			if err != nil {
				return invalidf("vector json: site %v: partial version %q", s, key)
			}
			seqs, err := fromPairs(pj.Seqs)
			if err != nil {
				return fmt.Errorf("vector json: site %v: partial %d: %w", s, ver, err)
			}
			p := &Partial{LastSeq: pj.LastSeq, Seqs: seqs}
			if ver > uint64(sj.Head) {
				return invalidf("vector json: site %v: partial %d above head %d", s, ver, sj.Head)
			}
			if err := CheckPartial(sv, Version(ver), p); err != nil {
				return fmt.Errorf("vector json: site %v: %w", s, err)
			}
			if sv.Partials == nil {
				sv.Partials = map[Version]*Partial{}
			}
			sv.Partials[Version(ver)] = p
		}
		if h := sv.Head(); h != sj.Head {
			return invalidf("vector json: site %v: head %d, but versions held end at %d", s, sj.Head, h)
		}
		if len(sv.Versions) > 0 || len(sv.Partials) > 0 {
			out.Sites[s] = sv
		}
	}
	*v = *out
	return nil
}
