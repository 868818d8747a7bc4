package materializer

import (
	"bytes"
	"hash/maphash"
	"testing"

	"github.com/patinadb/patina/log"
)

func TestClockRoundTrip(t *testing.T) {
	site := log.SiteID{1, 2, 3}
	tests := []struct {
		name string
		rc   rowClock
		cl   uint64
	}{
		{"empty", rowClock{}, 0},
		{"columns only", rowClock{Cols: []cellClock{{Present: true, ColVersion: 3, Site: site, Version: 7, Seq: 2}, {}, {Present: true, ColVersion: 1}}}, 1},
		{"tombstone", rowClock{Sentinel: cellClock{Present: true, ColVersion: 2, Site: site, Version: 1}}, 2},
		{"synthetic sentinel", rowClock{Sentinel: cellClock{Present: true, Synthetic: true, ColVersion: 5, Version: 1 << 40, Seq: 1 << 33},
			Cols: []cellClock{{Present: true, ColVersion: 1}}}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rc.CL(); got != tt.cl {
				t.Fatalf("CL() = %d, want %d", got, tt.cl)
			}
			enc := tt.rc.encode(nil)
			var back rowClock
			if err := decodeClock(enc, &back); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if again := back.encode(nil); !bytes.Equal(again, enc) {
				t.Fatalf("re-encode differs: %x vs %x", again, enc)
			}
			if back.CL() != tt.cl || back.Sentinel != tt.rc.Sentinel {
				t.Fatalf("decoded %+v, want %+v", back, tt.rc)
			}
		})
	}
	for _, bad := range [][]byte{nil, {9}, {1, 0, 1}, {1, 4, 0}, {1, 0, 0, 0}} {
		var rc rowClock
		if err := decodeClock(bad, &rc); err == nil {
			t.Errorf("decode %x: want an error", bad)
		}
	}
}

// FuzzDecodeClock: clock blobs are read from disk; any input gives an error or a clock that
// re-encodes to bytes decoding to the same clock.
func FuzzDecodeClock(f *testing.F) {
	rc := rowClock{Sentinel: cellClock{Present: true, ColVersion: 3, Version: 9}, Cols: []cellClock{{Present: true, ColVersion: 1, Seq: 4}}}
	f.Add(rc.encode(nil))
	f.Add((&rowClock{}).encode(nil))
	f.Add([]byte{1, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rc rowClock
		if err := decodeClock(b, &rc); err != nil {
			return
		}
		enc := rc.encode(nil)
		var back rowClock
		if err := decodeClock(enc, &back); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(back.encode(nil), enc) {
			t.Fatalf("round trip differs")
		}
	})
}

// TestClockFilterRecall: a key the filter recorded is never called absent; keys at most hi
// never are; most keys it never saw are.
func TestClockFilterRecall(t *testing.T) {
	f := clockFilter{conn: &dbconn{}, hi: log.MustPackPK(log.Integer(1000)), bits: make([]uint64, clockFilterMaxWords), seed: maphash.MakeSeed()}
	key := func(i int) []byte { return log.MustPackPK(log.Integer(int64(i))) }
	var written [][]byte
	for i := 1001; f.n < f.capacity(); i += 2 {
		f.wrote(key(i))
		written = append(written, key(i))
	}
	for _, k := range written {
		if f.absent(k) {
			t.Fatalf("key %x written but called absent", k)
		}
	}
	for i := range 1001 {
		if f.absent(key(i)) {
			t.Fatalf("key %d at most hi called absent", i)
		}
	}
	unseen := 0
	for i := 1002; i < 1002+2*len(written); i += 2 {
		if f.absent(key(i)) {
			unseen++
		}
	}
	if unseen < len(written)*9/10 {
		t.Fatalf("%d of %d keys never written called absent: the filter rules out too few", unseen, len(written))
	}
	f.hi = nil // no bound: every key the filter never saw is absent
	if !f.absent(key(1)) && !f.absent(key(3)) {
		t.Fatal("keys without a bound: neither called absent")
	}
}
