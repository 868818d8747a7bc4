package log

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
)

// bitsOf turns a set of members of base..base+63 into a mask, the reference model of the
// range-set property tests.
func bitsOf(rs RangeSet, base uint64) uint64 {
	var m uint64
	for _, r := range rs {
		for x := r.First; ; x++ {
			m |= 1 << (x - base)
			if x == r.Last {
				break
			}
		}
	}
	return m
}

// randRange returns a random range within base..base+63.
func randRange(rng *rand.Rand, base uint64) (uint64, uint64) {
	a, b := rng.Uint64N(64), rng.Uint64N(64)
	if a > b {
		a, b = b, a
	}
	if rng.IntN(2) == 0 { // short ranges make gaps and adjacency likely
		b = min(a+rng.Uint64N(3), 63)
	}
	return base + a, base + b
}

// TestRangeSetModel checks every RangeSet operation against a bitmask model, at both ends of
// the uint64 space (where an off-by-one would overflow), and that the set stays canonical.
func TestRangeSetModel(t *testing.T) {
	for _, base := range []uint64{0, 1 << 40, math.MaxUint64 - 63} {
		t.Run(fmt.Sprint(base), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(base, 1))
			for round := range 300 {
				var s, o RangeSet
				var ms, mo uint64
				for range rng.IntN(12) {
					f, l := randRange(rng, base)
					added := s.Add(f, l)
					before := ms
					ms |= bitsOf(RangeSet{{First: f, Last: l}}, base)
					if added != (ms != before) {
						t.Fatalf("round %d: Add(%d, %d) reported %v on %v", round, f-base, l-base, added, s)
					}
					if err := s.Valid(); err != nil {
						t.Fatalf("round %d: after Add(%d, %d): %v: %v", round, f-base, l-base, err, s)
					}
				}
				for range rng.IntN(12) {
					f, l := randRange(rng, base)
					o.Add(f, l)
				}
				mo = bitsOf(o, base)
				if got := bitsOf(s, base); got != ms {
					t.Fatalf("round %d: set %v holds %b, want %b", round, s, got, ms)
				}
				if got := s.Count(); got != uint64(bits.OnesCount64(ms)) {
					t.Fatalf("Count = %d, want %d", got, bits.OnesCount64(ms))
				}
				sub := s.Subtract(o)
				if err := sub.Valid(); err != nil || bitsOf(sub, base) != ms&^mo {
					t.Fatalf("round %d: %v - %v = %v (%v)", round, s, o, sub, err)
				}
				in := s.Intersect(o)
				if err := in.Valid(); err != nil || bitsOf(in, base) != ms&mo {
					t.Fatalf("round %d: %v & %v = %v (%v)", round, s, o, in, err)
				}
				u := s.Clone()
				u.AddSet(o)
				if err := u.Valid(); err != nil || bitsOf(u, base) != ms|mo {
					t.Fatalf("round %d: %v | %v = %v (%v)", round, s, o, u, err)
				}
				lo, hi := randRange(rng, base)
				window := bitsOf(RangeSet{{First: lo, Last: hi}}, base)
				gaps := s.Gaps(lo, hi)
				if err := gaps.Valid(); err != nil || bitsOf(gaps, base) != window&^ms {
					t.Fatalf("round %d: gaps of %v in [%d, %d] = %v (%v)", round, s, lo-base, hi-base, gaps, err)
				}
				if got, want := s.ContainsRange(lo, hi), ms&window == window; got != want {
					t.Fatalf("ContainsRange(%d, %d) of %v = %v", lo-base, hi-base, s, got)
				}
				if got, want := s.Intersects(lo, hi), ms&window != 0; got != want {
					t.Fatalf("Intersects(%d, %d) of %v = %v", lo-base, hi-base, s, got)
				}
			}
		})
	}
}

func TestRangeSetAdd(t *testing.T) {
	tests := []struct {
		name  string
		start RangeSet
		add   Range
		want  RangeSet
		new   bool
	}{
		{"empty", nil, Range{First: 1, Last: 1}, RangeSet{{First: 1, Last: 1}}, true},
		{"append adjacent", RangeSet{{First: 1, Last: 5}}, Range{First: 6, Last: 6}, RangeSet{{First: 1, Last: 6}}, true},
		{"append gap", RangeSet{{First: 1, Last: 5}}, Range{First: 7, Last: 7}, RangeSet{{First: 1, Last: 5}, {First: 7, Last: 7}}, true},
		{"fill gap merges", RangeSet{{First: 1, Last: 5}, {First: 7, Last: 9}}, Range{First: 6, Last: 6}, RangeSet{{First: 1, Last: 9}}, true},
		{"inside", RangeSet{{First: 1, Last: 9}}, Range{First: 3, Last: 4}, RangeSet{{First: 1, Last: 9}}, false},
		{"spans several", RangeSet{{First: 1, Last: 2}, {First: 4, Last: 5}, {First: 7, Last: 8}, {First: 20, Last: 21}}, Range{First: 3, Last: 9}, RangeSet{{First: 1, Last: 9}, {First: 20, Last: 21}}, true},
		{"before all", RangeSet{{First: 5, Last: 6}}, Range{First: 1, Last: 2}, RangeSet{{First: 1, Last: 2}, {First: 5, Last: 6}}, true},
		{"prepend adjacent", RangeSet{{First: 5, Last: 6}}, Range{First: 1, Last: 4}, RangeSet{{First: 1, Last: 6}}, true},
		{"at max", RangeSet{{First: 1, Last: 2}}, Range{First: math.MaxUint64, Last: math.MaxUint64}, RangeSet{{First: 1, Last: 2}, {First: math.MaxUint64, Last: math.MaxUint64}}, true},
		{"up to max", RangeSet{{First: math.MaxUint64, Last: math.MaxUint64}}, Range{First: math.MaxUint64 - 1, Last: math.MaxUint64 - 1}, RangeSet{{First: math.MaxUint64 - 1, Last: math.MaxUint64}}, true},
		{"reversed is a no-op", RangeSet{{First: 1, Last: 2}}, Range{First: 5, Last: 4}, RangeSet{{First: 1, Last: 2}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.start.Clone()
			if got := s.Add(tt.add.First, tt.add.Last); got != tt.new {
				t.Errorf("Add reported %v, want %v", got, tt.new)
			}
			if !slices.Equal(s, tt.want) {
				t.Errorf("got %v, want %v", s, tt.want)
			}
		})
	}
}

// universe is what a cluster wrote: per site, versions 1..n, each with a last seq. Random
// vectors hold random subsets of its seqs, so that their parts always agree on last_seq.
type universe map[SiteID][]uint64 // [version-1] -> last seq

func newUniverse(rng *rand.Rand, sites, versions int) universe {
	u := universe{}
	for i := range sites {
		var s SiteID
		s[0], s[15] = byte(i+1), 7
		ls := make([]uint64, versions)
		for v := range ls {
			if rng.IntN(4) == 0 {
				ls[v] = uint64(rng.IntN(6))
			}
		}
		u[s] = ls
	}
	return u
}

// op is one add to a vector: a whole version, or seqs first..last of it.
type op struct {
	site        SiteID
	ver         Version
	lastSeq     uint64
	first, last uint64
	whole       bool
}

// randomOps picks, with density p, what a node holds of u, as the adds that put it there:
// whole versions, or a version cut into parts (some duplicated or overlapping, some missing).
func randomOps(rng *rand.Rand, u universe, p float64) []op {
	var ops []op
	for _, s := range slices.SortedFunc(func(yield func(SiteID) bool) {
		for s := range u {
			if !yield(s) {
				return
			}
		}
	}, SiteID.Compare) {
		for i, ls := range u[s] {
			ver := Version(i + 1)
			if rng.Float64() > p {
				continue
			}
			if ls == 0 || rng.IntN(3) == 0 {
				ops = append(ops, op{site: s, ver: ver, lastSeq: ls, last: ls, whole: true})
				continue
			}
			for seq := uint64(0); seq <= ls; {
				end := min(seq+uint64(rng.IntN(3)), ls)
				if rng.IntN(5) != 0 { // some parts missing: the version stays partial
					ops = append(ops, op{site: s, ver: ver, lastSeq: ls, first: seq, last: end})
				}
				if rng.IntN(4) == 0 { // overlapping duplicate
					ops = append(ops, op{site: s, ver: ver, lastSeq: ls, first: seq, last: min(end+1, ls)})
				}
				seq = end + 1
			}
		}
	}
	return ops
}

func apply(tb testing.TB, v *Vector, ops []op) {
	tb.Helper()
	for _, o := range ops {
		if o.whole {
			v.AddVersion(o.site, o.ver)
			continue
		}
		if _, _, err := v.AddPart(o.site, o.ver, o.lastSeq, o.first, o.last); err != nil {
			tb.Fatalf("AddPart(%+v): %v", o, err)
		}
	}
}

// checkCanonical fails unless every range set of v is sorted, disjoint and non-adjacent and
// every partial is a real partial (some seqs held, not all, not also held whole).
func checkCanonical(tb testing.TB, v *Vector) {
	tb.Helper()
	for s, sv := range v.Sites {
		if err := sv.Versions.Valid(); err != nil {
			tb.Fatalf("site %v versions %v: %v", s, sv.Versions, err)
		}
		for ver, p := range sv.Partials {
			if err := CheckPartial(&SiteVector{Versions: sv.Versions}, ver, p); err != nil {
				tb.Fatalf("site %v: %v", s, err)
			}
			if err := p.Held.Valid(); err != nil {
				tb.Fatalf("site %v partial %d: %v", s, ver, err)
			}
		}
	}
}

func TestVectorAddOrderIndependent(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 2))
			u := newUniverse(rng, 1+rng.IntN(4), 1+rng.IntN(60))
			ops := randomOps(rng, u, 0.7)
			ref := NewVector()
			apply(t, ref, ops)
			checkCanonical(t, ref)
			for range 5 {
				shuffled := slices.Clone(ops)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				// Duplicates anywhere change nothing.
				for range rng.IntN(len(ops) + 1) {
					shuffled = append(shuffled, ops[rng.IntN(len(ops))])
				}
				v := NewVector()
				apply(t, v, shuffled)
				checkCanonical(t, v)
				if !v.Equal(ref) {
					t.Fatalf("another add order gives another vector")
				}
				if a, b := v.MustEncode(), ref.MustEncode(); string(a) != string(b) {
					t.Fatalf("equal vectors encode differently")
				}
			}
		})
	}
}

// TestVectorMissingCovers: sending what Missing(a, b) names, with the last seqs the data
// carries, makes b cover a, and Missing never names anything b holds.
func TestVectorMissingCovers(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			u := newUniverse(rng, 1+rng.IntN(4), 1+rng.IntN(80))
			a, b := NewVector(), NewVector()
			apply(t, a, randomOps(rng, u, rng.Float64()))
			apply(t, b, randomOps(rng, u, rng.Float64()))
			missing := a.Missing(b)
			got := b.Clone()
			for _, m := range missing {
				for _, r := range m.Versions {
					if b.Sites[m.Site] != nil && b.Sites[m.Site].Versions.Intersects(r.First, r.Last) {
						t.Fatalf("missing %v of %v, which b holds", r, m.Site)
					}
					for ver := r.First; ver <= r.Last; ver++ {
						if !a.Contains(m.Site, Version(ver)) {
							t.Fatalf("missing names %v/%d, which a does not hold", m.Site, ver)
						}
						if b.Partial(m.Site, Version(ver)) != nil {
							t.Fatalf("missing names %v/%d whole, which b holds in part", m.Site, ver)
						}
						got.AddVersion(m.Site, Version(ver))
					}
				}
				for ver, seqs := range m.Parts {
					ls := u[m.Site][ver-1]
					for _, r := range seqs {
						if b.ContainsOrdinals(m.Site, ver, r.First, r.First) || b.ContainsOrdinals(m.Site, ver, r.Last, r.Last) {
							t.Fatalf("missing seqs %v of %v/%d, which b holds", r, m.Site, ver)
						}
						if _, _, err := got.AddPart(m.Site, ver, ls, r.First, r.Last); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			checkCanonical(t, got)
			// got must hold every seq a holds.
			for s, sv := range a.Sites {
				for _, r := range sv.Versions {
					for ver := r.First; ver <= r.Last; ver++ {
						if !got.Contains(s, Version(ver)) {
							t.Fatalf("after sync, b lacks %v/%d", s, ver)
						}
					}
				}
				for ver, p := range sv.Partials {
					for _, r := range p.Held {
						if !got.ContainsOrdinals(s, ver, r.First, r.Last) {
							t.Fatalf("after sync, b lacks %v/%d seqs %v", s, ver, r)
						}
					}
				}
			}
			if again := a.Missing(got); len(again) != 0 {
				t.Fatalf("after sync a still has %+v for b", again)
			}
		})
	}
}

func TestVectorMissingCases(t *testing.T) {
	full := func(rs ...Range) *SiteVector { return &SiteVector{Versions: rs} }
	tests := []struct {
		name        string
		mine, their *SiteVector
		want        *SiteMissing // nil: nothing missing
	}{
		{"equal", full(Range{First: 1, Last: 10}), full(Range{First: 1, Last: 10}), nil},
		{"they lack all", full(Range{First: 1, Last: 10}), nil, &SiteMissing{Versions: RangeSet{{First: 1, Last: 10}}}},
		{"they have more", full(Range{First: 1, Last: 5}), full(Range{First: 1, Last: 10}), nil},
		{"gaps", full(Range{First: 1, Last: 10}), full(Range{First: 2, Last: 3}, Range{First: 7, Last: 7}), &SiteMissing{Versions: RangeSet{{First: 1, Last: 1}, {First: 4, Last: 6}, {First: 8, Last: 10}}}},
		{"they hold one in part", full(Range{First: 1, Last: 3}),
			&SiteVector{Versions: RangeSet{{First: 1, Last: 1}}, Partials: map[Version]*Partial{2: {LastOrd: 9, Held: RangeSet{{First: 0, Last: 3}}}}},
			&SiteMissing{Versions: RangeSet{{First: 3, Last: 3}}, Parts: map[Version]RangeSet{2: {{First: 4, Last: 9}}}}},
		{"both in part", &SiteVector{Partials: map[Version]*Partial{4: {LastOrd: 9, Held: RangeSet{{First: 0, Last: 6}}}}},
			&SiteVector{Partials: map[Version]*Partial{4: {LastOrd: 9, Held: RangeSet{{First: 2, Last: 3}}}}},
			&SiteMissing{Parts: map[Version]RangeSet{4: {{First: 0, Last: 1}, {First: 4, Last: 6}}}}},
		{"mine in part, theirs whole", &SiteVector{Partials: map[Version]*Partial{4: {LastOrd: 9, Held: RangeSet{{First: 0, Last: 6}}}}}, full(Range{First: 4, Last: 4}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewVector(), NewVector()
			a.Sites[siteA] = tt.mine
			if tt.their != nil {
				b.Sites[siteA] = tt.their
			}
			got := a.Missing(b)
			if tt.want == nil {
				if len(got) != 0 {
					t.Fatalf("missing = %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || got[0].Site != siteA || !slices.Equal(got[0].Versions, tt.want.Versions) || len(got[0].Parts) != len(tt.want.Parts) {
				t.Fatalf("missing = %+v, want %+v", got, tt.want)
			}
			for ver, seqs := range tt.want.Parts {
				if !slices.Equal(got[0].Parts[ver], seqs) {
					t.Fatalf("parts of %d = %v, want %v", ver, got[0].Parts[ver], seqs)
				}
			}
		})
	}
}

func TestVectorHeadsNeeds(t *testing.T) {
	v := NewVector()
	for _, ver := range []Version{1, 2, 3, 6, 9} {
		v.AddVersion(siteA, ver)
	}
	if _, _, err := v.AddPart(siteA, 12, 5, 0, 2); err != nil {
		t.Fatal(err)
	}
	if h := v.Heads()[siteA]; h != 12 {
		t.Fatalf("head = %d, want 12 (a partial counts)", h)
	}
	if n := v.Needs()[siteA]; !slices.Equal(n, RangeSet{{First: 4, Last: 5}, {First: 7, Last: 8}, {First: 10, Last: 12}}) {
		t.Fatalf("needs = %v", n)
	}
	if c, p := v.Counts(); c != 5 || p != 1 {
		t.Fatalf("counts = %d, %d", c, p)
	}
	// A part that disagrees about last_seq or lies outside it is refused.
	if _, _, err := v.AddPart(siteA, 12, 6, 3, 3); err == nil {
		t.Fatal("conflicting last_seq accepted")
	}
	if _, _, err := v.AddPart(siteA, 13, 2, 1, 3); err == nil {
		t.Fatal("seqs beyond last_seq accepted")
	}
	if _, _, err := v.AddPart(siteA, 0, 0, 0, 0); err == nil {
		t.Fatal("version 0 accepted")
	}
	// Completing the partial moves it into the versions.
	added, complete, err := v.AddPart(siteA, 12, 5, 3, 5)
	if err != nil || !added || !complete || v.Partial(siteA, 12) != nil || !v.Contains(siteA, 12) {
		t.Fatalf("completing: added=%v complete=%v err=%v", added, complete, err)
	}
}

func TestVectorEncodeRoundTrip(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 4))
		u := newUniverse(rng, 1+rng.IntN(6), 1+rng.IntN(100))
		v := NewVector()
		apply(t, v, randomOps(rng, u, rng.Float64()))
		for _, sv := range v.Sites { // content sums on some sites (issue 12, item 4)
			if rng.IntN(2) == 0 {
				var d Digest
				d[rng.IntN(16)] = byte(1 + rng.IntN(255))
				sv.Content.Add(d)
			}
		}
		b := v.MustEncode()
		back, err := DecodeVector(b)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !back.Equal(v) {
			t.Fatalf("seed %d: binary round trip differs", seed)
		}
		for site, sv := range v.Canonical().Sites {
			if back.Sites[site].Content != sv.Content {
				t.Fatalf("seed %d: content sum of %v: %+v, want %+v", seed, site, back.Sites[site].Content, sv.Content)
			}
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var jb Vector
		if err := json.Unmarshal(j, &jb); err != nil {
			t.Fatalf("seed %d: %s: %v", seed, j, err)
		}
		if !jb.Equal(v) {
			t.Fatalf("seed %d: json round trip differs: %s", seed, j)
		}
		for i := range len(b) {
			if _, err := DecodeVector(b[:i]); err == nil {
				t.Fatalf("seed %d: truncated to %d of %d bytes decoded", seed, i, len(b))
			}
		}
	}
}

// TestVectorCompactMillions adds a million versions that arrive a little out of order with
// a few never arriving: the vector stays a handful of ranges and a few bytes.
func TestVectorCompactMillions(t *testing.T) {
	const n = 1_000_000
	lost := map[uint64]bool{17: true, 250_000: true, 250_001: true, 777_777: true, n: true}
	rng := rand.New(rand.NewPCG(5, 5))
	order := make([]uint64, 0, n)
	for v := uint64(1); v <= n; v++ {
		if !lost[v] {
			order = append(order, v)
		}
	}
	// Shuffle within windows of 256, as concurrent broadcast delivers them.
	for i := 0; i < len(order); i += 256 {
		w := order[i:min(i+256, len(order))]
		rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
	}
	v := NewVector()
	maxRanges := 0
	for i, ver := range order {
		v.AddVersion(siteA, Version(ver))
		if i%64 == 0 {
			maxRanges = max(maxRanges, len(v.Sites[siteA].Versions))
		}
	}
	sv := v.Sites[siteA]
	if got, want := sv.Versions.Count(), uint64(n-len(lost)); got != want {
		t.Fatalf("count = %d, want %d", got, want)
	}
	if len(sv.Versions) != 4 {
		t.Fatalf("%d ranges, want 4: %v", len(sv.Versions), sv.Versions)
	}
	if maxRanges > 300 {
		t.Fatalf("up to %d ranges while adding; out-of-order arrival should not fragment it", maxRanges)
	}
	if b := v.MustEncode(); len(b) > 100 {
		t.Fatalf("encoded vector is %d bytes", len(b))
	}
	if got := sv.Needs(); !slices.Equal(got, RangeSet{{First: 17, Last: 17}, {First: 250_000, Last: 250_001}, {First: 777_777, Last: 777_777}}) {
		t.Fatalf("needs = %v", got)
	}
	for ver := range lost {
		v.AddVersion(siteA, Version(ver))
	}
	if !slices.Equal(sv.Versions, RangeSet{{First: 1, Last: n}}) {
		t.Fatalf("after filling the gaps: %v", sv.Versions)
	}
}
