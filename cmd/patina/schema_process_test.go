package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
)

// schemaText is what GET /v1/schema shows, as canonical JSON.
func (n *clNode) schemaText() string {
	n.t.Helper()
	s, err := n.cl.Schema(context.Background())
	if err != nil {
		return "error: " + err.Error()
	}
	b, err := json.Marshal(s)
	if err != nil {
		n.t.Fatal(err)
	}
	return string(b)
}

func (n *clNode) count(q string) int64 {
	n.t.Helper()
	_, rows, err := n.cl.QueryAll(context.Background(), client.Options{}, client.Stmt(q))
	if err != nil || len(rows) != 1 {
		return -1
	}
	return rows[0][0].Int
}

// waitSameSchema waits until every node shows the same schema and it satisfies ok.
func waitSameSchema(t *testing.T, nodes []*clNode, what string, ok func(s string) bool) string {
	t.Helper()
	var last string
	testutil.WaitFor(t, 60*time.Second, what, func() bool {
		first := nodes[0].schemaText()
		for _, n := range nodes[1:] {
			if n.schemaText() != first {
				return false
			}
		}
		last = first
		return ok(first)
	})
	return last
}

// waitCount waits until q counts want on every node.
func waitCount(t *testing.T, nodes []*clNode, q string, want int64) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("%q = %d on %d nodes", q, want, len(nodes)), func() bool {
		for _, n := range nodes {
			if n.count(q) != want {
				return false
			}
		}
		return true
	})
}

// TestSchemaCluster: the schema travels through the log. Three agents start with no schema;
// one migration on node 0 reaches all; every node writes into the new table; node 1 adds a
// column while node 2 writes; a node that joins later gets schema and data, and its --schema
// file (lagging for one table, adding another) is enough for the cluster; two nodes cut
// off from each other define one table differently and, once healed, every node ends with
// the same winner and reports the same loser. The views are compared table by table (column
// order included) at the end.
func TestSchemaCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster tests")
	}
	bin := buildPatina(t)
	c := &clCluster{t: t, bin: bin}
	ports := &clPorts{t: t}
	for i := range 3 {
		n := newClNode(t, bin, i, "schema", ports)
		// No schema: an empty file.
		if err := os.WriteFile(filepath.Join(n.dir, "schema.sql"), []byte("-- nothing\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	ports.release()
	for _, n := range c.nodes {
		for _, o := range c.nodes {
			if o != n {
				n.bootstrap = append(n.bootstrap, o.gossip)
			}
		}
		n.start()
	}
	c.waitMembers(c.nodes)
	ctx := context.Background()
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]

	// One migration on node 0 reaches every node.
	if applied, err := n0.cl.Migrate(ctx, "CREATE TABLE s (id INTEGER NOT NULL PRIMARY KEY, v TEXT, node INTEGER)"); err != nil || len(applied) != 1 {
		t.Fatalf("migrate on node 0: %v, %v", applied, err)
	}
	waitSameSchema(t, c.nodes, "table s on every node", func(s string) bool { return strings.Contains(s, `"name":"s"`) })

	// Writes on every node into the new table converge.
	for _, n := range c.nodes {
		for k := range 5 {
			id := n.idx*100 + k
			if _, err := n.cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO s (id, v, node) VALUES (?, ?, ?)", id, fmt.Sprint("v", id), n.idx)); err != nil {
				t.Fatalf("write on node %d: %v", n.idx, err)
			}
		}
	}
	waitCount(t, c.nodes, "SELECT count(*) FROM s", 15)

	// Node 1 adds a column while node 2 writes rows.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := range 20 {
			id := 1000 + k
			if _, err := n2.cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO s (id, v, node) VALUES (?, ?, 2)", id, fmt.Sprint("w", id))); err != nil {
				t.Errorf("write on node 2: %v", err)
				return
			}
		}
	}()
	if _, err := n1.cl.Migrate(ctx, "CREATE TABLE s (id INTEGER NOT NULL PRIMARY KEY, v TEXT, node INTEGER, extra TEXT DEFAULT 'x')"); err != nil {
		t.Fatalf("add a column on node 1: %v", err)
	}
	if _, err := n1.cl.Exec(ctx, client.Options{}, client.Stmt("UPDATE s SET extra = 'set by 1' WHERE id = 0")); err != nil {
		t.Fatalf("write the new column on node 1: %v", err)
	}
	wg.Wait()
	waitSameSchema(t, c.nodes, "column extra on every node", func(s string) bool { return strings.Contains(s, `"columns":["id","v","node","extra"]`) })
	waitCount(t, c.nodes, "SELECT count(*) FROM s", 35)
	waitCount(t, c.nodes, "SELECT count(*) FROM s WHERE extra = 'set by 1'", 1)
	waitCount(t, c.nodes, "SELECT count(*) FROM s WHERE extra = 'x'", 34)

	// A node that joins later gets schema and data in the right order. Its --schema file
	// lags for s (written before node 1 added a column; the node appends it before it hears
	// from anyone) and adds a table: the lagging definition is no conflict, and the new
	// table reaches every node from this one file.
	late := newClNode(t, bin, 3, "schema", nil)
	file := "CREATE TABLE s (id INTEGER NOT NULL PRIMARY KEY, v TEXT);\nCREATE TABLE late_t (id INTEGER NOT NULL PRIMARY KEY, note TEXT);\n"
	if err := os.WriteFile(filepath.Join(late.dir, "schema.sql"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	late.bootstrap = []string{n1.gossip}
	late.start()
	c.nodes = append(c.nodes, late)
	c.waitMembers(c.nodes)
	waitCount(t, c.nodes, "SELECT count(*) FROM s WHERE extra = 'set by 1'", 1)
	waitCount(t, c.nodes, "SELECT count(*) FROM s", 35)
	waitSameSchema(t, c.nodes, "table late_t from one node's file on every node, no conflict", func(s string) bool {
		return strings.Contains(s, `"name":"late_t"`) && strings.Contains(s, `"conflicts":[]`) && strings.Contains(s, `"columns":["id","v","node","extra"]`)
	})
	if _, err := n0.cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO late_t (id, note) VALUES (1, 'from 0')")); err != nil {
		t.Fatalf("write into the table of node 3's file on node 0: %v", err)
	}
	waitCount(t, c.nodes, "SELECT count(*) FROM late_t", 1)

	// Node 2 is cut off from the others; it and node 0 define table u differently.
	cut := func(on bool) {
		for _, n := range c.nodes {
			var rules []string
			if on {
				var peers []string
				for _, o := range c.nodes {
					if (n == n2) != (o == n2) {
						peers = append(peers, strconv.Quote(o.site.String()))
					}
				}
				rules = []string{"peers = [" + strings.Join(peers, ", ") + "]\nblock = true"}
			}
			n.setFaults(rules)
		}
	}
	cut(true)
	// The rules hold once cut returns (setFaults waits for each agent to apply them); a probe
	// written on node 0 checks that node 2 no longer hears from the others.
	if _, err := n0.cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO s (id, v) VALUES (5000, 'probe')")); err != nil {
		t.Fatal(err)
	}
	waitCount(t, c.nodes[:2], "SELECT count(*) FROM s WHERE id = 5000", 1)
	if n2.count("SELECT count(*) FROM s WHERE id = 5000") != 0 {
		t.Log("the probe crossed before the cut took hold; the definitions below may not be concurrent")
	}
	if _, err := n0.cl.Migrate(ctx, "CREATE TABLE u (id INTEGER NOT NULL PRIMARY KEY, name TEXT)"); err != nil {
		t.Fatalf("define u on node 0: %v", err)
	}
	if _, err := n2.cl.Migrate(ctx, "CREATE TABLE u (id INTEGER NOT NULL PRIMARY KEY, label TEXT, size INTEGER DEFAULT 0)"); err != nil {
		t.Fatalf("define u on node 2: %v", err)
	}
	if _, err := n0.cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO u (id, name) VALUES (1, 'from 0')")); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO u (id, label) VALUES (2, 'from 2')")); err != nil {
		t.Fatal(err)
	}
	cut(false)
	final := waitSameSchema(t, c.nodes, "one definition of u and one conflict on every node", func(s string) bool {
		return strings.Contains(s, `"name":"u"`) && strings.Count(s, `"reason"`) == 1
	})
	for _, n := range c.nodes {
		if got := n.metric("patina_schema_conflicts"); got != 1 {
			t.Fatalf("node %d patina_schema_conflicts = %v", n.idx, got)
		}
		// Health shows the conflict on every node, and stays 200 unless asked to fail on it.
		if h, err := n.cl.Health(ctx, nil); err != nil || h.SchemaConflicts != 1 {
			t.Fatalf("node %d health = %+v, %v; want 200 with schema_conflicts 1", n.idx, h, err)
		}
	}
	// patina schema lists the conflict and exits 1.
	sc := exec.Command(bin, "schema", "--api-addr", n2.api)
	if out, _ := sc.CombinedOutput(); sc.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "conflict: table u.u") {
		t.Fatalf("patina schema with a conflict: exit %d\n%s", sc.ProcessState.ExitCode(), out)
	}
	// patina health fails on the conflict only past --schema-conflicts.
	for _, c := range []struct {
		limit string
		exit  int
	}{{"0", 1}, {"1", 0}} {
		h := exec.Command(bin, "health", "--api-addr", n1.api, "--schema-conflicts", c.limit)
		out, _ := h.CombinedOutput()
		if h.ProcessState.ExitCode() != c.exit || (c.exit == 1) != strings.Contains(string(out), "schema_conflicts 1 > 0") {
			t.Fatalf("patina health --schema-conflicts %s: exit %d, want %d\n%s", c.limit, h.ProcessState.ExitCode(), c.exit, out)
		}
	}
	// The row written under the losing definition keeps what fits the winner; cells of
	// columns the winner lacks wait in the log (for a column of that name, if one comes).
	want := int64(1)
	if strings.Contains(final, `"columns":["id","label","size"]`) {
		want = 2 // node 2's definition won: node 0's row has only its key in common
	}
	waitCount(t, c.nodes, "SELECT count(*) FROM u", want)
	waitCount(t, c.nodes, "SELECT count(*) FROM s WHERE id = 5000", 1)
	t.Logf("schema after the conflict: %s", final)
	// Every user table and clock table, row by row and in column order, on every node.
	for _, n := range c.nodes {
		n.stop(syscall.SIGTERM)
	}
	d0 := dumpView(t, filepath.Join(n0.dir, "data", "views.db"), replicated)
	if len(d0["s"]) != 36 || len(d0["u"]) == 0 || len(d0["late_t"]) != 1 {
		t.Fatalf("node 0's dump lacks rows: s %d, u %d, late_t %d", len(d0["s"]), len(d0["u"]), len(d0["late_t"]))
	}
	for _, n := range c.nodes[1:] {
		d := dumpView(t, filepath.Join(n.dir, "data", "views.db"), replicated)
		if !maps.EqualFunc(d0, d, slices.Equal) {
			t.Fatalf("node %d's view differs from node 0's:\n%v\nvs\n%v", n.idx, d, d0)
		}
	}
}
