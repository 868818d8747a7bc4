package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// machineChangeset is a realistic changeset: rows of a fleet inventory (the kind of state
// Patina replicates), each with a few text columns and a JSON document.
func machineChangeset(site log.SiteID, version log.Version, rows int) *log.Changeset {
	cs := &log.Changeset{Site: site, Version: version, TS: 1_700_000_000_000_000_000, Kind: log.KindData}
	regions := []string{"ams", "iad", "syd", "nrt", "gru"}
	var seq uint64
	for i := range rows {
		pk := log.MustPackPK(log.Text(fmt.Sprintf("m-%08x", int(version)*1000+i)))
		for _, c := range []struct {
			cid string
			val log.Value
		}{
			{"region", log.Text(regions[i%len(regions)])},
			{"state", log.Text([]string{"started", "stopped", "replacing"}[i%3])},
			{"image", log.Text(fmt.Sprintf("registry.fly.io/app-%d:deployment-01HZX%06d", i%7, int(version)))},
			{"config", log.Text(fmt.Sprintf(`{"guest":{"cpus":%d,"memory_mb":%d,"cpu_kind":"shared"},"services":[{"protocol":"tcp","internal_port":8080,"ports":[{"port":443,"handlers":["tls","http"]}]}],"restart":{"policy":"on-failure"}}`, 1+i%4, 256<<(i%3)))},
			{"updated_at", log.Integer(int64(1_700_000_000 + i))},
		} {
			cs.Changes = append(cs.Changes, log.Change{Table: "machines", PK: pk, CID: c.cid, Val: c.val, ColVersion: uint64(version), CL: 1, Ord: seq})
			seq++
		}
	}
	cs.Span = log.OrdRange{First: 0, Last: seq - 1}
	cs.LastOrd = seq - 1
	return cs
}

// readFrame reads one frame of b, unwrapping a zstd frame.
func readFrame(tb testing.TB, b []byte) (byte, []byte, *frameReader) {
	tb.Helper()
	fr := newFrameReader(bytes.NewReader(b))
	typ, body, err := fr.next()
	if err != nil {
		tb.Fatalf("read frame: %v", err)
	}
	return typ, body, fr
}

// TestZstdFrame checks that a realistic changeset frame compresses, reads back as the very
// frame it was, and that frames that would not gain go plain.
func TestZstdFrame(t *testing.T) {
	site := log.NewSiteID()
	for _, rows := range []int{1, 10, 200} {
		t.Run(fmt.Sprint(rows, " rows"), func(t *testing.T) {
			frame := mustFrame(t)(changesetFrame(machineChangeset(site, 3, rows), 2))
			z := compressFrame(frame, 256)
			if z == nil {
				t.Fatalf("a %d-byte frame of %d rows did not compress", len(frame), rows)
			}
			if len(z) >= len(frame) {
				t.Fatalf("compressed %d bytes to %d", len(frame), len(z))
			}
			t.Logf("%d rows: %d -> %d bytes", rows, len(frame), len(z))
			typ, body, fr := readFrame(t, z)
			_, want, _ := readFrame(t, frame)
			if typ != frameChangeset || !bytes.Equal(body, want) {
				t.Fatalf("read back type %d, body equal %v", typ, bytes.Equal(body, want))
			}
			if fr.zwire != uint64(len(z)) || fr.zplain != uint64(len(frame)) {
				t.Fatalf("reader counted %d wire and %d plain bytes, want %d and %d", fr.zwire, fr.zplain, len(z), len(frame))
			}
			if _, _, err := decodeChangesetFrame(body); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("under the threshold", func(t *testing.T) {
		frame := mustFrame(t)(changesetFrame(machineChangeset(site, 3, 1), 2))
		if z := compressFrame(frame, len(frame)); z != nil {
			t.Fatalf("a frame under the threshold was compressed")
		}
	})
	t.Run("incompressible", func(t *testing.T) {
		blob := make([]byte, 4096)
		rand.Read(blob)
		cs := &log.Changeset{Site: site, Version: 1, TS: 1, Kind: log.KindData, Changes: []log.Change{{Table: "t",
			PK: log.MustPackPK(log.Integer(1)), CID: "b", Val: log.Blob(blob), ColVersion: 1, CL: 1}}}
		if z := compressFrame(mustFrame(t)(changesetFrame(cs, 0)), 0); z != nil {
			t.Fatalf("random bytes were sent compressed (%d bytes)", len(z))
		}
	})
	t.Run("beyond the ratio bound", func(t *testing.T) {
		// A megabyte of one byte compresses far beyond maxZstdRatio: it goes plain, since a
		// receiver would refuse it.
		cs := &log.Changeset{Site: site, Version: 1, TS: 1, Kind: log.KindData, Changes: []log.Change{{Table: "t",
			PK: log.MustPackPK(log.Integer(1)), CID: "b", Val: log.Blob(make([]byte, 1<<20)), ColVersion: 1, CL: 1}}}
		if z := compressFrame(mustFrame(t)(changesetFrame(cs, 0)), 0); z != nil {
			t.Fatalf("a frame beyond the ratio bound was compressed to %d bytes", len(z))
		}
	})
}

// zstdBody builds a zstd frame body by hand: inner type, announced length, compressed bytes.
func zstdBody(typ byte, announced uint64, z []byte) []byte {
	b := []byte{typ}
	b = binary.AppendUvarint(b, announced)
	return append(b, z...)
}

// TestZstdFrameRefused checks the decoder's refusals: each is a protocol error and none
// allocates what the frame merely claims.
func TestZstdFrameRefused(t *testing.T) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	plain := bytes.Repeat([]byte("patina "), 100)
	z := enc.EncodeAll(plain, nil)
	zeros := enc.EncodeAll(make([]byte, 1<<20), nil)
	for name, body := range map[string][]byte{
		"empty":             {},
		"type only":         {frameChangeset},
		"nested zstd":       zstdBody(frameZstd, uint64(len(plain)), z),
		"wraps a hello":     zstdBody(frameHello, uint64(len(plain)), z),
		"announces less":    zstdBody(frameChangeset, uint64(len(plain)-1), z),
		"announces more":    zstdBody(frameChangeset, uint64(len(plain)+1), z),
		"beyond the ratio":  zstdBody(frameChangeset, 1<<20, zeros),
		"beyond maxFrame":   zstdBody(frameChangeset, maxFrame, z),
		"not zstd":          zstdBody(frameChangeset, 10, []byte("0123456789")),
		"truncated":         zstdBody(frameChangeset, uint64(len(plain)), z[:len(z)-3]),
		"bad length varint": {frameChangeset, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := decodeZstdFrame(body); !errors.Is(err, ErrProtocol) {
				t.Fatalf("decodeZstdFrame: %v, want ErrProtocol", err)
			}
		})
	}
	if typ, got, err := decodeZstdFrame(zstdBody(frameChangeset, uint64(len(plain)), z)); err != nil || typ != frameChangeset || !bytes.Equal(got, plain) {
		t.Fatalf("the well-formed control: type %d, %v", typ, err)
	}
}

// TestZstdFrameGolden decodes the pinned compressed frame: whatever zstd library or level a
// later version uses, the bytes today's nodes send must keep decoding.
func TestZstdFrameGolden(t *testing.T) {
	path := filepath.Join("testdata", "wire", "changeset_zstd.bin")
	frame := mustFrame(t)(changesetFrame(machineChangeset(goldenSite, 7, 10), 3))
	if *update {
		if err := os.WriteFile(path, compressFrame(frame, 256), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, want, _ := readFrame(t, frame)
	typ, got, _ := readFrame(t, readGolden(t, "changeset_zstd.bin"))
	if typ != frameChangeset || !bytes.Equal(got, want) {
		t.Fatalf("golden zstd frame reads as type %d, equal %v", typ, bytes.Equal(got, want))
	}
}

// FuzzZstdFrame fuzzes the zstd frame decoder: it never panics, every error is a protocol
// error, it never returns more than the ratio bound allows, and what it accepts compresses
// and reads back to the same inner frame.
func FuzzZstdFrame(f *testing.F) {
	// body is a whole zstd frame's body: what follows its length and type.
	body := func(frame []byte) []byte {
		_, hl := binary.Uvarint(frame)
		return frame[hl+1:]
	}
	for _, rows := range []int{2, 20} {
		f.Add(body(compressFrame(mustFrame(f)(changesetFrame(machineChangeset(goldenSite, 1, rows), 1)), 0)))
	}
	f.Add(body(readGolden(f, "changeset_zstd.bin")))
	f.Add([]byte{frameChangeset, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		typ, inner, err := decodeZstdFrame(body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		if len(inner) > maxZstdRatio*len(body) {
			t.Fatalf("%d bytes from a %d-byte frame", len(inner), len(body))
		}
		frame := appendFrame(nil, typ, inner)
		if z := compressFrame(frame, 0); z != nil {
			typ2, inner2, _ := readFrame(t, z)
			if typ2 != typ || !bytes.Equal(inner2, inner) {
				t.Fatalf("round trip: type %d vs %d, equal %v", typ2, typ, bytes.Equal(inner2, inner))
			}
		}
	})
}

// TestZstdMixedVersions runs two nodes that compress with one that advertises itself as
// from before compression (and sends plain): every node converges, the new pair exchanges
// zstd frames on both paths, and the old node never receives one.
func TestZstdMixedVersions(t *testing.T) {
	old := func(c *Config) { c.oldWire, c.Compression = true, CompressionNone }
	a := startNode(t)
	b := startNode(t, withBootstrap(a))
	c := startNode(t, withBootstrap(a), old)
	nodes := []*testNode{a, b, c}
	waitMembers(t, nodes)

	// Sync: versions a holds that nobody was sent, pulled by b and then by the old node.
	for v := range 5 {
		if _, _, err := a.st.AppendLocal(context.Background(), machineChangeset(a.site, 0, 20+v)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*testNode{b, c} {
		if err := n.g.syncWith(n.g.peers[a.site]); err != nil {
			t.Fatalf("sync with a: %v", err)
		}
	}
	// Broadcast: writes of 20 rows from every node.
	for i, n := range nodes {
		for k := range 5 {
			n.write(1000*i+100*k, 20)
		}
	}
	waitConverged(t, nodes, 20, 30*time.Second)

	wire := func(n *testNode, path, dir string) float64 {
		return metricValue(t, n.g.m.zstdWire.WithLabelValues(path, dir))
	}
	if got := wire(a, "sync", "sent"); got == 0 {
		t.Errorf("a served b's sync with no zstd frame")
	}
	if got := wire(b, "sync", "received"); got == 0 {
		t.Errorf("b received no zstd frame by sync")
	}
	testutil.WaitFor(t, 10*time.Second, "b to count a's compressed broadcasts", func() bool {
		return wire(b, "broadcast", "received") > 0
	})
	for _, path := range []string{"sync", "broadcast"} {
		if got := wire(c, path, "received"); got != 0 {
			t.Errorf("the old node received %v zstd bytes by %s", got, path)
		}
		if got := wire(c, path, "sent"); got != 0 {
			t.Errorf("the old node sent %v zstd bytes by %s", got, path)
		}
	}
	plain, z := metricValue(t, a.g.m.zstdPlain.WithLabelValues("broadcast", "sent")), wire(a, "broadcast", "sent")
	if z == 0 || z >= plain {
		t.Errorf("a's broadcast zstd frames: %v plain bytes, %v on the wire", plain, z)
	}
	t.Logf("a's broadcasts: %v bytes sent as %v", plain, z)
}

// BenchmarkZstdFrame measures what compression costs per frame of realistic changesets of
// 1, 10 and 100 rows, next to what every frame pays already: the sender's encode
// (changesetFrame) against compressFrame, the receiver's decode (decodeChangesetFrame)
// against decodeZstdFrame. It reports the wire bytes of both forms.
func BenchmarkZstdFrame(b *testing.B) {
	for _, rows := range []int{1, 10, 100} {
		cs := machineChangeset(goldenSite, 9, rows)
		frame := mustFrame(b)(changesetFrame(cs, 2))
		_, plainBody, _ := readFrame(b, frame)
		z := compressFrame(frame, 0)
		if z == nil {
			b.Fatalf("%d rows did not compress", rows)
		}
		_, hl := binary.Uvarint(z)
		zbody := z[hl+1:]
		report := func(b *testing.B) {
			b.ReportMetric(float64(len(frame)), "plain-B")
			b.ReportMetric(float64(len(z)), "zstd-B")
		}
		for _, bc := range []struct {
			name string
			f    func(b *testing.B)
		}{
			{"encode", func(b *testing.B) { mustFrame(b)(changesetFrame(cs, 2)) }},
			{"compress", func(b *testing.B) { compressFrame(frame, 0) }},
			{"decode", func(b *testing.B) {
				if _, _, err := decodeChangesetFrame(plainBody); err != nil {
					b.Fatal(err)
				}
			}},
			{"decompress", func(b *testing.B) {
				if _, _, err := decodeZstdFrame(zbody); err != nil {
					b.Fatal(err)
				}
			}},
		} {
			b.Run(fmt.Sprintf("rows=%d/%s", rows, bc.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					bc.f(b)
				}
				report(b)
			})
		}
	}
}
