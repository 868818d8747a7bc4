package materializer

import (
	"bytes"
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
