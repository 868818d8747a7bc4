package materializer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// runaway never ends on its own: SQLite counts forever.
const runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"

// A runaway statement is interrupted when its caller's context ends: the transaction rolls
// back with the context's error, and the writer serves the next transactions. Covers a read
// inside a transaction and a write whose subquery runs away (SQLite rolls the whole writer
// transaction back for that one: the group's other transactions still commit).
func TestRunawayStatementIsInterrupted(t *testing.T) {
	n := newNode(t, log.SiteID{1}, []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v INTEGER)"})
	n.exec(t, "INSERT INTO t (id, v) VALUES (1, 0)")

	for _, sql := range []string{
		runaway,
		"UPDATE t SET v = (" + runaway + ") WHERE id = 1",
		// An INSERT is watched as soon as it holds a SELECT (checkWrite's bounded).
		"INSERT INTO t (id, v) VALUES (2, (" + runaway + "))",
	} {
		var wg sync.WaitGroup
		errs := make([]error, 8)
		start := time.Now()
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%2 == 0 {
					// Runaways, each with its own deadline.
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					defer cancel()
					_, errs[i] = n.m.Transact(ctx, []Statement{{SQL: sql}})
					return
				}
				// Innocent writes queued beside them, with no deadline.
				_, errs[i] = n.m.Transact(context.Background(), []Statement{{SQL: fmt.Sprintf("INSERT INTO t (id, v) VALUES (%d, 1) ON CONFLICT (id) DO UPDATE SET v = v + 1", 100+i)}})
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: transactions still running after 20 s: the runaway holds the writer", sql)
		}
		ran := 0 // runaways interrupted while running (the others time out in the queue)
		for i, err := range errs {
			if i%2 == 0 {
				var se *StmtError
				if errors.As(err, &se) {
					ran++
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s: runaway %d: err %v, want the deadline", sql, i, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: innocent write %d: %v", sql, i, err)
			}
		}
		if ran == 0 {
			t.Errorf("%s: no runaway was interrupted while running", sql)
		}
		t.Logf("%s: %d transactions answered in %v (retried %v)", sql[:10], len(errs), time.Since(start), counterValue(n.m.met.txRetried))
	}
	// The innocents' writes are there, three times (once per round); the runaway UPDATE
	// left v alone and the runaway INSERT added no row.
	got := n.query(t, "SELECT count(*) || ',' || sum(v) FROM t WHERE id >= 100")
	if got[0][0].Quote() != "'4,12'" {
		t.Fatalf("innocent rows: count, sum = %v, want 4, 12", got[0])
	}
	if got := n.query(t, "SELECT v FROM t WHERE id = 1"); got[0][0].Quote() != "0" {
		t.Fatalf("row 1 after the interrupted update: v = %v, want 0", got[0][0])
	}
	n.exec(t, "INSERT INTO t (id, v) VALUES (2, 2)")
}

// A transaction still running when the materializer closes is interrupted, so Close returns.
func TestCloseInterruptsRunaway(t *testing.T) {
	n := newNode(t, log.SiteID{1}, []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v INTEGER)"})
	errc := make(chan error, 1)
	go func() {
		_, err := n.m.Transact(context.Background(), []Statement{{SQL: runaway}})
		errc <- err
	}()
	testutil.WaitFor(t, 10*time.Second, "the writer inside the runaway", func() bool { return n.m.inUser.Load() == 1 })
	closed := make(chan error, 1)
	go func() { closed <- n.m.Close() }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return within 20 s with a runaway statement running")
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("runaway at close: %v, want ErrClosed", err)
	}
}

// counterValue reads a counter (prometheus/testutil would add a dependency).
func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// An interrupted write statement makes SQLite roll back the whole writer transaction: the
// transaction grouped before it in the same SQLite transaction runs again and commits.
func TestInterruptedWriteRetriesItsGroup(t *testing.T) {
	n := newNode(t, log.SiteID{1}, []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v INTEGER)"})
	n.exec(t, "INSERT INTO t (id, v) VALUES (1, 0)")
	update := "UPDATE t SET v = (" + runaway + ") WHERE id = 1"
	transact := func(timeout time.Duration, sql string) <-chan error {
		errc := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_, err := n.m.Transact(ctx, []Statement{{SQL: sql}})
			errc <- err
		}()
		return errc
	}
	// A holds the writer; B (innocent) then C (a runaway write) queue behind it and are
	// grouped into one SQLite transaction once A is interrupted.
	a := transact(1500*time.Millisecond, update)
	testutil.WaitFor(t, 10*time.Second, "the writer inside A", func() bool { return n.m.inUser.Load() == 1 })
	queued := func(k int) func() bool { return func() bool { return len(n.m.reqs) == k } }
	b := transact(time.Minute, "INSERT INTO t (id, v) VALUES (2, 2)")
	testutil.WaitFor(t, 5*time.Second, "B queued", queued(1))
	c := transact(4*time.Second, update)
	testutil.WaitFor(t, 5*time.Second, "C queued", queued(2))
	if err := <-a; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("A: %v, want the deadline", err)
	}
	if err := <-c; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("C: %v, want the deadline", err)
	}
	if err := <-b; err != nil {
		t.Fatalf("B, grouped with the interrupted C: %v", err)
	}
	if got := counterValue(n.m.met.txRetried); got < 1 {
		t.Fatalf("retried %v transactions, want B run again", got)
	}
	if got := n.query(t, "SELECT group_concat(id || '=' || v) FROM (SELECT * FROM t ORDER BY id)"); got[0][0].Quote() != "'1=0,2=2'" {
		t.Fatalf("rows: %v, want 1=0,2=2", got[0][0])
	}
}
