package subs

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// rowCache holds the rows fetched by primary key during one batch of notices, shared by
// every subscription the batch touches.
type rowCache struct {
	rows map[string]map[string]*fetched // table -> packed pk -> row
	// realKeys: the table has a changed key holding a REAL.
	realKeys map[string]bool
	info     map[string]*tableInfo // the changed tables' schemas (nil when not loaded)
}

type fetched struct {
	err   error
	found bool
	vals  []log.Value
	keys  map[int][]string // eqKeys of vals[i], computed at first use
}

// eqKeys returns eqKeys(f.vals[col]), computed once per batch however many subscriptions
// test it.
func (f *fetched) eqKeys(col int) []string {
	if k, ok := f.keys[col]; ok {
		return k
	}
	if f.keys == nil {
		f.keys = map[int][]string{}
	}
	k := eqKeys(f.vals[col])
	f.keys[col] = k
	return k
}

// fetch reads the current row of table with primary key pk.
func (rc *rowCache) fetch(ctx context.Context, src Source, ti *tableInfo, pk log.PK) *fetched {
	byPK := rc.rows[ti.Name]
	if byPK == nil {
		byPK = map[string]*fetched{}
		rc.rows[ti.Name] = byPK
	}
	if f, ok := byPK[string(pk)]; ok {
		return f
	}
	f := &fetched{}
	byPK[string(pk)] = f
	vals, err := log.UnpackPK(pk)
	if err != nil || len(vals) != len(ti.PK) {
		f.err = fmt.Errorf("pk %s does not match the table's key", pk)
		return f
	}
	var b strings.Builder
	// The columns known at analysis, by name: a column added since does not shift them.
	b.WriteString("SELECT ")
	for i, c := range ti.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(" FROM ")
	b.WriteString(quoteIdent(ti.Name))
	b.WriteString(" WHERE ")
	for i, c := range ti.PK {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(quoteIdent(c))
		b.WriteString(" = ")
		b.WriteString(vals[i].Quote())
	}
	rows, err := src.Query(ctx, materializer.Statement{SQL: b.String()})
	if err != nil {
		f.err = err
		return f
	}
	defer rows.Close()
	pkIdx := make([]int, len(ti.PK))
	for i, c := range ti.PK {
		pkIdx[i] = -1
		for j, col := range ti.Columns {
			if col == c {
				pkIdx[i] = j
			}
		}
	}
	for rows.Next() {
		v := rows.Values()
		if len(v) != len(ti.Columns) {
			f.err = fmt.Errorf("table %s changed shape", ti.Name)
			return f
		}
		got := make([]log.Value, len(pkIdx))
		for i, j := range pkIdx {
			if j >= 0 {
				got[i] = v[j]
			}
		}
		// A collation may match other keys; keep only the exact one.
		if p, err := log.PackPK(got...); err == nil && string(p) == string(pk) {
			f.found = true
			f.vals = append([]log.Value(nil), v...)
		}
	}
	f.err = rows.Err()
	return f
}

func shareKey(ka, kb []string) bool {
	for _, x := range ka {
		for _, y := range kb {
			if x == y {
				return true
			}
		}
	}
	return false
}

func eqKeys(v log.Value) []string {
	var out []string
	num := func(f float64) {
		out = append(out, "n"+strconv.FormatFloat(f, 'g', -1, 64))
	}
	text := func(s string) {
		out = append(out, "t"+strings.ToLower(strings.TrimRight(s, " ")))
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			num(f)
		}
	}
	switch v.Type {
	case log.TypeInteger:
		num(float64(v.Int))
		text(strconv.FormatInt(v.Int, 10))
	case log.TypeReal:
		num(v.Real)
		text(strconv.FormatFloat(v.Real, 'g', -1, 64))
	case log.TypeText:
		text(v.Text)
	case log.TypeBlob:
		text(string(v.Blob))
	}
	return out
}
