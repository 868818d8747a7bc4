package materializer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// The tests here check what runLocal and runLocals do inside one writer group: one-statement
// transactions run without a savepoint (a failed statement is answered alone only when it
// left the writer transaction whole and changed no row; otherwise the group runs again
// without it), and the group's clocks are written once, after its last transaction. A node
// that runs the same transactions one group each must end with the same tables, clocks,
// changesets and answers.

var groupSchema = []string{
	"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x INTEGER CHECK (x >= 0), y TEXT NOT NULL DEFAULT 'd')",
	"CREATE TABLE p (id INTEGER PRIMARY KEY NOT NULL)", // the plugs' rows (groupRun)
}

// groupNode runs transactions in groups of its choosing: its log's WAL syncs go through a
// gate, and at writer depth 1 the writer builds no group while the one before waits for
// its sync.
type groupNode struct {
	*node
	gate  *testutil.WALGate
	plugs int64
}

func openGroupNode(t *testing.T) *groupNode {
	gate := testutil.NewWALGate(vfs.Default)
	t.Cleanup(gate.Free)
	opts := log.Options{SiteID: log.SiteID{1}, FS: gate, Logger: discardLogger()}
	n := openNodeLog(t, t.TempDir(), opts, groupSchema, func(c *Config) {
		c.Logger = discardLogger()
		c.WriterDepth = 1
	})
	return &groupNode{node: n, gate: gate}
}

type txAnswer struct {
	res TxResult
	err error
}

// submit queues a transaction as Transact does, but returns once it is queued: the
// requests of a group are queued in order.
func submit(t *testing.T, m *Materializer, stmts []Statement) *request {
	t.Helper()
	checks := make([]writeCheck, len(stmts))
	for i := range stmts {
		var err error
		if checks[i], err = checkWrite(stmts[i].SQL); err != nil {
			t.Fatalf("statement %q: %v", stmts[i].SQL, err)
		}
	}
	r := &request{ctx: context.Background(), kind: reqTx, stmts: stmts, checks: checks, done: make(chan struct{})}
	if err := m.send(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

// group runs txs in one writer group (of at most MaxGroup, 64) and returns their answers: a
// plug's group holds its sync at the gate while txs queue behind it; freeing the gate lets
// the writer take them all at once. The plug writes a row of p.
func (g *groupNode) group(t *testing.T, txs [][]Statement) []txAnswer {
	t.Helper()
	if len(txs) > 64 {
		t.Fatalf("%d transactions: more than a group", len(txs))
	}
	held, commits := g.gate.Entered(), counterValue(g.m.met.commits)
	g.gate.Hold()
	g.plugs++
	plug := submit(t, g.m, []Statement{{SQL: "INSERT INTO p (id) VALUES (?)", Params: []log.Value{log.Integer(g.plugs)}}})
	testutil.WaitFor(t, 10*time.Second, "the plug's sync held", func() bool { return g.gate.Entered() > held })
	reqs := make([]*request, len(txs))
	for i, stmts := range txs {
		reqs[i] = submit(t, g.m, stmts)
	}
	// Queued in order; the writer took at most the first, and waits for the plug's group.
	g.gate.Free()
	<-plug.done
	if plug.err != nil {
		t.Fatalf("plug: %v", plug.err)
	}
	out := make([]txAnswer, len(txs))
	for i, r := range reqs {
		<-r.done
		out[i] = txAnswer{r.tx, r.err}
	}
	if c := counterValue(g.m.met.commits) - commits; c != 2 {
		t.Fatalf("%d writer commits for the plug and the group, want 2 (the group in one)", int(c))
	}
	return out
}

// alone runs txs on n one transaction (one group) at a time, with the plug first as group
// does.
func alone(t *testing.T, n *node, plug int64, txs [][]Statement) []txAnswer {
	t.Helper()
	if _, err := n.m.Transact(context.Background(), []Statement{{SQL: "INSERT INTO p (id) VALUES (?)", Params: []log.Value{log.Integer(plug)}}}); err != nil {
		t.Fatalf("plug: %v", err)
	}
	out := make([]txAnswer, len(txs))
	for i, stmts := range txs {
		res, err := n.m.Transact(context.Background(), stmts)
		out[i] = txAnswer{res, err}
	}
	return out
}

// sameAnswers compares the answers of the grouped node (a) and the lone one (b).
func sameAnswers(t *testing.T, txs [][]Statement, a, b []txAnswer) {
	t.Helper()
	for i := range txs {
		x, y := a[i], b[i]
		if (x.err == nil) != (y.err == nil) || errors.Is(x.err, ErrConstraint) != errors.Is(y.err, ErrConstraint) {
			t.Fatalf("tx %d %v: grouped answered %v, alone %v", i, txs[i], x.err, y.err)
		}
		if x.err != nil {
			continue
		}
		if x.res.Version != y.res.Version || len(x.res.Results) != len(y.res.Results) {
			t.Fatalf("tx %d %v: grouped version %d (%d results), alone %d (%d)", i, txs[i], x.res.Version, len(x.res.Results), y.res.Version, len(y.res.Results))
		}
		for k := range x.res.Results {
			if x.res.Results[k].RowsAffected != y.res.Results[k].RowsAffected {
				t.Fatalf("tx %d %v statement %d: grouped %d rows, alone %d", i, txs[i], k, x.res.Results[k].RowsAffected, y.res.Results[k].RowsAffected)
			}
		}
	}
}

// sameState compares every table, every clock row byte for byte and every local changeset
// (all but their HLC time) of the two nodes.
func sameState(t *testing.T, a, b *node) {
	t.Helper()
	for _, name := range []string{"t", "p"} {
		if x, y := a.dumpTable(t, name), b.dumpTable(t, name); !rowsEqual(x, y) {
			t.Fatalf("table %s differs:\ngrouped %s\nalone   %s", name, fmtRows(x), fmtRows(y))
		}
		tb := a.m.tables[name]
		q := "SELECT pk, cl, clock FROM " + tb.clock + " ORDER BY pk"
		if x, y := a.query(t, q), b.query(t, q); !rowsEqual(x, y) {
			t.Fatalf("clock table of %s differs:\ngrouped %s\nalone   %s", name, fmtRows(x), fmtRows(y))
		}
	}
	if x, y := fmt.Sprint(a.dumpClock(t)), fmt.Sprint(b.dumpClock(t)); x != y {
		t.Fatalf("clocks differ:\ngrouped %s\nalone   %s", x, y)
	}
	last := a.store.NextLocalVersion() - 1
	if l := b.store.NextLocalVersion() - 1; l != last {
		t.Fatalf("local versions: grouped up to %d, alone up to %d", last, l)
	}
	for v := log.Version(1); v <= last; v++ {
		x, err := a.store.Get(log.SiteID{1}, v)
		if err != nil {
			t.Fatalf("grouped version %d: %v", v, err)
		}
		y, err := b.store.Get(log.SiteID{1}, v)
		if err != nil {
			t.Fatalf("alone version %d: %v", v, err)
		}
		if fmt.Sprint(x.Changes) != fmt.Sprint(y.Changes) || x.LastOrd != y.LastOrd {
			t.Fatalf("version %d: grouped %v, alone %v", v, x.Changes, y.Changes)
		}
	}
}

func stmt(sql string, params ...int64) Statement {
	st := Statement{SQL: sql}
	for _, p := range params {
		st.Params = append(st.Params, log.Integer(p))
	}
	return st
}

func one(sql string, params ...int64) []Statement { return []Statement{stmt(sql, params...)} }

// A group whose transactions fail in each way a one-statement transaction can: each failed
// one is answered alone with its error, every other one commits with the changeset and
// clocks it has when it runs alone, and only the failures that can leave rows behind (or
// lose the writer transaction) make the group run again.
func TestGroupFailuresLeaveTheOthersExact(t *testing.T) {
	g := openGroupNode(t)
	b := openNode(t, t.TempDir(), log.SiteID{1}, groupSchema, func(c *Config) { c.Logger = discardLogger() })
	setup := [][]Statement{one("INSERT INTO t (id, x) VALUES (1, 1), (2, 2), (3, 3)")}
	sameAnswers(t, setup, g.group(t, setup), alone(t, b, 1, setup))

	cases := []struct {
		name string
		tx   []Statement
		// lost: the failure may have left rows or lost the writer transaction, so the
		// group runs again without it.
		lost bool
	}{
		{"duplicate key (ABORT, nothing changed)", one("INSERT INTO t (id, x) VALUES (1, 9)"), false},
		{"CHECK (ABORT, nothing changed)", one("UPDATE t SET x = -1 WHERE id = 2"), false},
		{"OR FAIL after a changed row", one("INSERT OR FAIL INTO t (id, x) VALUES (50, 5), (1, 5)"), true},
		{"ABORT after a changed row", one("INSERT INTO t (id, x) VALUES (51, 5), (2, 5)"), true},
		{"OR ROLLBACK (the writer transaction is gone)", one("INSERT OR ROLLBACK INTO t (id, x) VALUES (3, 5)"), true},
		{"in a savepoint, after a row", []Statement{stmt("INSERT INTO t (id, x) VALUES (52, 5)"), stmt("INSERT INTO t (id, x) VALUES (1, 5)")}, false},
	}
	for i, c := range cases {
		// Before the failure: a transaction that writes a row the failing one (and the one
		// after) touch, whose clock is still buffered when the failure comes; after it, one
		// that touches that row again.
		txs := [][]Statement{
			one("UPDATE t SET x = x + 1 WHERE id IN (1, 2, 3)"),
			one("INSERT INTO t (id, x) VALUES (?, 1)", int64(100+i)),
			c.tx,
			one("UPDATE t SET x = x + 10 WHERE id = ?", int64(100+i)),
			one("DELETE FROM t WHERE id = ?", int64(100+i-1)),
		}
		retried := counterValue(g.m.met.txRetried)
		ga, ba := g.group(t, txs), alone(t, b, int64(i+2), txs)
		sameAnswers(t, txs, ga, ba)
		if ga[2].err == nil {
			t.Fatalf("%s: no error", c.name)
		}
		for k, a := range ga {
			if k != 2 && a.err != nil {
				t.Fatalf("%s: transaction %d failed: %v", c.name, k, a.err)
			}
		}
		if again := counterValue(g.m.met.txRetried) > retried; again != c.lost {
			t.Fatalf("%s: the group ran again: %v, want %v", c.name, again, c.lost)
		}
		sameState(t, g.node, b)
	}
}

// Random groups of one- and several-statement transactions, many of them failing, on rows
// the group's other transactions touch: the grouped node ends exactly where the node that
// ran them one by one does.
func TestGroupedSameAsAlone(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 14))
			g := openGroupNode(t)
			b := openNode(t, t.TempDir(), log.SiteID{1}, groupSchema, func(c *Config) { c.Logger = discardLogger() })
			id := func() int64 { return rng.Int64N(12) }
			x := func() int64 { return rng.Int64N(12) - 2 } // some break CHECK (x >= 0)
			gen := func() Statement {
				switch rng.IntN(10) {
				case 0:
					return stmt("INSERT INTO t (id, x) VALUES (?, ?)", id(), x())
				case 1:
					return stmt("INSERT OR REPLACE INTO t (id, x) VALUES (?, ?)", id(), x())
				case 2:
					return stmt("UPDATE t SET x = ? WHERE id = ?", x(), id())
				case 3:
					return stmt("DELETE FROM t WHERE id = ?", id())
				case 4:
					return stmt("UPDATE t SET id = ? WHERE id = ?", id(), id())
				case 5:
					return stmt("INSERT OR FAIL INTO t (id, x) VALUES (?, ?), (?, ?)", id(), x(), id(), x())
				case 6:
					return stmt("INSERT OR ROLLBACK INTO t (id, x) VALUES (?, ?)", id(), x())
				case 7:
					return stmt("INSERT INTO t (id, x) VALUES (?, ?), (?, ?) ON CONFLICT (id) DO UPDATE SET x = excluded.x + 1", id(), x(), id(), x())
				case 8:
					return stmt("UPDATE t SET x = x + ?, y = 'u' WHERE id BETWEEN ? AND ?", rng.Int64N(3)-1, id(), id())
				default:
					return stmt("SELECT count(*) FROM t")
				}
			}
			for round := range 6 {
				txs := make([][]Statement, 4+rng.IntN(20))
				for i := range txs {
					txs[i] = []Statement{gen()}
					if rng.IntN(4) == 0 {
						txs[i] = append(txs[i], gen())
					}
				}
				sameAnswers(t, txs, g.group(t, txs), alone(t, b, int64(round+1), txs))
			}
			sameState(t, g.node, b)
			if counterValue(g.m.met.txRetried) == 0 {
				t.Fatal("no group ran again: the random transactions missed the failures that lose a group")
			}
			if g.m.clockSkips.Load() == 0 {
				t.Log("the clock filter skipped no read")
			}
		})
	}
}

// discardLogger keeps the tests' output to failures.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A transaction whose capture fails once its statements have run (a read of the view
// failing, say: nothing a statement can cause, so a test fault) is answered with the error
// and leaves nothing. Without a savepoint its statement cannot be undone alone: the group
// runs again without it. In a savepoint, the clocks that the transactions before it buffered
// and that its own reads wrote out (the row it touches is theirs) survive its rollback.
func TestCapturedFailureInAGroup(t *testing.T) {
	g := openGroupNode(t)
	b := openNode(t, t.TempDir(), log.SiteID{1}, groupSchema, func(c *Config) { c.Logger = discardLogger() })
	errFault := errors.New("test fault")
	g.m.capturedFault = func(events []captureEvent) error {
		for _, ev := range events {
			n := len(ev.t.Cols)
			if ev.t.Name == "t" && ev.op == opInsert && ev.vals[n].Int >= 60 {
				return errFault // the rows 60 and up
			}
		}
		return nil
	}
	setup := [][]Statement{one("INSERT INTO t (id, x) VALUES (1, 1), (2, 2)")}
	sameAnswers(t, setup, g.group(t, setup), alone(t, b, 1, setup))
	for i, c := range []struct {
		name string
		tx   []Statement
		lost bool
	}{
		{"one statement", one("INSERT INTO t (id, x) VALUES (60, 1)"), true},
		{"in a savepoint, reading a row whose clock is buffered", []Statement{
			stmt("UPDATE t SET x = x + 100 WHERE id = 1"), stmt("INSERT INTO t (id, x) VALUES (61, 1)")}, false},
	} {
		before := [][]Statement{one("UPDATE t SET x = x + 1 WHERE id = 1"), one("INSERT INTO t (id, x) VALUES (?, 1)", int64(10+i))}
		after := [][]Statement{one("UPDATE t SET x = x + 10 WHERE id IN (1, 2)")}
		txs := append(append(append([][]Statement{}, before...), c.tx), after...)
		retried := counterValue(g.m.met.txRetried)
		ga := g.group(t, txs)
		if !errors.Is(ga[len(before)].err, errFault) {
			t.Fatalf("%s: answered %v, want the fault", c.name, ga[len(before)].err)
		}
		if again := counterValue(g.m.met.txRetried) > retried; again != c.lost {
			t.Fatalf("%s: the group ran again: %v, want %v", c.name, again, c.lost)
		}
		// The lone node runs the others only: the failed one left nothing.
		others := append(append([][]Statement{}, before...), after...)
		ba := alone(t, b, int64(i+2), others)
		sameAnswers(t, others, append(append([]txAnswer{}, ga[:len(before)]...), ga[len(before)+1:]...), ba)
		sameState(t, g.node, b)
	}
}
