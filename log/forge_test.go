package log

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

func forgeStore(t *testing.T, dir string) (*Store, *testutil.LockedBuffer) {
	t.Helper()
	buf := &testutil.LockedBuffer{}
	s := openStore(t, dir, Options{SiteID: siteA, Logger: slog.New(slog.NewTextHandler(buf, nil))})
	return s, buf
}

func ingest(t *testing.T, s *Store, css ...*Changeset) []AppendResult {
	t.Helper()
	res, err := s.Ingest(context.Background(), css...)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	return res
}

func appendLocal(t *testing.T, s *Store, n int) {
	t.Helper()
	for range n {
		cs := makeCS(siteA, 1, 2)
		if _, _, err := s.AppendLocal(context.Background(), cs); err != nil {
			t.Fatal(err)
		}
	}
}

// A node refuses versions of its own site it did not write, from any remote path, without
// moving its local counter (on main, a forged version 1000 made the next local write 1001);
// the other changesets of the same call are stored.
func TestIngestRefusesForgedOwnVersions(t *testing.T) {
	s, logs := forgeStore(t, "")
	appendLocal(t, s, 3)
	forged := makeCS(siteA, 1000, 2)
	other := makeCS(siteB, 1, 2)
	res := ingest(t, s, forged, other, makeCS(siteA, 4, 1))
	if !errors.Is(res[0].Refused, ErrForged) || !errors.Is(res[2].Refused, ErrForged) || res[0].New {
		t.Fatalf("forged versions: %+v", res)
	}
	if res[1].Refused != nil || !res[1].New || !s.Contains(siteB, 1) {
		t.Fatalf("the other site's changeset was not stored: %+v", res[1])
	}
	if s.Contains(siteA, 1000) || s.Contains(siteA, 4) {
		t.Fatal("a forged version was stored")
	}
	if v := s.NextLocalVersion(); v != 4 {
		t.Fatalf("next local version %d, want 4", v)
	}
	if err := s.Screen(forged); !errors.Is(err, ErrForged) {
		t.Fatalf("screen = %v, want ErrForged", err)
	}
	// A copy of a version it did write is an ordinary duplicate.
	own, err := s.Get(siteA, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res := ingest(t, s, own); res[0].Refused != nil || res[0].New || !res[0].Complete {
		t.Fatalf("own held version: %+v", res[0])
	}
	// Again: counted again (Screen counts too: the API refuses with it), logged once.
	ingest(t, s, forged)
	if st := s.Forgeries(); st.Forged != 4 || st.Collisions != 0 {
		t.Fatalf("forgeries = %+v", st)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"refused a version of this node's own site"); n != 2 {
		t.Fatalf("%d warn lines, want one per version:\n%s", n, logs)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64 = -1
	for _, mf := range mfs {
		if mf.GetName() == "patina_log_forged_refused_total" {
			v = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if v != 4 {
		t.Fatalf("patina_log_forged_refused_total = %v, want 4", v)
	}
}

// A (site, version) that arrives with other content than the copy held is refused and
// reported on both sides: at a node holding the forged copy when the real one comes, and at
// the real origin when the forged copy comes back to it. On main both were silently kept,
// leaving two nodes different with identical vectors.
func TestDigestCollision(t *testing.T) {
	s, logs := forgeStore(t, "")
	first := makeCS(siteB, 7, 3)
	ingest(t, s, first)
	second := makeCS(siteB, 7, 3)
	second.Changes[1].Val = Text("forged")
	res := ingest(t, s, second)
	if !errors.Is(res[0].Refused, ErrCollision) || res[0].New {
		t.Fatalf("collision not refused: %+v", res[0])
	}
	got, err := s.Get(siteB, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got.Changes[1].Val.Text != first.Changes[1].Val.Text {
		t.Fatalf("the held copy was replaced: %v", got.Changes[1].Val)
	}
	want, _ := first.ComputeDigest()
	if got.Digest != want {
		t.Fatalf("held digest %v, want %v", got.Digest, want)
	}
	// At the origin: its own version 1 written locally, a different copy arrives.
	appendLocal(t, s, 1)
	own, err := s.Get(siteA, 1)
	if err != nil {
		t.Fatal(err)
	}
	fake := *own
	fake.Digest = Digest{}
	fake.Changes = append([]Change(nil), own.Changes...)
	fake.Changes[0].Val = Text("not mine")
	if res := ingest(t, s, &fake); !errors.Is(res[0].Refused, ErrCollision) {
		t.Fatalf("origin: %+v", res[0])
	}
	if st := s.Forgeries(); st.Collisions != 2 {
		t.Fatalf("forgeries = %+v", st)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"refused a version held with different content") {
		t.Fatalf("no warn line:\n%s", logs)
	}
	// The same content again is a plain duplicate.
	if res := ingest(t, s, makeCS(siteB, 7, 3)); res[0].Refused != nil {
		t.Fatalf("identical copy refused: %v", res[0].Refused)
	}
}

// A digest that does not match the content it comes with is invalid input.
func TestDigestMustMatchContent(t *testing.T) {
	s, _ := forgeStore(t, "")
	cs := makeCS(siteB, 1, 2)
	cs.Digest, _ = makeCS(siteB, 2, 2).ComputeDigest()
	if _, err := s.Ingest(context.Background(), cs); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ingest = %v, want ErrInvalid", err)
	}
	if _, err := s.Append(context.Background(), cs); !errors.Is(err, ErrInvalid) {
		t.Fatalf("append = %v, want ErrInvalid", err)
	}
}

// Parts carry the digest of the whole version: the receiver records it when the version is
// complete and compares a later whole copy with it.
func TestDigestThroughParts(t *testing.T) {
	s, _ := forgeStore(t, "")
	cs := makeCS(siteB, 3, 10)
	cs.Digest, _ = cs.ComputeDigest()
	ingest(t, s, slicePart(cs, 0, 4))
	ingest(t, s, slicePart(cs, 5, 9))
	if d, err := s.heldDigest(siteB, 3); err != nil || d != cs.Digest {
		t.Fatalf("held digest %v, %v; want %v", d, err, cs.Digest)
	}
	other := makeCS(siteB, 3, 10)
	other.Changes[9].CL = 2
	if res := ingest(t, s, other); !errors.Is(res[0].Refused, ErrCollision) {
		t.Fatalf("%+v", res[0])
	}
}

// A restore as an existing site is the explicit exception: versions up to the cluster's head
// of that site come back from peers, the next local version is after them, and the trust
// survives a restart.
func TestTrustOwnVersions(t *testing.T) {
	dir := t.TempDir()
	s, _ := forgeStore(t, dir)
	appendLocal(t, s, 2)
	if err := s.TrustOwnVersions(5); err != nil {
		t.Fatal(err)
	}
	if v := s.NextLocalVersion(); v != 6 {
		t.Fatalf("next local %d, want 6", v)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = forgeStore(t, dir)
	res := ingest(t, s, makeCS(siteA, 4, 1), makeCS(siteA, 6, 1))
	if res[0].Refused != nil || !res[0].New {
		t.Fatalf("trusted version refused: %+v", res[0])
	}
	if !errors.Is(res[1].Refused, ErrForged) {
		t.Fatalf("version past the trusted head: %+v", res[1])
	}
	if v := s.NextLocalVersion(); v != 6 {
		t.Fatalf("next local after restart %d, want 6", v)
	}
}

// Changesets encoded before digests (9 or 10 fields) still decode; a digest round-trips in
// both forms; the digest ignores TS and arrival seq but covers every change field.
func TestDigestFormat(t *testing.T) {
	cs := makeCS(siteB, 1, 3)
	for _, compacted := range []bool{false, true} {
		old := *cs
		old.Compacted = compacted
		if compacted {
			old.Changes = old.Changes[:2]
		}
		b := old.MustEncode() // no digest: exactly the bytes the format wrote before it
		want := byte(0x99)    // fixarray of 9
		if compacted {
			want = 0x9a
		}
		if b[1] != want {
			t.Fatalf("old layout header %#x, want %#x", b[1], want)
		}
		got, err := DecodeChangeset(b)
		if err != nil || !got.Digest.IsZero() || got.Compacted != compacted {
			t.Fatalf("decode old layout: %v %+v", err, got)
		}
	}
	d, ok := cs.ComputeDigest()
	if !ok || d.IsZero() {
		t.Fatal("no digest")
	}
	cs.Digest = d
	b := cs.MustEncode()
	if b[1] != 0x9b {
		t.Fatalf("header %#x, want fixarray of 11", b[1])
	}
	got, err := DecodeChangeset(b)
	if err != nil || got.Digest != d {
		t.Fatalf("round trip: %v, %v", err, got)
	}
	j, err := cs.MarshalJSON()
	if err != nil || !strings.Contains(string(j), `"digest":"`+d.String()+`"`) {
		t.Fatalf("json: %s %v", j, err)
	}
	var back Changeset
	if err := back.UnmarshalJSON(j); err != nil || back.Digest != d {
		t.Fatalf("json round trip: %v %v", err, back.Digest)
	}
	same := makeCS(siteB, 1, 3)
	same.TS, same.Seq = 42, 9
	if d2, _ := same.ComputeDigest(); d2 != d {
		t.Fatal("the digest depends on ts or arrival seq")
	}
	for i, mut := range []func(c *Change){
		func(c *Change) { c.Table = "u" }, func(c *Change) { c.PK = MustPackPK(Integer(99)) },
		func(c *Change) { c.CID = "d" }, func(c *Change) { c.Val = Integer(1) },
		func(c *Change) { c.ColVersion++ }, func(c *Change) { c.CL++ },
	} {
		m := makeCS(siteB, 1, 3)
		mut(&m.Changes[1])
		if d2, _ := m.ComputeDigest(); d2 == d {
			t.Fatalf("mutation %d leaves the digest unchanged", i)
		}
	}
	if _, ok := slicePart(cs, 0, 1).ComputeDigest(); ok {
		t.Fatal("a part has a computable digest")
	}
}
