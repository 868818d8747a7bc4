package format

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestEncodedSizeHint: the hint is never below the encoded size (else encoding grows the
// buffer again) and not far above it, for changesets of every value type and field size.
func TestEncodedSizeHint(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 2))
	for i := range 300 {
		n := 1 + rng.IntN(200)
		cs := &Changeset{Site: SiteID{1}, Version: Version(rng.Uint64N(1 << (rng.IntN(63) + 1))), TS: Timestamp(rng.Uint64()), LastOrd: uint64(n - 1), Span: OrdRange{Last: uint64(n - 1)}, Compacted: false}
		if i%3 == 0 {
			cs.Digest = Digest{1}
		}
		for j := range n {
			long := strings.Repeat("x", []int{0, 5, 31, 32, 255, 256, 70000}[rng.IntN(7)])
			var v Value
			switch rng.IntN(6) {
			case 0:
				v = Null()
			case 1:
				v = Integer(int64(rng.Uint64()))
			case 2:
				v = Integer(int64(rng.IntN(300)) - 150)
			case 3:
				v = Real(rng.NormFloat64())
			case 4:
				v = Text(long)
			default:
				v = Blob([]byte(long))
			}
			cs.Changes = append(cs.Changes, Change{Table: "t" + long[:min(len(long), 40)], PK: []byte{0x01, 0x09, byte(j)}, CID: "c", Val: v,
				ColVersion: rng.Uint64N(1 << (rng.IntN(63) + 1)), CL: 1 + rng.Uint64N(1<<(rng.IntN(40)+1)), Ord: uint64(j)})
		}
		b, err := EncodeChangeset(cs)
		if err != nil {
			t.Fatal(err)
		}
		if h := encodedSizeHint(cs); h < len(b) || h > len(b)+len(b)/2+64 {
			t.Fatalf("changeset %d: hint %d for %d encoded bytes", i, h, len(b))
		}
	}
}
