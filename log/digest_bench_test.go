package log

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// What content digests and sums (issue 12, item 4) cost on the write path. Every version
// that becomes complete has its SHA-256 digest computed (in the caller's goroutine), one
// more 41-byte key in its commit batch, and its site's content sum updated. The baseline is
// the same store code with digests off (noDigests: no computation, no key, no sum), in the
// same run:
//
//	go test ./log -run '^$' -bench 'AppendDigests|DigestCompute' -count 3
//
// BenchmarkAppendDigests appends 10-change changesets of other sites (Append, the ingest
// path of gossip and sync) from 1 and 16 writers, durably and without fsync (the CPU path
// alone), alternating digests on and off. BenchmarkDigestCompute times the digest of one
// such changeset beside its encoding, the work Append does per changeset anyway.
func BenchmarkAppendDigests(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, writers := range []int{1, 16} {
			for _, on := range []bool{true, false} {
				name := fmt.Sprintf("fsync=%v/writers=%d/digests=%v", sync, writers, on)
				b.Run(name, func(b *testing.B) {
					noDigests = !on
					defer func() { noDigests = false }()
					benchAppendDigests(b, writers, !sync)
				})
			}
		}
	}
}

func benchAppendDigests(b *testing.B, writers int, noSync bool) {
	s, err := Open(benchDir(b), Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
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
	b.ResetTimer()
	cpu0 := cpuTime()
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
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "appends/s")
	// The process's CPU time per append (user + system, every goroutine and Pebble's): on a
	// shared machine it moves far less with the others' load than the wall clock does.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "cpu-us/op")
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	p50, p99 := percentiles(all)
	b.ReportMetric(float64(p50.Microseconds()), "p50-us")
	b.ReportMetric(float64(p99.Microseconds()), "p99-us")
	var summed uint64
	for _, sv := range s.Vector().Sites {
		summed += sv.Content.N
	}
	if noDigests != (summed == 0) {
		b.Fatalf("digests off %v, but %d versions in the content sums", noDigests, summed)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDigestCompute: one digest of a 10-change changeset, and its encoding for scale.
func BenchmarkDigestCompute(b *testing.B) {
	cs := benchCS(SiteID{0xbe}, 1)
	b.Run("digest", func(b *testing.B) {
		for range b.N {
			if _, ok := cs.ComputeDigest(); !ok {
				b.Fatal("not digestable")
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		for range b.N {
			if _, err := EncodeChangeset(cs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
