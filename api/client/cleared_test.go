package client

import (
	"reflect"
	"testing"

	"github.com/patinadb/patina/log/format"
)

// FuzzDecodeClearedFrame: a cleared frame's decoder never panics, refuses bad ranges, and
// what it accepts re-encodes to a frame that decodes to the same.
func FuzzDecodeClearedFrame(f *testing.F) {
	f.Add([]byte(`{"cleared":{"00000000-0000-0000-0000-000000000001":[[1,3],[5,5]]}}`))
	f.Add([]byte(`{"cleared":{}}`))
	f.Add([]byte(`{"cleared":{"00000000-0000-0000-0000-000000000001":[[3,1]]}}`))
	f.Add([]byte(`{"cleared":{"00000000-0000-0000-0000-000000000000":[[1,1]]}}`))
	f.Add([]byte(`{"error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClearedFrame(b)
		if err != nil {
			return
		}
		if !IsClearedFrame(b) {
			t.Fatalf("decoded a frame IsClearedFrame refuses: %q", b)
		}
		for site, rs := range m {
			if site.IsZero() || rs.Valid() != nil || len(rs) > 0 && rs[0].First == 0 {
				t.Fatalf("accepted %v: %v", site, rs)
			}
		}
		enc, err := AppendClearedFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeClearedFrame(enc[4:])
		if err != nil || !reflect.DeepEqual(normal(again), normal(m)) {
			t.Fatalf("round trip: %v, %v vs %v", err, again, m)
		}
	})
}

// normal maps empty range sets to nil, for comparison.
func normal(m map[format.SiteID]format.RangeSet) map[format.SiteID]format.RangeSet {
	out := map[format.SiteID]format.RangeSet{}
	for s, rs := range m {
		if len(rs) > 0 {
			out[s] = rs
		}
	}
	return out
}
