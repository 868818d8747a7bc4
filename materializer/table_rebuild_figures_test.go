package materializer

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/log"
)

// TestTableRebuildFigures measures what bench/RESULTS.md reports for issue 16's table
// rebuild: the fold of a schema changeset that reorders one table's columns (the table is
// rebuilt alone) against a rebuild of the whole view on the same node, in the same run (what
// the fold did before). The reordered table t has small rows; another table holds big rows.
// It runs only when PATINA_TABLE_REBUILD_FIGURES is set ("small,big", e.g. "10000,200000").
func TestTableRebuildFigures(t *testing.T) {
	spec := os.Getenv("PATINA_TABLE_REBUILD_FIGURES")
	if spec == "" {
		t.Skip("set PATINA_TABLE_REBUILD_FIGURES=small,big to measure")
	}
	var small, big int
	if _, err := fmt.Sscanf(spec, "%d,%d", &small, &big); err != nil {
		t.Fatalf("PATINA_TABLE_REBUILD_FIGURES=%q: %v", spec, err)
	}
	ctx := context.Background()
	a := newNode(t, log.SiteID{1}, nil)
	b := newNode(t, log.SiteID{2}, nil)
	a.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)", "CREATE TABLE big (id INTEGER PRIMARY KEY NOT NULL, v TEXT)")
	fill := func(table string, n int) {
		for i := 0; i < n; i += 1000 {
			stmts := make([]Statement, 0, 1000)
			for id := i + 1; id <= min(i+1000, n); id++ {
				stmts = append(stmts, Statement{SQL: "INSERT INTO " + table + " (id, v) VALUES (?, ?)",
					Params: []log.Value{log.Integer(int64(id)), log.Text(fmt.Sprintf("row %d of %s", id, table))}})
			}
			if _, err := a.m.Transact(ctx, stmts); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill("t", small)
	fill("big", big)
	a.syncTo(t, b)
	a.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT, x INTEGER)")
	b.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT, y TEXT)")
	start := time.Now()
	a.syncTo(t, b) // a's column sorts first: b rebuilds t
	table := time.Since(start)
	if got := schemaOfView(t, b); !strings.Contains(got, "x INTEGER; y TEXT;") {
		t.Fatalf("b did not reach the merged schema: %s", got)
	}
	start = time.Now()
	if err := b.m.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	whole := time.Since(start)
	t.Logf("t %d rows, big %d rows: schema changeset folded with t rebuilt alone in %v; whole-view rebuild %v (%.1fx)",
		small, big, table.Round(time.Millisecond), whole.Round(time.Millisecond), whole.Seconds()/table.Seconds())
}
