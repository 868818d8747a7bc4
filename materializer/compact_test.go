package materializer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/patinadb/patina/internal/scenario"
	"github.com/patinadb/patina/log"
)

// compactNode forces a full compaction pass with retention 0 and checks the log after it.
func compactNode(tb testing.TB, n *node) log.CompactResult {
	tb.Helper()
	res, err := n.m.CompactLog(context.Background(), 0, 1+int(n.store.LastSeq()%7))
	if err != nil {
		tb.Fatalf("compact: %v", err)
	}
	if err := n.store.Check(); err != nil {
		tb.Fatalf("check after compaction: %v", err)
	}
	return res
}

// deliverCompacted applies to dst a random subset (or all) of what src's possibly compacted
// log holds, shuffled, with duplicates, and hands over src's cleared versions as ranges, the
// way sync does.
func deliverCompacted(tb testing.TB, r *rand.Rand, src, dst *node, all bool) {
	tb.Helper()
	ctx := context.Background()
	css, err := src.store.Read(0, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	var send []*log.Changeset
	for _, cs := range css {
		cs.Seq = 0
		if all || r.IntN(2) == 0 {
			send = append(send, cs)
			if r.IntN(4) == 0 {
				send = append(send, cs)
			}
		}
	}
	r.Shuffle(len(send), func(i, j int) { send[i], send[j] = send[j], send[i] })
	clearedFirst := r.IntN(2) == 0
	cleared := func() {
		for site, sv := range src.store.Vector().Sites {
			if len(sv.Cleared) == 0 || (!all && r.IntN(2) == 0) {
				continue
			}
			if _, err := dst.store.AppendCleared(ctx, site, sv.Cleared); err != nil {
				tb.Fatalf("append cleared: %v", err)
			}
		}
	}
	if clearedFirst {
		cleared()
	}
	for len(send) > 0 {
		n := 1 + r.IntN(len(send))
		if _, err := dst.m.Apply(ctx, send[:n]); err != nil {
			tb.Fatalf("apply: %v", err)
		}
		send = send[n:]
	}
	if !clearedFirst {
		cleared()
	}
}

// TestPropertyCompaction: random writes (inserts, updates, deletes, re-inserts, REPLACE,
// upserts, primary key updates) on 2-5 replicas that compact with retention 0 at random
// moments and exchange random subsets of their compacted logs (shuffled, duplicated, cleared
// versions as ranges). Every changeset ever written is kept aside; at the end every replica,
// a rebuild of each, and a fresh node fed one replica's compacted stream must hold exactly
// the rows and clocks of an uncompacted node that folded the whole history.
func TestPropertyCompaction(t *testing.T) {
	rounds := 10
	if testing.Short() {
		rounds = 4
	}
	if s := os.Getenv("PATINA_PROPERTY_ROUNDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			rounds = n
		}
	}
	for seed := range rounds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r := rand.New(rand.NewPCG(uint64(seed), 11))
			schema := randSchema(r)
			nodes := make([]*node, 2+r.IntN(4))
			for i := range nodes {
				nodes[i] = newNode(t, log.SiteID{15: byte(i + 1), 0: byte(r.IntN(256))}, schema)
			}
			var tables []*table
			for _, name := range nodes[0].m.Tables() {
				tables = append(tables, nodes[0].m.tables[strings.ToLower(name)])
			}
			var history []*log.Changeset
			dropped := uint64(0)
			for range 80 {
				switch x := r.IntN(8); {
				case x < 2:
					a, b := r.IntN(len(nodes)), r.IntN(len(nodes))
					if a != b {
						deliverCompacted(t, r, nodes[a], nodes[b], r.IntN(3) == 0)
					}
				case x == 2:
					dropped += compactNode(t, nodes[r.IntN(len(nodes))]).Dropped
				default:
					n := nodes[r.IntN(len(nodes))]
					stmts := make([]Statement, 1+r.IntN(3))
					for i := range stmts {
						stmts[i] = randOp(r, tables)
					}
					res, err := n.m.Transact(ctx, stmts)
					if err != nil || res.Version == 0 {
						continue // constraint failures and no-op writes are expected
					}
					cs, err := n.store.Get(n.store.SiteID(), res.Version)
					if err != nil {
						t.Fatalf("get own version %d: %v", res.Version, err)
					}
					history = append(history, cs)
				}
			}
			for _, dst := range nodes {
				for _, src := range nodes {
					if src != dst {
						deliverCompacted(t, r, src, dst, true)
					}
				}
			}
			for _, n := range nodes {
				dropped += compactNode(t, n).Dropped
			}
			ref := newNode(t, log.SiteID{15: 0xee}, schema)
			if _, err := ref.m.Apply(ctx, history); err != nil {
				t.Fatal(err)
			}
			want := snapshot(t, ref)
			for i, n := range nodes {
				if got := snapshot(t, n); got != want {
					t.Fatalf("schema %q: compacted replica %d differs from the uncompacted fold of the history (%d changes dropped):\n%s\nvs\n%s", schema, i, dropped, got, want)
				}
			}
			// The compacted stream of one replica, folded into an empty node (GET then POST
			// /v1/changes), and a rebuild of every replica from its compacted log.
			// With no schema of its own: the tables come from the schema changesets in the
			// stream (compaction keeps them), and the vectors can match exactly.
			fresh := newNode(t, log.SiteID{15: 0xef}, nil)
			deliverCompacted(t, r, nodes[0], fresh, true)
			if got := snapshot(t, fresh); got != want {
				t.Fatalf("a node fed replica 0's compacted log differs:\n%s\nvs\n%s", got, want)
			}
			if !fresh.store.Vector().Equal(nodes[0].store.Vector()) {
				t.Fatalf("a node fed replica 0's compacted log holds other versions:\n%+v\nvs\n%+v", fresh.store.Vector(), nodes[0].store.Vector())
			}
			for i, n := range nodes {
				if err := n.m.Rebuild(ctx, nil); err != nil {
					t.Fatalf("rebuild %d: %v", i, err)
				}
				if got := snapshot(t, n); got != want {
					t.Fatalf("replica %d rebuilt from its compacted log:\n%s\nvs\n%s", i, got, want)
				}
			}
			if testing.Verbose() {
				t.Logf("%d nodes, %d versions written, %d changes dropped", len(nodes), len(history), dropped)
			}
		})
	}
}

// runScenarioCompacted replays sc twice in lock step, on plain replicas and on replicas
// whose logs are compacted (retention 0) after every step and synced as compacted logs.
// After every step each compacted replica must hold exactly the rows and clocks of its
// plain twin, and, when recorded is set, the rows cr-sqlite recorded.
func runScenarioCompacted(t *testing.T, sc scenario.Scenario, recorded bool) {
	plain := make([]*node, sc.Replicas)
	comp := make([]*node, sc.Replicas)
	for i := range plain {
		plain[i] = newNode(t, siteFromHex(t, sc.SiteIDs[i]), sc.Schema)
		comp[i] = newNode(t, siteFromHex(t, sc.SiteIDs[i]), sc.Schema)
		comp[i].compact = true
	}
	same := func(what string) {
		t.Helper()
		for i := range plain {
			if want, got := snapshot(t, plain[i]), snapshot(t, comp[i]); got != want {
				t.Fatalf("%s: compacted replica %d differs from the plain one:\n%s\nvs\n%s", what, i, got, want)
			}
		}
	}
	check := func(what string, n *node, want map[string][][]string) {
		t.Helper()
		if !recorded {
			return
		}
		for table, rows := range want {
			if got, exp := n.dumpTable(t, table), parseRows(t, rows); !rowsEqual(got, exp) {
				t.Fatalf("%s: table %s:\n got  %s\n want %s", what, table, fmtRows(got), fmtRows(exp))
			}
		}
	}
	var dropped uint64
	compactAll := func() {
		for _, n := range comp {
			dropped += compactNode(t, n).Dropped
		}
	}
	for i, st := range sc.Steps {
		name := stepName(i, st)
		switch {
		case st.Replica != nil:
			parts := st.Statements()
			stmts := make([]Statement, len(parts))
			for k, p := range parts {
				stmts[k] = Statement{SQL: p}
			}
			_, errP := plain[*st.Replica].m.Transact(context.Background(), stmts)
			_, errC := comp[*st.Replica].m.Transact(context.Background(), stmts)
			if (errP == nil) != (errC == nil) {
				t.Fatalf("%s: plain replica says %v, compacted one %v", name, errP, errC)
			}
			check(name, comp[*st.Replica], st.After)
		case st.Sync != nil:
			plain[st.Sync.From].syncTo(t, plain[st.Sync.To])
			comp[st.Sync.From].syncTo(t, comp[st.Sync.To])
			check(name, comp[st.Sync.To], st.After)
		default:
			t.Fatalf("step %d: neither a statement nor a sync", i)
		}
		compactAll()
		same(name)
	}
	for _, p := range sc.FinalSync {
		plain[p.From].syncTo(t, plain[p.To])
		comp[p.From].syncTo(t, comp[p.To])
		compactAll()
	}
	same("final")
	for _, n := range comp {
		check("final", n, sc.Final)
	}
	if testing.Verbose() {
		t.Logf("%d changes dropped", dropped)
	}
}

// TestScenariosCompacted: every recorded cr-sqlite scenario, with every replica's log
// compacted after every step (retention 0) and syncs carrying compacted logs, still matches
// cr-sqlite at every step where it is checked and at the end, clocks included. The
// primary-key corpus records cr-sqlite quirks Patina departs from on purpose (its README):
// there the same replay without compaction is the reference, at every step. The random
// corpora (scenario.Random, scenario.RandomTx) replay compacted in TestRandomScenarios.
func TestScenariosCompacted(t *testing.T) {
	for _, corpus := range []string{scenario.Edge, scenario.PKEdge} {
		scs := scenario.Load(t, corpus)
		if testing.Short() && len(scs) > 10 {
			scs = scs[:10]
		}
		for i, sc := range scs {
			t.Run(corpus+"/"+sc.Name, func(t *testing.T) {
				t.Parallel()
				if corpus == scenario.PKEdge {
					runScenarioCompacted(t, sc, false)
					return
				}
				// Every third replays its syncs shuffled, with duplicates.
				seed := uint64(0)
				if i%3 == 0 {
					seed = uint64(i + 1)
				}
				runScenarioWith(t, sc, seed, true)
			})
		}
	}
}
