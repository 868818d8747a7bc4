package log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func sampleChangeset() *Changeset {
	site := MustParseSiteID("00000000-0000-0000-0000-000000000001")
	return &Changeset{
		Site: site, Version: 7, TS: 1764000000123456789, Span: OrdRange{First: 0, Last: 4}, LastOrd: 4,
		Changes: []Change{
			{Table: "t", PK: MustPackPK(Integer(1)), CID: "x", Val: Integer(1), ColVersion: 1, CL: 1, Ord: 0},
			{Table: "t", PK: MustPackPK(Integer(1)), CID: "y", Val: Real(1), ColVersion: 2, CL: 1, Ord: 1},
			{Table: "t", PK: MustPackPK(Integer(2)), CID: "x", Val: Text("1"), ColVersion: 1, CL: 3, Ord: 2},
			{Table: "u", PK: MustPackPK(Text("a"), Integer(-1)), CID: "b", Val: Blob(nil), ColVersion: 1, CL: 1, Ord: 3},
			{Table: "u", PK: MustPackPK(Text("b"), Integer(2)), CID: SentinelCID, Val: Null(), ColVersion: 2, CL: 2, Ord: 4},
		},
	}
}

func TestChangesetRoundTrip(t *testing.T) {
	cs := sampleChangeset()
	b, err := EncodeChangeset(cs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeChangeset(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cs) {
		t.Fatalf("binary round trip:\n got %+v\nwant %+v", got, cs)
	}
	j, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	var back Changeset
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatalf("%s: %v", j, err)
	}
	if !reflect.DeepEqual(&back, cs) {
		t.Fatalf("json round trip:\n got %+v\nwant %+v", &back, cs)
	}
	for i := 1; i < len(b); i++ {
		if _, err := DecodeChangeset(b[:i]); err == nil {
			t.Fatalf("truncated to %d bytes decoded", i)
		}
	}
}

// toSchema turns the sample changeset into a valid schema changeset of as many elements.
func toSchema(cs *Changeset) {
	cs.Kind = KindSchema
	for i := range cs.Changes {
		c := &cs.Changes[i]
		c.CID, c.PK, c.Val, c.ColVersion, c.CL = SchemaColumn, MustPackPK(Text(fmt.Sprintf("c%d", i))), Text(fmt.Sprintf("c%d TEXT", i)), 0, 1
	}
}

// TestChangesetValidate checks that each invalid shape is refused with an error that names
// the problem, by Validate, by the binary decoder, by the JSON form and by Store.Append.
func TestChangesetValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(cs *Changeset)
		want string // the error must say this
		// jsonWant is what the JSON path says when it differs; "-" when the JSON form cannot
		// carry the defect (it replaces bytes that are not UTF-8).
		jsonWant string
	}{
		{"version 0", func(cs *Changeset) { cs.Version = 0 }, "version 0", ""},
		{"zero site", func(cs *Changeset) { cs.Site = SiteID{} }, "zero site id", ""},
		{"seq outside last_seq", func(cs *Changeset) { cs.LastOrd = 3 }, "seq range [0, 4] outside last_seq 3", ""},
		{"part outside last_seq", func(cs *Changeset) { cs.Span = OrdRange{First: 5, Last: 9}; cs.LastOrd = 7 }, "outside last_seq 7", ""},
		{"reversed seqs", func(cs *Changeset) { cs.Span = OrdRange{First: 4, Last: 0} }, "reversed", ""},
		{"empty table", func(cs *Changeset) { cs.Changes[1].Table = "" }, "empty table name", ""},
		{"table not utf8", func(cs *Changeset) { cs.Changes[1].Table = "t\xff" }, "not UTF-8", "-"},
		{"empty cid", func(cs *Changeset) { cs.Changes[1].CID = "" }, "empty cid", ""},
		{"unknown kind", func(cs *Changeset) { cs.Kind = 9 }, "unknown kind 9", `unknown changeset kind "kind(9)"`},
		{"empty kind with changes", func(cs *Changeset) { cs.Kind = KindEmpty }, "kind empty carries 5 changes", ""},
		{"schema element of unknown kind", func(cs *Changeset) { cs.Kind = KindSchema }, "schema element 0: unknown kind", ""},
		{"schema element not text", func(cs *Changeset) { toSchema(cs); cs.Changes[3].Val = Integer(1) }, "schema element 3: want text SQL", ""},
		{"schema element with col_version", func(cs *Changeset) { toSchema(cs); cs.Changes[0].ColVersion = 2 }, "schema element 0: want text SQL", ""},
		{"schema element of two names", func(cs *Changeset) { toSchema(cs); cs.Changes[2].PK = MustPackPK(Text("a"), Text("b")) }, "schema element 2: the key", ""},
		{"schema element of empty name", func(cs *Changeset) { toSchema(cs); cs.Changes[2].PK = MustPackPK(Text("")) }, "schema element 2: the key", ""},
		{"seq gap", func(cs *Changeset) { cs.Changes[2].Ord = 9 }, "has seq 9, want 2", ""},
		{"too few changes", func(cs *Changeset) { cs.Changes = cs.Changes[:4] }, "4 changes for seq range [0, 4]", ""},
		{"bad pk", func(cs *Changeset) { cs.Changes[0].PK = PK{1} }, "pk", ""},
		{"cl 0", func(cs *Changeset) { cs.Changes[0].CL = 0 }, "cl 0", ""},
		{"sentinel with value", func(cs *Changeset) { cs.Changes[4].Val = Integer(1) }, "sentinel with a value", ""},
		{"NaN", func(cs *Changeset) { cs.Changes[1].Val = Real(math.NaN()) }, "NaN", ""},
	}
	if err := sampleChangeset().Validate(); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, "", Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := sampleChangeset()
			tt.mut(cs)
			check := func(how string, err error) {
				t.Helper()
				want := tt.want
				if how == "json" && tt.jsonWant != "" {
					want = tt.jsonWant
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("%s = %v, want ErrInvalid", how, err)
				}
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("%s: error %q does not say %q", how, err, want)
				}
			}
			check("Validate", cs.Validate())
			_, err := s.Append(context.Background(), cs)
			check("Append", err)
			if b, err := EncodeChangeset(cs); err == nil {
				_, err := DecodeChangeset(b)
				check("DecodeChangeset", err)
			}
			if j, err := json.Marshal(cs); err == nil && tt.jsonWant != "-" {
				var back Changeset
				check("json", json.Unmarshal(j, &back))
			}
		})
	}
	if s.LastSeq() != 0 || s.Stats().Changes != 0 {
		t.Fatal("an invalid changeset was stored")
	}
	// Shapes the JSON form can get wrong on its own.
	for _, tt := range []struct{ json, want string }{
		{`{"site":"00000000-0000-0000-0000-000000000001","version":1,"seqs":[0],"last_seq":0,"kind":"empty"}`, "seqs has 1 elements"},
		{`{"site":"00000000-0000-0000-0000-000000000001","version":1,"seqs":[0,0,0],"last_seq":0,"kind":"empty"}`, "seqs has 3 elements"},
		{`{"site":"00000000-0000-0000-0000-000000000001","version":1,"seqs":[0,0],"last_seq":0,"kind":"bogus"}`, `unknown changeset kind "bogus"`},
		{`{"site":"00000000-0000-0000-0000-000000000001","version":1,"seqs":[0,0],"last_seq":0,"changes":[{"table":"t","pk":[],"cid":"c","val":1,"col_version":1,"cl":1,"seq":0}]}`, "pk: 0 columns"},
		{`{"site":"00000000-0000-0000-0000-000000000001","version":1,"ts":"3000-01-01T00:00:00Z","seqs":[0,0],"last_seq":0,"kind":"empty"}`, "outside 1970..2262"},
	} {
		var cs Changeset
		err := json.Unmarshal([]byte(tt.json), &cs)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("json %s: error %v, want one saying %q", tt.json, err, tt.want)
		}
	}
}

// TestDecodeHostileCount: a change count the remaining bytes cannot hold is refused before
// the decoder allocates for it.
func TestDecodeHostileCount(t *testing.T) {
	b := []byte{FormatV1, 0x99, 0xc4, 16}
	b = append(b, siteA[:]...)
	b = append(b, 1, 1, 0, 0, 0, 0)             // version, ts, first, last, last_seq, kind
	b = append(b, 0xdd, 0x00, 0x01, 0x86, 0xa0) // array32 of 100,000 changes
	b = append(b, bytes.Repeat([]byte{0xc0}, 100_000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeChangeset(b)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "100000 changes in 100000 bytes") {
		t.Fatalf("decode = %v", err)
	}
	// 100,000 Changes would be 14 MB; refusing costs a copy of the input at most.
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("allocated %d bytes to refuse a hostile count", n)
	}
}

// TestDecodedBytesDoNotAliasStrings: the decoder slices byte and string payloads out of one
// copy of its input, so writing into a decoded PK or blob (a caller owns them) must leave
// every decoded string (table, column, text value) as it was.
func TestDecodedBytesDoNotAliasStrings(t *testing.T) {
	cs := makeCS(siteB, 3, 6)
	for i := range cs.Changes {
		if i%2 == 1 {
			cs.Changes[i].Val = Blob([]byte(fmt.Sprintf("blob-%d-payload", i)))
		}
	}
	enc := cs.MustEncode()
	got, err := DecodeChangeset(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got.Changes {
		c := &got.Changes[i]
		for j := range c.PK {
			c.PK[j] = 0xff
		}
		for j := range c.Val.Blob {
			c.Val.Blob[j] = 0xff
		}
		c.PK = append(c.PK, 0xff) // capacity-capped: a copy, never the next payload
	}
	want, err := DecodeChangeset(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got.Changes {
		g, w := got.Changes[i], want.Changes[i]
		if g.Table != w.Table || g.CID != w.CID || g.Val.Text != w.Val.Text {
			t.Fatalf("change %d: writing its bytes changed a string: %q %q %q, want %q %q %q", i, g.Table, g.CID, g.Val.Text, w.Table, w.CID, w.Val.Text)
		}
	}
}
