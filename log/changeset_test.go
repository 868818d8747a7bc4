package log

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func sampleChangeset() *Changeset {
	site := MustParseSiteID("00000000-0000-0000-0000-000000000001")
	return &Changeset{
		Site: site, Version: 7, TS: 1764000000123456789, Seqs: SeqRange{0, 4}, LastSeq: 4,
		Changes: []Change{
			{Table: "t", PK: MustPackPK(Integer(1)), CID: "x", Val: Integer(1), ColVersion: 1, CL: 1, Seq: 0},
			{Table: "t", PK: MustPackPK(Integer(1)), CID: "y", Val: Real(1), ColVersion: 2, CL: 1, Seq: 1},
			{Table: "t", PK: MustPackPK(Integer(2)), CID: "x", Val: Text("1"), ColVersion: 1, CL: 3, Seq: 2},
			{Table: "u", PK: MustPackPK(Text("a"), Integer(-1)), CID: "b", Val: Blob(nil), ColVersion: 1, CL: 1, Seq: 3},
			{Table: "u", PK: MustPackPK(Text("b"), Integer(2)), CID: SentinelCID, Val: Null(), ColVersion: 2, CL: 2, Seq: 4},
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

func TestChangesetValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(cs *Changeset)
	}{
		{"version 0", func(cs *Changeset) { cs.Version = 0 }},
		{"zero site", func(cs *Changeset) { cs.Site = SiteID{} }},
		{"seq outside last_seq", func(cs *Changeset) { cs.LastSeq = 3 }},
		{"reversed seqs", func(cs *Changeset) { cs.Seqs = SeqRange{4, 0} }},
		{"empty table", func(cs *Changeset) { cs.Changes[1].Table = "" }},
		{"unknown kind", func(cs *Changeset) { cs.Kind = 9 }},
		{"seq gap", func(cs *Changeset) { cs.Changes[2].Seq = 9 }},
		{"bad pk", func(cs *Changeset) { cs.Changes[0].PK = PK{1} }},
		{"cl 0", func(cs *Changeset) { cs.Changes[0].CL = 0 }},
		{"sentinel with value", func(cs *Changeset) { cs.Changes[4].Val = Integer(1) }},
	}
	if err := sampleChangeset().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := sampleChangeset()
			tt.mut(cs)
			err := cs.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if b, err := EncodeChangeset(cs); err == nil {
				if _, err := DecodeChangeset(b); err == nil {
					t.Fatal("decoder accepted an invalid changeset")
				}
			}
		})
	}
}
