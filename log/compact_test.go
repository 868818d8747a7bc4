package log

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// dropJudge supersedes, per version, the seqs listed (all of them when the list holds -1),
// naming siteB/1 as the winner.
func dropJudge(drop map[Version][]int) Judge {
	return func(_ context.Context, css []*Changeset) ([][]Dominator, error) {
		out := make([][]Dominator, len(css))
		for i, cs := range css {
			out[i] = make([]Dominator, len(cs.Changes))
			for _, s := range drop[cs.Version] {
				for j, c := range cs.Changes {
					if s == -1 || c.Ord == uint64(s) {
						out[i][j] = Dominator{Site: siteB, Version: 1}
					}
				}
			}
		}
		return out, nil
	}
}

// TestCompact: versions keep only their live changes (Compacted) or are cleared (gone from
// Read and the arrival index, held in the vector as a range); the last version is never
// cleared; schema changesets are never touched; all of it survives a reopen and Check.
func TestCompact(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxPartChanges: 2})
	mustAppend(t, s, makeCS(siteB, 1, 1)) // the "winner"; seq 1
	for v := Version(1); v <= 8; v++ {
		mustAppend(t, s, makeCS(siteA, v, 3))
	}
	schema := &Changeset{Site: siteA, Version: 9, TS: 5, Kind: KindSchema, LastOrd: 0, Span: OrdRange{First: 0, Last: 0},
		Changes: []Change{{Table: "t", PK: MustPackPK(Text("t")), CID: SchemaTable, Val: Text("CREATE TABLE t (a PRIMARY KEY)"), CL: 1}}}
	mustAppend(t, s, schema)
	mustAppend(t, s, makeCS(siteA, 10, 2)) // seq 11, the last
	before := s.Stats()
	judge := dropJudge(map[Version][]int{2: {1}, 3: {-1}, 4: {-1}, 5: {0, 2}, 9: {-1}, 10: {-1}})
	res, err := s.Compact(ctx, CompactOptions{Through: s.LastSeq(), Judge: judge, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Cleared != 2 || res.Rewritten != 3 || res.Dropped != 1+3+3+2+2 || res.Next != 11 {
		t.Fatalf("result %+v", res)
	}
	check := func(s *Store) {
		t.Helper()
		if err := s.Check(); err != nil {
			t.Fatalf("check: %v", err)
		}
		css, err := s.Read(0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []Seq
		for _, cs := range css {
			seqs = append(seqs, cs.Seq)
		}
		// siteB/1 is seq 1; siteA versions 1..8 are seqs 2..9; 3 and 4 (seqs 4, 5) cleared.
		if want := []Seq{1, 2, 3, 6, 7, 8, 9, 10, 11}; !reflect.DeepEqual(seqs, want) {
			t.Fatalf("seqs after compaction %v, want %v", seqs, want)
		}
		v2, err := s.Get(siteA, 2)
		if err != nil || !v2.Compacted || len(v2.Changes) != 2 || v2.Changes[0].Ord != 0 || v2.Changes[1].Ord != 2 || v2.Span != (OrdRange{First: 0, Last: 2}) {
			t.Fatalf("version 2: %+v, %v", v2, err)
		}
		if v5, _ := s.Get(siteA, 5); len(v5.Changes) != 1 || v5.Changes[0].Ord != 1 {
			t.Fatalf("version 5: %+v", v5)
		}
		if v9, _ := s.Get(siteA, 9); v9.Kind != KindSchema || len(v9.Changes) != 1 || v9.Compacted {
			t.Fatalf("a schema changeset was compacted: %+v", v9)
		}
		if v10, _ := s.Get(siteA, 10); !v10.Compacted || len(v10.Changes) != 0 {
			t.Fatalf("the last version: %+v", v10)
		}
		if _, err := s.Get(siteA, 3); !errors.Is(err, ErrNotFound) && err == nil {
			t.Fatalf("cleared version 3 still readable")
		}
		// A cleared version leaves no digest behind (a key per version ever written would
		// grow with the history); a trimmed one keeps its origin's.
		for v, want := range map[Version]bool{2: true, 3: false, 4: false, 5: true} {
			if d, err := s.heldDigest(siteA, v); err != nil || d.IsZero() == want {
				t.Fatalf("digest of version %d: %v, %v (want one: %v)", v, d, err, want)
			}
		}
		sv := s.Vector().Sites[siteA]
		if !reflect.DeepEqual(sv.Cleared, RangeSet{{First: 3, Last: 4}}) || !reflect.DeepEqual(sv.Versions, RangeSet{{First: 1, Last: 10}}) {
			t.Fatalf("vector: %+v", sv)
		}
		st := s.Stats()
		if st.Cleared != 2 || st.Changes != before.Changes-res.Dropped || st.Bytes >= before.Bytes || st.HorizonSeq != 11 {
			t.Fatalf("stats %+v (before %+v)", st, before)
		}
		if s.LastSeq() != 11 {
			t.Fatalf("last seq %d", s.LastSeq())
		}
	}
	check(s)
	// A second pass finds nothing new.
	if res, err := s.Compact(ctx, CompactOptions{Through: s.LastSeq(), Judge: judge}); err != nil || res.Dropped != 0 {
		t.Fatalf("second pass: %+v, %v", res, err)
	}
	// Tail from 0 reads past the holes.
	tctx, cancel := context.WithCancel(ctx)
	n := 0
	for cs, err := range s.Tail(tctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; cs.Seq == 11 {
			cancel()
			break
		}
	}
	cancel()
	if n != 9 {
		t.Fatalf("tail saw %d changesets", n)
	}
	s.Close()
	s2 := openStore(t, dir, Options{})
	check(s2)
	// Appends go on after the holes.
	if v, seq, err := s2.AppendLocal(ctx, makeCS(siteA, 0, 1)); err != nil || seq != 12 || v != 1 {
		t.Fatalf("append local after compaction: v%d seq %d %v", v, seq, err)
	}
	if err := s2.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestAppendCleared: a peer's cleared ranges become held (and cleared) here; parts held of
// those versions go; versions held complete stay as they are.
func TestAppendCleared(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "", Options{})
	mustAppend(t, s, makeCS(siteB, 2, 1))
	full := makeCS(siteB, 5, 4)
	mustAppend(t, s, slicePart(full, 0, 1))
	added, err := s.AppendCleared(ctx, siteB, RangeSet{{First: 1, Last: 6}})
	if err != nil || added != 5 {
		t.Fatalf("added %d, %v", added, err)
	}
	sv := s.Vector().Sites[siteB]
	if !reflect.DeepEqual(sv.Versions, RangeSet{{First: 1, Last: 6}}) || !reflect.DeepEqual(sv.Cleared, RangeSet{{First: 1, Last: 1}, {First: 3, Last: 6}}) || len(sv.Partials) != 0 {
		t.Fatalf("vector %+v", sv)
	}
	if st := s.Stats(); st.Changes != 1 || st.Cleared != 5 {
		t.Fatalf("stats %+v", st)
	}
	// The rest of version 5 is a duplicate now.
	if res := mustAppend(t, s, slicePart(full, 2, 3)); res[0].New {
		t.Fatal("a part of a cleared version was stored")
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendCleared(ctx, siteB, RangeSet{{First: 0, Last: 1}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("version 0: %v", err)
	}
	if _, err := s.AppendCleared(ctx, siteB, RangeSet{{First: 4, Last: 3}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reversed range: %v", err)
	}
	// Our own cleared versions move the local counter past them.
	if _, err := s.AppendCleared(ctx, s.SiteID(), RangeSet{{First: 1, Last: 7}}); err != nil {
		t.Fatal(err)
	}
	if s.NextLocalVersion() != 8 {
		t.Fatalf("next local %d", s.NextLocalVersion())
	}
}

// TestCompactedEncodings: a compacted changeset survives both encodings (and a store that
// cuts it into parts); shapes a compacted changeset cannot have are refused.
func TestCompactedEncodings(t *testing.T) {
	cs := makeCS(siteA, 3, 6)
	cs.Changes = []Change{cs.Changes[1], cs.Changes[4]}
	cs.Compacted = true
	if err := cs.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeChangeset(cs.MustEncode())
	if err != nil || !got.Compacted {
		t.Fatalf("binary: %+v, %v", got, err)
	}
	sameChangeset(t, got, cs)
	j, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	var back Changeset
	if err := json.Unmarshal(j, &back); err != nil || !back.Compacted {
		t.Fatalf("json %s: %+v, %v", j, back, err)
	}
	sameChangeset(t, &back, cs)
	s := openStore(t, "", Options{MaxPartChanges: 1})
	mustAppend(t, s, cs)
	if g, err := s.Get(siteA, 3); err != nil || !g.Compacted {
		t.Fatalf("stored: %+v, %v", g, err)
	} else {
		sameChangeset(t, g, cs)
	}
	bad := *cs
	bad.Changes = []Change{cs.Changes[1], cs.Changes[0]}
	if err := bad.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("out of order: %v", err)
	}
	bad = *cs
	bad.Kind = KindEmpty
	bad.Changes = nil
	if err := bad.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("compacted empty kind: %v", err)
	}
}

// TestCompactHorizon: the replay horizon covers the arrival seq of every winner a dropped
// change lost to, also one that arrived after the pass's Through; a change whose winner
// the log does not hold is kept; cleared versions from a peer move the time horizon to now.
func TestCompactHorizon(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "", Options{})
	for v := Version(1); v <= 3; v++ {
		mustAppend(t, s, makeCS(siteA, v, 1)) // seqs 1..3
	}
	mustAppend(t, s, makeCS(siteB, 1, 1)) // seq 4: the winner, folded after Through
	mustAppend(t, s, makeCS(siteA, 4, 1)) // seq 5
	judge := func(_ context.Context, css []*Changeset) ([][]Dominator, error) {
		out := make([][]Dominator, len(css))
		for i, cs := range css {
			out[i] = make([]Dominator, len(cs.Changes))
			switch cs.Version {
			case 1:
				out[i][0] = Dominator{Site: siteB, Version: 1}
			case 2:
				out[i][0] = Dominator{Site: siteB, Version: 9} // not in the log
			}
		}
		return out, nil
	}
	res, err := s.Compact(ctx, CompactOptions{Through: 3, Judge: judge})
	if err != nil || res.Cleared != 1 || res.Dropped != 1 {
		t.Fatalf("compact: %+v, %v", res, err)
	}
	if _, err := s.Get(siteA, 2); err != nil {
		t.Fatalf("the change whose winner the log lacks was dropped: %v", err)
	}
	st := s.Stats()
	if st.HorizonSeq != 4 || st.HorizonTS != makeCS(siteB, 1, 1).TS {
		t.Fatalf("horizon seq %d ts %d, want 4 (the winner's arrival) and its commit time", st.HorizonSeq, st.HorizonTS)
	}
	before := time.Now()
	if _, err := s.AppendCleared(ctx, SiteID{15: 0xcc}, RangeSet{{First: 1, Last: 2}}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.HorizonSeq != 4 || st.HorizonTS.Time().Before(before) {
		t.Fatalf("after cleared versions from a peer: horizon seq %d ts %s, want 4 and now", st.HorizonSeq, st.HorizonTS)
	}
}

// TestCompactCandidates: a pass over Candidates judges those versions and no other (a
// version the judge would drop stays when it is not named), skips what is not held or is
// cleared, and hands back in Retry what holds a superseded change that cannot go yet: a
// candidate not folded by Through, one whose winner arrived after the pass began, one inside
// the window; not one whose winner the log does not hold (kept, as by a full pass).
func TestCompactCandidates(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "", Options{})
	mustAppend(t, s, makeCS(siteB, 1, 1)) // seq 1: the winner
	for v := Version(1); v <= 7; v++ {
		mustAppend(t, s, makeCS(siteA, v, 3)) // seqs 2..8
	}
	var judged []Version
	drop := dropJudge(map[Version][]int{2: {-1}, 3: {-1}, 4: {0}, 6: {-1}, 7: {-1}})
	judge := func(ctx context.Context, css []*Changeset) ([][]Dominator, error) {
		out, err := drop(ctx, css)
		for i, cs := range css {
			judged = append(judged, cs.Version)
			switch cs.Version {
			case 5:
				out[i][1] = Dominator{Site: siteB, Version: 2} // a winner appended during the pass
			case 4:
				out[i][2] = Dominator{Site: siteB, Version: 9} // a winner the log does not hold
			}
		}
		return out, err
	}
	appendLate, appended := judge, false
	judge = func(ctx context.Context, css []*Changeset) ([][]Dominator, error) {
		if !appended {
			appended = true
			mustAppend(t, s, makeCS(siteB, 2, 1)) // seq 9: after the pass read the arrivals
		}
		return appendLate(ctx, css)
	}
	cands := map[SiteID]RangeSet{siteA: {{First: 2, Last: 2}, {First: 4, Last: 5}, {First: 7, Last: 40}}, siteB: {{First: 100, Last: 1 << 40}}}
	res, err := s.Compact(ctx, CompactOptions{Through: 7, Candidates: cands, Judge: judge, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(judged, []Version{2, 4, 5}) || res.Judged != 3 || res.Scanned != 3 {
		t.Fatalf("judged %v (%+v), want versions 2, 4 and 5 only", judged, res)
	}
	if res.Cleared != 1 || res.Rewritten != 1 || res.Dropped != 3+1 {
		t.Fatalf("result %+v", res)
	}
	want := []Retry{{Site: siteA, Version: 7}, {Site: siteA, Version: 5}} // 7: seq 8 > Through
	if !reflect.DeepEqual(res.Retry, want) {
		t.Fatalf("retry %+v, want %+v", res.Retry, want)
	}
	if v3, err := s.Get(siteA, 3); err != nil || len(v3.Changes) != 3 {
		t.Fatalf("version 3, not a candidate, was touched: %+v, %v", v3, err)
	}
	if st := s.Stats(); st.HorizonSeq != 5 || st.Cleared != 1 {
		t.Fatalf("stats after the pass: %+v, want horizon seq 5 (version 4's arrival)", st)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}

	// Again, with the cleared version named: it is skipped; inside a window, versions
	// wait in Retry until their own commit time or their winner's has left it.
	judged = nil
	cands = map[SiteID]RangeSet{siteA: {{First: 2, Last: 3}, {First: 6, Last: 6}}}
	horizon := makeCS(siteA, 6, 1).TS // version 6 is in the window, 3's winner (siteB/1) is not
	res, err = s.Compact(ctx, CompactOptions{Through: s.LastSeq(), Horizon: horizon, Candidates: cands, Judge: judge})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(judged, []Version{3}) || res.Cleared != 1 {
		t.Fatalf("judged %v (%+v), want version 3 cleared", judged, res)
	}
	if want := []Retry{{Site: siteA, Version: 6, NotBefore: horizon}}; !reflect.DeepEqual(res.Retry, want) {
		t.Fatalf("retry %+v, want %+v", res.Retry, want)
	}
}

// TestCompactCandidatesKeepSchema: a schema changeset named among an incremental pass's
// candidates is never handed to the judge nor touched, even by a judge that would drop
// everything (issue 16: every node needs every schema changeset to compute the schema);
// the data version beside it is cleared.
func TestCompactCandidatesKeepSchema(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "", Options{})
	mustAppend(t, s, makeCS(siteB, 1, 1)) // the winner
	schema := &Changeset{Site: siteA, Version: 1, TS: 5, Kind: KindSchema, LastOrd: 1, Span: OrdRange{First: 0, Last: 1},
		Changes: []Change{
			{Table: "t", PK: MustPackPK(Text("t")), CID: SchemaTable, Val: Text("CREATE TABLE t (a INTEGER PRIMARY KEY NOT NULL)"), CL: 1},
			{Table: "t", PK: MustPackPK(Text("b")), CID: SchemaColumn, Val: Text("b TEXT"), CL: 1, Ord: 1},
		}}
	mustAppend(t, s, schema)
	mustAppend(t, s, makeCS(siteA, 2, 2))
	mustAppend(t, s, makeCS(siteA, 3, 1)) // the last version, never cleared
	var judged []Version
	all := dropJudge(map[Version][]int{1: {-1}, 2: {-1}})
	judge := func(ctx context.Context, css []*Changeset) ([][]Dominator, error) {
		for _, cs := range css {
			judged = append(judged, cs.Version)
		}
		return all(ctx, css)
	}
	res, err := s.Compact(ctx, CompactOptions{Through: s.LastSeq(), Candidates: map[SiteID]RangeSet{siteA: {{First: 1, Last: 2}}}, Judge: judge})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(judged, []Version{2}) || res.Cleared != 1 {
		t.Fatalf("judged %v (%+v), want version 2 only, cleared", judged, res)
	}
	got, err := s.Get(siteA, 1)
	if err != nil || got.Kind != KindSchema || len(got.Changes) != 2 || got.Compacted {
		t.Fatalf("the schema changeset after the pass: %+v, %v", got, err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}
