package gossip

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// timedApplier is storeApplier that records when each version became new on this node.
type timedApplier struct {
	*storeApplier
	mu   sync.Mutex
	seen map[log.Version]time.Time
}

func (a *timedApplier) Apply(ctx context.Context, css []*log.Changeset) ([]bool, error) {
	news, err := a.storeApplier.Apply(ctx, css)
	now := time.Now()
	if err == nil {
		a.mu.Lock()
		for i, cs := range css {
			if news[i] {
				a.seen[cs.Version] = now
			}
		}
		a.mu.Unlock()
	}
	return news, err
}

// BenchmarkBroadcastLatency measures gossip alone, in process: from Broadcast of a local
// changeset (already durable in the origin's log) to its durable append on the last of
// the other nodes (real log.Store with fsync, real QUIC and memberlist on 127.0.0.1), at a
// fixed rate of one-change writes.
func BenchmarkBroadcastLatency(b *testing.B) {
	for _, bc := range []struct {
		nodes, rate, fanout int
		delay               time.Duration
	}{{3, 1000, 10, 200 * time.Microsecond}, {10, 1000, 10, 200 * time.Microsecond}, {10, 1000, 3, 200 * time.Microsecond}} {
		b.Run(fmt.Sprintf("%dnodes-%dwps-localfanout%d-delay%v", bc.nodes, bc.rate, bc.fanout, bc.delay), func(b *testing.B) {
			nodes := cluster(b, bc.nodes, func(c *Config) { c.LocalFanout, c.BatchDelay = bc.fanout, bc.delay })
			timed := make([]*timedApplier, len(nodes))
			for i, n := range nodes {
				timed[i] = &timedApplier{storeApplier: n.app, seen: map[log.Version]time.Time{}}
				n.g.app = timed[i]
			}
			origin := nodes[0]
			sent := map[log.Version]time.Time{}
			interval := time.Second / time.Duration(bc.rate)
			start := time.Now()
			i := 0
			for b.Loop() {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d) // pacing the open-loop load, not synchronization
				}
				i++
				cs := &log.Changeset{Kind: log.KindData, Changes: []log.Change{{Table: "t",
					PK: log.MustPackPK(log.Integer(int64(i))), CID: "v", Val: log.Integer(int64(i)), ColVersion: 1, CL: 1}}}
				ver, _, err := origin.st.AppendLocal(b.Context(), cs)
				if err != nil {
					b.Fatal(err)
				}
				sent[ver] = time.Now()
				origin.g.Broadcast(cs)
			}
			b.StopTimer()
			testutil.WaitFor(b, 60*time.Second, "every write on every node", func() bool {
				for _, t := range timed[1:] {
					if sv := t.st.Vector().Sites[origin.site]; sv == nil || sv.Versions.Count() < uint64(len(sent)) {
						return false
					}
				}
				return true
			})
			var lat []time.Duration
			for v, at := range sent {
				var worst time.Duration
				for _, t := range timed[1:] {
					t.mu.Lock()
					got, ok := t.seen[v]
					t.mu.Unlock()
					if !ok {
						worst = -1 // arrived before the timed applier was installed
						break
					}
					worst = max(worst, got.Sub(at))
				}
				if worst >= 0 {
					lat = append(lat, worst)
				}
			}
			slices.Sort(lat)
			if len(lat) == 0 {
				b.Fatal("no latencies")
			}
			q := func(p float64) float64 { return float64(lat[min(int(p*float64(len(lat))), len(lat)-1)]) / 1e6 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
		})
	}
}

// BenchmarkSyncCatchUp measures sync alone: a node that joins late catches up on 100,000
// changes (1,000 versions of 100) that another node holds, over real QUIC into a real
// log.Store with fsync, without the materializer.
func BenchmarkSyncCatchUp(b *testing.B) {
	const versions, perVersion = 1000, 100
	var rate float64
	for b.Loop() {
		b.StopTimer()
		src := startNode(b)
		for v := range versions {
			cs := &log.Changeset{Kind: log.KindData}
			for i := range perVersion {
				cs.Changes = append(cs.Changes, log.Change{Table: "t", PK: log.MustPackPK(log.Integer(int64(v*perVersion + i))),
					CID: "v", Val: log.Text("value"), ColVersion: 1, CL: 1})
			}
			if _, _, err := src.st.AppendLocal(b.Context(), cs); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		late := startNode(b, withBootstrap(src))
		testutil.WaitFor(b, 5*time.Minute, "the late node to catch up", func() bool { return late.complete() == versions })
		rate = versions * perVersion / time.Since(start).Seconds()
		b.StopTimer()
		late.stop()
		src.stop()
		b.StartTimer()
	}
	b.ReportMetric(rate, "changes/s")
}
