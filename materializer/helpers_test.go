package materializer

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
)

// node is one replica for tests: a real log in a temp dir and a materializer over it.
type node struct {
	dir   string
	store *log.Store
	m     *Materializer
	cfg   Config
	// shuffle, when set, makes syncTo deliver in random order with duplicates, in several
	// Apply calls.
	shuffle *rand.Rand
	// compact: syncTo also hands over n's cleared versions, as ranges (like gossip's sync).
	compact bool
}

func openNode(tb testing.TB, dir string, site log.SiteID, schema []string, tweak func(*Config)) *node {
	tb.Helper()
	return openNodeSync(tb, dir, site, schema, tweak, false)
}

// openNodeSync is openNode with a choice of log fsync (crash tests need it).
func openNodeSync(tb testing.TB, dir string, site log.SiteID, schema []string, tweak func(*Config), sync bool) *node {
	tb.Helper()
	return openNodeLog(tb, dir, log.Options{SiteID: site, NoSync: !sync}, schema, tweak)
}

// openNodeLog opens a node in dir whose log opens with opts.
func openNodeLog(tb testing.TB, dir string, opts log.Options, schema []string, tweak func(*Config)) *node {
	tb.Helper()
	st, err := log.Open(filepath.Join(dir, "log"), opts)
	if err != nil {
		tb.Fatalf("open log: %v", err)
	}
	cfg := DefaultConfig(filepath.Join(dir, "views.db"))
	cfg.Schema = schema
	if tweak != nil {
		tweak(&cfg)
	}
	m := New(st, cfg)
	if err := m.Open(context.Background()); err != nil {
		st.Close()
		tb.Fatalf("open materializer: %v", err)
	}
	n := &node{dir: dir, store: st, m: m, cfg: cfg}
	tb.Cleanup(n.close)
	return n
}

func newNode(tb testing.TB, site log.SiteID, schema []string) *node {
	tb.Helper()
	return openNode(tb, tb.TempDir(), site, schema, nil)
}

func (n *node) close() {
	if n.m != nil {
		n.m.Close()
		n.m = nil
	}
	if n.store != nil {
		n.store.Close()
		n.store = nil
	}
}

// syncTo moves to dst every changeset n holds that dst lacks, in n's arrival order.
func (n *node) syncTo(tb testing.TB, dst *node) int {
	tb.Helper()
	if n.compact {
		for site, sv := range n.store.Vector().Sites {
			if len(sv.Cleared) > 0 {
				if _, err := dst.store.AppendCleared(context.Background(), site, sv.Cleared); err != nil {
					tb.Fatalf("append cleared: %v", err)
				}
			}
		}
	}
	all, err := n.store.Read(0, 1<<30)
	if err != nil {
		tb.Fatalf("read log: %v", err)
	}
	var send []*log.Changeset
	for _, cs := range all {
		if !dst.store.Contains(cs.Site, cs.Version) {
			cs.Seq = 0
			send = append(send, cs)
		}
	}
	if len(send) == 0 {
		return 0
	}
	if r := n.shuffle; r != nil {
		k := len(send)
		for i := range k {
			if r.IntN(3) == 0 {
				send = append(send, send[i])
			}
		}
		r.Shuffle(len(send), func(i, j int) { send[i], send[j] = send[j], send[i] })
		for len(send) > 0 {
			c := 1 + r.IntN(len(send))
			if _, err := dst.m.Apply(context.Background(), send[:c]); err != nil {
				tb.Fatalf("apply: %v", err)
			}
			send = send[c:]
		}
		return k
	}
	if _, err := dst.m.Apply(context.Background(), send); err != nil {
		tb.Fatalf("apply: %v", err)
	}
	return len(send)
}

func (n *node) exec(tb testing.TB, sql string, params ...log.Value) TxResult {
	tb.Helper()
	res, err := n.m.Transact(context.Background(), []Statement{{SQL: sql, Params: params}})
	if err != nil {
		tb.Fatalf("transact %q: %v", sql, err)
	}
	return res
}

// query returns every row of a read-only query.
func (n *node) query(tb testing.TB, sql string, params ...log.Value) [][]log.Value {
	tb.Helper()
	rows, err := n.m.Query(context.Background(), Statement{SQL: sql, Params: params})
	if err != nil {
		tb.Fatalf("query %q: %v", sql, err)
	}
	defer rows.Close()
	var out [][]log.Value
	for rows.Next() {
		out = append(out, append([]log.Value(nil), rows.Values()...))
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("query %q: %v", sql, err)
	}
	return out
}

// dumpTable reads a table in primary key order, type-exact.
func (n *node) dumpTable(tb testing.TB, name string) [][]log.Value {
	tb.Helper()
	t := n.m.tables[strings.ToLower(name)]
	if t == nil {
		tb.Fatalf("no table %s", name)
	}
	sel := make([]string, len(t.Cols))
	for i, c := range t.Cols {
		sel[i] = "+" + quoteIdent(c.Name)
	}
	return n.query(tb, "SELECT "+strings.Join(sel, ", ")+" FROM "+t.quoted+" ORDER BY "+t.pkList())
}

// clockRow is one row of cr-sqlite's final_clock: table, pk, cid, value, col_version, cl.
type clockRow struct {
	Table string
	PK    string
	CID   string
	Val   log.Value
	CV    uint64
	CL    uint64
	// Origin of the record (not in cr-sqlite's final_clock; compared between replicas).
	Origin string
}

func (r clockRow) String() string {
	return fmt.Sprintf("[%s %s %s %s cv=%d cl=%d]", r.Table, r.PK, r.CID, r.Val.Quote(), r.CV, r.CL)
}

// dumpClock lists every clock record of every table the way crsql_changes shows them.
func (n *node) dumpClock(tb testing.TB) []clockRow {
	tb.Helper()
	var out []clockRow
	names := n.m.Tables()
	for _, name := range names {
		t := n.m.tables[strings.ToLower(name)]
		rows := n.query(tb, "SELECT pk, cl, clock FROM "+t.clock+" ORDER BY pk")
		for _, r := range rows {
			var rc rowClock
			if err := decodeClock(r[2].Blob, &rc); err != nil {
				tb.Fatalf("decode clock: %v", err)
			}
			pk := "X'" + strings.ToUpper(hex.EncodeToString(r[0].Blob)) + "'"
			cl := rc.CL()
			if uint64(r[1].Int) != cl {
				tb.Fatalf("clock row %s of %s: cl column %d, records say %d", pk, name, r[1].Int, cl)
			}
			var vals []log.Value
			if len(t.NonPK) > 0 && cl%2 == 1 {
				pkVals, err := log.UnpackPK(r[0].Blob)
				if err != nil {
					tb.Fatal(err)
				}
				args := make([]log.Value, len(pkVals))
				copy(args, pkVals)
				got := n.query(tb, t.sqlReadRow, args...)
				if len(got) != 1 {
					tb.Fatalf("clock of %s %s says live (cl %d) but the row is missing", name, pk, cl)
				}
				vals = got[0]
			} else if cl%2 == 1 {
				// pk-only table: the row must exist
			} else {
				pkVals, _ := log.UnpackPK(r[0].Blob)
				if got := n.query(tb, "SELECT 1 FROM "+t.quoted+" WHERE "+t.pkWhere(), pkVals...); len(got) != 0 {
					tb.Fatalf("clock of %s %s says deleted (cl %d) but the row exists", name, pk, cl)
				}
			}
			if rc.Sentinel.Present {
				out = append(out, clockRow{Table: name, PK: pk, CID: "-1", CV: rc.Sentinel.ColVersion, CL: cl,
					Origin: fmt.Sprintf("%v/%d/%d", rc.Sentinel.Site, rc.Sentinel.Version, rc.Sentinel.Seq)})
			}
			for ord := range rc.Cols {
				c := rc.Cols[ord]
				if !c.Present {
					continue
				}
				if ord >= len(t.NonPK) {
					tb.Fatalf("clock of %s %s has a record for column %d of %d", name, pk, ord, len(t.NonPK))
				}
				var v log.Value
				if vals != nil {
					v = vals[ord]
				}
				out = append(out, clockRow{Table: name, PK: pk, CID: t.nonPKCol(ord).Name, Val: v, CV: c.ColVersion, CL: cl,
					Origin: fmt.Sprintf("%v/%d/%d", c.Site, c.Version, c.Seq)})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		if a.PK != b.PK {
			return a.PK < b.PK
		}
		return a.CID < b.CID
	})
	return out
}

func siteFromHex(tb testing.TB, s string) log.SiteID {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		tb.Fatalf("bad site id %q", s)
	}
	return log.SiteID(b)
}

func rowsEqual(a, b [][]log.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if !a[i][j].Equal(b[i][j]) {
				return false
			}
		}
	}
	return true
}

func fmtRows(rows [][]log.Value) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("[")
		for j, v := range r {
			if j > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%s:%v", v.Quote(), v.Type)
		}
		b.WriteString("] ")
	}
	return b.String()
}
