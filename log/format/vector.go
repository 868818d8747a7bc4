package format

import (
	"maps"
	"slices"
	"sort"
)

// Partial is a version held only in part: the ordinals held, of 0..LastOrd.
type Partial struct {
	LastOrd uint64
	Held    RangeSet
}

// Needs returns the ordinals of the version not held.
func (p *Partial) Needs() RangeSet { return p.Held.Gaps(0, p.LastOrd) }

// complete reports whether every ordinal 0..LastOrd is held.
func (p *Partial) complete() bool { return p.Held.ContainsRange(0, p.LastOrd) }

// SiteVector is what a node holds of one site: complete versions, and versions held in part.
// Cleared is the subset of Versions whose changes were all superseded and dropped by
// compaction (Corrosion's cleared versions): held, never a gap, but stored as ranges only.
// It is local knowledge: EncodeVector does not send it, and Equal ignores it.
type SiteVector struct {
	Versions RangeSet
	Partials map[Version]*Partial
	Cleared  RangeSet
	// Content sums the digests of the complete versions held that carry one (a store
	// fills it in; zero elsewhere). It travels with the vector, so two nodes that hold the
	// same versions with different content see it in a sync even though neither lacks
	// anything (issue 12, item 4). Equal ignores it.
	Content ContentSum
}

// ContentSum is the XOR of the digests of N versions: order-free, so it is kept as
// versions arrive. Two sums over the same versions (equal Versions and N) differ only if
// some version's content differs; a sum with N = 0 says nothing.
type ContentSum struct {
	Xor Digest
	N   uint64
}

// Remove takes a counted digest out again (XOR is its own inverse).
func (c *ContentSum) Remove(d Digest) {
	if d.IsZero() || c.N == 0 {
		return
	}
	for i := range d {
		c.Xor[i] ^= d[i]
	}
	c.N--
}

// Add counts one more version's digest (a zero digest is not counted).
func (c *ContentSum) Add(d Digest) {
	if d.IsZero() {
		return
	}
	for i := range d {
		c.Xor[i] ^= d[i]
	}
	c.N++
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
	c := &SiteVector{Versions: sv.Versions.Clone(), Cleared: sv.Cleared.Clone(), Content: sv.Content}
	if len(sv.Partials) > 0 {
		c.Partials = make(map[Version]*Partial, len(sv.Partials))
		for v, p := range sv.Partials {
			c.Partials[v] = &Partial{LastOrd: p.LastOrd, Held: p.Held.Clone()}
		}
	}
	return c
}

// Vector is, per site, the versions a node holds. Not safe for concurrent mutation.
type Vector struct {
	Sites map[SiteID]*SiteVector
}

// SiteMissing is what one site's data a peer lacks: whole versions, and ordinal ranges of
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

// AddPart records ordinals first..last of version ver (whose ordinals are 0..lastOrd) of site as
// held. It reports whether any ordinal was new and whether the version is now complete. A part
// that disagrees with a held part about lastOrd, or lies outside it, is refused with an
// error wrapping ErrInvalid.
func (v *Vector) AddPart(site SiteID, ver Version, lastOrd, first, last uint64) (added, complete bool, err error) {
	if ver == 0 {
		return false, false, invalidf("vector: version 0")
	}
	if first > last || last > lastOrd {
		return false, false, invalidf("vector: seqs [%d, %d] outside last_seq %d", first, last, lastOrd)
	}
	sv := v.Site(site)
	if sv.Versions.Contains(uint64(ver)) {
		return false, true, nil
	}
	p := sv.Partials[ver]
	if p == nil {
		if first == 0 && last == lastOrd {
			sv.Versions.Add(uint64(ver), uint64(ver))
			return true, true, nil
		}
		p = &Partial{LastOrd: lastOrd}
		if sv.Partials == nil {
			sv.Partials = map[Version]*Partial{}
		}
		sv.Partials[ver] = p
	} else if p.LastOrd != lastOrd {
		return false, false, invalidf("vector: %v/%d: last_seq %d, but a held part says %d", site, ver, lastOrd, p.LastOrd)
	}
	added = p.Held.Add(first, last)
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

// ContainsOrdinals reports whether ordinals first..last of version ver of site are all held.
func (v *Vector) ContainsOrdinals(site SiteID, ver Version, first, last uint64) bool {
	sv := v.Sites[site]
	if sv == nil {
		return false
	}
	if sv.Versions.Contains(uint64(ver)) {
		return true
	}
	p := sv.Partials[ver]
	return p != nil && p.Held.ContainsRange(first, last)
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
			if pb == nil || pa.LastOrd != pb.LastOrd || !slices.Equal(pa.Held, pb.Held) {
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
		n := &SiteVector{Versions: sv.Versions, Content: sv.Content}
		for ver, p := range sv.Partials {
			if len(p.Held) == 0 {
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
// last ordinal), and, for versions theirs holds in part or v holds in part, the ordinals to send.
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
	// Parts with just the ordinals they lack. Their partials are few: sort them once and
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
		want := p.Held.Clone()
		if op := other.Partials[ver]; op != nil {
			want = p.Held.Subtract(op.Held)
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
