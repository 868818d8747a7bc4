package subs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// TestResumeAfterRestart: a subscription survives closing and reopening the engine on the
// same directory; a client resumes by id from the change it last saw, with changes made
// while the engine was down delivered exactly once, and from a too-old id it gets an error.
func TestResumeAfterRestart(t *testing.T) {
	src := newSQLSource(t, testTable)
	dir := t.TempDir()
	src.write(t, mrow(1, "a", 80, 1))
	e1 := New(src, Config{Dir: dir, RetainChanges: 3})
	if err := e1.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := subscribe(t, e1, `SELECT id, port FROM m WHERE app = 'a'`, Options{})
	m := newMirror()
	for i := range 3 {
		waitSeq(t, e1, src.write(t, mrow(int64(10+i), "a", int64(i), 0)))
	}
	m.readUntil(t, st, 3)
	id := st.ID
	st.Close()
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e1.Attach(context.Background(), id, Options{}); !errors.Is(err, ErrClosed) {
		t.Errorf("attach to a closed engine: %v, want ErrClosed", err)
	}

	// While it is down, the view changes: one row leaves, one changes, one arrives.
	src.write(t, mdel(10))
	src.write(t, mrow(11, "a", 99, 0))
	src.write(t, mrow(20, "a", 7, 0))

	e2 := openEngine(t, src, Config{Dir: dir, RetainChanges: 3})
	if got := len(e2.List()); got != 1 {
		t.Fatalf("%d subscriptions after restart, want 1", got)
	}
	from := uint64(3)
	rs, err := e2.Attach(context.Background(), id, Options{From: &from})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	testutil.WaitFor(t, 10*time.Second, "catch-up after restart", func() bool { return subInfo(t, e2, id).ChangeID >= 6 })
	m.readUntil(t, rs, subInfo(t, e2, id).ChangeID)
	_, want := queryRows(t, src, `SELECT id, port FROM m WHERE app = 'a'`)
	if got, w := m.multiset(), multiset(want); !equalStrings(got, w) {
		t.Fatalf("after restart: got %q, want %q", got, w)
	}
	// A restored row that leaves the result after the restart is deleted from it.
	waitSeq(t, e2, src.write(t, mrow(11, "b", 99, 0)))
	m.readUntil(t, rs, subInfo(t, e2, id).ChangeID)
	_, want = queryRows(t, src, `SELECT id, port FROM m WHERE app = 'a'`)
	if got, w := m.multiset(), multiset(want); !equalStrings(got, w) {
		t.Fatalf("after a restored row left: got %q, want %q", got, w)
	}
	// The same statement finds the restored subscription rather than a new one.
	again := subscribe(t, e2, `SELECT id, port FROM m WHERE app = 'a'`, Options{SkipRows: true})
	if again.ID != id {
		t.Errorf("same statement after restart got id %s, want %s", again.ID, id)
	}
	old := uint64(1)
	if _, err := e2.Attach(context.Background(), id, Options{From: &old}); !errors.Is(err, ErrTooOld) {
		t.Errorf("resume from 1 with 3 retained: %v, want ErrTooOld", err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestIdleDrop: a subscription without clients is dropped after the idle time, from memory
// and from the store; one with a client is kept.
func TestIdleDrop(t *testing.T) {
	src := newSQLSource(t, testTable)
	dir := t.TempDir()
	e := openEngine(t, src, Config{Dir: dir, IdleTimeout: 50 * time.Millisecond})
	kept := subscribe(t, e, `SELECT * FROM m`, Options{})
	idle := subscribe(t, e, `SELECT id FROM m`, Options{})
	idle.Close()
	testutil.WaitFor(t, 10*time.Second, "idle subscription dropped", func() bool { return len(e.List()) == 1 })
	if _, err := e.Attach(context.Background(), idle.ID, Options{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("attach to dropped: %v, want ErrNotFound", err)
	}
	if e.List()[0].ID != kept.ID {
		t.Errorf("kept the wrong subscription")
	}
	ps, err := e.store.load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].id != kept.ID {
		t.Errorf("store holds %d subscriptions, want only %s", len(ps), kept.ID)
	}
}

// TestSlowClient: a client that does not read is disconnected with ErrSlowClient once its
// buffer is full, while the writer and a reading client go on unaffected.
func TestSlowClient(t *testing.T) {
	src := newSQLSource(t, testTable)
	e := openEngine(t, src, Config{ClientBuffer: 4})
	slow := subscribe(t, e, `SELECT * FROM m`, Options{SkipRows: true})
	fast := subscribe(t, e, `SELECT * FROM m`, Options{})
	m := newMirror()
	m.readUntil(t, fast, 0)
	var seq log.Seq
	for i := range 20 {
		seq = src.write(t, mrow(int64(i), "a", 1, 1))
		waitSeq(t, e, seq)
		m.readUntil(t, fast, uint64(i+1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	for err == nil {
		_, err = slow.Next(ctx)
	}
	if !errors.Is(err, ErrSlowClient) {
		t.Fatalf("slow client got %v, want ErrSlowClient", err)
	}
	if got := subInfo(t, e, fast.ID).Clients; got != 1 {
		t.Errorf("%d clients left, want 1 (the fast one)", got)
	}
}

// TestUpdates: /v1/updates streams one notify per changed row of its table only, update for
// a live row and delete for a deleted one, and refuses unknown tables.
func TestUpdates(t *testing.T) {
	src := newSQLSource(t, testTable, `CREATE TABLE other (k TEXT PRIMARY KEY)`)
	e := openEngine(t, src, Config{})
	if _, err := e.Updates(context.Background(), "nope"); !IsBadInput(err) {
		t.Errorf("unknown table: %v, want bad input", err)
	}
	u, err := e.Updates(context.Background(), "M")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	src.write(t, mrow(1, "a", 1, 1), op{table: "other", pk: []string{"k"}, cols: []string{"k"}, vals: []log.Value{log.Text("x")}})
	src.write(t, mdel(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	for range 2 {
		l, err := u.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(l))
	}
	checkLines(t, got, `{"notify":["update",[1]]}`, `{"notify":["delete",[1]]}`)
	if n := u.Buffered(); n != 0 {
		t.Errorf("%d more lines, want none", n)
	}
}
