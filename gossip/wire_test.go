package gossip

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/patinadb/patina/log"
	"github.com/vmihailenco/msgpack/v5"
)

var update = flag.Bool("update", false, "rewrite the golden wire files in testdata/wire")

var (
	goldenSite  = log.MustParseSiteID("0b8f6a52-3c1d-4e9a-9d2e-5f0a1b2c3d4e")
	goldenOther = log.MustParseSiteID("f00dfeed-0000-4000-8000-000000000001")
)

func goldenChangeset() *log.Changeset {
	return &log.Changeset{
		Site: goldenSite, Version: 7, TS: 1_700_000_000_000_000_000, Span: log.OrdRange{First: 0, Last: 2}, LastOrd: 2,
		Kind: log.KindData,
		Changes: []log.Change{
			{Table: "t", PK: log.MustPackPK(log.Integer(1)), CID: "-1", Val: log.Null(), ColVersion: 1, CL: 1, Ord: 0},
			{Table: "t", PK: log.MustPackPK(log.Integer(1)), CID: "v", Val: log.Text("a"), ColVersion: 1, CL: 1, Ord: 1},
			{Table: "t", PK: log.MustPackPK(log.Integer(1)), CID: "r", Val: log.Real(1.5), ColVersion: 3, CL: 1, Ord: 2},
		},
	}
}

func goldenPart() *log.Changeset {
	cs := goldenChangeset()
	cs.LastOrd = 9
	cs.Span = log.OrdRange{First: 4, Last: 6}
	for i := range cs.Changes {
		cs.Changes[i].Ord = uint64(4 + i)
	}
	return cs
}

func goldenVector() *log.Vector {
	v := log.NewVector()
	for ver := log.Version(1); ver <= 5; ver++ {
		v.AddVersion(goldenSite, ver)
	}
	v.AddVersion(goldenSite, 9)
	v.AddVersion(goldenOther, 1)
	if _, _, err := v.AddPart(goldenOther, 3, 9, 0, 4); err != nil {
		panic(err)
	}
	return v
}

// mustFrame(tb)(f()) fails tb when f returns an error.
func mustFrame(tb testing.TB) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
}

// goldenFrames are the pinned wire bytes of every frame type.
func goldenFrames(tb testing.TB) map[string][]byte {
	tb.Helper()
	g := &Gossip{cfg: Config{ClusterID: "prod"}, site: goldenSite}
	vb := mustFrame(tb)(encodeVector(goldenVector()))
	_, digest, err := vectorDigest(goldenVector())
	if err != nil {
		tb.Fatal(err)
	}
	done := mustFrame(tb)(msgpack.Marshal(&doneMsg{Changesets: 3, Changes: 12}))
	meta := mustFrame(tb)(msgpack.Marshal(&nodeMeta{V: 1, Site: wireSite(goldenSite), Cluster: "prod", QUIC: "10.0.0.1:8788", API: "10.0.0.1:8080"}))
	return map[string][]byte{
		"hello_broadcast.bin": g.hello(streamBroadcast),
		"hello_sync.bin":      g.hello(streamSync),
		"changeset.bin":       mustFrame(tb)(changesetFrame(goldenChangeset(), 3)),
		"part.bin":            mustFrame(tb)(changesetFrame(goldenPart(), 0)),
		"vector.bin":          appendFrame(nil, frameVector, vb),
		// The digest pins how a vector is digested too: nodes that digest differently
		// never find their logs equal, and always exchange full vectors.
		"digest.bin":           appendFrame(nil, frameDigest, digest[:]),
		"changeset_traced.bin": tracedFrame(goldenTraceparent, mustFrame(tb)(changesetFrame(goldenChangeset(), 3))),
		"busy.bin":             appendFrame(nil, frameBusy, nil),
		"done.bin":             appendFrame(nil, frameDone, done),
		// Node metadata is not a frame: memberlist carries it.
		"meta.bin": meta,
	}
}

func readGolden(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "wire", name))
	if err != nil {
		tb.Fatalf("read golden %s: %v (run go test -run TestWireGolden -update)", name, err)
	}
	return b
}

// TestWireGolden pins the wire bytes: a change here breaks mixed-version clusters, so it
// must come with a new protocol version.
func TestWireGolden(t *testing.T) {
	for name, got := range goldenFrames(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "wire", name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want := readGolden(t, name); !bytes.Equal(got, want) {
				t.Fatalf("wire bytes changed:\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestFrameDecoding reads each golden frame back and checks what it decodes to, and that
// malformed input gives ErrProtocol.
func TestFrameDecoding(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		check   func(t *testing.T, typ byte, body []byte)
		wantErr bool
	}{
		{name: "hello", in: readGolden(t, "hello_sync.bin"), check: func(t *testing.T, typ byte, body []byte) {
			h, err := decodeHello(typ, body)
			if err != nil {
				t.Fatal(err)
			}
			want := &hello{V: protoVersion, Cluster: "prod", Site: wireSite(goldenSite), Kind: streamSync}
			if !reflect.DeepEqual(h, want) {
				t.Fatalf("got %+v, want %+v", h, want)
			}
		}},
		{name: "changeset", in: readGolden(t, "changeset.bin"), check: func(t *testing.T, typ byte, body []byte) {
			hops, cs, err := decodeChangesetFrame(body)
			if err != nil || typ != frameChangeset {
				t.Fatalf("type %d: %v", typ, err)
			}
			if hops != 3 || !bytes.Equal(cs.MustEncode(), goldenChangeset().MustEncode()) {
				t.Fatalf("got hops %d, %+v", hops, cs)
			}
		}},
		{name: "part", in: readGolden(t, "part.bin"), check: func(t *testing.T, typ byte, body []byte) {
			_, cs, err := decodeChangesetFrame(body)
			if err != nil {
				t.Fatal(err)
			}
			if !cs.IsPart() || cs.Span != (log.OrdRange{First: 4, Last: 6}) || cs.LastOrd != 9 {
				t.Fatalf("got %+v", cs)
			}
		}},
		{name: "vector", in: readGolden(t, "vector.bin"), check: func(t *testing.T, typ byte, body []byte) {
			v, err := decodeVector(body)
			if err != nil || typ != frameVector {
				t.Fatalf("type %d: %v", typ, err)
			}
			if !v.Equal(goldenVector()) {
				t.Fatalf("vector differs: %v", v)
			}
		}},
		{name: "digest", in: readGolden(t, "digest.bin"), check: func(t *testing.T, typ byte, body []byte) {
			d, err := decodeDigest(body)
			if err != nil || typ != frameDigest {
				t.Fatalf("type %d: %v", typ, err)
			}
			if _, want, _ := vectorDigest(goldenVector()); d != want {
				t.Fatalf("digest %x, want %x", d, want)
			}
		}},
		{name: "short digest", in: appendFrame(nil, frameDigest, make([]byte, digestLen-1)), check: func(t *testing.T, typ byte, body []byte) {
			if _, err := decodeDigest(body); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		}},
		{name: "long digest", in: appendFrame(nil, frameDigest, make([]byte, digestLen+1)), check: func(t *testing.T, typ byte, body []byte) {
			if _, err := decodeDigest(body); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		}},
		{name: "hello of wrong type", in: readGolden(t, "busy.bin"), check: func(t *testing.T, typ byte, body []byte) {
			if _, err := decodeHello(typ, body); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		}},
		{name: "zero length", in: []byte{0}, wantErr: true},
		{name: "length beyond limit", in: []byte{0xff, 0xff, 0xff, 0xff, 0x7f}, wantErr: true},
		{name: "truncated body", in: []byte{5, frameChangeset, 1}, wantErr: true},
		// 60 MB claimed, 3 bytes sent: an error, without a 60 MB buffer.
		{name: "truncated large body", in: []byte{0x80, 0x80, 0x80, 0x1e, frameChangeset, 1, 2}, wantErr: true},
		{name: "truncated varint", in: []byte{0x80}, wantErr: true},
		{name: "bad changeset body", in: appendFrame(nil, frameChangeset, []byte{3, 0xc1}), check: func(t *testing.T, typ byte, body []byte) {
			if _, _, err := decodeChangesetFrame(body); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		}},
		{name: "empty changeset body", in: appendFrame(nil, frameChangeset, nil), check: func(t *testing.T, typ byte, body []byte) {
			if _, _, err := decodeChangesetFrame(body); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		}},
		{name: "bad vector body", in: appendFrame(nil, frameVector, []byte{1, 0x91, 0x93}), check: func(t *testing.T, typ byte, body []byte) {
			if _, err := decodeVector(body); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := newFrameReader(bytes.NewReader(tt.in))
			typ, body, err := fr.next()
			if tt.wantErr {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err %v, want ErrProtocol", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, typ, body)
			if _, _, err := fr.next(); err != io.EOF {
				t.Fatalf("after the frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestDecodeMeta(t *testing.T) {
	m, err := decodeMeta(readGolden(t, "meta.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if m.site != goldenSite || m.Cluster != "prod" || m.QUIC != "10.0.0.1:8788" || m.API != "10.0.0.1:8080" || m.Leaving {
		t.Fatalf("got %+v", m)
	}
	bad := [][]byte{
		nil, {0xc1},
		mustFrame(t)(msgpack.Marshal(map[string]any{"v": 1, "site": []byte{1, 2}, "cluster": "prod"})),
		mustFrame(t)(msgpack.Marshal(&nodeMeta{V: 1, Cluster: "prod"})), // zero site id
		// A bin header claiming 3 GB in a few bytes: refused without allocating it.
		[]byte("\x85\xa100\xa4site\xc6\xc6\xc6\xc6\xc6\xc6\xc60"),
	}
	for _, bad := range bad {
		if _, err := decodeMeta(bad); !errors.Is(err, ErrProtocol) {
			t.Fatalf("decodeMeta(%x): %v, want ErrProtocol", bad, err)
		}
	}
}

func addGoldenSeeds(f *testing.F) {
	for name := range goldenFrames(f) {
		f.Add(readGolden(f, name))
	}
}

// FuzzFrames feeds arbitrary bytes to the frame reader and every frame decoder, as a
// stream from a peer would: never a panic or a hang, and what decodes re-encodes to bytes
// that decode to the same thing.
func FuzzFrames(f *testing.F) {
	addGoldenSeeds(f)
	var stream []byte
	for name, b := range goldenFrames(f) {
		if name != "meta.bin" {
			stream = append(stream, b...)
		}
	}
	f.Add(stream)
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b))
		for range 64 {
			typ, body, err := fr.next()
			if err != nil {
				return
			}
			switch typ {
			case frameHello:
				h, err := decodeHello(typ, body)
				if err != nil {
					continue
				}
				re := mustFrame(t)(msgFrame(frameHello, h))
				fr2 := newFrameReader(bytes.NewReader(re))
				typ2, body2, err := fr2.next()
				if err != nil {
					t.Fatalf("re-read hello: %v", err)
				}
				h2, err := decodeHello(typ2, body2)
				if err != nil || !reflect.DeepEqual(h, h2) {
					t.Fatalf("hello round trip: %+v vs %+v (%v)", h, h2, err)
				}
			case frameChangeset:
				hops, cs, err := decodeChangesetFrame(body)
				if err != nil {
					continue
				}
				roundTripChangeset(t, cs, hops)
			case frameVector:
				v, err := decodeVector(body)
				if err != nil {
					continue
				}
				roundTripVector(t, v)
			case frameDigest:
				d, err := decodeDigest(body)
				if err != nil {
					continue
				}
				if !bytes.Equal(d[:], body) {
					t.Fatalf("digest round trip: %x vs %x", d, body)
				}
			}
		}
	})
}

func roundTripChangeset(t *testing.T, cs *log.Changeset, hops int) {
	t.Helper()
	frame, err := changesetFrame(cs, hops)
	if err != nil {
		return // e.g. too large for one frame: refused, not a crash
	}
	_, body, err := newFrameReader(bytes.NewReader(frame)).next()
	if err != nil {
		t.Fatalf("re-read changeset frame: %v", err)
	}
	hops2, cs2, err := decodeChangesetFrame(body)
	if err != nil {
		t.Fatalf("changeset round trip: %v", err)
	}
	if hops2 != hops || !bytes.Equal(cs.MustEncode(), cs2.MustEncode()) {
		t.Fatalf("changeset round trip differs")
	}
}

func roundTripVector(t *testing.T, v *log.Vector) {
	t.Helper()
	b, err := encodeVector(v)
	if err != nil {
		t.Fatalf("encode decoded vector: %v", err)
	}
	v2, err := decodeVector(b)
	if err != nil {
		t.Fatalf("vector round trip: %v", err)
	}
	if !v.Equal(v2) {
		t.Fatalf("vector round trip differs")
	}
}

// FuzzHello fuzzes the hello body decoder alone.
func FuzzHello(f *testing.F) {
	for _, name := range []string{"hello_sync.bin", "hello_broadcast.bin"} {
		_, body, err := newFrameReader(bytes.NewReader(readGolden(f, name))).next()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHello(frameHello, b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		body, err := msgpack.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := decodeHello(frameHello, body)
		if err != nil || !reflect.DeepEqual(h, h2) {
			t.Fatalf("hello round trip: %+v vs %+v (%v)", h, h2, err)
		}
	})
}

// FuzzVector fuzzes the vector body decoder alone.
func FuzzVector(f *testing.F) {
	_, body, err := newFrameReader(bytes.NewReader(readGolden(f, "vector.bin"))).next()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body)
	f.Add(mustFrame(f)(encodeVector(log.NewVector())))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeVector(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		roundTripVector(t, v)
		// A decoded vector must be safe to diff against.
		_ = goldenVector().Missing(v)
		_ = lackCount(goldenVector(), v)
	})
}

// FuzzChangesetFrame fuzzes the changeset frame body decoder alone.
func FuzzChangesetFrame(f *testing.F) {
	for _, name := range []string{"changeset.bin", "part.bin"} {
		_, body, err := newFrameReader(bytes.NewReader(readGolden(f, name))).next()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hops, cs, err := decodeChangesetFrame(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		roundTripChangeset(t, cs, hops)
	})
}

// FuzzMeta fuzzes the memberlist node metadata decoder.
func FuzzMeta(f *testing.F) {
	f.Add(readGolden(f, "meta.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		re, err := msgpack.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := decodeMeta(re)
		if err != nil || m2.site != m.site || m2.Cluster != m.Cluster || m2.QUIC != m.QUIC || m2.API != m.API || m2.Leaving != m.Leaving {
			t.Fatalf("meta round trip: %+v vs %+v (%v)", m, m2, err)
		}
	})
}

// FuzzCleared fuzzes the cleared-ranges frame decoder: it never panics, every error is a
// protocol error, and what it accepts re-encodes to the same ranges.
func FuzzCleared(f *testing.F) {
	site := log.SiteID{0: 1, 15: 2}
	for _, rs := range []log.RangeSet{{{First: 1, Last: 1}}, {{First: 1, Last: 30}, {First: 32, Last: 1 << 40}}} {
		b, err := clearedFrames(nil, site, rs)
		if err != nil {
			f.Fatal(err)
		}
		_, body, err := newFrameReader(bytes.NewReader(b)).next()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte{0x82})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, rs, err := decodeCleared(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		enc, err := clearedFrames(nil, s, rs)
		if err != nil {
			t.Fatal(err)
		}
		_, body, err := newFrameReader(bytes.NewReader(enc)).next()
		if err != nil {
			t.Fatal(err)
		}
		s2, rs2, err := decodeCleared(body)
		if err != nil || s2 != s || !reflect.DeepEqual(rs2, rs) {
			t.Fatalf("round trip: %v %v %v", s2, rs2, err)
		}
	})
}

// TestChangesetFrameSameBytes: changesetFrame, which writes the header in front of the body
// it encoded in place, gives the bytes of the plain construction (header, then the body
// encoded on its own) for every header length (bodies of 1 to about 200k bytes) and hops.
func TestChangesetFrameSameBytes(t *testing.T) {
	for _, rows := range []int{0, 1, 2, 3, 5, 40, 80, 160, 700, 1500} {
		for _, hops := range []int{-1, 0, 3, 255, 300} {
			cs := machineChangeset(log.SiteID{7: 1}, 9, rows)
			got, err := changesetFrame(cs, hops)
			if err != nil {
				t.Fatal(err)
			}
			h := byte(min(max(hops, 0), 255))
			body, err := log.AppendChangeset([]byte{h}, cs)
			if err != nil {
				t.Fatal(err)
			}
			if want := appendFrame(nil, frameChangeset, body); !bytes.Equal(got, want) {
				t.Fatalf("%d rows, hops %d: frame of %d bytes differs from the plain construction's %d", rows, hops, len(got), len(want))
			}
		}
	}
}
