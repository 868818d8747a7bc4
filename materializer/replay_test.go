package materializer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
)

// dumpView renders table t and its clock rows (origins included, as stored) of the view file
// at path, read through its own read-only connection.
func dumpView(tb testing.TB, path string) string {
	tb.Helper()
	db, err := sql.Open("sqlite", dsn(path, true, 0))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	for _, q := range []string{"SELECT k, v, w FROM t ORDER BY k", "SELECT hex(pk), cl, hex(clock) FROM " + quoteIdent(clockTableName("t")) + " ORDER BY pk"} {
		rows, err := db.Query(q)
		if err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			var x, y, z any
			if err := rows.Scan(&x, &y, &z); err != nil {
				tb.Fatal(err)
			}
			fmt.Fprintf(&b, "%v|%v|%v\n", x, y, z)
		}
		if err := rows.Close(); err != nil {
			tb.Fatal(err)
		}
		b.WriteString("--\n")
	}
	return b.String()
}

// tsAt is the commit time of the version that arrived at seq.
func tsAt(tb testing.TB, n *node, seq log.Seq) log.Timestamp {
	tb.Helper()
	css, err := n.store.Read(seq-1, 1)
	if err != nil || len(css) != 1 || css[0].Seq != seq {
		tb.Fatalf("read seq %d: %v", seq, err)
	}
	return css[0].TS
}

// TestReplayTo: a replay to a seq gives exactly the view as it was when that seq was folded
// (rows and clocks), before and after compaction, at every point from the compaction
// horizon on; a point before the horizon is refused with ErrBeforeHorizon naming the oldest
// exact point; a replay to a time folds what was committed by then, wherever and whenever it
// arrived (a peer's write that reached this node late is in it, and not in the replay to the
// seq of the same moment).
func TestReplayTo(t *testing.T) {
	ctx := context.Background()
	schema := []string{"CREATE TABLE t (k INTEGER NOT NULL PRIMARY KEY, v TEXT, w INTEGER)"}
	a := newNode(t, log.SiteID{15: 1}, schema)
	b := newNode(t, log.SiteID{15: 2}, schema)
	snaps := map[log.Seq]string{}
	write := func(sql string) {
		a.exec(t, sql)
		snaps[a.store.LastSeq()] = dumpView(t, a.cfg.Path)
	}
	for k := 1; k <= 4; k++ {
		write(fmt.Sprintf("INSERT INTO t VALUES (%d, 'v0', 0)", k))
	}
	b.exec(t, "INSERT INTO t VALUES (100, 'from b', 1)") // committed now, reaches a at the end
	for i := 1; i <= 5; i++ {
		write(fmt.Sprintf("UPDATE t SET v = 'v%d' WHERE k = 1", i))
		write(fmt.Sprintf("UPDATE t SET w = %d WHERE k = %d", i, 1+i%4))
	}
	write("DELETE FROM t WHERE k = 2")
	write("INSERT INTO t VALUES (2, 'again', 9)")
	write("UPDATE t SET v = 'last' WHERE k = 3")
	beforeB := a.store.LastSeq()
	b.syncTo(t, a)
	snaps[a.store.LastSeq()] = dumpView(t, a.cfg.Path)
	last := a.store.LastSeq()

	out := t.TempDir()
	n := 0
	replay := func(opts ReplayOptions) (string, ReplayResult, error) {
		n++
		opts.Out = filepath.Join(out, fmt.Sprintf("r%d.db", n))
		res, err := a.m.ReplayTo(ctx, opts, nil)
		if err != nil {
			return "", res, err
		}
		if res.Path != opts.Out {
			t.Fatalf("replay wrote %s, want %s", res.Path, opts.Out)
		}
		return dumpView(t, res.Path), res, nil
	}
	checkFrom := func(from log.Seq) {
		t.Helper()
		for seq := from; seq <= last; seq++ {
			want, ok := snaps[seq]
			if !ok {
				continue // a schema changeset's seq
			}
			got, res, err := replay(ReplayOptions{UntilSeq: seq})
			if err != nil {
				t.Fatalf("replay until seq %d: %v", seq, err)
			}
			if got != want || res.Seq != seq {
				t.Fatalf("replay until seq %d (stopped at %d):\n%s\nthe view then:\n%s", seq, res.Seq, got, want)
			}
		}
	}
	checkFrom(1)

	// By time: b's row was committed before a's updates but arrived after them.
	bTS := tsAt(t, a, last)
	atB, _, err := replay(ReplayOptions{UntilTS: bTS})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(atB, "from b") || strings.Contains(atB, "last") {
		t.Fatalf("replay until b's commit time %s: want b's row and none of a's later writes:\n%s", bTS, atB)
	}
	if got, _, _ := replay(ReplayOptions{UntilSeq: beforeB}); strings.Contains(got, "from b") {
		t.Fatalf("replay until seq %d holds b's row, which arrived later:\n%s", beforeB, got)
	}
	if got, _, err := replay(ReplayOptions{UntilTS: tsAt(t, a, beforeB)}); err != nil || got != snaps[last] {
		t.Fatalf("replay until a's last commit time (%v):\n%s\nwant the final view:\n%s", err, got, snaps[last])
	}

	// Compaction with a retention window starting at seq 12: everything from the horizon on
	// is still exact, everything before it is refused.
	windowTS := tsAt(t, a, 12)
	res, err := a.store.Compact(ctx, log.CompactOptions{Through: a.m.FoldPosition(), Horizon: windowTS, Judge: a.m.judge})
	if err != nil || res.Dropped == 0 {
		t.Fatalf("compact: %+v, %v", res, err)
	}
	st := a.store.Stats()
	if st.HorizonSeq == 0 || st.HorizonSeq >= 12 || st.HorizonTS == 0 || st.HorizonTS >= windowTS {
		t.Fatalf("horizon seq %d ts %s after compacting before seq 12 (ts %s)", st.HorizonSeq, st.HorizonTS, windowTS)
	}
	checkFrom(st.HorizonSeq)
	_, _, err = replay(ReplayOptions{UntilSeq: st.HorizonSeq - 1})
	if !errors.Is(err, ErrBeforeHorizon) || !strings.Contains(err.Error(), fmt.Sprintf("oldest exact point is seq %d", st.HorizonSeq)) {
		t.Fatalf("replay before the horizon: %v", err)
	}
	if _, _, err = replay(ReplayOptions{UntilTS: st.HorizonTS - 1}); !errors.Is(err, ErrBeforeHorizon) {
		t.Fatalf("replay before the horizon's time: %v", err)
	}

	// Retention 0: only the end is exact, and it still is.
	if _, err := a.m.CompactLog(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if h := a.store.Stats().HorizonSeq; h <= st.HorizonSeq || h > last {
		t.Fatalf("horizon after compacting everything: %d (was %d, last %d)", h, st.HorizonSeq, last)
	}
	checkFrom(a.store.Stats().HorizonSeq)

	// Bad points.
	for _, opts := range []ReplayOptions{{}, {UntilSeq: 1, UntilTS: 1}} {
		if _, _, err := replay(opts); !errors.Is(err, log.ErrInvalid) {
			t.Fatalf("replay %+v: %v, want ErrInvalid", opts, err)
		}
	}
	if _, _, err := replay(ReplayOptions{UntilSeq: last + 1}); !errors.Is(err, log.ErrSeqBeyondLog) {
		t.Fatalf("replay past the end: %v", err)
	}
	if _, err := a.m.ReplayTo(ctx, ReplayOptions{UntilSeq: last, Out: filepath.Join(out, "r1.db")}, nil); !errors.Is(err, log.ErrInvalid) {
		t.Fatalf("replay over an existing file: %v", err)
	}
}
