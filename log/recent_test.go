package log

import (
	"context"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// randomValue is a value of any storage class; raw (not through the constructors) when
// odd is set, so that some are not in the decoder's form.
func randomValue(rng *rand.Rand, odd bool) Value {
	switch rng.IntN(5) {
	case 0:
		if odd {
			return Value{Type: TypeNull, Int: 3}
		}
		return Null()
	case 1:
		if odd {
			return Value{Type: TypeInteger, Int: rng.Int64(), Text: "stray"}
		}
		return Integer(rng.Int64() - math.MaxInt64/2)
	case 2:
		if odd {
			return Value{Type: TypeReal, Real: math.Copysign(0, -1)}
		}
		return Real(rng.NormFloat64())
	case 3:
		if odd {
			return Value{Type: TypeText, Text: "x", Blob: []byte{}}
		}
		return Text(string(rune('a' + rng.IntN(26))))
	}
	if odd {
		return Value{Type: TypeBlob} // nil: the decoder gives X'' as a non-nil empty slice
	}
	b := make([]byte, rng.IntN(4))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return Blob(b)
}

// randomCS is a data changeset of n changes of site/version with random values; some in
// the decoder's form (through an encode and decode, as gossip hands them over), some made
// by hand (odd values).
func randomCS(t *testing.T, rng *rand.Rand, site SiteID, v Version, n int) *Changeset {
	cs := &Changeset{Site: site, Version: v, TS: Timestamp(1e18 + uint64(v)), LastOrd: uint64(n - 1), Span: OrdRange{First: 0, Last: uint64(n - 1)}}
	odd := rng.IntN(4) == 0
	for i := range n {
		cs.Changes = append(cs.Changes, Change{
			Table: "t", PK: MustPackPK(Integer(int64(rng.IntN(8))), Integer(int64(i))), CID: "c",
			Val: randomValue(rng, odd && rng.IntN(2) == 0), ColVersion: uint64(1 + rng.IntN(3)), CL: 1, Ord: uint64(i),
		})
	}
	if odd || rng.IntN(3) == 0 {
		return cs
	}
	dec, err := DecodeChangeset(cs.MustEncode())
	if err != nil {
		t.Fatal(err)
	}
	return dec
}

// TestRecentEqualsDecoded: what Read returns from the recent cache is exactly what it
// returns with the cache off (decoded from Pebble), sizes included, for changesets in the
// decoder's form and not, whole and in parts, of other sites and of this one; and the
// cache did serve most of them. Fails if a kept version differs from its stored form.
func TestRecentEqualsDecoded(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(14, 1))
	cached := openStore(t, "", Options{SiteID: siteA, MaxPartChanges: 6})
	plain := openStore(t, "", Options{SiteID: siteA, MaxPartChanges: 6, RecentChanges: -1})
	siteC := MustParseSiteID("00000000-0000-0000-0000-00000000000c")
	var sent []*Changeset
	for v := Version(1); v <= 150; v++ {
		site := siteB
		if v%10 == 0 {
			site = siteA // this node's own site
		} else if v%3 == 0 {
			site = siteC
		}
		cs := randomCS(t, rng, site, v, 1+rng.IntN(9))
		sent = append(sent, cs)
		if rng.IntN(5) == 0 || len(sent) > 4 {
			for _, s := range []*Store{cached, plain} {
				if _, err := s.Append(ctx, sent...); err != nil {
					t.Fatal(err)
				}
			}
			sent = sent[:0]
		}
	}
	for _, s := range []*Store{cached, plain} {
		if _, err := s.Append(ctx, sent...); err != nil {
			t.Fatal(err)
		}
	}
	if cached.LastSeq() != 150 || plain.LastSeq() != 150 {
		t.Fatalf("last seqs %d, %d", cached.LastSeq(), plain.LastSeq())
	}
	for _, step := range []int{1, 7, 150} {
		for after := Seq(0); after < 150; after += Seq(step) {
			got, gotSizes, err := cached.read(after, step, true)
			if err != nil {
				t.Fatal(err)
			}
			want, wantSizes, err := plain.read(after, step, true)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotSizes, wantSizes) {
				for i := range min(len(got), len(want)) {
					if !reflect.DeepEqual(got[i], want[i]) {
						t.Fatalf("read after %d: seq %d:\n got %+v\nwant %+v", after, want[i].Seq, got[i], want[i])
					}
				}
				t.Fatalf("read after %d: got %d changesets (sizes %v), want %d (%v)", after, len(got), gotSizes, len(want), wantSizes)
			}
		}
	}
	hits, misses := cached.recent.counts()
	if hits*2 < misses { // parts and odd values are not kept
		t.Fatalf("the recent cache served %d reads and missed %d", hits, misses)
	}
	if hits, _ := plain.recent.counts(); hits != 0 {
		t.Fatalf("a store without the cache served %d reads from it", hits)
	}
	// A reader's changes to what it got (its Seq, an append to its Changes) reach nobody else.
	a, err := cached.Read(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cached.Read(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if a[0] == b[0] || cap(a[0].Changes) != len(a[0].Changes) {
		t.Fatalf("two reads share one changeset (%p, %p) or leave room to append (cap %d, len %d)", a[0], b[0], cap(a[0].Changes), len(a[0].Changes))
	}
	a[0].Seq = 99
	a[0].Changes = append(a[0].Changes, Change{Table: "t"})
	if c, _ := cached.Read(0, 1); c[0].Seq != 1 || len(c[0].Changes) != len(b[0].Changes) {
		t.Fatalf("a reader's change reached the next reader: %+v", c[0])
	}
}

// TestRecentDroppedByCompaction: a version compaction rewrites is read in its new form,
// not the kept decoded copy of the old one.
func TestRecentDroppedByCompaction(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "", Options{SiteID: MustParseSiteID("00000000-0000-0000-0000-00000000000c")})
	mustAppend(t, s, makeCS(siteB, 1, 1)) // the winner the judge names
	for v := Version(1); v <= 4; v++ {
		mustAppend(t, s, makeCS(siteA, v, 3))
	}
	if css, err := s.Read(0, 10); err != nil || len(css) != 5 || len(css[2].Changes) != 3 {
		t.Fatalf("read before compaction: %d changesets, %v", len(css), err)
	}
	if hits, _ := s.recent.counts(); hits != 5 {
		t.Fatalf("the recent cache served %d of 5 reads", hits)
	}
	judge := dropJudge(map[Version][]int{2: {1}, 3: {-1}})
	if _, err := s.Compact(ctx, CompactOptions{Through: s.LastSeq(), Judge: judge}); err != nil {
		t.Fatal(err)
	}
	css, err := s.Read(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(css) != 4 || css[2].Version != 2 || len(css[2].Changes) != 2 || !css[2].Compacted || css[3].Version != 4 {
		for _, cs := range css {
			t.Logf("%d: v%d %d changes compacted %v", cs.Seq, cs.Version, len(cs.Changes), cs.Compacted)
		}
		t.Fatalf("read after compaction: %d changesets", len(css))
	}
	for _, cs := range css {
		got, err := s.Get(cs.Site, cs.Version)
		if err != nil {
			t.Fatal(err)
		}
		got.Seq = cs.Seq
		if !reflect.DeepEqual(got, cs) {
			t.Fatalf("read after compaction:\n got %+v\nwant %+v", cs, got)
		}
	}
}

// TestRecentBounded: the cache keeps at most RecentChanges changes, the newest.
func TestRecentBounded(t *testing.T) {
	s := openStore(t, "", Options{SiteID: siteB, RecentChanges: 10})
	for v := Version(1); v <= 20; v++ {
		mustAppend(t, s, makeCS(siteA, v, 3))
	}
	s.recent.mu.Lock()
	changes, n := s.recent.changes, len(s.recent.byseq)
	_, newest := s.recent.byseq[20]
	s.recent.mu.Unlock()
	if changes > 10 || n != 3 || !newest {
		t.Fatalf("cache holds %d changes in %d versions (newest kept: %v), want at most 10 in 3", changes, n, newest)
	}
	if css, err := s.Read(0, 100); err != nil || len(css) != 20 {
		t.Fatalf("read: %d, %v", len(css), err)
	}
}
