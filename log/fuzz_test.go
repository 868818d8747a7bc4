package log

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Seeds of the fuzz targets live in testdata/<kind>/. They are written from the Go values
// below with `go test -run TestSeedFiles -update ./log/`; without -update the test checks
// that the files still match, which pins the wire bytes of every format.
var update = flag.Bool("update", false, "rewrite the seed files in testdata/")

func seedChangesets() map[string]*Changeset {
	part := slicePart(makeCS(siteB, 3, 10), 4, 6)
	reals := &Changeset{
		Site: siteA, Version: 1 << 40, TS: math.MaxUint64, Span: OrdRange{First: 0, Last: 7}, LastOrd: 7,
		Changes: []Change{
			{Table: "r", PK: MustPackPK(Real(0.5)), CID: "a", Val: Real(math.Inf(1)), ColVersion: 1, CL: 1, Ord: 0},
			{Table: "r", PK: MustPackPK(Real(0.5)), CID: "b", Val: Real(math.Inf(-1)), ColVersion: 1, CL: 1, Ord: 1},
			{Table: "r", PK: MustPackPK(Real(0.5)), CID: "c", Val: Real(1e-300), ColVersion: math.MaxUint64, CL: 1, Ord: 2},
			{Table: "r", PK: MustPackPK(Null()), CID: "d", Val: Integer(math.MinInt64), ColVersion: 1, CL: 1, Ord: 3},
			{Table: "r", PK: MustPackPK(Integer(math.MaxInt64)), CID: "e", Val: Integer(math.MaxInt64), ColVersion: 1, CL: 1, Ord: 4},
			{Table: "r", PK: MustPackPK(Blob([]byte{0, 255})), CID: "f", Val: Blob(bytes.Repeat([]byte{0xab}, 300)), ColVersion: 1, CL: 1, Ord: 5},
			{Table: "été", PK: MustPackPK(Text("ü"), Real(-2.5)), CID: "g", Val: Text(strings.Repeat("é", 100)), ColVersion: 1, CL: 5, Ord: 6},
			{Table: "r", PK: MustPackPK(Integer(-1)), CID: SentinelCID, Val: Null(), ColVersion: 1, CL: 4, Ord: 7},
		},
	}
	schema := &Changeset{
		Site: siteB, Version: 2, TS: 7, Span: OrdRange{First: 0, Last: 3}, LastOrd: 3, Kind: KindSchema,
		Changes: []Change{
			{Table: "t", PK: MustPackPK(Text("t")), CID: SchemaTable, Val: Text("CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, a TEXT)"), CL: 1, Ord: 0},
			{Table: "t", PK: MustPackPK(Text("b")), CID: SchemaColumn, Val: Text("b INTEGER DEFAULT 0"), CL: 1, Ord: 1},
			{Table: "t", PK: MustPackPK(Text("t_a")), CID: SchemaIndex, Val: Text("CREATE INDEX t_a ON t (a)"), CL: 1, Ord: 2},
			{Table: "t", PK: MustPackPK(Text("t_old")), CID: SchemaDropIndex, Val: Text(""), CL: 1, Ord: 3},
		},
	}
	arrived := sampleChangeset()
	arrived.Seq = 42
	compacted := makeCS(siteA, 7, 6)
	compacted.Changes = []Change{compacted.Changes[1], compacted.Changes[4]}
	compacted.Compacted, compacted.Seq = true, 9
	return map[string]*Changeset{
		"compacted": compacted,
		"basic":     sampleChangeset(),
		"part":      part,
		"empty":     {Site: siteA, Version: 9, TS: 1, Kind: KindEmpty, Changes: []Change{}},
		"reals":     reals,
		"arrived":   arrived,
		"schema":    schema,
	}
}

func seedVectors() map[string]*Vector {
	one := NewVector()
	one.Sites[siteA] = &SiteVector{Versions: RangeSet{{First: 1, Last: 1000}, {First: 1002, Last: 2000}}}
	parts := NewVector()
	parts.Sites[siteA] = &SiteVector{Versions: RangeSet{{First: 1, Last: 5}}, Partials: map[Version]*Partial{
		7: {LastOrd: 9999, Held: RangeSet{{First: 0, Last: 4095}}},
		9: {LastOrd: 10, Held: RangeSet{{First: 0, Last: 2}, {First: 5, Last: 5}}},
	}}
	parts.Sites[siteB] = &SiteVector{Versions: RangeSet{{First: 3, Last: 3}, {First: math.MaxUint64 - 1, Last: math.MaxUint64}}}
	many := NewVector()
	for i := range 20 {
		var s SiteID
		s[0], s[15] = byte(i), 1
		sv := &SiteVector{}
		for v := uint64(1); v < 200; v += uint64(i + 3) {
			sv.Versions.Add(v, v+uint64(i))
		}
		many.Sites[s] = sv
	}
	return map[string]*Vector{"empty": NewVector(), "one_site": one, "partials": parts, "many_sites": many}
}

func seedPKs() map[string]PK {
	return map[string]PK{
		"int0":      MustPackPK(Integer(0)),
		"int256":    MustPackPK(Integer(256)),
		"neg":       MustPackPK(Integer(-1)),
		"real":      MustPackPK(Real(1.5)),
		"text":      MustPackPK(Text("abc")),
		"blob":      MustPackPK(Blob([]byte{1, 2})),
		"null":      MustPackPK(Null()),
		"composite": MustPackPK(Integer(1), Text("a"), Blob(nil), Null(), Real(-3), Integer(math.MinInt64)),
		"long_text": MustPackPK(Text(strings.Repeat("x", 300))),
	}
}

func seedPartials() map[string]*Partial {
	return map[string]*Partial{
		"small": {LastOrd: 10, Held: RangeSet{{First: 0, Last: 2}, {First: 5, Last: 5}}},
		"large": {LastOrd: 1 << 20, Held: RangeSet{{First: 0, Last: 4095}, {First: 8192, Last: 12287}}},
		"tail":  {LastOrd: math.MaxUint64, Held: RangeSet{{First: math.MaxUint64, Last: math.MaxUint64}}},
	}
}

func seedRanges() map[string]RangeSet {
	return map[string]RangeSet{
		"empty":  nil,
		"one":    {{First: 1, Last: 1}},
		"gaps":   {{First: 1, Last: 100}, {First: 102, Last: 5000}, {First: 6000, Last: 6000}},
		"max":    {{First: 1, Last: math.MaxUint64}},
		"sparse": {{First: 3, Last: 3}, {First: 5, Last: 5}, {First: 7, Last: 7}, {First: 1 << 33, Last: 1 << 34}},
	}
}

// seedValueJSON are JSON parameter values as clients send them; some are not what
// MarshalJSON writes (true, -0.0, 1E2) but read back into one that it does.
var seedValueJSON = map[string]string{
	"int": "1", "neg": "-9223372036854775808", "real": "1.0", "negzero": "-0.0", "exp": "1E2",
	"inf": "1e999", "text": `"héllo\n\u00e9"`, "blob": "[0, 1, 255]", "emptyblob": "[]",
	"null": "null", "true": "true", "false": "false",
}

func writeOrCheck(t *testing.T, path string, b []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write the seeds)", err)
	}
	if !bytes.Equal(got, b) {
		t.Fatalf("%s differs from what the encoder writes now: a wire format change needs a new format byte (or -update if intended)", path)
	}
}

// TestSeedFiles pins the encoded bytes of the seed values (a format change must be a
// conscious one) and checks that every seed decodes, so the fuzzers start from valid input.
func TestSeedFiles(t *testing.T) {
	for name, cs := range seedChangesets() {
		writeOrCheck(t, "testdata/changeset/"+name+".bin", cs.MustEncode())
		j, err := json.Marshal(cs)
		if err != nil {
			t.Fatal(err)
		}
		writeOrCheck(t, "testdata/changeset_json/"+name+".json", j)
	}
	for name, v := range seedVectors() {
		writeOrCheck(t, "testdata/vector/"+name+".bin", v.MustEncode())
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		writeOrCheck(t, "testdata/vector_json/"+name+".json", j)
	}
	for name, pk := range seedPKs() {
		writeOrCheck(t, "testdata/pk/"+name+".bin", pk)
	}
	for name, p := range seedPartials() {
		writeOrCheck(t, "testdata/partial/"+name+".bin", encodePartialValue(p))
	}
	for name, rs := range seedRanges() {
		writeOrCheck(t, "testdata/ranges/"+name+".bin", AppendRanges(nil, rs))
	}
	for name, s := range seedValueJSON {
		writeOrCheck(t, "testdata/value_json/"+name+".json", []byte(s))
	}
	for dir, decode := range map[string]func([]byte) error{
		"changeset":      func(b []byte) error { _, err := DecodeChangeset(b); return err },
		"changeset_json": func(b []byte) error { var cs Changeset; return json.Unmarshal(b, &cs) },
		"vector":         func(b []byte) error { _, err := DecodeVector(b); return err },
		"vector_json":    func(b []byte) error { var v Vector; return json.Unmarshal(b, &v) },
		"pk":             func(b []byte) error { _, err := UnpackPK(b); return err },
		"partial":        func(b []byte) error { _, err := decodePartialValue(b); return err },
		"ranges":         func(b []byte) error { _, err := DecodeRanges("ranges", b, false); return err },
		"value_json":     func(b []byte) error { _, err := ParseJSONValue(b); return err },
	} {
		for name, b := range readSeeds(t, dir) {
			if err := decode(b); err != nil {
				t.Errorf("seed %s/%s: %v", dir, name, err)
			}
		}
	}
}

// readSeeds returns the files of testdata/<dir>, by name.
func readSeeds(tb testing.TB, dir string) map[string][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 && !*update {
		tb.Fatalf("no seeds in testdata/%s", dir)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func addSeeds(f *testing.F, dir string) {
	for _, b := range readSeeds(f, dir) {
		f.Add(b)
	}
}

// allUTF8 reports whether every text of cs is UTF-8, the condition for its JSON form to be
// lossless (encoding/json replaces invalid bytes, as docs/DESIGN.md's JSON form must).
func allUTF8(cs *Changeset) bool {
	for i := range cs.Changes {
		c := &cs.Changes[i]
		if c.Val.Type == TypeText && !utf8.ValidString(c.Val.Text) {
			return false
		}
		vals, _ := UnpackPK(c.PK)
		for _, v := range vals {
			if v.Type == TypeText && !utf8.ValidString(v.Text) {
				return false
			}
		}
	}
	return true
}

// checkChangesetRoundTrips checks that a decoded changeset re-encodes to bytes that decode
// to the same changeset and encode identically again, in both the binary and JSON forms.
func checkChangesetRoundTrips(t *testing.T, cs *Changeset) {
	t.Helper()
	enc, err := EncodeChangeset(cs)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	back, err := DecodeChangeset(enc)
	if err != nil {
		t.Fatalf("decode re-encoded: %v", err)
	}
	if !reflect.DeepEqual(back, cs) {
		t.Fatalf("binary round trip:\n got %+v\nwant %+v", back, cs)
	}
	if enc2 := back.MustEncode(); !bytes.Equal(enc2, enc) {
		t.Fatalf("re-encoding is not stable:\n%x\n%x", enc, enc2)
	}
	if !allUTF8(cs) {
		return
	}
	j, err := json.Marshal(cs)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	var jb Changeset
	if err := json.Unmarshal(j, &jb); err != nil {
		t.Fatalf("json %s: %v", j, err)
	}
	if !reflect.DeepEqual(&jb, cs) {
		t.Fatalf("json round trip of %s:\n got %+v\nwant %+v", j, &jb, cs)
	}
	if j2, _ := json.Marshal(&jb); !bytes.Equal(j2, j) {
		t.Fatalf("json re-encoding is not stable:\n%s\n%s", j, j2)
	}
}

func FuzzDecodeChangeset(f *testing.F) {
	addSeeds(f, "changeset")
	withDigest := makeCS(siteB, 2, 3)
	withDigest.Digest, _ = withDigest.ComputeDigest()
	f.Add(withDigest.MustEncode())                  // the 11-field layout (issue 12)
	f.Add(slicePart(withDigest, 1, 2).MustEncode()) // a part carrying the whole's digest
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := DecodeChangeset(b)
		if err != nil {
			return
		}
		if err := cs.Validate(); err != nil {
			t.Fatalf("decoder returned an invalid changeset: %v", err)
		}
		checkChangesetRoundTrips(t, cs)
	})
}

func FuzzChangesetJSON(f *testing.F) {
	addSeeds(f, "changeset_json")
	f.Fuzz(func(t *testing.T, b []byte) {
		var cs Changeset
		if err := json.Unmarshal(b, &cs); err != nil {
			return
		}
		if err := cs.Validate(); err != nil {
			t.Fatalf("unmarshal returned an invalid changeset: %v", err)
		}
		checkChangesetRoundTrips(t, &cs)
	})
}

func checkVectorValid(t *testing.T, v *Vector) {
	t.Helper()
	for s, sv := range v.Sites {
		if err := sv.Versions.Valid(); err != nil {
			t.Fatalf("site %v: %v", s, err)
		}
		for ver, p := range sv.Partials {
			if err := p.Held.Valid(); err != nil {
				t.Fatalf("site %v partial %d: %v", s, ver, err)
			}
			if ver == 0 || sv.Versions.Contains(uint64(ver)) || p.Held.ContainsRange(0, p.LastOrd) || len(p.Held) == 0 {
				t.Fatalf("site %v partial %d is not a partial: %+v", s, ver, p)
			}
		}
	}
}

func checkVectorRoundTrips(t *testing.T, v *Vector) {
	t.Helper()
	checkVectorValid(t, v)
	enc := v.MustEncode()
	back, err := DecodeVector(enc)
	if err != nil {
		t.Fatalf("decode re-encoded: %v", err)
	}
	if !back.Equal(v) {
		t.Fatalf("binary round trip differs")
	}
	if enc2 := back.MustEncode(); !bytes.Equal(enc2, enc) {
		t.Fatalf("re-encoding is not stable:\n%x\n%x", enc, enc2)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	var jb Vector
	if err := json.Unmarshal(j, &jb); err != nil {
		t.Fatalf("json %s: %v", j, err)
	}
	if !jb.Equal(v) {
		t.Fatalf("json round trip of %s differs", j)
	}
	// What v holds that an empty vector lacks is v itself.
	got := NewVector()
	for _, m := range v.Missing(nil) {
		for _, r := range m.Versions {
			got.Site(m.Site).Versions.Add(r.First, r.Last)
		}
		for ver, seqs := range m.Parts {
			p := v.Partial(m.Site, ver)
			for _, r := range seqs {
				if _, _, err := got.AddPart(m.Site, ver, p.LastOrd, r.First, r.Last); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if !got.Equal(v) {
		t.Fatalf("Missing(empty) does not rebuild the vector")
	}
}

func FuzzDecodeVector(f *testing.F) {
	addSeeds(f, "vector")
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeVector(b)
		if err != nil {
			return
		}
		checkVectorRoundTrips(t, v)
	})
}

func FuzzVectorJSON(f *testing.F) {
	addSeeds(f, "vector_json")
	f.Fuzz(func(t *testing.T, b []byte) {
		var v Vector
		if err := json.Unmarshal(b, &v); err != nil {
			return
		}
		checkVectorRoundTrips(t, &v)
	})
}

func FuzzUnpackPK(f *testing.F) {
	addSeeds(f, "pk")
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := UnpackPK(b)
		if err != nil {
			return
		}
		pk, err := PackPK(vals...)
		if err != nil {
			t.Fatalf("pack %v: %v", vals, err)
		}
		// Only canonical bytes decode, so packing gives back the input exactly.
		if !bytes.Equal(pk, b) {
			t.Fatalf("pk round trip: %x -> %v -> %x", b, vals, []byte(pk))
		}
	})
}

func FuzzDecodePartialValue(f *testing.F) {
	addSeeds(f, "partial")
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePartialValue(b)
		if err != nil {
			return
		}
		if err := p.Held.Valid(); err != nil {
			t.Fatalf("decoded invalid seqs: %v", err)
		}
		enc := encodePartialValue(p)
		back, err := decodePartialValue(enc)
		if err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if back.LastOrd != p.LastOrd || !slices.Equal(back.Held, p.Held) {
			t.Fatalf("round trip: %+v -> %+v", p, back)
		}
		if enc2 := encodePartialValue(back); !bytes.Equal(enc2, enc) {
			t.Fatalf("re-encoding is not stable")
		}
	})
}

func FuzzDecodeRangesValue(f *testing.F) {
	addSeeds(f, "ranges")
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := DecodeRanges("ranges", b, false)
		if err != nil {
			return
		}
		if err := rs.Valid(); err != nil {
			t.Fatalf("decoded invalid ranges: %v", err)
		}
		if len(rs) > 0 && rs[0].First == 0 {
			t.Fatalf("decoded version 0: %v", rs)
		}
		enc := AppendRanges(nil, rs)
		back, err := DecodeRanges("ranges", enc, false)
		if err != nil || !slices.Equal(back, rs) {
			t.Fatalf("round trip: %v -> %v, %v", rs, back, err)
		}
	})
}

func FuzzParseJSONValue(f *testing.F) {
	addSeeds(f, "value_json")
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseJSONValue(b)
		if err != nil {
			return
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("parsed an invalid value: %v", err)
		}
		j := v.AppendJSON(nil)
		back, err := ParseJSONValue(j)
		if err != nil {
			t.Fatalf("parse %s (from %q): %v", j, b, err)
		}
		if !back.Equal(v) {
			t.Fatalf("round trip %q -> %v -> %s -> %v", b, v, j, back)
		}
		if j2 := back.AppendJSON(nil); !bytes.Equal(j2, j) {
			t.Fatalf("re-encoding is not stable: %s vs %s", j, j2)
		}
		if !json.Valid(j) {
			t.Fatalf("AppendJSON wrote invalid JSON %s", j)
		}
	})
}
