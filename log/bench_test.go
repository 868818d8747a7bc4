package log

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchDir is a real directory on the machine's disk, so that fsync costs what it costs:
// b.TempDir may be on tmpfs on some machines. PATINA_BENCH_DIR overrides it.
func benchDir(b *testing.B) string {
	b.Helper()
	parent := os.Getenv("PATINA_BENCH_DIR")
	if parent == "" {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "patina-log-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// benchCS is a changeset of 10 changes shaped like a small transaction: one row, a sentinel
// and a few integer, real and text columns.
func benchCS(site SiteID, v Version) *Changeset {
	const n = 10
	cs := &Changeset{Site: site, Version: v, TS: Timestamp(1e18 + uint64(v)), Span: OrdRange{First: 0, Last: n - 1}, LastOrd: n - 1}
	cs.Changes = make([]Change, n)
	pk := MustPackPK(Integer(int64(v)))
	for i := range n {
		c := Change{Table: "accounts", PK: pk, CID: fmt.Sprintf("col%d", i), ColVersion: 1, CL: 1, Ord: uint64(i)}
		switch i % 3 {
		case 0:
			c.Val = Integer(int64(v) * 7)
		case 1:
			c.Val = Real(float64(v) / 3)
		default:
			c.Val = Text("some text of a typical length")
		}
		if i == 0 {
			c.CID, c.Val = SentinelCID, Null()
		}
		cs.Changes[i] = c
	}
	return cs
}

// BenchmarkAppend appends 10-change changesets durably (real fsync) from 1, 16 and 64
// concurrent writers, each writer with its own site, and reports changes/s, the group-commit
// batch size (appends per group) and the append latency p50/p99. depth=1 is the committer
// without pipelining (each group waits for the previous group's fsync before it is built),
// beside the default depth in the same run.
func BenchmarkAppend(b *testing.B) {
	for _, run := range []struct{ depth, writers int }{{DefaultCommitDepth, 1}, {1, 16}, {DefaultCommitDepth, 16}, {1, 64}, {DefaultCommitDepth, 64}} {
		depth, writers := run.depth, run.writers
		b.Run(fmt.Sprintf("depth=%d/writers=%d", depth, writers), func(b *testing.B) {
			s, err := Open(benchDir(b), Options{CommitDepth: depth})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			// Encode-independent inputs, built before the clock starts.
			per := (b.N + writers - 1) / writers
			inputs := make([][]*Changeset, writers)
			for w := range inputs {
				site := SiteID{0xbe, byte(w)}
				inputs[w] = make([]*Changeset, per)
				for i := range per {
					inputs[w][i] = benchCS(site, Version(i+1))
				}
			}
			lat := make([][]time.Duration, writers)
			var next atomic.Int64
			var wg sync.WaitGroup
			ctx := context.Background()
			syncs0 := s.Stats().Syncs
			b.ResetTimer()
			start := time.Now()
			for w := range writers {
				wg.Go(func() {
					l := make([]time.Duration, 0, per)
					for i := range per {
						if next.Add(1) > int64(b.N) {
							break
						}
						t0 := time.Now()
						if _, err := s.Append(ctx, inputs[w][i]); err != nil {
							b.Error(err)
							return
						}
						l = append(l, time.Since(t0))
					}
					lat[w] = l
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			syncs := s.Stats().Syncs - syncs0
			b.ReportMetric(float64(b.N)*10/el.Seconds(), "changes/s")
			if syncs > 0 {
				b.ReportMetric(float64(b.N)/float64(syncs), "appends/group")
			}
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			p50, p99 := percentiles(all)
			b.ReportMetric(float64(p50.Microseconds()), "p50-us")
			b.ReportMetric(float64(p99.Microseconds()), "p99-us")
		})
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	sorted := slices.Clone(d)
	slices.Sort(sorted)
	return sorted[len(sorted)*50/100], sorted[min(len(sorted)*99/100, len(sorted)-1)]
}

// fillLog appends n 10-change changesets of a few sites without fsync (the fill is not
// what is measured) and returns the store.
func fillLog(b *testing.B, n int) *Store {
	b.Helper()
	s, err := Open(benchDir(b), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	const batch = 256
	css := make([]*Changeset, 0, batch)
	for i := range n {
		css = append(css, benchCS(SiteID{0xbe, byte(i % 4)}, Version(i/4+1)))
		if len(css) == batch || i == n-1 {
			if _, err := s.Append(context.Background(), css...); err != nil {
				b.Fatal(err)
			}
			css = css[:0]
		}
	}
	return s
}

// BenchmarkTail reads a log of 100,000 changesets (1M changes) with Tail from the start and
// reports changes/s.
func BenchmarkTail(b *testing.B) {
	const n = 100_000
	s := fillLog(b, n)
	b.ResetTimer()
	start := time.Now()
	changes := 0
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		got := 0
		for cs, err := range s.Tail(ctx, 0) {
			if err != nil {
				b.Fatal(err)
			}
			changes += len(cs.Changes)
			if got++; got == n {
				break
			}
		}
		cancel()
	}
	b.ReportMetric(float64(changes)/time.Since(start).Seconds(), "changes/s")
}

// BenchmarkGet reads random whole versions of a log of 100,000 changesets.
func BenchmarkGet(b *testing.B) {
	const n = 100_000
	s := fillLog(b, n)
	rng := rand.New(rand.NewPCG(1, 1))
	b.ResetTimer()
	for range b.N {
		i := rng.IntN(n)
		if _, err := s.Get(SiteID{0xbe, byte(i % 4)}, Version(i/4+1)); err != nil {
			b.Fatal(err)
		}
	}
}

// benchVectors builds two vectors of 1,000 sites with 10,000 versions each: mine has a gap
// every 100 versions and a partial version per site, theirs lacks different versions.
func benchVectors() (mine, theirs *Vector) {
	mine, theirs = NewVector(), NewVector()
	rng := rand.New(rand.NewPCG(2, 2))
	for i := range 1000 {
		site := SiteID{0xbe, byte(i >> 8), byte(i)}
		ms, ts := mine.Site(site), theirs.Site(site)
		for v := uint64(1); v <= 10_000; v += 100 {
			ms.Versions.Add(v, v+98-uint64(rng.IntN(3)))
			ts.Versions.Add(v+uint64(rng.IntN(50)), v+99)
		}
		mine.AddPart(site, 20_001, 9, 0, 4)
		theirs.AddPart(site, 20_001, 9, 3, 6)
	}
	return mine, theirs
}

// BenchmarkMissing computes what a peer lacks between two vectors of 1,000 sites with gaps.
func BenchmarkMissing(b *testing.B) {
	mine, theirs := benchVectors()
	b.ResetTimer()
	var ranges int
	for range b.N {
		m := mine.Missing(theirs)
		ranges = 0
		for _, sm := range m {
			ranges += len(sm.Versions)
		}
	}
	b.ReportMetric(float64(ranges), "ranges")
}

// BenchmarkVectorClone copies a vector of 1,000 sites with gaps, what Store.Vector costs
// (under the store's read lock) for a sync-state request or a sync round.
func BenchmarkVectorClone(b *testing.B) {
	mine, _ := benchVectors()
	b.ResetTimer()
	for range b.N {
		_ = mine.Clone()
	}
}

// BenchmarkDecodeChangeset decodes a 100-row changeset of 4 changes per row (the shape of
// `patina bench write`'s batches): what a receiver pays per frame and per read of the log.
func BenchmarkDecodeChangeset(b *testing.B) {
	const rows = 100
	cs := &Changeset{Site: SiteID{0xde}, Version: 1, TS: Timestamp(1e18)}
	for r := range rows {
		pk := MustPackPK(Integer(int64(r)))
		for i, v := range []Value{Integer(int64(r) * 7), Real(float64(r) / 3), Text("some text of a typical length"), Blob([]byte("0123456789abcdef"))} {
			cs.Changes = append(cs.Changes, Change{Table: "bench", PK: pk, CID: fmt.Sprintf("c%d", i), Val: v, ColVersion: 1, CL: 1, Ord: uint64(len(cs.Changes))})
		}
	}
	cs.Span, cs.LastOrd = OrdRange{First: 0, Last: uint64(len(cs.Changes) - 1)}, uint64(len(cs.Changes)-1)
	enc, err := EncodeChangeset(cs)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeChangeset(enc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(cs.Changes)), "ns/change")
}
