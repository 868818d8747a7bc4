package materializer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
	"github.com/prometheus/client_golang/prometheus"
)

// TestFoldPreloadSameResult: folding with the clocks of each changeset read ahead
// (clockPreload) gives the same tables and clocks as one clock query per row, on random
// schemas and random multi-statement transactions (rows that come back later in their
// changeset, deletes, resurrections, key moves, ties) delivered in random orders with
// duplicates; and the fast path did serve most rows. Fails if a preloaded clock were used
// after its row was written, or for the wrong row.
func TestFoldPreloadSameResult(t *testing.T) {
	for seed := range 6 {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(seed), 14))
			schema := randSchema(r)
			srcs, tables := randReplicas(t, r, 3, schema)
			for range 80 {
				n := srcs[r.IntN(len(srcs))]
				stmts := make([]Statement, 1+r.IntN(8))
				for i := range stmts {
					stmts[i] = randOp(r, tables)
				}
				n.m.Transact(context.Background(), stmts) // constraint failures are expected
				if r.IntN(5) == 0 {
					a, b := r.IntN(len(srcs)), r.IntN(len(srcs))
					if a != b {
						deliver(t, r, srcs[a], srcs[b], false)
					}
				}
			}
			// Remote changesets made by hand: rows that come back later in their changeset
			// (which local transactions never make: their capture groups a row's changes).
			var all []*log.Changeset
			for v := range 40 {
				all = append(all, randomRemoteCS(r, tables, log.Version(v+1)))
			}
			for _, src := range srcs {
				css, err := src.store.Read(0, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				for _, cs := range css {
					cs.Seq = 0
					all = append(all, cs)
					if r.IntN(4) == 0 {
						all = append(all, cs)
					}
				}
			}
			r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
			var cuts []int
			for rest := len(all); rest > 0; {
				n := 1 + r.IntN(min(rest, 12))
				cuts = append(cuts, n)
				rest -= n
			}
			// fast: clocks read ahead, rows known new skipped by the clock filter, of two words
			// (8 keys: it loads again, keeps one and raises its bound often); ahead: read
			// ahead, no filter; slow: one read per row, every row read.
			fast := openNode(t, t.TempDir(), log.SiteID{15: 9}, schema, func(c *Config) { c.clockFilterWords = 2 })
			ahead := openNode(t, t.TempDir(), log.SiteID{15: 9}, schema, func(c *Config) { c.noClockFilter = true })
			slow := openNode(t, t.TempDir(), log.SiteID{15: 9}, schema, func(c *Config) { c.noClockPreload, c.noClockFilter = true, true })
			// Compared after every Apply: a later changeset could hide an earlier difference.
			send := all
			for _, k := range cuts {
				for _, n := range []*node{fast, ahead, slow} {
					if _, err := n.m.Apply(context.Background(), send[:k]); err != nil {
						t.Fatalf("apply: %v", err)
					}
				}
				send = send[k:]
				want := rawState(t, slow)
				if got := rawState(t, ahead); got != want {
					t.Fatalf("schema %q: the fold with clocks read ahead differs from one read per row:\n%s\nvs\n%s", schema, got, want)
				}
				if got := rawState(t, fast); got != want {
					t.Fatalf("schema %q: the fold with the clock filter differs from one read per row:\n%s\nvs\n%s", schema, got, want)
				}
			}
			if ahead.m.clockPreloads.Load() == 0 || slow.m.clockPreloads.Load() != 0 {
				t.Fatalf("clocks read ahead: %d with the fast path, %d without", ahead.m.clockPreloads.Load(), slow.m.clockPreloads.Load())
			}
			if fast.m.clockSkips.Load() == 0 || fast.m.clockFilterLoads.Load() < 2 || ahead.m.clockSkips.Load()+slow.m.clockSkips.Load() != 0 {
				t.Fatalf("clock reads skipped: %d with the filter (%d loads), %d and %d without", fast.m.clockSkips.Load(),
					fast.m.clockFilterLoads.Load(), ahead.m.clockSkips.Load(), slow.m.clockSkips.Load())
			}
		})
	}
}

// rawState renders every table and every clock row as stored, byte for byte. (Not
// snapshot: the hand-made changesets give a site's rows causal lengths no real history
// gives, and the state they leave need not pass dumpClock's consistency checks; what this
// test asks is only that both folds leave the same state.)
func rawState(tb testing.TB, n *node) string {
	tb.Helper()
	var b strings.Builder
	for _, name := range n.m.Tables() {
		t := n.m.tables[strings.ToLower(name)]
		fmt.Fprintf(&b, "%s: %s\n", name, fmtRows(n.dumpTable(tb, name)))
		fmt.Fprintf(&b, "%s clocks: %s\n", name, fmtRows(n.query(tb, "SELECT pk, cl, clock FROM "+t.clock+" ORDER BY pk")))
	}
	return b.String()
}

// randomRemoteCS makes a data changeset of a remote site with 1-12 runs of changes of rows
// drawn from a small key space (so rows come back within it): column changes, sentinels
// and deletes at random causal lengths and column versions.
func randomRemoteCS(r *rand.Rand, tables []*table, v log.Version) *log.Changeset {
	cs := &log.Changeset{Site: log.SiteID{0: 0xAB, 15: 7}, Version: v, TS: log.Timestamp(v), Kind: log.KindData}
	for range 1 + r.IntN(12) {
		t := tables[r.IntN(len(tables))]
		key := make([]log.Value, len(t.PK))
		for i, c := range t.PK {
			if strings.EqualFold(t.Cols[c].Type, "TEXT") {
				key[i] = log.Text(string(rune('a' + r.IntN(3))))
			} else {
				key[i] = log.Integer(int64(r.IntN(3)))
			}
		}
		pk := log.MustPackPK(key...)
		for range 1 + r.IntN(3) {
			c := log.Change{Table: t.Name, PK: pk, CID: log.SentinelCID, CL: uint64(1 + r.IntN(4)), ColVersion: uint64(1 + r.IntN(3)), Ord: uint64(len(cs.Changes))}
			if len(t.NonPK) > 0 && r.IntN(3) > 0 {
				c.CID = t.Cols[t.NonPK[r.IntN(len(t.NonPK))]].Name
				c.Val = propValues[1+r.IntN(len(propValues)-1)] // not NULL: NOT NULL columns would refuse it
				c.CL = []uint64{1, 1, 1, 3}[r.IntN(4)]
			}
			cs.Changes = append(cs.Changes, c)
		}
	}
	cs.LastOrd = uint64(len(cs.Changes) - 1)
	cs.Span = log.OrdRange{First: 0, Last: cs.LastOrd}
	return cs
}

// TestClockFilterMetrics: the clock filter's savings and loads reach the registry, as the
// counters the fold keeps.
func TestClockFilterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := openNode(t, t.TempDir(), log.SiteID{0x31}, tSchema, func(c *Config) { c.Registerer = reg })
	defer n.close()
	for i := range 50 {
		n.exec(t, "INSERT INTO t (id, x) VALUES (?, 'v')", log.Integer(int64(i+1)))
	}
	skipped := registryValue(t, reg, "patina_materializer_clock_reads_skipped_total")
	loads := registryValue(t, reg, "patina_materializer_clock_filter_loads_total")
	if skipped == 0 || loads == 0 {
		t.Fatalf("growing keys: %v clock reads skipped, %v filter loads; want both > 0", skipped, loads)
	}
	if skipped != float64(n.m.clockSkips.Load()) || loads != float64(n.m.clockFilterLoads.Load()) {
		t.Fatalf("registry says %v skipped and %v loads, the fold counted %d and %d", skipped, loads, n.m.clockSkips.Load(), n.m.clockFilterLoads.Load())
	}
}
