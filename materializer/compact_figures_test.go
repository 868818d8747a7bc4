package materializer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/patinadb/patina/log"
)

// TestCompactionFigures measures what bench/RESULTS.md reports for log compaction, with the
// uncompacted baseline in the same run: log bytes against view bytes after a churn of
// single-row updates of a fixed set of rows, write throughput with compaction running in the
// background against compaction off, rebuild time from a compacted and an uncompacted log,
// and the catch-up time of a fresh node fed each log. It runs only when
// PATINA_COMPACTION_FIGURES is set ("rows,updates", e.g. "10000,100000").
func TestCompactionFigures(t *testing.T) {
	spec := os.Getenv("PATINA_COMPACTION_FIGURES")
	if spec == "" {
		t.Skip("set PATINA_COMPACTION_FIGURES=rows,updates to measure")
	}
	var rows, updates int
	if _, err := fmt.Sscanf(spec, "%d,%d", &rows, &updates); err != nil {
		t.Fatalf("PATINA_COMPACTION_FIGURES=%q: %v", spec, err)
	}
	ctx := context.Background()
	schema := []string{"CREATE TABLE m (id INTEGER PRIMARY KEY NOT NULL, v INTEGER)"}
	for _, compact := range []bool{false, true} {
		dir := t.TempDir()
		n := openNodeSync(t, dir, log.SiteID{15: 1}, schema, func(c *Config) {
			if compact {
				c.Compaction = &Compaction{Retention: 0}
			}
		}, true)
		for i := 0; i < rows; i += 500 {
			stmts := make([]Statement, 0, 500)
			for id := i + 1; id <= min(i+500, rows); id++ {
				stmts = append(stmts, Statement{SQL: "INSERT INTO m (id, v) VALUES (?, 0)", Params: []log.Value{log.Integer(int64(id))}})
			}
			if _, err := n.m.Transact(ctx, stmts); err != nil {
				t.Fatal(err)
			}
		}
		// 16 writers of single-row updates, each its own rows.
		lat := make([][]time.Duration, 16)
		start := time.Now()
		done := make(chan struct{})
		for w := range 16 {
			go func() {
				defer func() { done <- struct{}{} }()
				for i := w; i < updates; i += 16 {
					t0 := time.Now()
					if _, err := n.m.Transact(ctx, []Statement{{SQL: "UPDATE m SET v = ? WHERE id = ?",
						Params: []log.Value{log.Integer(int64(i)), log.Integer(int64(1 + i%rows))}}}); err != nil {
						t.Error(err)
						return
					}
					lat[w] = append(lat[w], time.Since(t0))
				}
			}()
		}
		for range 16 {
			<-done
		}
		el := time.Since(start)
		var all []time.Duration
		for _, l := range lat {
			all = append(all, l...)
		}
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		p := func(q float64) time.Duration { return all[int(q*float64(len(all)-1))] }
		if compact {
			// What the background loop would reach at its next pass.
			if _, err := n.m.CompactLog(ctx, 0, 0); err != nil {
				t.Fatal(err)
			}
			if err := n.store.ReclaimSpace(ctx); err != nil {
				t.Fatal(err)
			}
		}
		st := n.store.Stats()
		view, _ := os.Stat(filepath.Join(dir, "views.db"))
		label := "retention forever (off)"
		if compact {
			label = "retention 0s"
		}
		t.Logf("%s, %d rows, %d updates: %.0f updates/s, p50 %v p99 %v; log %d changes, %d encoded bytes, %d on disk; %d cleared versions; views.db %d bytes",
			label, rows, updates, float64(updates)/el.Seconds(), p(0.5), p(0.99), st.Changes, st.Bytes, st.DiskBytes, st.Cleared, view.Size())
		// Rebuild from this log.
		t0 := time.Now()
		if err := n.m.Rebuild(ctx, nil); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: rebuild %v", label, time.Since(t0))
		// Catch-up of a fresh node fed this log (what sync sends: versions and cleared ranges).
		fresh := openNode(t, t.TempDir(), log.SiteID{15: 2}, schema, nil)
		t0 = time.Now()
		for site, sv := range n.store.Vector().Sites {
			if len(sv.Cleared) > 0 {
				if _, err := fresh.store.AppendCleared(ctx, site, sv.Cleared); err != nil {
					t.Fatal(err)
				}
			}
		}
		var after log.Seq
		for {
			css, err := n.store.Read(after, 1024)
			if err != nil {
				t.Fatal(err)
			}
			if len(css) == 0 {
				break
			}
			after = css[len(css)-1].Seq
			for _, cs := range css {
				cs.Seq = 0
			}
			if _, err := fresh.m.Apply(ctx, css); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s: a fresh node caught up in %v", label, time.Since(t0))
		if got, want := snapshot(t, fresh), snapshot(t, n); got != want {
			t.Fatalf("%s: the fresh node differs", label)
		}
	}
}
