package materializer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
)

// randSchema makes 1-2 tables with random key shapes, column types and defaults.
// randReplicas opens n replicas of schema, each with a site id drawn from r, and returns
// them with the schema's tables (as the first replica holds them).
func randReplicas(t *testing.T, r *rand.Rand, n int, schema []string) ([]*node, []*table) {
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = newNode(t, log.SiteID{15: byte(i + 1), 0: byte(r.IntN(256))}, schema)
	}
	var tables []*table
	for _, name := range nodes[0].m.Tables() {
		tables = append(tables, nodes[0].m.tables[strings.ToLower(name)])
	}
	return nodes, tables
}

func randSchema(r *rand.Rand) []string {
	types := []string{"", "TEXT", "INTEGER", "REAL", "NUMERIC", "BLOB", "ANY"}
	var out []string
	for ti := range 1 + r.IntN(2) {
		var cols, pks []string
		for k := range 1 + r.IntN(2) {
			typ := []string{"INTEGER", "TEXT"}[r.IntN(2)]
			name := fmt.Sprintf("k%d", k)
			cols = append(cols, name+" "+typ+" NOT NULL")
			pks = append(pks, name)
		}
		for c := range r.IntN(4) {
			def := fmt.Sprintf("c%d %s", c, types[r.IntN(len(types))])
			if r.IntN(4) == 0 {
				def += " NOT NULL DEFAULT 'd'"
			}
			cols = append(cols, def)
		}
		out = append(out, fmt.Sprintf("CREATE TABLE t%d (%s, PRIMARY KEY (%s))", ti, strings.Join(cols, ", "), strings.Join(pks, ", ")))
	}
	return out
}

var propValues = []log.Value{
	log.Null(), log.Integer(1), log.Integer(-5), log.Integer(2), log.Real(1.0), log.Real(1.5), log.Real(1e10),
	log.Text("1"), log.Text("a"), log.Text("B"), log.Text(""), log.Blob(nil), log.Blob([]byte{1}), log.Blob([]byte{0xff}),
}

// randOp makes one random write statement against one of the tables.
func randOp(r *rand.Rand, tables []*table) Statement {
	t := tables[r.IntN(len(tables))]
	key := func() []log.Value {
		out := make([]log.Value, len(t.PK))
		for i, c := range t.PK {
			if strings.EqualFold(t.Cols[c].Type, "TEXT") {
				out[i] = log.Text(string(rune('a' + r.IntN(3))))
			} else {
				out[i] = log.Integer(int64(r.IntN(3)))
			}
		}
		return out
	}
	val := func() log.Value { return propValues[r.IntN(len(propValues))] }
	where := func(k []log.Value) (string, []log.Value) { return t.pkWhere(), k }
	switch op := r.IntN(10); {
	case op < 3 || len(t.NonPK) == 0 && op < 6: // insert (plain, or replace, or ignore)
		verb := []string{"INSERT", "INSERT OR REPLACE", "INSERT OR IGNORE", "REPLACE"}[r.IntN(4)]
		names := []string{t.pkList()}
		params := key()
		for _, ci := range t.NonPK {
			if r.IntN(3) > 0 {
				names = append(names, quoteIdent(t.Cols[ci].Name))
				params = append(params, val())
			}
		}
		return Statement{SQL: fmt.Sprintf("%s INTO %s (%s) VALUES (%s)", verb, t.quoted, strings.Join(names, ", "), placeholders(len(params))), Params: params}
	case op < 7 && len(t.NonPK) > 0: // update one column
		c := t.Cols[t.NonPK[r.IntN(len(t.NonPK))]]
		w, k := where(key())
		return Statement{SQL: fmt.Sprintf("UPDATE %s SET %s = ? WHERE %s", t.quoted, quoteIdent(c.Name), w), Params: append([]log.Value{val()}, k...)}
	case op < 8 && len(t.NonPK) > 0: // upsert
		c := quoteIdent(t.Cols[t.NonPK[r.IntN(len(t.NonPK))]].Name)
		params := append(key(), val())
		return Statement{SQL: fmt.Sprintf("INSERT INTO %s (%s, %s) VALUES (%s) ON CONFLICT DO UPDATE SET %s = excluded.%s",
			t.quoted, t.pkList(), c, placeholders(len(params)), c, c), Params: params}
	case op == 8 && r.IntN(2) == 0: // primary key update (L7)
		c := t.Cols[t.PK[0]]
		nk := key()
		w, k := where(key())
		return Statement{SQL: fmt.Sprintf("UPDATE %s SET %s = ? WHERE %s", t.quoted, quoteIdent(c.Name), w), Params: append([]log.Value{nk[0]}, k...)}
	default:
		w, k := where(key())
		return Statement{SQL: fmt.Sprintf("DELETE FROM %s WHERE %s", t.quoted, w), Params: k}
	}
}

// deliver applies to dst a random subset of what src holds, shuffled, with duplicates.
func deliver(tb testing.TB, r *rand.Rand, src, dst *node, all bool) {
	tb.Helper()
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
	// Several Apply calls, so that order across fold transactions varies too.
	for len(send) > 0 {
		n := 1 + r.IntN(len(send))
		if _, err := dst.m.Apply(context.Background(), send[:n]); err != nil {
			tb.Fatalf("apply: %v", err)
		}
		send = send[n:]
	}
}

// TestPropertyConvergence: random schemas and writes on 3-5 replicas, changesets delivered
// in random orders with duplicates; every replica must end with identical tables and clock
// tables, and a rebuild from each log must give the same state again.
func TestPropertyConvergence(t *testing.T) {
	rounds := 12
	if testing.Short() {
		rounds = 4
	}
	if s := os.Getenv("PATINA_PROPERTY_ROUNDS"); s != "" {
		// Longer runs when hunting: PATINA_PROPERTY_ROUNDS=500 go test -run Property.
		if n, err := strconv.Atoi(s); err == nil {
			rounds = n
		}
	}
	for seed := range rounds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(seed), 7))
			schema := randSchema(r)
			nodes, tables := randReplicas(t, r, 3+r.IntN(3), schema)
			for range 60 {
				if r.IntN(4) == 0 {
					a, b := r.IntN(len(nodes)), r.IntN(len(nodes))
					if a != b {
						deliver(t, r, nodes[a], nodes[b], false)
					}
					continue
				}
				n := nodes[r.IntN(len(nodes))]
				k := 1 + r.IntN(3)
				stmts := make([]Statement, k)
				for i := range stmts {
					stmts[i] = randOp(r, tables)
				}
				n.m.Transact(context.Background(), stmts) // constraint failures are expected
			}
			for _, dst := range nodes {
				for _, src := range nodes {
					if src != dst {
						deliver(t, r, src, dst, true)
					}
				}
			}
			want := snapshot(t, nodes[0])
			for i, n := range nodes[1:] {
				if got := snapshot(t, n); got != want {
					t.Fatalf("schema %q: replica %d differs from replica 0:\n%s\nvs\n%s", schema, i+1, got, want)
				}
			}
			for i, n := range nodes {
				if err := n.m.Rebuild(context.Background(), nil); err != nil {
					t.Fatalf("rebuild %d: %v", i, err)
				}
				if got := snapshot(t, n); got != want {
					t.Fatalf("replica %d after rebuild:\n%s\nvs\n%s", i, got, want)
				}
			}
		})
	}
}

// snapshot renders every table and clock record, type-exact, origins included.
func snapshot(tb testing.TB, n *node) string {
	tb.Helper()
	var b strings.Builder
	for _, name := range n.m.Tables() {
		fmt.Fprintf(&b, "%s: %s\n", name, fmtRows(n.dumpTable(tb, name)))
	}
	for _, c := range n.dumpClock(tb) {
		fmt.Fprintf(&b, "%v %s\n", c, c.Origin)
	}
	return b.String()
}
