package materializer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/prometheus/client_golang/prometheus"
)

// counterValue reads a counter or gauge from reg; 0 when absent.
func registryValue(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
		return sum
	}
	return 0
}

// renderMerged is a canonical text of a merged schema.
func renderMerged(ms *mergedSchema) string {
	var b strings.Builder
	for _, t := range ms.Tables {
		fmt.Fprintf(&b, "table %s v%d by %v/%d:", t.Name, t.Version, t.Create.Site, t.Create.Version)
		for _, c := range t.Cols {
			fmt.Fprintf(&b, " %s %s nn=%v d=%v pk=%d;", c.Name, c.Type, c.NotNull, c.Default, c.PK)
		}
		b.WriteByte('\n')
	}
	for _, ix := range ms.Indexes {
		fmt.Fprintf(&b, "index %s on %s: %s %q\n", ix.Name, ix.Table, ix.Last.Kind, ix.Last.SQL)
	}
	for _, c := range ms.Conflicts {
		j, _ := json.Marshal(c)
		fmt.Fprintf(&b, "conflict %s\n", j)
	}
	fmt.Fprintf(&b, "waiting %d\n", ms.Waiting)
	return b.String()
}

// randElements makes schema elements of a few sites that overlap: tables defined twice
// (alike or not), columns added concurrently (some with one name and two definitions),
// index definitions and drops, elements for tables never defined, and invalid ones.
func randElements(r *rand.Rand) []element {
	sites := []log.SiteID{{1}, {2}, {3}}
	var out []element
	versions := map[log.SiteID]log.Version{}
	add := func(kind, tbl, name, sql string) {
		s := sites[r.IntN(len(sites))]
		versions[s]++
		out = append(out, element{Kind: kind, Table: tbl, Name: name, SQL: sql,
			TS: log.Timestamp(1 + r.IntN(6)), Site: s, Version: versions[s]})
	}
	tables := []string{"a", "b", "c"}
	for _, t := range tables {
		for range 1 + r.IntN(3) {
			switch r.IntN(7) {
			case 0:
				add(log.SchemaTable, t, t, fmt.Sprintf("CREATE TABLE %s (id INTEGER PRIMARY KEY NOT NULL, v TEXT)", t))
			case 1:
				add(log.SchemaTable, t, t, fmt.Sprintf("create table %s (id integer primary key not null, v text)", t))
			case 2:
				add(log.SchemaTable, t, t, fmt.Sprintf("CREATE TABLE %s (id TEXT PRIMARY KEY NOT NULL, w INTEGER)", t))
			case 3:
				add(log.SchemaTable, t, t, fmt.Sprintf("CREATE TABLE %s (id INTEGER, v TEXT)", t)) // no key: refused
			case 4: // a file that lags case 0
				add(log.SchemaTable, t, t, fmt.Sprintf("CREATE TABLE %s (id INTEGER PRIMARY KEY NOT NULL)", t))
			case 5: // files ahead of case 0, one of them with a column element's name
				add(log.SchemaTable, t, t, fmt.Sprintf("CREATE TABLE %s (id INTEGER PRIMARY KEY NOT NULL, v TEXT, x TEXT, w INTEGER DEFAULT 3)", t))
			case 6:
				add(log.SchemaTable, t, t, fmt.Sprintf("CREATE TABLE %s (id INTEGER PRIMARY KEY NOT NULL, v TEXT, y INTEGER DEFAULT 0)", t))
			}
		}
	}
	cols := []string{"x", "y", "z", "v"}
	defs := []string{"%s TEXT", "%s INTEGER DEFAULT 0", "%s REAL NOT NULL", "%s TEXT UNIQUE"}
	for range r.IntN(8) {
		t := tables[r.IntN(len(tables)+1)%len(tables)]
		if r.IntN(8) == 0 {
			t = "nosuch"
		}
		c := cols[r.IntN(len(cols))]
		add(log.SchemaColumn, t, c, fmt.Sprintf(defs[r.IntN(len(defs))], c))
	}
	for range r.IntN(5) {
		t := tables[r.IntN(len(tables))]
		name := fmt.Sprintf("i%d", r.IntN(3))
		switch r.IntN(3) {
		case 0:
			add(log.SchemaIndex, t, name, fmt.Sprintf("CREATE INDEX %s ON %s (id)", name, t))
		case 1:
			add(log.SchemaIndex, t, name, fmt.Sprintf("CREATE INDEX %s ON %s (x)", name, t))
		case 2:
			add(log.SchemaDropIndex, t, name, "")
		}
	}
	// Seqs within a changeset: number the elements of each (site, version).
	for i := range out {
		out[i].Seq = 0
	}
	return out
}

// TestMergeSchemaProperty: the merged schema depends on the set of elements only: any
// order, with duplicates, gives the same tables, columns, indexes and conflicts; no table
// lacks a column that no conflict names; every loser is reported.
func TestMergeSchemaProperty(t *testing.T) {
	ctx := context.Background()
	for seed := range 20 {
		r := rand.New(rand.NewPCG(uint64(seed), 16))
		els := randElements(r)
		want, err := mergeSchema(ctx, els)
		if err != nil {
			t.Fatal(err)
		}
		wantText := renderMerged(want)
		for range 3 {
			shuffled := append([]element(nil), els...)
			for i := range els {
				if r.IntN(3) == 0 {
					shuffled = append(shuffled, els[i])
				}
			}
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			got, err := mergeSchema(ctx, shuffled)
			if err != nil {
				t.Fatal(err)
			}
			if g := renderMerged(got); g != wantText {
				t.Fatalf("seed %d: merge depends on order:\n%s\nvs\n%s", seed, g, wantText)
			}
		}
		// Every valid column element for a defined table is in it, or reported.
		lost := map[string]bool{}
		for _, c := range want.Conflicts {
			lost[c.Kind+"/"+c.Table+"/"+c.Name+"/"+c.SQL] = true
		}
		for _, e := range els {
			if e.Kind != log.SchemaColumn {
				continue
			}
			mt := want.table(e.Table)
			if mt == nil {
				continue
			}
			found := false
			for _, c := range mt.Cols {
				found = found || strings.EqualFold(c.Name, e.Name)
			}
			if !found && !lost[e.Kind+"/"+e.Table+"/"+e.Name+"/"+e.SQL] {
				t.Fatalf("seed %d: column element %+v neither applied nor reported:\n%s", seed, e, wantText)
			}
		}
		// Every column of a table element that did not lose is in its table, or a conflict
		// names that column with the table element as the loser (a file ahead whose column
		// another element defined otherwise).
		for _, e := range els {
			mt := want.table(e.Table)
			if e.Kind != log.SchemaTable || mt == nil {
				continue
			}
			if lost[e.Kind+"/"+e.Table+"/"+e.Name+"/"+e.SQL] {
				// A file that lags or is ahead of the winning definition never loses whole.
				if strings.EqualFold(mt.Create.SQL, fmt.Sprintf("CREATE TABLE %s (id INTEGER PRIMARY KEY NOT NULL, v TEXT)", mt.Name)) &&
					(strings.HasSuffix(e.SQL, "(id INTEGER PRIMARY KEY NOT NULL)") || strings.Contains(e.SQL, "v TEXT, x TEXT") || strings.Contains(e.SQL, "v TEXT, y INTEGER")) {
					t.Fatalf("seed %d: table element %q lost to %q, which it lags or extends:\n%s", seed, e.SQL, mt.Create.SQL, wantText)
				}
				continue
			}
			s, err := parseSchemaStmt(e.SQL)
			if err != nil {
				t.Fatal(err)
			}
			for name := range s.colDefs {
				found := false
				for _, c := range mt.Cols {
					found = found || strings.EqualFold(c.Name, name)
				}
				for _, c := range want.Conflicts {
					found = found || c.Kind == log.SchemaColumn && strings.EqualFold(c.Name, name) && c.Loser == e.origin()
				}
				if !found {
					t.Fatalf("seed %d: column %q of table element %+v neither in the table nor reported:\n%s", seed, name, e, wantText)
				}
			}
		}
	}
}

// schemaOfView renders the view's user tables with their columns in physical order and
// their indexes.
func schemaOfView(tb testing.TB, n *node) string {
	tb.Helper()
	var b strings.Builder
	for _, name := range n.m.Tables() {
		fmt.Fprintf(&b, "%s:", name)
		for _, r := range n.query(tb, "SELECT name, type FROM pragma_table_info(?) ORDER BY cid", log.Text(name)) {
			fmt.Fprintf(&b, " %s %s;", r[0].Text, r[1].Text)
		}
		b.WriteByte('\n')
	}
	for _, r := range n.query(tb, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND name NOT LIKE '__patina%' ORDER BY name") {
		fmt.Fprintf(&b, "index %s\n", r[1].Text)
	}
	return b.String()
}

func (n *node) migrate(tb testing.TB, stmts ...string) MigrateResult {
	tb.Helper()
	res, err := n.m.Migrate(context.Background(), stmts)
	if err != nil {
		tb.Fatalf("migrate %q: %v", stmts, err)
	}
	return res
}

func schemaJSON(tb testing.TB, n *node) string {
	tb.Helper()
	b, err := json.Marshal(n.m.Schema())
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// TestSchemaReplicates: a migration on one node reaches a node started with no schema,
// whatever the order its changesets arrive in: data for the new table waits until the
// schema changeset comes, then folds.
func TestSchemaReplicates(t *testing.T) {
	a := newNode(t, log.SiteID{1}, nil)
	res := a.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x TEXT)", "CREATE INDEX tx ON t (x)")
	if res.Version != 1 || len(res.Applied) != 2 {
		t.Fatalf("migrate: %+v", res)
	}
	a.exec(t, "INSERT INTO t VALUES (1, 'one'), (2, 'two')")
	a.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x TEXT, y INTEGER)")
	a.exec(t, "UPDATE t SET y = 7 WHERE id = 2")

	// In log order.
	b := newNode(t, log.SiteID{2}, nil)
	a.syncTo(t, b)
	// Data first, schema last: the data waits.
	c := newNode(t, log.SiteID{3}, nil)
	all, err := a.store.Read(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var data, schema []*log.Changeset
	for _, cs := range all {
		cs.Seq = 0
		if cs.Kind == log.KindSchema {
			schema = append(schema, cs)
		} else {
			data = append(data, cs)
		}
	}
	if _, err := c.m.Apply(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	if len(c.m.Tables()) != 0 {
		t.Fatalf("tables before the schema arrived: %v", c.m.Tables())
	}
	if _, err := c.m.Apply(context.Background(), schema); err != nil {
		t.Fatal(err)
	}
	// A node that knows the table but not the column yet: the new column's value waits
	// (pending) while the rest of its changeset folds, then folds with the column.
	d := newNode(t, log.SiteID{4}, nil)
	if _, err := d.m.Apply(context.Background(), schema[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Apply(context.Background(), data); err != nil {
		t.Fatal(err)
	}
	if got := d.query(t, "SELECT count(*) FROM t"); got[0][0].Int != 2 {
		t.Fatalf("rows of the known table before its column arrived: %v", fmtRows(got))
	}
	if got := d.query(t, "SELECT count(*) FROM __patina_pending"); got[0][0].Int == 0 {
		t.Fatal("the change of the unknown column is not pending")
	}
	if _, err := d.m.Apply(context.Background(), schema[1:]); err != nil {
		t.Fatal(err)
	}
	if got := d.query(t, "SELECT count(*) FROM __patina_pending"); got[0][0].Int != 0 {
		t.Fatalf("pending after the column arrived: %v", fmtRows(got))
	}
	want := snapshot(t, a)
	for _, n := range []*node{b, c, d} {
		if got := snapshot(t, n); got != want {
			t.Fatalf("replica differs:\n%s\nvs\n%s", got, want)
		}
		if got, w := schemaOfView(t, n), schemaOfView(t, a); got != w {
			t.Fatalf("replica schema differs:\n%s\nvs\n%s", got, w)
		}
		if got, w := schemaJSON(t, n), schemaJSON(t, a); got != w {
			t.Fatalf("GET /v1/schema would differ:\n%s\nvs\n%s", got, w)
		}
	}
	info := a.m.Schema()
	if len(info.Tables) != 1 || info.Tables[0].Version != 3 || strings.Join(info.Tables[0].Columns, ",") != "id,x,y" ||
		len(info.Tables[0].Indexes) != 1 || len(info.Conflicts) != 0 {
		t.Fatalf("schema: %+v", info)
	}
	// Local writes on the replica capture the replicated column.
	r := b.exec(t, "UPDATE t SET y = 9 WHERE id = 1")
	if got := lastChanges(t, b, r); len(got) != 1 || !strings.Contains(got[0], ".y=9") {
		t.Fatalf("changes on the replica: %v", got)
	}
}

// TestConcurrentColumnsConverge: two nodes add different columns to one table at the same
// time and write into them; both columns survive, in the same order on both nodes, and the
// tables converge. The node whose column sorts after the other's rebuilds that table locally.
func TestConcurrentColumnsConverge(t *testing.T) {
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := openNode(t, t.TempDir(), log.SiteID{1}, nil, func(c *Config) { c.Registerer = regA })
	b := openNode(t, t.TempDir(), log.SiteID{2}, nil, func(c *Config) { c.Registerer = regB })
	a.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)")
	a.exec(t, "INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b')")
	a.syncTo(t, b)
	a.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT, x INTEGER)")
	b.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT, y TEXT DEFAULT 'none')")
	a.exec(t, "UPDATE t SET x = 10 WHERE id = 1")
	b.exec(t, "UPDATE t SET y = 'why' WHERE id = 2")
	b.exec(t, "INSERT INTO t (id, v, y) VALUES (3, 'c', 'new')")
	a.syncTo(t, b)
	b.syncTo(t, a)
	if got, want := schemaOfView(t, b), schemaOfView(t, a); got != want {
		t.Fatalf("column order differs:\n%s\nvs\n%s", got, want)
	}
	if !strings.Contains(schemaOfView(t, a), " x INTEGER;") || !strings.Contains(schemaOfView(t, a), " y TEXT;") {
		t.Fatalf("a column is missing: %s", schemaOfView(t, a))
	}
	if got, want := snapshot(t, b), snapshot(t, a); got != want {
		t.Fatalf("tables differ:\n%s\nvs\n%s", got, want)
	}
	if got, want := schemaJSON(t, b), schemaJSON(t, a); got != want {
		t.Fatalf("schema differs:\n%s\nvs\n%s", got, want)
	}
	if n := registryValue(t, regA, "patina_schema_table_rebuilds_total") + registryValue(t, regB, "patina_schema_table_rebuilds_total"); n != 1 {
		t.Fatalf("%v table rebuilds, want 1 (on the node whose column sorts last)", n)
	}
	if n := registryValue(t, regA, "patina_schema_rebuilds_total") + registryValue(t, regB, "patina_schema_rebuilds_total"); n != 0 {
		t.Fatalf("%v whole-view rebuilds, want none", n)
	}
	if got := a.query(t, "SELECT x, y FROM t WHERE id = 1")[0]; got[0].Int != 10 || got[1].Text != "none" {
		t.Fatalf("row 1: %v", fmtRows([][]log.Value{got}))
	}
}

// TestTableRebuildAlone: a schema changeset that reorders one table's columns rebuilds that
// table in place from the log: the view file stays (no whole-view rebuild and swap), the other
// tables keep their rows untouched, the table's own writes survive, its indexes (one made on
// each node) are there again, and the result is
// exactly what a rebuild of the whole view from the log gives, clocks included.
func TestTableRebuildAlone(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	a := newNode(t, log.SiteID{1}, nil)
	b := openNode(t, dir, log.SiteID{2}, nil, func(c *Config) { c.Registerer = reg })
	a.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)", "CREATE TABLE other (k TEXT PRIMARY KEY NOT NULL, n INTEGER)")
	a.exec(t, "INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b')")
	a.exec(t, "INSERT INTO other VALUES ('x', 1), ('y', 2)")
	a.syncTo(t, b)
	if _, err := b.m.Migrate(context.Background(), []string{"CREATE INDEX t_local ON t (v)"}); err != nil {
		t.Fatal(err)
	}
	// Concurrent columns: a's x sorts before b's y (site 1 before site 2), so b must reorder.
	a.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT, x INTEGER)", "CREATE INDEX t_x ON t (x)")
	b.migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT, y TEXT DEFAULT 'none')")
	a.exec(t, "UPDATE t SET x = 10 WHERE id = 1")
	b.exec(t, "UPDATE t SET y = 'why', v = 'B' WHERE id = 2")
	b.exec(t, "INSERT INTO t (id, v, y) VALUES (3, 'c', 'new')")
	b.exec(t, "UPDATE other SET n = 20 WHERE k = 'y'")
	otherBefore := b.query(t, "SELECT rowid, k, n FROM other ORDER BY k")
	view := filepath.Join(dir, "views.db")
	before, err := os.Stat(view)
	if err != nil {
		t.Fatal(err)
	}

	a.syncTo(t, b)
	b.syncTo(t, a)

	if n := registryValue(t, reg, "patina_schema_table_rebuilds_total"); n != 1 {
		t.Fatalf("%v table rebuilds, want 1", n)
	}
	if n := registryValue(t, reg, "patina_schema_rebuilds_total"); n != 0 {
		t.Fatalf("%v whole-view rebuilds, want 0", n)
	}
	after, err := os.Stat(view)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the view file was replaced (%v): a whole-view rebuild ran", err)
	}
	if got := b.query(t, "SELECT rowid, k, n FROM other ORDER BY k"); !rowsEqual(got, otherBefore) {
		t.Fatalf("the other table changed: %v, was %v", fmtRows(got), fmtRows(otherBefore))
	}
	if got, want := schemaOfView(t, b), schemaOfView(t, a); got != want {
		t.Fatalf("column order differs:\n%s\nvs\n%s", got, want)
	}
	idx := b.query(t, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 't' AND sql IS NOT NULL ORDER BY name")
	if len(idx) != 2 || idx[0][0].Text != "t_local" || idx[1][0].Text != "t_x" {
		t.Fatalf("indexes of t after the rebuild: %v", fmtRows(idx))
	}
	want := snapshot(t, a)
	if got := snapshot(t, b); got != want {
		t.Fatalf("tables differ from the other node:\n%s\nvs\n%s", got, want)
	}
	if got := b.query(t, "SELECT v, y FROM t WHERE id = 2")[0]; got[0].Text != "B" || got[1].Text != "why" {
		t.Fatalf("b's own write to t: %v", fmtRows([][]log.Value{got}))
	}
	// Exactly what a rebuild of the whole view from the log gives.
	tclock := b.query(t, "SELECT * FROM __patina_clock_t ORDER BY 1")
	if err := b.m.Rebuild(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, b); got != want {
		t.Fatalf("the table rebuilt alone differs from a whole rebuild:\n%s\nvs\n%s", want, got)
	}
	if got := b.query(t, "SELECT * FROM __patina_clock_t ORDER BY 1"); !rowsEqual(got, tclock) {
		t.Fatalf("clock rows after a whole rebuild %v, after the table rebuild %v", fmtRows(got), fmtRows(tclock))
	}
}

// TestConflictingDefinitions: two nodes define one table differently, and one column
// differently, at the same time. Every node ends with the same winner and reports the same
// losers (Schema, metrics); the data written under the losing definition keeps what fits.
func TestConflictingDefinitions(t *testing.T) {
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	var logA, logB testutil.LockedBuffer
	a := openNode(t, t.TempDir(), log.SiteID{1}, nil, func(c *Config) {
		c.Registerer, c.Logger = regA, slog.New(slog.NewTextHandler(&logA, nil))
	})
	b := openNode(t, t.TempDir(), log.SiteID{2}, nil, func(c *Config) {
		c.Registerer, c.Logger = regB, slog.New(slog.NewTextHandler(&logB, nil))
	})
	a.migrate(t, "CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, name TEXT)")
	b.migrate(t, "CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, label TEXT, n INTEGER DEFAULT 0)")
	a.migrate(t, "CREATE TABLE w (id INTEGER PRIMARY KEY NOT NULL)")
	a.syncTo(t, b)
	a.migrate(t, "CREATE TABLE w (id INTEGER PRIMARY KEY NOT NULL, c TEXT)")
	b.migrate(t, "CREATE TABLE w (id INTEGER PRIMARY KEY NOT NULL, c INTEGER DEFAULT 1)")
	a.exec(t, "INSERT INTO u (id, name) VALUES (1, 'from a')")
	b.exec(t, "INSERT INTO w (id, c) VALUES (5, 3)")
	a.syncTo(t, b)
	b.syncTo(t, a)
	if got, want := schemaOfView(t, b), schemaOfView(t, a); got != want {
		t.Fatalf("schemas differ:\n%s\nvs\n%s", got, want)
	}
	if got, want := snapshot(t, b), snapshot(t, a); got != want {
		t.Fatalf("tables differ:\n%s\nvs\n%s", got, want)
	}
	sa, sb := schemaJSON(t, a), schemaJSON(t, b)
	if sa != sb {
		t.Fatalf("reported schema differs:\n%s\nvs\n%s", sa, sb)
	}
	info := a.m.Schema()
	if len(info.Conflicts) != 2 {
		t.Fatalf("conflicts: %+v", info.Conflicts)
	}
	for _, c := range info.Conflicts {
		if c.Winner == nil || c.Reason == "" {
			t.Fatalf("conflict without a winner or reason: %+v", c)
		}
	}
	for _, reg := range []*prometheus.Registry{regA, regB} {
		if got := registryValue(t, reg, "patina_schema_conflicts"); got != 2 {
			t.Fatalf("patina_schema_conflicts = %v", got)
		}
	}
	// Each node logs each loser once, with both origins.
	for i, buf := range []*testutil.LockedBuffer{&logA, &logB} {
		text := buf.String()
		if n := strings.Count(text, "schema conflict: element lost the merge"); n != 2 || strings.Count(text, "winner_site=") < 2 {
			t.Fatalf("node %d logged %d conflict lines, want 2 with their winners:\n%s", i, n, text)
		}
	}
	// Redefining the table after the merge is refused like any destructive change.
	if _, err := a.m.Migrate(context.Background(), []string{"CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, other BLOB)"}); !errors.Is(err, ErrSchemaConflict) {
		t.Fatalf("redefining a table after the merge: %v", err)
	}
}

// TestSchemaConvergenceShuffled: three nodes migrate and write concurrently; every
// changeset is delivered to every node in random order with duplicates; the views end
// identical.
func TestSchemaConvergenceShuffled(t *testing.T) {
	for seed := range 3 {
		r := rand.New(rand.NewPCG(uint64(seed), 99))
		var nodes []*node
		for i := range 3 {
			nodes = append(nodes, newNode(t, log.SiteID{byte(i + 1)}, nil))
		}
		nodes[0].migrate(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)")
		for _, n := range nodes[1:] {
			nodes[0].syncTo(t, n)
		}
		for i, n := range nodes {
			n.migrate(t, fmt.Sprintf("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT, c%d INTEGER DEFAULT %d)", i, i))
			n.migrate(t, fmt.Sprintf("CREATE INDEX t_c%d ON t (c%d)", i, i))
			for k := range 5 {
				n.exec(t, fmt.Sprintf("INSERT INTO t (id, v, c%d) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v, c%d = excluded.c%d", i, i, i),
					log.Integer(int64(r.IntN(8))), log.Text(fmt.Sprint(i, k)), log.Integer(int64(k)))
			}
		}
		for _, src := range nodes {
			for _, dst := range nodes {
				if src != dst {
					src.shuffle = r
					src.syncTo(t, dst)
				}
			}
		}
		want, wantSchema := snapshot(t, nodes[0]), schemaOfView(t, nodes[0])
		for _, n := range nodes[1:] {
			if got := schemaOfView(t, n); got != wantSchema {
				t.Fatalf("seed %d: schema differs:\n%s\nvs\n%s", seed, got, wantSchema)
			}
			if got := snapshot(t, n); got != want {
				t.Fatalf("seed %d: tables differ:\n%s\nvs\n%s", seed, got, want)
			}
		}
		// Every node's column and index made it, in one order everywhere (checked above).
		for i := range nodes {
			if !strings.Contains(wantSchema, fmt.Sprintf(" c%d INTEGER;", i)) || !strings.Contains(wantSchema, fmt.Sprintf("CREATE INDEX t_c%d ON t (c%d)", i, i)) {
				t.Fatalf("seed %d: node %d's column or index is missing: %s", seed, i, wantSchema)
			}
		}
		if info := nodes[0].m.Schema(); len(info.Conflicts) != 0 {
			t.Fatalf("seed %d: concurrent additive changes reported as conflicts: %+v", seed, info.Conflicts)
		}
	}
}

// TestSchemaFilesOnFreshNodes: nodes that start with empty logs and schema files of other
// ages (one lags, one is ahead) append their files' table definitions before they hear
// from each other. Once they exchange logs none of them is a conflict: the lagging file
// adds nothing, the file ahead adds its further column; every node ends with the same
// columns and rows, whatever the order, and the rows each wrote under its own file are kept.
func TestSchemaFilesOnFreshNodes(t *testing.T) {
	v1 := []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x TEXT)"}
	v2 := []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x TEXT, y TEXT DEFAULT 'd')", "CREATE INDEX t_x ON t (x)"}
	v3 := []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x TEXT, y TEXT DEFAULT 'd', z INTEGER)"}
	for _, order := range [][3][]string{{v2, v1, v3}, {v3, v1, v2}, {v1, v3, v2}} {
		var nodes []*node
		var regs []*prometheus.Registry
		for i, files := range order {
			reg := prometheus.NewRegistry()
			regs = append(regs, reg)
			n := openNode(t, t.TempDir(), log.SiteID{byte(i + 1)}, files, func(c *Config) { c.Registerer = reg })
			n.exec(t, "INSERT INTO t (id, x) VALUES (?, 'from file')", log.Integer(int64(i)))
			nodes = append(nodes, n)
		}
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b {
					a.syncTo(t, b)
				}
			}
		}
		want, wantSchema := snapshot(t, nodes[0]), schemaOfView(t, nodes[0])
		if !strings.Contains(wantSchema, "t: id INTEGER; x TEXT; y TEXT; z INTEGER;") || !strings.Contains(wantSchema, "index CREATE INDEX t_x ON t (x)") {
			t.Fatalf("files %v: schema %s", order, wantSchema)
		}
		for i, n := range nodes {
			if info := n.m.Schema(); len(info.Conflicts) != 0 {
				t.Fatalf("files %v: node %d reports conflicts: %+v", order, i, info.Conflicts)
			}
			if got := schemaOfView(t, n); got != wantSchema {
				t.Fatalf("files %v: node %d's schema differs:\n%s\nvs\n%s", order, i, got, wantSchema)
			}
			if got := snapshot(t, n); got != want {
				t.Fatalf("files %v: node %d's rows differ:\n%s\nvs\n%s", order, i, got, want)
			}
			if got := n.query(t, "SELECT count(*) FROM t WHERE y = 'd'"); got[0][0].Int != 3 {
				t.Fatalf("files %v: node %d: rows with y's default: %v", order, i, fmtRows(got))
			}
		}
		if got, w := schemaJSON(t, nodes[1]), schemaJSON(t, nodes[0]); got != w {
			t.Fatalf("files %v: GET /v1/schema differs:\n%s\nvs\n%s", order, got, w)
		}
		// The node whose file lags warns about it (unless its table was the first, which
		// the others extend); the node whose file is the newest does not.
		for i, files := range order {
			got := registryValue(t, regs[i], "patina_schema_file_lagging_total")
			if len(files) == len(v3) && files[0] == v3[0] && got != 0 || files[0] == v1[0] && i > 0 && got != 1 {
				t.Fatalf("files %v: node %d counted %v lagging statements", order, i, got)
			}
		}
	}
}

// TestSchemaFileAtRestart: a node restarted with a schema file ahead of the replicated schema
// appends what the file adds as a schema changeset, which reaches a node that has no schema
// file at all; restarted with a file that lags, it keeps the replicated schema, counts and
// skips the lagging statements and appends nothing.
func TestSchemaFileAtRestart(t *testing.T) {
	v1 := []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x TEXT)"}
	v2 := []string{"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x TEXT, y INTEGER DEFAULT 7)", "CREATE TABLE u (k TEXT PRIMARY KEY NOT NULL, v)"}
	dir := t.TempDir()
	a := openNode(t, dir, log.SiteID{1}, v1, nil)
	a.exec(t, "INSERT INTO t (id, x) VALUES (1, 'one')")
	a.close()
	a = openNode(t, dir, log.SiteID{1}, v2, nil)
	a.exec(t, "INSERT INTO u VALUES ('k', 'v')")
	css, err := a.store.Read(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var schemas int
	for _, cs := range css {
		if cs.Kind == log.KindSchema {
			schemas++
		}
	}
	if schemas != 2 {
		t.Fatalf("%d schema changesets in the log after a restart with a file ahead, want 2 (v1, then what v2 adds)", schemas)
	}
	b := newNode(t, log.SiteID{2}, nil)
	a.syncTo(t, b)
	if got, want := schemaOfView(t, b), schemaOfView(t, a); got != want || !strings.Contains(got, "y INTEGER;") || !strings.Contains(got, "u:") {
		t.Fatalf("the node with no file:\n%s\nwant\n%s", got, want)
	}
	if got, want := snapshot(t, b), snapshot(t, a); got != want {
		t.Fatalf("rows differ:\n%s\nvs\n%s", got, want)
	}

	// Back to the lagging file: the replicated schema stays, nothing is appended.
	last := a.store.LastSeq()
	a.close()
	reg := prometheus.NewRegistry()
	a = openNode(t, dir, log.SiteID{1}, v1, func(c *Config) { c.Registerer = reg })
	if got := registryValue(t, reg, "patina_schema_file_lagging_total"); got != 1 {
		t.Fatalf("lagging statements counted: %v, want 1", got)
	}
	if a.store.LastSeq() != last {
		t.Fatalf("a restart with a lagging file appended to the log (seq %d -> %d)", last, a.store.LastSeq())
	}
	if got, want := schemaOfView(t, a), schemaOfView(t, b); got != want {
		t.Fatalf("schema after a restart with a lagging file:\n%s\nwant\n%s", got, want)
	}
}

// TestMigrationOrdersAfterSkewedClock: a schema changeset from a node whose clock runs
// further ahead than the HLC follows (log.MaxClockDrift) creates an index; dropping it here
// afterwards still orders after the creation, so the index is gone on this node and on
// every node that gets both, instead of the creation winning back everywhere.
func TestMigrationOrdersAfterSkewedClock(t *testing.T) {
	a := newNode(t, log.SiteID{1}, nil)
	ahead := log.Timestamp(time.Now().Add(time.Hour).UnixNano())
	cs := &log.Changeset{Site: log.SiteID{9}, Version: 1, TS: ahead, Kind: log.KindSchema, LastOrd: 1, Span: log.OrdRange{First: 0, Last: 1},
		Changes: []log.Change{
			{Table: "t", PK: log.MustPackPK(log.Text("t")), CID: log.SchemaTable, Val: log.Text("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, x TEXT)"), CL: 1},
			{Table: "t", PK: log.MustPackPK(log.Text("t_x")), CID: log.SchemaIndex, Val: log.Text("CREATE INDEX t_x ON t (x)"), CL: 1, Ord: 1},
		}}
	if _, err := a.m.Apply(context.Background(), []*log.Changeset{cs}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(schemaOfView(t, a), "CREATE INDEX t_x") {
		t.Fatalf("the index did not arrive: %s", schemaOfView(t, a))
	}
	if res := a.migrate(t, "DROP INDEX t_x"); len(res.Applied) != 1 {
		t.Fatalf("drop index: %+v", res)
	}
	if got := schemaOfView(t, a); strings.Contains(got, "t_x") || len(a.m.Schema().Tables[0].Indexes) != 0 {
		t.Fatalf("the dropped index is back: %s %+v", got, a.m.Schema().Tables[0])
	}
	b := newNode(t, log.SiteID{2}, nil)
	a.syncTo(t, b)
	if got, want := schemaJSON(t, b), schemaJSON(t, a); got != want || strings.Contains(schemaOfView(t, b), "t_x") {
		t.Fatalf("another node:\n%s\nvs\n%s", got, want)
	}
}
