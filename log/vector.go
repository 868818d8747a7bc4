package log

// SKELETON: the API below is the contract other packages code against; the bodies are
// being written (issue 3). Keep the signatures; add what is missing.

// Range is an inclusive range of versions or seqs.
type Range struct {
	First, Last uint64
}

// RangeSet is a sorted set of disjoint, non-adjacent inclusive ranges. Compact even for
// millions of members when they are mostly contiguous.
type RangeSet []Range

// Partial is a version held only in part: the seqs held, of 0..LastSeq.
type Partial struct {
	LastSeq uint64
	Seqs    RangeSet
}

// SiteVector is what a node holds of one site: complete versions, and versions held in part.
type SiteVector struct {
	Versions RangeSet
	Partials map[Version]*Partial
}

// Vector is, per site, the versions a node holds. Not safe for concurrent mutation.
type Vector struct {
	Sites map[SiteID]*SiteVector
}

// SiteMissing is what one site's data a peer lacks: whole versions, and seq ranges of
// versions the peer holds in part.
type SiteMissing struct {
	Site     SiteID
	Versions RangeSet
	Parts    map[Version]RangeSet
}

// NewVector returns an empty vector.
func NewVector() *Vector { return &Vector{Sites: map[SiteID]*SiteVector{}} }
