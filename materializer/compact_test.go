package materializer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/scenario"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// compactNode forces a compaction pass with retention 0, the incremental one the background
// loop runs, and checks the log after it; then a full pass (every version judged again)
// must find nothing more to drop: the versions the fold marked are all the versions that
// lost a change since they were judged.
func compactNode(tb testing.TB, n *node) log.CompactResult {
	tb.Helper()
	ctx := context.Background()
	res, err := n.m.CompactLog(ctx, 0, 1+int(n.store.LastSeq()%7))
	if err != nil {
		tb.Fatalf("compact: %v", err)
	}
	if err := n.store.Check(); err != nil {
		tb.Fatalf("check after compaction: %v", err)
	}
	if pos := n.m.FoldPosition(); pos == n.store.LastSeq() {
		full, err := n.store.Compact(ctx, log.CompactOptions{Through: pos, Judge: n.m.judge})
		if err != nil {
			tb.Fatalf("full compaction pass: %v", err)
		}
		if full.Dropped != 0 {
			tb.Fatalf("a full pass after the incremental one dropped %d changes of %d versions (%d cleared): the fold did not mark them", full.Dropped, full.Rewritten+full.Cleared, full.Cleared)
		}
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
			nodes, tables := randReplicas(t, r, 2+r.IntN(4), schema)
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

// TestIncrementalJudging: after the first (full) pass, a pass judges only the versions whose
// rows changed since they were judged, not every live version, and still drops every
// superseded change: a version judged live and superseded afterwards (by a local write, or
// one that lost on arrival from another site) is cleared by the next pass. The judged count
// is exported (patina_log_compaction_judged_versions).
func TestIncrementalJudging(t *testing.T) {
	schema := []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v INTEGER)"}
	a := newNode(t, log.SiteID{15: 1}, schema)
	b := newNode(t, log.SiteID{15: 2}, schema)
	const rows = 40
	insert := map[int]log.Version{}
	for id := 1; id <= rows; id++ {
		insert[id] = a.exec(t, "INSERT INTO t (id, v) VALUES (?, 0)", log.Integer(int64(id))).Version
	}
	pass := func(what string, maxJudged, cleared int) {
		t.Helper()
		res := compactNode(t, a) // and a full pass after it finds nothing more
		if res.Judged > maxJudged || res.Cleared != cleared {
			t.Fatalf("%s: judged %d versions (want at most %d), cleared %d (want %d): %+v", what, res.Judged, maxJudged, res.Cleared, cleared, res)
		}
	}
	pass("first pass", 1<<30, 0) // a full one: every version judged live
	pass("nothing written", 0, 0)
	up := a.exec(t, "UPDATE t SET v = 1 WHERE id = 7").Version
	pass("one row updated", 1, 1) // only the insert it displaced
	if sv := a.store.Vector().Sites[a.store.SiteID()]; !sv.Cleared.Contains(uint64(insert[7])) {
		t.Fatalf("row 7's insert (version %d), judged live before, was not cleared: %+v", insert[7], sv.Cleared)
	}
	a.exec(t, "UPDATE t SET v = 2 WHERE id = 7")
	a.exec(t, "UPDATE t SET v = 2 WHERE id = 8")
	pass("two rows updated", 2, 2)
	if sv := a.store.Vector().Sites[a.store.SiteID()]; !sv.Cleared.Contains(uint64(up)) || !sv.Cleared.Contains(uint64(insert[8])) {
		t.Fatalf("superseded versions %d and %d not cleared: %+v", up, insert[8], sv.Cleared)
	}
	// A change from another site that loses as it arrives (row 9's column is at version 2
	// here, b's at 1).
	a.exec(t, "UPDATE t SET v = 3 WHERE id = 9")
	pass("row 9 updated", 1, 1)
	lost := b.exec(t, "INSERT INTO t (id, v) VALUES (9, 100)").Version
	b.syncTo(t, a)
	// (A version at the log's last seq is never cleared, only emptied: one after it.)
	a.exec(t, "INSERT INTO t (id, v) VALUES (?, 0)", log.Integer(rows+1))
	pass("b's losing insert arrived", 1, 1)
	if sv := a.store.Vector().Sites[b.store.SiteID()]; sv == nil || !sv.Cleared.Contains(uint64(lost)) {
		t.Fatalf("b's version %d, superseded on arrival, was not cleared: %+v", lost, sv)
	}
	// The figure an operator graphs: every pass's judged versions, the first pass's all.
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.store.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var h *dto.Histogram
	for _, mf := range mfs {
		if mf.GetName() == "patina_log_compaction_judged_versions" {
			h = mf.GetMetric()[0].GetHistogram()
		}
	}
	// 13 passes: the 6 incremental ones judged at most 2 versions each, the first pass and
	// the 6 full checks every live one.
	small := func() uint64 {
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 4 {
				return b.GetCumulativeCount()
			}
		}
		return 0
	}
	if h == nil || h.GetSampleCount() != 13 || small() != 6 || h.GetSampleSum() < 7*rows {
		t.Fatalf("patina_log_compaction_judged_versions: %v", h)
	}
}

// TestIncrementalRetention: with a retention window, a version marked superseded waits, unjudged,
// until its winner has left the window, and is then cleared.
func TestIncrementalRetention(t *testing.T) {
	ctx := context.Background()
	a := newNode(t, log.SiteID{15: 1}, []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v INTEGER)"})
	ins := a.exec(t, "INSERT INTO t (id, v) VALUES (1, 0)").Version
	a.exec(t, "INSERT INTO t (id, v) VALUES (2, 0)")
	if _, err := a.m.CompactLog(ctx, 0, 0); err != nil { // the first, full pass
		t.Fatal(err)
	}
	a.exec(t, "UPDATE t SET v = 1 WHERE id = 1")
	a.exec(t, "INSERT INTO t (id, v) VALUES (3, 0)")
	res, err := a.m.CompactLog(ctx, time.Hour, 0)
	if err != nil || res.Judged != 0 || res.Dropped != 0 || a.m.sup.held() != 1 {
		t.Fatalf("inside the window: %+v, %v; %d marks held, want 1 waiting", res, err, a.m.sup.held())
	}
	var cleared int
	if err := testutil.Poll(30*time.Second, func() bool {
		res, err := a.m.CompactLog(ctx, time.Millisecond, 0)
		if err != nil {
			t.Fatal(err)
		}
		cleared += res.Cleared
		return cleared > 0
	}); err != nil {
		t.Fatalf("the superseded insert was never cleared once out of the window: %v", err)
	}
	if sv := a.store.Vector().Sites[a.store.SiteID()]; !sv.Cleared.Contains(uint64(ins)) || cleared != 1 || a.m.sup.held() != 0 {
		t.Fatalf("cleared %d versions (%+v), %d marks held; want the insert %d", cleared, sv.Cleared, a.m.sup.held(), ins)
	}
}
