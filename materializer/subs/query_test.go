package subs

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// TestAnalyse pins how statements are evaluated: the identity mode, which tables may be
// re-evaluated by primary key alone (the rest take a full re-run), and the prefilters.
func TestAnalyse(t *testing.T) {
	info := map[string]*tableInfo{
		"p": {Name: "p", Columns: []string{"pid", "n", "label"}, PK: []string{"pid"}},
		"c": {Name: "c", Columns: []string{"cid", "part", "pid", "v"}, PK: []string{"cid", "part"}},
	}
	isTable := func(n string) bool { _, ok := info[n]; return ok }
	schema := func(n string) (*tableInfo, bool) { ti, ok := info[n]; return ti, ok }
	cases := []struct {
		sql      string
		params   []log.Value
		mode     identMode
		restrict string // sorted restricted tables, comma-separated
		preds    int
	}{
		{sql: `SELECT * FROM p`, mode: modePK, restrict: "p"},
		{sql: `SELECT * FROM p WHERE n = 3 AND label = 'x'`, mode: modePK, restrict: "p", preds: 2},
		{sql: `SELECT * FROM p WHERE n = ? AND label = ?`, params: []log.Value{log.Integer(1), log.Text("x")}, mode: modePK, restrict: "p", preds: 2},
		{sql: `SELECT * FROM p WHERE n = 3 OR label = 'x'`, mode: modePK, restrict: "p"},
		{sql: `SELECT * FROM p WHERE n IS NOT 3`, mode: modePK, restrict: "p"},
		{sql: `SELECT * FROM p WHERE n BETWEEN 1 AND 3 AND label = 'x'`, mode: modePK, restrict: "p", preds: 1},
		{sql: `SELECT * FROM p WHERE n = NULL`, mode: modePK, restrict: "p"},
		{sql: `SELECT * FROM p ORDER BY n LIMIT 3`, mode: modePK},
		{sql: `SELECT * FROM c JOIN p ON c.pid = p.pid WHERE p.label = 'x'`, mode: modePK, restrict: "c,p", preds: 1},
		{sql: `SELECT * FROM p LEFT JOIN c ON c.pid = p.pid`, mode: modePK, restrict: "p"},
		{sql: `SELECT * FROM c RIGHT JOIN p ON c.pid = p.pid`, mode: modePK},
		{sql: `SELECT * FROM p p1 JOIN p p2 ON p1.n = p2.pid`, mode: modePK},
		{sql: `SELECT * FROM p WHERE pid IN (SELECT pid FROM c)`, mode: modePK, restrict: "p"},
		{sql: `SELECT * FROM c WHERE v = (SELECT max(v) FROM c)`, mode: modePK},
		{sql: `SELECT pid, (SELECT count(*) FROM c WHERE c.pid = p.pid) FROM p`, mode: modePK, restrict: "p"},
		{sql: `SELECT count(*) FROM c`, mode: modeOrdinal},
		{sql: `SELECT 1`, mode: modeOrdinal},
		{sql: `SELECT pid, count(*) FROM c GROUP BY pid`, mode: modeGroup},
		{sql: `SELECT pid, count(*) FROM c GROUP BY pid + ?`, params: []log.Value{log.Integer(1)}, mode: modeContent},
		{sql: `SELECT DISTINCT v FROM c`, mode: modeContent},
		{sql: `SELECT pid FROM p UNION SELECT pid FROM c`, mode: modeContent},
		{sql: `WITH x AS (SELECT 1) SELECT * FROM x`, mode: modeContent},
		{sql: `SELECT v, rank() OVER (ORDER BY v) FROM c`, mode: modeContent},
		{sql: `SELECT * FROM (SELECT * FROM p)`, mode: modeContent},
		{sql: `SELECT * FROM json_each('[1]')`, mode: modeContent},
		{sql: `SELECT * FROM p;;`, mode: modePK, restrict: "p"},
		{sql: `SELECT n IS DISTINCT FROM 1 FROM p`, mode: modePK, restrict: "p"},
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			p, err := analyse(materializer.Statement{SQL: c.sql, Params: c.params}, isTable, schema)
			if err != nil {
				t.Fatal(err)
			}
			if p.mode != c.mode {
				t.Errorf("mode %s, want %s", p.mode, c.mode)
			}
			got := slices.Sorted(maps.Keys(p.restrict))
			if strings.Join(got, ",") != c.restrict {
				t.Errorf("restricted tables %q, want %q", got, c.restrict)
			}
			if len(p.preds) != c.preds {
				t.Errorf("%d prefilters %+v, want %d", len(p.preds), p.preds, c.preds)
			}
		})
	}
}

// TestParamNumbering: parameters are numbered as SQLite numbers them, so that a prefilter
// compares a column with the value really bound to its parameter.
func TestParamNumbering(t *testing.T) {
	toks, err := tokenize(`SELECT ?, ?5, ?, :a, @b, :a, ?2, ?`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, tk := range toks {
		if tk.Kind == tkParam {
			got = append(got, tk.Param)
		}
	}
	if want := []int{1, 5, 6, 7, 8, 7, 2, 9}; !slices.Equal(got, want) {
		t.Errorf("numbers %v, want %v", got, want)
	}
}
