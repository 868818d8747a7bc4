package log

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/patinadb/patina/internal/testutil"
)

var (
	siteA = MustParseSiteID("00000000-0000-0000-0000-00000000000a")
	siteB = MustParseSiteID("00000000-0000-0000-0000-00000000000b")
)

// openStore opens a store in a fresh temp dir (or dir, when given) and closes it at cleanup.
func openStore(tb testing.TB, dir string, opts Options) *Store {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	s, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// makeCS builds a valid data changeset of n changes (seqs 0..n-1) of site/version.
func makeCS(site SiteID, v Version, n int) *Changeset {
	cs := &Changeset{Site: site, Version: v, TS: Timestamp(1e18 + uint64(v)), LastOrd: uint64(n - 1), Span: OrdRange{First: 0, Last: uint64(n - 1)}}
	for i := range n {
		cs.Changes = append(cs.Changes, Change{
			Table: "t", PK: MustPackPK(Integer(int64(v)), Integer(int64(i))), CID: "c",
			Val: Text(fmt.Sprintf("%v/%d/%d", site, v, i)), ColVersion: 1, CL: 1, Ord: uint64(i),
		})
	}
	return cs
}

// slicePart returns the part of cs holding seqs first..last.
func slicePart(cs *Changeset, first, last uint64) *Changeset {
	p := *cs
	p.Span = OrdRange{First: first, Last: last}
	p.Changes = cs.Changes[first : last+1]
	return &p
}

func mustAppend(tb testing.TB, s *Store, css ...*Changeset) []AppendResult {
	tb.Helper()
	res, err := s.Append(context.Background(), css...)
	if err != nil {
		tb.Fatalf("append: %v", err)
	}
	return res
}

func sameChangeset(tb testing.TB, got, want *Changeset) {
	tb.Helper()
	g, w := *got, *want
	g.Seq, w.Seq = 0, 0
	if !reflect.DeepEqual(g.Changes, w.Changes) || g.Site != w.Site || g.Version != w.Version || g.Span != w.Span || g.LastOrd != w.LastOrd || g.TS != w.TS || g.Kind != w.Kind {
		tb.Fatalf("changeset %v/%d differs:\n got %+v\nwant %+v", w.Site, w.Version, g, w)
	}
}

func TestStoreAppendReadGet(t *testing.T) {
	s := openStore(t, "", Options{SiteID: siteA})
	if s.SiteID() != siteA {
		t.Fatalf("site = %v", s.SiteID())
	}
	c1, c2 := makeCS(siteB, 1, 3), makeCS(siteB, 2, 1)
	res := mustAppend(t, s, c1, c2)
	want := []AppendResult{{New: true, Complete: true, Seq: 1}, {New: true, Complete: true, Seq: 2}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("results = %+v, want %+v", res, want)
	}
	// Idempotent: the same again is a no-op.
	res = mustAppend(t, s, c1)
	if res[0].New || !res[0].Complete || res[0].Seq != 0 {
		t.Fatalf("duplicate result = %+v", res[0])
	}
	if s.LastSeq() != 2 {
		t.Fatalf("last seq = %d", s.LastSeq())
	}
	got, err := s.Read(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("read %d changesets: %+v", len(got), got)
	}
	sameChangeset(t, got[0], c1)
	sameChangeset(t, got[1], c2)
	g, err := s.Get(siteB, 1)
	if err != nil {
		t.Fatal(err)
	}
	sameChangeset(t, g, c1)
	if _, err := s.Get(siteB, 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if got, _ := s.Read(1, 10); len(got) != 1 || got[0].Version != 2 {
		t.Fatalf("read after 1: %+v", got)
	}
	if got, _ := s.Read(2, 10); len(got) != 0 {
		t.Fatalf("read after end: %+v", got)
	}
	st := s.Stats()
	if st.Versions != 2 || st.Changes != 4 || st.LastSeq != 2 || st.Sites != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestStoreInvalid(t *testing.T) {
	s := openStore(t, "", Options{})
	bad := makeCS(siteB, 1, 2)
	bad.Changes[1].Table = ""
	if _, err := s.Append(context.Background(), makeCS(siteB, 2, 1), bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("append invalid: %v", err)
	}
	if s.LastSeq() != 0 {
		t.Fatal("an invalid call stored something")
	}
	if _, _, err := s.AppendLocal(context.Background(), &Changeset{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("append empty local: %v", err)
	}
	if s.NextLocalVersion() != 1 {
		t.Fatalf("next local = %d after a refused append", s.NextLocalVersion())
	}
	// Parts that disagree about last_seq.
	cs := makeCS(siteB, 5, 10)
	mustAppend(t, s, slicePart(cs, 0, 3))
	other := makeCS(siteB, 5, 12)
	if _, err := s.Append(context.Background(), slicePart(other, 4, 5)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("conflicting last_seq: %v", err)
	}
}

func TestStoreLocal(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA})
	for i := 1; i <= 3; i++ {
		if nv := s.NextLocalVersion(); nv != Version(i) {
			t.Fatalf("next local = %d, want %d", nv, i)
		}
		cs := &Changeset{Changes: makeCS(siteA, 1, 2).Changes}
		v, seq, err := s.AppendLocal(context.Background(), cs)
		if err != nil {
			t.Fatal(err)
		}
		if v != Version(i) || seq != Seq(i) || cs.Version != v || cs.Site != siteA || cs.LastOrd != 1 || cs.TS == 0 {
			t.Fatalf("append local %d: v=%d seq=%d cs=%+v", i, v, seq, cs)
		}
	}
	s.Close()
	s = openStore(t, dir, Options{})
	if nv := s.NextLocalVersion(); nv != 4 {
		t.Fatalf("next local after reopen = %d", nv)
	}
}

func TestStoreSiteMismatch(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA})
	s.Close()
	if _, err := Open(dir, Options{SiteID: siteB}); !errors.Is(err, ErrSiteMismatch) {
		t.Fatalf("open with another site: %v", err)
	}
	s = openStore(t, dir, Options{SiteID: siteA})
	if s.SiteID() != siteA {
		t.Fatal("site changed")
	}
	s.Close()
	s = openStore(t, dir, Options{})
	if s.SiteID() != siteA {
		t.Fatal("site changed")
	}
	fresh := openStore(t, "", Options{})
	if fresh.SiteID().IsZero() {
		t.Fatal("random site id is zero")
	}
}

func TestStorePartsOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxPartChanges: 4})
	cs := makeCS(siteB, 1, 10)
	p1, p2, p3 := slicePart(cs, 0, 3), slicePart(cs, 4, 6), slicePart(cs, 7, 9)
	steps := []struct {
		part     *Changeset
		new      bool
		complete bool
	}{
		{p3, true, false},
		{p3, false, false},                  // duplicate part
		{slicePart(cs, 8, 9), false, false}, // covered by held seqs
		{p1, true, false},
		{slicePart(cs, 2, 5), true, false}, // overlaps: only 4..5 are new
	}
	for i, st := range steps {
		res := mustAppend(t, s, st.part)
		if res[0].New != st.new || res[0].Complete != st.complete {
			t.Fatalf("step %d: %+v", i, res[0])
		}
	}
	if _, err := s.Get(siteB, 1); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("get partial: %v", err)
	}
	if s.LastSeq() != 0 {
		t.Fatal("a partial version got a seq")
	}
	p := s.Vector().Partial(siteB, 1)
	if p == nil || !reflect.DeepEqual(p.Held, RangeSet{{First: 0, Last: 5}, {First: 7, Last: 9}}) {
		t.Fatalf("partial = %+v", p)
	}
	// Reopen keeps the partial.
	s.Close()
	s = openStore(t, dir, Options{MaxPartChanges: 4})
	if p := s.Vector().Partial(siteB, 1); p == nil || p.LastOrd != 9 {
		t.Fatalf("partial after reopen = %+v", p)
	}
	var scanned int
	for part, err := range s.Scan(siteB, 1, 1) {
		if err != nil {
			t.Fatal(err)
		}
		scanned += len(part.Changes)
	}
	if scanned != 9 {
		t.Fatalf("scan of the partial version gave %d changes, want 9", scanned)
	}
	res := mustAppend(t, s, p2)
	if !res[0].New || !res[0].Complete || res[0].Seq != 1 {
		t.Fatalf("completing part: %+v", res[0])
	}
	got, err := s.Get(siteB, 1)
	if err != nil {
		t.Fatal(err)
	}
	sameChangeset(t, got, cs)
	if v := s.Vector(); v.Partial(siteB, 1) != nil || !v.Contains(siteB, 1) {
		t.Fatal("vector still partial")
	}
	s.Close()
	s = openStore(t, dir, Options{MaxPartChanges: 4})
	if v := s.Vector(); v.Partial(siteB, 1) != nil || !v.Contains(siteB, 1) {
		t.Fatal("vector still partial after reopen")
	}
	rd, err := s.Read(0, 10)
	if err != nil || len(rd) != 1 {
		t.Fatalf("read: %v %d", err, len(rd))
	}
	sameChangeset(t, rd[0], cs)
	// A big changeset is cut into parts on the way in and assembled on the way out.
	big := makeCS(siteB, 2, 11)
	res = mustAppend(t, s, big)
	if !res[0].New || !res[0].Complete || res[0].Seq != 2 {
		t.Fatalf("big: %+v", res[0])
	}
	n := 0
	for part, err := range s.Scan(siteB, 2, 2) {
		if err != nil {
			t.Fatal(err)
		}
		if len(part.Changes) > 4 {
			t.Fatalf("stored part of %d changes", len(part.Changes))
		}
		n++
	}
	if n != 3 {
		t.Fatalf("big stored as %d parts, want 3", n)
	}
	got, err = s.Get(siteB, 2)
	if err != nil {
		t.Fatal(err)
	}
	sameChangeset(t, got, big)
}

func TestStoreReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	var all []*Changeset
	for v := Version(1); v <= 50; v++ {
		if v == 20 {
			continue // a gap
		}
		cs := makeCS(siteB, v, 1+int(v%5))
		all = append(all, cs)
		mustAppend(t, s, cs)
	}
	want := s.Vector()
	st := s.Stats()
	s.Close()
	if _, err := s.Read(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := s.Append(context.Background(), makeCS(siteB, 99, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	s = openStore(t, dir, Options{})
	if !s.Vector().Equal(want) {
		t.Fatalf("vector after reopen %v, want %v", s.Vector(), want)
	}
	if got := s.Vector().Needs()[siteB]; !reflect.DeepEqual(got, RangeSet{{First: 20, Last: 20}}) {
		t.Fatalf("needs = %v", got)
	}
	st2 := s.Stats()
	if st2.Changes != st.Changes || st2.Bytes != st.Bytes || st2.LastSeq != st.LastSeq || st2.Versions != 49 {
		t.Fatalf("stats after reopen %+v, before %+v", st2, st)
	}
	got, err := s.Read(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Fatalf("read %d, want %d", len(got), len(all))
	}
	for i := range all {
		sameChangeset(t, got[i], all[i])
	}
	if err := s.SetMeta("fold", []byte("42")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Meta("fold"); err != nil || string(v) != "42" {
		t.Fatalf("meta = %q, %v", v, err)
	}
	if v, err := s.Meta("unset"); err != nil || v != nil {
		t.Fatalf("unset meta = %q, %v", v, err)
	}
}

func TestStoreTailConcurrent(t *testing.T) {
	s := openStore(t, "", Options{NoSync: true})
	const writers, perWriter = 4, 100
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const tails = 3
	var wg sync.WaitGroup
	errs := make(chan error, tails+writers)
	for range tails {
		wg.Go(func() {
			next := Seq(1)
			for cs, err := range s.Tail(ctx, 0) {
				if err != nil {
					errs <- err
					return
				}
				if cs.Seq != next {
					errs <- fmt.Errorf("tail got seq %d, want %d", cs.Seq, next)
					return
				}
				if err := cs.Validate(); err != nil {
					errs <- err
					return
				}
				if next == writers*perWriter {
					return
				}
				next++
			}
		})
	}
	// A tail that takes one changeset and then stops reading, suspended inside its yield
	// for the rest of the test, must not block appends or other tails.
	next, stop := iter.Pull2(s.Tail(ctx, 0))
	defer stop()
	stuckGot := make(chan error, 1)
	go func() {
		_, err, _ := next()
		stuckGot <- err
	}()
	for w := range writers {
		wg.Go(func() {
			site := SiteID{byte(w + 1)}
			for v := 1; v <= perWriter; v++ {
				if _, err := s.Append(ctx, makeCS(site, Version(v), 1+v%7)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s.LastSeq() != writers*perWriter {
		t.Fatalf("last seq %d", s.LastSeq())
	}
	if err := <-stuckGot; err != nil {
		t.Fatalf("stuck tail: %v", err)
	}
}

func TestTailBeyondAndCancel(t *testing.T) {
	s := openStore(t, "", Options{})
	for _, err := range s.Tail(context.Background(), 5) {
		if !errors.Is(err, ErrSeqBeyondLog) {
			t.Fatalf("tail beyond: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		for _, err := range s.Tail(ctx, 0) {
			done <- err
			return
		}
	}()
	mustAppend(t, s, makeCS(siteB, 1, 1))
	if err := <-done; err != nil {
		t.Fatalf("first tail event: %v", err)
	}
	go func() {
		for _, err := range s.Tail(ctx, 1) {
			done <- err
			return
		}
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("tail after cancel: %v", err)
	}
	// Close wakes waiting tails.
	go func() {
		for _, err := range s.Tail(context.Background(), 1) {
			done <- err
			return
		}
	}()
	testutil.WaitFor(t, 5*time.Second, "tail to wait", func() bool { return s.waiting.Load() > 0 })
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("tail after close: %v", err)
	}
}

func TestStoreConcurrentDuplicates(t *testing.T) {
	s := openStore(t, "", Options{MaxPartChanges: 3})
	cs := makeCS(siteB, 1, 10)
	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	var mu sync.Mutex
	news, seqs := 0, 0
	for range 8 {
		first := uint64(rng.IntN(10))
		last := first + uint64(rng.IntN(10-int(first)))
		wg.Go(func() {
			res, err := s.Append(context.Background(), cs, slicePart(cs, first, last))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range res {
				if r.Seq != 0 {
					seqs++
				}
				if r.New {
					news++
				}
			}
		})
	}
	wg.Wait()
	if seqs != 1 || s.LastSeq() != 1 {
		t.Fatalf("version got %d seqs, last seq %d", seqs, s.LastSeq())
	}
	got, err := s.Get(siteB, 1)
	if err != nil {
		t.Fatal(err)
	}
	sameChangeset(t, got, cs)
}

// TestStoreRandomParts appends the same random parts (whole versions, overlapping and
// duplicated parts, some never completed) in different orders and batchings to two stores:
// each must end with the vector a plain Vector computes from the same adds, pass Check, hold
// the content that was written, and still do so after a reopen.
func TestStoreRandomParts(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			u := newUniverse(rng, 3, 25)
			ops := randomOps(rng, u, 0.8)
			model := NewVector()
			apply(t, model, ops)
			for run := range 2 {
				dir := t.TempDir()
				s := openStore(t, dir, Options{NoSync: true, MaxPartChanges: 1 + rng.IntN(4)})
				order := slices.Clone(ops)
				rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				for len(order) > 0 {
					n := min(len(order), 1+rng.IntN(5))
					var css []*Changeset
					for _, o := range order[:n] {
						css = append(css, slicePart(universeCS(o.site, o.ver, o.lastSeq), o.first, o.last))
					}
					order = order[n:]
					if _, err := s.Append(context.Background(), css...); err != nil {
						t.Fatalf("run %d: %v", run, err)
					}
				}
				for reopen := range 2 {
					if err := s.Check(); err != nil {
						t.Fatalf("run %d reopen %d: %v", run, reopen, err)
					}
					if !s.Vector().Equal(model) {
						t.Fatalf("run %d reopen %d: store vector differs from the model", run, reopen)
					}
					for site, sv := range model.Sites {
						for _, r := range sv.Versions {
							for v := r.First; v <= r.Last; v++ {
								got, err := s.Get(site, Version(v))
								if err != nil {
									t.Fatal(err)
								}
								sameChangeset(t, got, universeCS(site, Version(v), u[site][v-1]))
							}
						}
					}
					if reopen == 0 {
						s.Close()
						s = openStore(t, dir, Options{})
					}
				}
			}
		})
	}
}

// universeCS is the content of version v of site in a universe where it has seqs 0..lastSeq.
func universeCS(site SiteID, v Version, lastSeq uint64) *Changeset {
	cs := &Changeset{Site: site, Version: v, TS: Timestamp(v), Span: OrdRange{First: 0, Last: lastSeq}, LastOrd: lastSeq}
	for i := range lastSeq + 1 {
		cs.Changes = append(cs.Changes, Change{
			Table: "u", PK: MustPackPK(Integer(int64(v)), Integer(int64(i))), CID: "c",
			Val: Integer(int64(v)*100 + int64(i)), ColVersion: 1, CL: 1, Ord: i,
		})
	}
	return cs
}

// TestStoreMissingIsACopy: what Missing returns does not change when the store later adds
// to the same partial version (it once shared the store's range set).
func TestStoreMissingIsACopy(t *testing.T) {
	s := openStore(t, "", Options{NoSync: true})
	cs := makeCS(siteB, 1, 10)
	mustAppend(t, s, slicePart(cs, 0, 1), makeCS(siteB, 2, 1))
	m := s.Missing(NewVector())
	mustAppend(t, s, slicePart(cs, 2, 5))
	if len(m) != 1 || !slices.Equal(m[0].Parts[1], RangeSet{{First: 0, Last: 1}}) || !slices.Equal(m[0].Versions, RangeSet{{First: 2, Last: 2}}) {
		t.Fatalf("missing changed under the caller: %+v", m)
	}
	if got := s.Missing(NewVector()); !slices.Equal(got[0].Parts[1], RangeSet{{First: 0, Last: 5}}) {
		t.Fatalf("missing now = %+v", got)
	}
}

// TestStoreReadersDuringAppends runs Vector, Missing, Stats and Check against concurrent
// appends (the race detector watches the sharing) and checks that each view only grows.
func TestStoreReadersDuringAppends(t *testing.T) {
	s := openStore(t, "", Options{NoSync: true, MaxPartChanges: 2})
	ctx := context.Background()
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			site := SiteID{0xaa, byte(w)}
			for v := 1; v <= 150; v++ {
				cs := makeCS(site, Version(v), 1+v%5)
				if _, err := s.Append(ctx, slicePart(cs, 0, 0)); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Append(ctx, cs); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	readerDone := make(chan error, 1)
	go func() {
		var lastCount uint64
		for {
			select {
			case <-done:
				readerDone <- nil
				return
			default:
			}
			v := s.Vector()
			c, _ := v.Counts()
			if c < lastCount {
				readerDone <- fmt.Errorf("vector shrank from %d to %d versions", lastCount, c)
				return
			}
			lastCount = c
			for _, m := range s.Missing(NewVector()) {
				if m.Versions.Count() > 150 {
					readerDone <- fmt.Errorf("missing names %d versions of %v", m.Versions.Count(), m.Site)
					return
				}
			}
			if st := s.Stats(); st.Versions < c {
				readerDone <- fmt.Errorf("stats say %d versions after the vector said %d", st.Versions, c)
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if c, p := s.Vector().Counts(); c != 600 || p != 0 {
		t.Fatalf("%d complete, %d partial", c, p)
	}
}

// TestInMemoryFS opens a log on Pebble's in-memory filesystem (as the simulator does),
// appends, closes and opens it again: nothing touches the disk and the log persists in
// the filesystem value.
func TestInMemoryFS(t *testing.T) {
	fs := vfs.NewMem()
	site := NewSiteID()
	st, err := Open("node/log", Options{SiteID: site, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	cs := &Changeset{Kind: KindData, Changes: []Change{{Table: "t", PK: MustPackPK(Integer(1)), CID: "v", Val: Integer(1), ColVersion: 1, CL: 1}}}
	if _, _, err := st.AppendLocal(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("node"); err == nil {
		t.Fatal("the in-memory log wrote to the working directory")
	}
	st, err = Open("node/log", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.SiteID() != site || !st.Contains(site, 1) {
		t.Fatalf("reopened in-memory log: site %v, holds v1 %v", st.SiteID(), st.Contains(site, 1))
	}
}

// compactionRun appends n one-site changesets in appends of 50 (no fsync) to a log opened
// with opts and returns Pebble's bytes flushed and compacted.
func compactionRun(t *testing.T, opts Options, n int) (flushed, compacted uint64) {
	t.Helper()
	opts.NoSync = true
	s, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	site := SiteID{0xbe, 1}
	ctx := context.Background()
	for v := Version(1); v <= Version(n); v += 50 {
		css := make([]*Changeset, 50)
		for i := range css {
			css[i] = benchCS(site, v+Version(i))
		}
		if _, err := s.Append(ctx, css...); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range s.db.Metrics().Levels {
		flushed += l.TableBytesFlushed
		compacted += l.TableBytesCompacted
	}
	if flushed == 0 {
		t.Fatalf("%d appends flushed nothing: the run is too small to show compaction", n)
	}
	return flushed, compacted
}

// TestMemTableBytes: Options.MemTableBytes reaches Pebble, and a bigger memtable compacts
// the log far less. With Pebble's own table sizes every flushed table spans the arrival index
// and the keys each commit rewrites, so with the default 4 MB memtables the compactions of
// 100,000 one-site appends wrote about 2 bytes per byte flushed (7.3 by 600,000 appends),
// with 32 MiB none (bench/RESULTS.md, issue 14 round 11).
func TestMemTableBytes(t *testing.T) {
	smallF, smallC := compactionRun(t, Options{stockTables: true}, 100_000)
	bigF, bigC := compactionRun(t, Options{stockTables: true, MemTableBytes: 32 << 20}, 100_000)
	t.Logf("4 MB: %d flushed, %d compacted; 32 MiB: %d flushed, %d compacted", smallF, smallC, bigF, bigC)
	if smallC <= smallF {
		t.Errorf("with the default memtable compactions wrote %d bytes for %d flushed: the run no longer shows the rewrite it measures", smallC, smallF)
	}
	if bigC > bigF || bigC*2 > smallC {
		t.Errorf("with 32 MiB memtables compactions wrote %d bytes for %d flushed (default: %d): the option does not reach Pebble", bigC, bigF, smallC)
	}
}

// TestSmallTablesCompactLess: the log's table sizes (smallTables) reach Pebble and cut what
// its compactions rewrite: new tables end where the log's growing tails end and reach the
// bottom by moves.
func TestSmallTablesCompactLess(t *testing.T) {
	const n = 300_000
	stockF, stockC := compactionRun(t, Options{stockTables: true}, n)
	smallF, smallC := compactionRun(t, Options{}, n)
	t.Logf("Pebble's table sizes: %d flushed, %d compacted (%.2f); the log's: %d flushed, %d compacted (%.2f)",
		stockF, stockC, float64(stockC)/float64(stockF), smallF, smallC, float64(smallC)/float64(smallF))
	if stockC <= stockF {
		t.Fatalf("with Pebble's table sizes compactions wrote %d bytes for %d flushed: the run no longer shows the rewrite it measures", stockC, stockF)
	}
	if smallC*2 > stockC {
		t.Errorf("with the log's table sizes compactions wrote %d bytes against %d with Pebble's: smallTables does not reach Pebble, or no longer cuts the rewrite", smallC, stockC)
	}
}
