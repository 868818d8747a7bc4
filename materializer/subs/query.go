package subs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// identMode is how a subscription identifies a result row across evaluations, which decides
// whether a changed row shows as an update (same identity) or as a delete and an insert.
type identMode uint8

const (
	// modeContent: the row's cells (with an ordinal among equal rows). Always exact; changes
	// are inserts and deletes. Used for compound queries, CTEs, DISTINCT, window functions,
	// subqueries in FROM.
	modeContent identMode = iota
	// modePK: the primary keys of every table of the top-level FROM, read through hidden
	// columns appended to the select list. Plain selects and joins.
	modePK
	// modeGroup: the GROUP BY terms, read through hidden columns.
	modeGroup
	// modeOrdinal: the row's position; for queries that always answer one row (aggregates
	// without GROUP BY, selects without FROM).
	modeOrdinal
)

func (m identMode) String() string {
	return [...]string{"content", "pk", "group", "ordinal"}[m]
}

// tableInfo is what the engine knows of a user table.
type tableInfo struct {
	Name    string   // as the view spells it
	Columns []string // lower-cased, in order
	PK      []string // lower-cased, in primary-key order
}

// fromItem is one table of the top-level FROM clause in pk mode.
type fromItem struct {
	table    string // lower-cased table name
	qual     string // the qualifier to write before its columns (alias or name, as written)
	qualName string // the qualifier, unquoted and lower-cased
	nullSide bool   // on the right of a LEFT JOIN: its columns may be NULL-extended
	hidden   int    // index of its first hidden column among the hidden columns
	npk      int
}

// pred is a top-level `column = constant` conjunct of the WHERE clause: a row of table
// instance inst whose column does not equal val cannot be in the result.
type pred struct {
	inst int
	col  int // index into the table's columns
	val  log.Value
	keys []string // eqKeys(val), computed once
}

// plan is the analysed form of a subscription's statement.
type plan struct {
	sql  string // the statement without a trailing semicolon
	mode identMode
	// ordered: the statement has a top-level ORDER BY, so that a client attaching to a
	// result changed since its last full run needs a re-run to get the rows in order.
	ordered bool
	tables  map[string]bool // lower-cased user tables the statement mentions anywhere

	// hiddenSQL is sql with the hidden identity columns appended to the select list; nhidden
	// is how many there are (the last nhidden result columns).
	hiddenSQL  string
	nhidden    int
	hiddenCols []string
	groupRefs  []int // modeGroup: per GROUP BY term, the result column it names (1-based), or 0

	// modePK only.
	from        []fromItem
	restrict    map[string]int // table -> instance whose rows can be re-evaluated alone
	preds       []pred
	whereKw     int // byte offset just after the WHERE keyword in sql, or -1
	whereEnd    int // byte offset where the WHERE expression ends
	fromEnd     int // byte offset where the FROM clause ends (when there is no WHERE)
	fromKwStart int // byte offset of the FROM keyword
}

// keywords that end a FROM item's alias position or a clause.
var nonAlias = map[string]bool{
	"ON": true, "USING": true, "INDEXED": true, "NOT": true, "JOIN": true, "LEFT": true,
	"RIGHT": true, "FULL": true, "INNER": true, "CROSS": true, "NATURAL": true, "OUTER": true,
	"WHERE": true, "GROUP": true, "HAVING": true, "WINDOW": true, "ORDER": true, "LIMIT": true,
	"UNION": true, "INTERSECT": true, "EXCEPT": true,
}

// aggregates are SQLite's built-in aggregate functions. min and max with several arguments
// are scalar, but counting them as aggregates only costs speed, never correctness.
var aggregates = map[string]bool{
	"AVG": true, "COUNT": true, "GROUP_CONCAT": true, "MAX": true, "MIN": true, "SUM": true,
	"TOTAL": true, "STRING_AGG": true, "JSON_GROUP_ARRAY": true, "JSON_GROUP_OBJECT": true,
	"JSONB_GROUP_ARRAY": true, "JSONB_GROUP_OBJECT": true, "MEDIAN": true, "PERCENTILE": true,
	"PERCENTILE_CONT": true, "PERCENTILE_DISC": true,
}

// schemaFunc returns what is known of a user table (lower-cased name).
type schemaFunc func(table string) (*tableInfo, bool)

// analyse checks that st is one SELECT and works out how to evaluate it: by primary key
// (modePK), by row position (modeOrdinal), by group (groupPlan) or by comparing whole
// results (modeContent, always correct, the fallback). isTable says whether a lower-cased
// name is a user table, schema what is known of one.
func analyse(st materializer.Statement, isTable func(string) bool, schema schemaFunc) (*plan, error) {
	toks, err := oneSelect(st.SQL)
	if err != nil {
		return nil, err
	}
	sql := st.SQL[:toks[len(toks)-1].End]
	p := &plan{sql: sql, tables: map[string]bool{}, whereKw: -1, restrict: map[string]int{}}
	refs, window, err := p.scanTables(toks, isTable)
	if err != nil {
		return nil, err
	}
	if toks[0].Upper() == "WITH" || window {
		p.mode = modeContent
		return p.finish(), nil
	}
	cl := findClauses(toks)
	if cl.compound || cl.distinct || cl.at[cWindow] != 0 {
		p.mode = modeContent
		return p.finish(), nil
	}
	selEnd := len(toks)
	if cl.at[cFrom] != 0 {
		selEnd = cl.at[cFrom]
	}
	// Only aggregates of this SELECT count: one inside a subquery (a scalar count(*)) does
	// not fold the outer rows into one.
	aggregate := hasAggregate(toks, 1, selEnd) ||
		cl.at[cHaving] != 0 && hasAggregate(toks, cl.at[cHaving], cl.end(cHaving, len(toks)))
	if cl.at[cGroup] != 0 {
		return p.groupPlan(toks, selEnd, cl.at[cGroup]+2, cl.end(cGroup, len(toks)))
	}
	if aggregate || cl.at[cFrom] == 0 {
		p.mode = modeOrdinal
		return p.finish(), nil
	}
	return p.pkPlan(toks, cl, refs, isTable, schema, st), nil
}

// oneSelect tokenizes sql and checks that it is one SELECT (or WITH) statement; trailing
// semicolons are dropped.
func oneSelect(sql string) ([]token, error) {
	toks, err := tokenize(sql)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSelect, err)
	}
	for len(toks) > 0 && toks[len(toks)-1].Text == ";" {
		toks = toks[:len(toks)-1]
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%w: empty statement", ErrNotSelect)
	}
	for _, t := range toks {
		if t.Kind == tkPunct && t.Text == ";" {
			return nil, fmt.Errorf("%w: one statement only", ErrNotSelect)
		}
	}
	if first := toks[0].Upper(); first != "SELECT" && first != "WITH" {
		return nil, fmt.Errorf("%w: a subscription is one SELECT, not %s", ErrNotSelect, toks[0].Text)
	}
	return toks, nil
}

// scanTables records in p the user tables toks name and whether the result is ordered;
// refs counts each table's unqualified references, window says a window function is used.
// A writing keyword at the top level is an error.
func (p *plan) scanTables(toks []token, isTable func(string) bool) (refs map[string]int, window bool, err error) {
	refs = map[string]int{}
	depth := 0
	for i, t := range toks {
		if depth == 0 && t.Upper() == "ORDER" && i+1 < len(toks) && toks[i+1].Upper() == "BY" {
			p.ordered = true
		}
		switch {
		case t.Text == "(":
			depth++
		case t.Text == ")":
			depth--
		}
		// A name followed by "." qualifies a column (p.pid): it is no other instance of
		// the table, so it must not stop the table being re-evaluated by key.
		qualifier := i+1 < len(toks) && toks[i+1].Text == "."
		if n := t.Name(); n != "" && isTable(n) && !qualifier {
			p.tables[n] = true
			refs[n]++
		}
		switch t.Upper() {
		case "INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "ATTACH", "DETACH", "PRAGMA", "VACUUM", "REINDEX":
			if depth == 0 {
				return nil, false, fmt.Errorf("%w: a subscription is one SELECT", ErrNotSelect)
			}
		case "OVER":
			window = true
		}
	}
	return refs, window, nil
}

// The top-level clauses of a SELECT, in the order SQL requires them.
const (
	cFrom = iota
	cWhere
	cGroup
	cHaving
	cWindow
	cOrder
	cLimit
	nClauses
)

// clauses is where a SELECT's top-level clauses start.
type clauses struct {
	at                 [nClauses]int // token index of the clause keyword, 0 when absent
	distinct, compound bool
}

// end returns the token index where clause c ends: the next present clause, or n (the
// number of tokens).
func (cl *clauses) end(c, n int) int {
	for k := c + 1; k < nClauses; k++ {
		if cl.at[k] != 0 {
			return cl.at[k]
		}
	}
	return n
}

// findClauses finds the top-level clause keywords of a SELECT.
func findClauses(toks []token) clauses {
	var cl clauses
	depth := 0
	for i, t := range toks {
		switch t.Text {
		case "(":
			depth++
			continue
		case ")":
			depth--
			continue
		}
		if depth != 0 || t.Kind != tkIdent {
			continue
		}
		switch t.Upper() {
		case "FROM":
			// x IS [NOT] DISTINCT FROM y is an operator, not the clause.
			if i > 0 && toks[i-1].Upper() == "DISTINCT" && i > 1 && (toks[i-2].Upper() == "IS" || toks[i-2].Upper() == "NOT") {
				continue
			}
			if cl.at[cFrom] == 0 {
				cl.at[cFrom] = i
			}
		case "DISTINCT":
			if i == 1 {
				cl.distinct = true
			}
		case "WHERE":
			if cl.at[cWhere] == 0 {
				cl.at[cWhere] = i
			}
		case "GROUP":
			if cl.at[cGroup] == 0 && i+1 < len(toks) && toks[i+1].Upper() == "BY" {
				cl.at[cGroup] = i
			}
		case "HAVING":
			cl.at[cHaving] = i
		case "WINDOW":
			cl.at[cWindow] = i
		case "ORDER":
			if i+1 < len(toks) && toks[i+1].Upper() == "BY" {
				cl.at[cOrder] = i
			}
		case "LIMIT":
			cl.at[cLimit] = i
		case "UNION", "INTERSECT", "EXCEPT", "VALUES":
			cl.compound = true
		}
	}
	return cl
}

// hasAggregate reports whether toks[from:to] calls an aggregate function outside any
// parentheses.
func hasAggregate(toks []token, from, to int) bool {
	depth := 0
	for i := from; i < to && i < len(toks); i++ {
		switch toks[i].Text {
		case "(":
			depth++
		case ")":
			depth--
		}
		if depth == 0 && aggregates[toks[i].Upper()] && i+1 < len(toks) && toks[i+1].Text == "(" {
			return true
		}
	}
	return false
}

// pkPlan plans a plain SELECT ... FROM by the primary keys of its tables, falling back to
// modeContent when a FROM item is not a user table with a primary key.
func (p *plan) pkPlan(toks []token, cl clauses, refs map[string]int, isTable func(string) bool, schema schemaFunc, st materializer.Statement) *plan {
	sql := p.sql
	fromEnd := cl.end(cFrom, len(toks))
	items, rightFull, ok := parseFrom(toks[cl.at[cFrom]+1 : fromEnd])
	if !ok {
		p.mode = modeContent
		return p.finish()
	}
	var hidden []string
	for i := range items {
		it := &items[i]
		if !isTable(it.table) {
			p.mode = modeContent
			return p.finish()
		}
		info, ok := schema(it.table)
		if !ok || len(info.PK) == 0 {
			p.mode = modeContent
			return p.finish()
		}
		it.hidden, it.npk = len(hidden), len(info.PK)
		for _, c := range info.PK {
			hidden = append(hidden, it.qual+"."+quoteIdent(c))
		}
	}
	p.mode = modePK
	p.from = items
	p.fromKwStart = toks[cl.at[cFrom]].Start
	p.hiddenSQL = sql[:p.fromKwStart] + ", " + strings.Join(hidden, ", ") + " " + sql[p.fromKwStart:]
	p.nhidden = len(hidden)
	p.hiddenCols = hidden
	if fromEnd < len(toks) {
		p.fromEnd = toks[fromEnd].Start
	} else {
		p.fromEnd = len(sql)
	}
	if cl.at[cWhere] != 0 {
		p.whereKw = toks[cl.at[cWhere]].End
		if we := cl.end(cWhere, len(toks)); we < len(toks) {
			p.whereEnd = toks[we].Start
		} else {
			p.whereEnd = len(sql)
		}
	}
	// A table can be re-evaluated by primary key alone when its rows only ever contribute to
	// result rows that carry its primary key: it appears once, in the top-level FROM, on
	// the preserved side of every join, and the result is not cut by LIMIT.
	if cl.at[cLimit] == 0 && !rightFull {
		for i, it := range items {
			if !it.nullSide && refs[it.table] == 1 {
				p.restrict[it.table] = i
			}
		}
	}
	if cl.at[cWhere] != 0 {
		p.preds = wherePreds(toks[cl.at[cWhere]+1:cl.end(cWhere, len(toks))], items, schema, st)
	}
	return p.finish()
}

// finish fills the defaults of content and ordinal plans.
func (p *plan) finish() *plan {
	if p.hiddenSQL == "" {
		p.hiddenSQL = p.sql
	}
	return p
}

// groupPlan identifies rows by their GROUP BY terms; when a term cannot be copied into the
// select list (it holds a parameter) the plan falls back to content identity.
func (p *plan) groupPlan(toks []token, selEnd, from, to int) (*plan, error) {
	var terms []string
	var refs []int
	depth, start := 0, from
	flush := func(end int) bool {
		if start >= end {
			return false
		}
		if end-start == 1 && toks[start].Kind == tkNumber {
			n, err := strconv.Atoi(toks[start].Text)
			if err != nil || n < 1 {
				return false
			}
			refs = append(refs, n)
			terms = append(terms, "NULL")
		} else {
			for _, t := range toks[start:end] {
				if t.Kind == tkParam {
					return false
				}
			}
			refs = append(refs, 0)
			terms = append(terms, p.sql[toks[start].Start:toks[end-1].End])
		}
		start = end + 1
		return true
	}
	for i := from; i < to; i++ {
		switch toks[i].Text {
		case "(":
			depth++
		case ")":
			depth--
		case ",":
			if depth == 0 && !flush(i) {
				p.mode = modeContent
				return p.finish(), nil
			}
		}
	}
	if !flush(to) {
		p.mode = modeContent
		return p.finish(), nil
	}
	p.mode = modeGroup
	ins := toks[selEnd-1].End
	if selEnd < len(toks) {
		ins = toks[selEnd].Start
	}
	p.hiddenSQL = p.sql[:ins] + ", " + strings.Join(terms, ", ") + " " + p.sql[ins:]
	p.nhidden = len(terms)
	p.groupRefs = refs
	return p.finish(), nil
}

// parseFrom reads a FROM clause made only of plain tables joined with commas or JOIN
// operators. ok is false for anything else (subqueries, table functions, parenthesised
// joins, other schemas), which the caller evaluates with content identity.
func parseFrom(toks []token) (items []fromItem, rightFull bool, ok bool) {
	i := 0
	nullSide := false
	for i < len(toks) {
		t := toks[i]
		if t.Kind != tkIdent && t.Kind != tkQIdent || nonAlias[t.Upper()] {
			return nil, false, false
		}
		nameTok := t
		i++
		if i < len(toks) && toks[i].Text == "." {
			if nameTok.Name() != "main" || i+1 >= len(toks) {
				return nil, false, false
			}
			nameTok = toks[i+1]
			i += 2
		}
		if i < len(toks) && toks[i].Text == "(" {
			return nil, false, false // table-valued function
		}
		it := fromItem{table: nameTok.Name(), qual: nameTok.Text, qualName: nameTok.Name(), nullSide: nullSide}
		if i < len(toks) && toks[i].Upper() == "AS" {
			i++
		}
		if i < len(toks) && (toks[i].Kind == tkQIdent || toks[i].Kind == tkIdent && !nonAlias[toks[i].Upper()]) {
			it.qual, it.qualName = toks[i].Text, toks[i].Name()
			i++
		}
		items = append(items, it)
		// Skip the join constraint up to the next separator at depth 0.
		depth := 0
		nullSide = false
		sawJoin := false
		for i < len(toks) {
			t := toks[i]
			switch {
			case t.Text == "(":
				depth++
			case t.Text == ")":
				depth--
			case depth == 0 && t.Text == ",":
				sawJoin = true
			case depth == 0 && (t.Upper() == "LEFT"):
				nullSide = true
			case depth == 0 && (t.Upper() == "RIGHT" || t.Upper() == "FULL"):
				rightFull = true
			case depth == 0 && t.Upper() == "JOIN":
				sawJoin = true
			}
			i++
			if sawJoin {
				break
			}
		}
	}
	return items, rightFull, len(items) > 0
}

// wherePreds extracts `column = constant` conjuncts from a WHERE expression.
func wherePreds(toks []token, items []fromItem, schema schemaFunc, st materializer.Statement) []pred {
	var out []pred
	// Split on top-level AND, minding BETWEEN x AND y and CASE ... END.
	var conj [][]token
	depth, start, between := 0, 0, 0
	for i, t := range toks {
		switch t.Text {
		case "(":
			depth++
			continue
		case ")":
			depth--
			continue
		}
		switch t.Upper() {
		case "CASE":
			depth++
		case "END":
			depth--
		case "BETWEEN":
			if depth == 0 {
				between++
			}
		case "AND":
			if depth != 0 {
				continue
			}
			if between > 0 {
				between--
				continue
			}
			conj = append(conj, toks[start:i])
			start = i + 1
		}
	}
	conj = append(conj, toks[start:])
	for _, c := range conj {
		if pr, ok := matchPred(c, items, schema, st); ok {
			out = append(out, pr)
		}
	}
	return out
}

func matchPred(c []token, items []fromItem, schema schemaFunc, st materializer.Statement) (pred, bool) {
	// col op lit | lit op col, where col is name or qual.name.
	opAt := -1
	for i, t := range c {
		if t.Text == "=" || t.Text == "==" || t.Upper() == "IS" {
			opAt = i
			break
		}
	}
	if opAt <= 0 || opAt == len(c)-1 {
		return pred{}, false
	}
	if pr, ok := colLit(c[:opAt], c[opAt+1:], items, schema, st); ok {
		return pr, true
	}
	return colLit(c[opAt+1:], c[:opAt], items, schema, st)
}

func colLit(col, lit []token, items []fromItem, schema schemaFunc, st materializer.Statement) (pred, bool) {
	val, ok := literal(lit, st)
	if !ok || val.IsNull() {
		return pred{}, false
	}
	var qual, name string
	switch {
	case len(col) == 1 && (col[0].Kind == tkIdent || col[0].Kind == tkQIdent):
		name = col[0].Name()
	case len(col) == 3 && col[1].Text == "." && col[0].Name() != "" && col[2].Name() != "":
		qual, name = col[0].Name(), col[2].Name()
	default:
		return pred{}, false
	}
	found := -1
	colIdx := -1
	for i, it := range items {
		if qual != "" && it.qualName != qual {
			continue
		}
		info, ok := schema(it.table)
		if !ok {
			return pred{}, false
		}
		for j, c := range info.Columns {
			if c == name {
				if found >= 0 {
					return pred{}, false // ambiguous
				}
				found, colIdx = i, j
			}
		}
	}
	if found < 0 {
		return pred{}, false
	}
	return pred{inst: found, col: colIdx, val: val, keys: eqKeys(val)}, true
}

// literal evaluates a constant: a number (with an optional sign), a string or a parameter.
func literal(toks []token, st materializer.Statement) (log.Value, bool) {
	neg := false
	if len(toks) == 2 && (toks[0].Text == "-" || toks[0].Text == "+") && toks[1].Kind == tkNumber {
		neg = toks[0].Text == "-"
		toks = toks[1:]
	}
	if len(toks) != 1 {
		return log.Value{}, false
	}
	t := toks[0]
	switch t.Kind {
	case tkString:
		return log.Text(strings.ReplaceAll(t.Text[1:len(t.Text)-1], "''", "'")), true
	case tkNumber:
		s := strings.ReplaceAll(t.Text, "_", "")
		if neg {
			s = "-" + s
		}
		if i, err := strconv.ParseInt(s, 0, 64); err == nil && !strings.ContainsAny(s, ".eE") {
			return log.Integer(i), true
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return log.Real(f), true
		}
		return log.Value{}, false
	case tkParam:
		return paramValue(t, st)
	}
	return log.Value{}, false
}

// paramValue resolves a parameter token to the value bound to it: by name when the
// statement has named parameters, else by its index among the positional ones, which is
// how the materializer binds them.
func paramValue(t token, st materializer.Statement) (log.Value, bool) {
	if len(st.Named) > 0 {
		if t.Text[0] == '?' {
			return log.Value{}, false
		}
		v, ok := st.Named[t.Text[1:]]
		return v, ok
	}
	if t.Param < 1 || t.Param > len(st.Params) {
		return log.Value{}, false
	}
	return st.Params[t.Param-1], true
}

// quoteIdent writes a name as a double-quoted SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// restricted returns the hidden-column statement limited to rows of instance inst whose
// primary key is one of pks (pk mode only). The keys are written as literals so that the
// user's parameter numbering is untouched.
func (p *plan) restricted(inst int, pks [][]log.Value) string {
	it := p.from[inst]
	var cond strings.Builder
	if it.npk == 1 {
		cond.WriteString(p.hiddenExpr(inst, 0))
		cond.WriteString(" IN (")
		for i, vals := range pks {
			if i > 0 {
				cond.WriteString(", ")
			}
			cond.WriteString(vals[0].Quote())
		}
		cond.WriteString(")")
	} else {
		cond.WriteString("(")
		for c := 0; c < it.npk; c++ {
			if c > 0 {
				cond.WriteString(", ")
			}
			cond.WriteString(p.hiddenExpr(inst, c))
		}
		cond.WriteString(") IN (VALUES ")
		for i, vals := range pks {
			if i > 0 {
				cond.WriteString(", ")
			}
			cond.WriteString("(")
			for c, v := range vals {
				if c > 0 {
					cond.WriteString(", ")
				}
				cond.WriteString(v.Quote())
			}
			cond.WriteString(")")
		}
		cond.WriteString(")")
	}
	// Offsets in sql shift by the hidden columns inserted before FROM.
	shift := len(p.hiddenSQL) - len(p.sql)
	s := p.hiddenSQL
	if p.whereKw >= 0 {
		kw, we := p.whereKw+shift, p.whereEnd+shift
		return s[:kw] + " (" + s[kw:we] + ") AND (" + cond.String() + ") " + s[we:]
	}
	fe := p.fromEnd + shift
	return s[:fe] + " WHERE " + cond.String() + " " + s[fe:]
}

// hiddenExpr is the SQL of hidden column c of instance inst.
func (p *plan) hiddenExpr(inst, c int) string { return p.hiddenCols[p.from[inst].hidden+c] }
