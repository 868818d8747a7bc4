package subs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

const bigDDL = `CREATE TABLE big (id INTEGER PRIMARY KEY NOT NULL, v TEXT)`

func putBig(tb testing.TB, n *realNode, id int64, size int) log.Seq {
	tb.Helper()
	res, err := n.mat.Transact(context.Background(), []materializer.Statement{{
		SQL: "INSERT OR REPLACE INTO big (id, v) VALUES (?, ?)", Params: []log.Value{log.Integer(id), log.Text(strings.Repeat("x", size))}}})
	if err != nil {
		tb.Fatal(err)
	}
	return res.Seq
}

// next reads one line of st with a deadline.
func next(tb testing.TB, st *Stream) ([]byte, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return st.Next(ctx)
}

// Issue 12, item 6: every client of a subscription gets the same bytes for a large row and
// for a change, not an encoding of its own, so memory does not grow with the subscribers.
func TestLargeEventsAreShared(t *testing.T) {
	n := newRealNode(t, bigDDL, markerDDL)
	e := openEngine(t, n.mat, Config{})
	waitSeq(t, e, putBig(t, n, 1, 1<<20))
	var rowLines, changeLines [][]byte
	var streams []*Stream
	for range 20 {
		st := subscribe(t, e, "SELECT id, v FROM big", Options{})
		streams = append(streams, st)
		for {
			l, err := next(t, st)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(string(l), `{"row"`) {
				rowLines = append(rowLines, l)
			}
			if strings.HasPrefix(string(l), `{"eoq"`) {
				break
			}
		}
	}
	waitSeq(t, e, putBig(t, n, 2, 1<<20))
	for _, st := range streams {
		l, err := next(t, st)
		if err != nil {
			t.Fatal(err)
		}
		changeLines = append(changeLines, l)
	}
	for name, ls := range map[string][][]byte{"row": rowLines, "change": changeLines} {
		if len(ls) != 20 || len(ls[0]) < 1<<20 {
			t.Fatalf("%d %s lines of %d bytes", len(ls), name, len(ls[0]))
		}
		for _, l := range ls[1:] {
			if &l[0] != &ls[0][0] {
				t.Fatalf("%s event encoded once per client: memory grows with the subscribers", name)
			}
		}
	}
}

// Issue 12, item 6: an event past MaxEventBytes is never sent: a subscription whose current
// rows hold one is refused with ErrEventTooLarge, and a change that large ends the clients'
// streams with it; smaller events flow as before.
func TestEventTooLarge(t *testing.T) {
	n := newRealNode(t, bigDDL, markerDDL)
	e := openEngine(t, n.mat, Config{MaxEventBytes: 64 << 10})
	waitSeq(t, e, putBig(t, n, 1, 1000))
	st := subscribe(t, e, "SELECT id, v FROM big", Options{})
	nextLines(t, st, 3) // columns, row, eoq
	waitSeq(t, e, putBig(t, n, 2, 100<<10))
	if _, err := next(t, st); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("a change past the limit: %v, want ErrEventTooLarge", err)
	}
	if _, err := e.Subscribe(context.Background(), stmt("SELECT id, v FROM big"), Options{}); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("subscribing to a result with a row past the limit: %v, want ErrEventTooLarge", err)
	}
	st2 := subscribe(t, e, "SELECT id FROM big", Options{})
	if got := nextLines(t, st2, 4); !strings.Contains(got[2], "2") {
		t.Fatalf("a small subscription on the same table: %q", got)
	}
}

// Issue 12, item 6: a client that does not read is disconnected once the events it is behind
// by pass ClientBufferBytes, whatever their count.
func TestClientByteBudget(t *testing.T) {
	n := newRealNode(t, bigDDL, markerDDL)
	e := openEngine(t, n.mat, Config{ClientBufferBytes: 256 << 10})
	st := subscribe(t, e, "SELECT id, v FROM big", Options{})
	nextLines(t, st, 2) // columns, eoq
	for i := range 8 {
		waitSeq(t, e, putBig(t, n, int64(i), 64<<10))
	}
	var err error
	for err == nil {
		_, err = next(t, st)
	}
	if !errors.Is(err, ErrSlowClient) {
		t.Fatalf("a client behind by 512 KiB with a 256 KiB budget: %v, want ErrSlowClient", err)
	}
}

// Issue 12, item 6: retained changes are bounded by RetainBytes: a resume from before the
// bytes kept is ErrTooOld, a resume from within them works.
func TestRetainBytes(t *testing.T) {
	n := newRealNode(t, bigDDL, markerDDL)
	e := openEngine(t, n.mat, Config{RetainBytes: 200 << 10})
	st := subscribe(t, e, "SELECT id, v FROM big", Options{})
	nextLines(t, st, 2)
	for i := range 6 {
		waitSeq(t, e, putBig(t, n, int64(i), 64<<10))
	}
	if _, err := e.Attach(context.Background(), st.ID, Options{From: ptr(uint64(1))}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("resume from change 1 of 6 with 3 kept: %v, want ErrTooOld", err)
	}
	at, err := e.Attach(context.Background(), st.ID, Options{From: ptr(uint64(5))})
	if err != nil {
		t.Fatalf("resume from change 5: %v", err)
	}
	at.Close()
}

func ptr[T any](v T) *T { return &v }
