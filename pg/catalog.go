package pg

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	sqlite "modernc.org/sqlite"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// The catalog answers what clients ask PostgreSQL about itself: pg_catalog's tables
// (pg_class, pg_attribute, pg_type, pg_namespace, pg_index, ... enough for psql's \dt, \d
// and drivers' type lookups), information_schema.tables and .columns, and functions such as
// version(), current_schema() and format_type(). It is a private in-memory SQLite database,
// rebuilt from the view's schema whenever the view's schema_version moves, and queried with
// the PostgreSQL-only spellings rewritten (casts dropped, ~ as REGEXP, pg_catalog.f() as
// f()). It never holds user data, only names and types.

// catalog is the in-memory catalog database. One connection, guarded by mu: catalog results
// are small and are read whole before mu is released.
type catalog struct {
	view View
	mu   sync.Mutex
	db   *sql.DB
	// version is the view's schema_version the tables were built from (-1: never built).
	version int64
	// cols is each user table's columns' types (lower-cased names), for inferParams.
	cols map[string]map[string]uint32
	// defs are pg_get_indexdef's and pg_get_constraintdef's answers by oid (a function cannot
	// query the catalog's one connection while a query holds it).
	defs map[int64]string
}

const (
	oidNSCatalog = 11
	oidNSPublic  = 2200
	oidNSInfo    = 13000
	firstRelOID  = 16384
	// userName owns every relation; the user a client logs in as is not checked against it.
	userName = "patina"
	dbName   = "patina"
)

func newCatalog(v View) *catalog { return &catalog{view: v, version: -1} }

type connector struct {
	d   *sqlite.Driver
	dsn string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.d }

func (c *catalog) open() error {
	d := &sqlite.Driver{}
	def := catalogFunc{n: -1, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
		if len(a) == 0 {
			return nil, nil
		}
		oid, _ := a[0].(int64)
		if d, ok := c.defs[oid]; ok {
			return d, nil
		}
		return nil, nil
	}}
	funcs := map[string]catalogFunc{"pg_get_indexdef": def, "pg_get_constraintdef": def}
	for name, f := range catalogFuncs {
		funcs[name] = f
	}
	for name, f := range funcs {
		if err := d.RegisterScalarFunction(name, f.n, f.fn); err != nil {
			return fmt.Errorf("catalog function %s: %w", name, err)
		}
	}
	// Every connection (database/sql replaces one a cancelled query broke) gets the schema
	// and is filled again by the next refresh.
	d.RegisterConnectionHook(func(conn sqlite.ExecQuerierContext, _ string) error {
		c.version = -1
		_, err := conn.ExecContext(context.Background(), catalogSchema, nil)
		return err
	})
	c.db = sql.OpenDB(connector{d: d, dsn: ":memory:"})
	c.db.SetMaxOpenConns(1)
	c.db.SetMaxIdleConns(1)
	c.db.SetConnMaxLifetime(0)
	c.db.SetConnMaxIdleTime(0)
	if err := c.db.Ping(); err != nil {
		c.db.Close()
		return fmt.Errorf("catalog schema: %w", err)
	}
	return nil
}

func (c *catalog) close() error {
	if c.db == nil {
		return nil
	}
	return c.db.Close()
}

// query runs a catalog statement (already in SQLite's text, see sqliteText) after the
// PostgreSQL spellings are rewritten, and returns its rows read whole.
func (c *catalog) query(ctx context.Context, st materializer.Statement) (materializer.Rows, error) {
	q, err := catalogSQL(st.SQL)
	if err != nil {
		return nil, errf("42601", err.Error())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	args := make([]any, len(st.Params))
	for i, v := range st.Params {
		args[i] = v.SQL()
	}
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", materializer.ErrBadStatement, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := &memRows{cols: cols, decl: make([]string, len(cols)), i: -1}
	if cts, err := rows.ColumnTypes(); err == nil {
		for i, ct := range cts {
			out.decl[i] = ct.DatabaseTypeName()
		}
	}
	tmp := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range tmp {
		ptrs[i] = &tmp[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("%w: %w", materializer.ErrBadStatement, err)
		}
		row := make([]log.Value, len(cols))
		for i, x := range tmp {
			if x, ok := x.(bool); ok {
				tmp[i] = map[bool]int64{false: 0, true: 1}[x]
			}
			v, err := log.FromSQL(tmp[i])
			if err != nil {
				v = log.Text(fmt.Sprint(tmp[i]))
			}
			row[i] = v
		}
		out.rows = append(out.rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", materializer.ErrBadStatement, err)
	}
	return out, nil
}

// memRows is a result read whole.
type memRows struct {
	cols []string
	decl []string
	rows [][]log.Value
	i    int
}

func (r *memRows) Columns() []string   { return r.cols }
func (r *memRows) DeclTypes() []string { return r.decl }
func (r *memRows) Next() bool          { r.i++; return r.i < len(r.rows) }
func (r *memRows) Values() []log.Value { return r.rows[r.i] }
func (r *memRows) Err() error          { return nil }
func (r *memRows) Close() error        { return nil }

// inferParams fills in the types of p's parameters the client left to the server, from the
// columns they meet (see statement.inferParams). Without the schema it leaves them as they
// are: text, which SQLite's column affinity still converts.
func (c *catalog) inferParams(ctx context.Context, p *prepared) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refresh(ctx); err != nil {
		return
	}
	var tables []string
	for _, t := range p.st.words() {
		if t.kind == tokWord || t.kind == tokQuoted {
			if name := strings.ToLower(identName(t)); c.cols[name] != nil {
				tables = append(tables, name)
			}
		}
	}
	tables = slices.Compact(slices.Sorted(slices.Values(tables)))
	p.st.inferParams(p.paramOIDs, tables, func(table, col string) (uint32, bool) {
		oid, ok := c.cols[strings.ToLower(table)][strings.ToLower(col)]
		return oid, ok
	})
}

// refresh rebuilds the catalog's relations from the view's schema when it changed.
func (c *catalog) refresh(ctx context.Context) error {
	ver, err := c.viewInt(ctx, "PRAGMA schema_version")
	if err != nil {
		return err
	}
	if ver == c.version {
		return nil
	}
	cols, err := c.viewRows(ctx, `SELECT m.name, p.cid, p.name, p.type, p."notnull", p.dflt_value, p.pk
		FROM sqlite_master m JOIN pragma_table_info(m.name) p
		WHERE m.type = 'table' AND substr(m.name, 1, 8) <> '__patina' AND substr(m.name, 1, 7) <> 'sqlite_'
		ORDER BY m.name, p.cid`)
	if err != nil {
		return err
	}
	idx, err := c.viewRows(ctx, `SELECT m.name, il.name, il."unique", il.origin, ii.seqno, ii.name
		FROM sqlite_master m JOIN pragma_index_list(m.name) il JOIN pragma_index_info(il.name) ii
		WHERE m.type = 'table' AND substr(m.name, 1, 8) <> '__patina' AND substr(m.name, 1, 7) <> 'sqlite_'
		ORDER BY m.name, il.name, ii.seqno`)
	if err != nil {
		return err
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, t := range []string{"pg_class", "pg_attribute", "pg_attrdef", "pg_index", "pg_constraint", "information_schema.tables", "information_schema.columns"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+map[bool]string{true: "", false: "pg_catalog."}[strings.Contains(t, ".")]+t); err != nil {
			return err
		}
	}
	defs := map[int64]string{}
	colTypes := map[string]map[string]uint32{}
	relOID := map[string]int64{}
	attnum := map[string]map[string]int64{}
	next := int64(firstRelOID)
	exec := func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	for _, r := range cols {
		table := r[0].Text
		oid, ok := relOID[table]
		if !ok {
			oid = next
			next++
			relOID[table] = oid
			attnum[table] = map[string]int64{}
			if err := exec(`INSERT INTO pg_catalog.pg_class (oid, relname, relnamespace, relkind, relnatts) VALUES (?, ?, ?, 'r', 0)`, oid, table, oidNSPublic); err != nil {
				return err
			}
			if err := exec(`INSERT INTO information_schema.tables (table_name) VALUES (?)`, table); err != nil {
				return err
			}
		}
		num := r[1].Int + 1
		if colTypes[strings.ToLower(table)] == nil {
			colTypes[strings.ToLower(table)] = map[string]uint32{}
		}
		attnum[table][r[2].Text] = num
		typ, declared := oidOfDecl(r[3].Text)
		if !declared {
			typ = oidText
		}
		if declared {
			colTypes[strings.ToLower(table)][strings.ToLower(r[2].Text)] = typ
		}
		notnull := r[4].Int != 0 || r[6].Int > 0
		var def any
		if !r[5].IsNull() {
			def = r[5].Text
		}
		if err := exec(`INSERT INTO pg_catalog.pg_attribute (attrelid, attname, atttypid, attnum, attnotnull, atthasdef, decltype) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			oid, r[2].Text, typ, num, notnull, def != nil, r[3].Text); err != nil {
			return err
		}
		if err := exec(`INSERT INTO information_schema.columns (table_name, column_name, ordinal_position, column_default, is_nullable, data_type) VALUES (?, ?, ?, ?, ?, ?)`,
			table, r[2].Text, num, def, map[bool]string{true: "NO", false: "YES"}[notnull], typeNames[typ]); err != nil {
			return err
		}
		if def != nil {
			if err := exec(`INSERT INTO pg_catalog.pg_attrdef (oid, adrelid, adnum, adbin) VALUES (?, ?, ?, ?)`, next, oid, num, def); err != nil {
				return err
			}
			next++
		}
		if err := exec(`UPDATE pg_catalog.pg_class SET relnatts = relnatts + 1 WHERE oid = ?`, oid); err != nil {
			return err
		}
	}
	// Indexes: the primary key (origin pk), UNIQUE constraints (u) and CREATE INDEX (c).
	type index struct {
		table, name string
		unique      bool
		origin      string
		cols        []string
	}
	var order []*index
	byName := map[string]*index{}
	for _, r := range idx {
		ix := byName[r[1].Text]
		if ix == nil {
			ix = &index{table: r[0].Text, name: r[1].Text, unique: r[2].Int != 0, origin: r[3].Text}
			byName[ix.name] = ix
			order = append(order, ix)
		}
		ix.cols = append(ix.cols, r[5].Text)
	}
	// A rowid table's INTEGER PRIMARY KEY has no index of its own: show it as the primary key.
	for _, r := range cols {
		if r[6].Int == 1 && strings.EqualFold(strings.TrimSpace(r[3].Text), "INTEGER") {
			single := true
			for _, o := range cols {
				if o[0].Text == r[0].Text && o[6].Int > 1 {
					single = false
				}
			}
			if single {
				ix := &index{table: r[0].Text, name: r[0].Text + "_pkey", unique: true, origin: "pk", cols: []string{r[2].Text}}
				order = append(order, ix)
			}
		}
	}
	for _, ix := range order {
		toid, ok := relOID[ix.table]
		if !ok {
			continue
		}
		name := ix.name
		if ix.origin == "pk" {
			name = ix.table + "_pkey"
		}
		ioid := next
		next++
		keys := make([]string, len(ix.cols))
		for i, c := range ix.cols {
			keys[i] = fmt.Sprint(attnum[ix.table][c])
		}
		if err := exec(`INSERT INTO pg_catalog.pg_class (oid, relname, relnamespace, relkind, relnatts, relam) VALUES (?, ?, ?, 'i', ?, 403)`, ioid, name, oidNSPublic, len(ix.cols)); err != nil {
			return err
		}
		quoted := make([]string, len(ix.cols))
		for i, c := range ix.cols {
			quoted[i] = quoteIdent(c)
		}
		idef := fmt.Sprintf("CREATE %sINDEX %s ON public.%s USING btree (%s)", map[bool]string{true: "UNIQUE "}[ix.unique], quoteIdent(name), quoteIdent(ix.table), strings.Join(quoted, ", "))
		if err := exec(`INSERT INTO pg_catalog.pg_index (indexrelid, indrelid, indnatts, indnkeyatts, indisunique, indisprimary, indkey, indexdef) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			ioid, toid, len(ix.cols), len(ix.cols), ix.unique, ix.origin == "pk", strings.Join(keys, " "), idef); err != nil {
			return err
		}
		defs[ioid] = idef
		if err := exec(`UPDATE pg_catalog.pg_class SET relhasindex = 1 WHERE oid = ?`, toid); err != nil {
			return err
		}
		if ix.origin == "pk" || ix.origin == "u" {
			contype := map[bool]string{true: "p", false: "u"}[ix.origin == "pk"]
			kw := map[bool]string{true: "PRIMARY KEY", false: "UNIQUE"}[ix.origin == "pk"]
			if err := exec(`INSERT INTO pg_catalog.pg_constraint (oid, conname, connamespace, contype, conrelid, conindid, conkey, condef) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				next, name, oidNSPublic, contype, toid, ioid, "{"+strings.Join(keys, ",")+"}", kw+" ("+strings.Join(quoted, ", ")+")"); err != nil {
				return err
			}
			defs[next] = kw + " (" + strings.Join(quoted, ", ") + ")"
			next++
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	c.version, c.defs, c.cols = ver, defs, colTypes
	return nil
}

func (c *catalog) viewRows(ctx context.Context, q string) ([][]log.Value, error) {
	rows, err := c.view.Query(ctx, materializer.Statement{SQL: q})
	if err != nil {
		return nil, fmt.Errorf("read the view's schema: %w", err)
	}
	defer rows.Close()
	var out [][]log.Value
	for rows.Next() {
		out = append(out, append([]log.Value(nil), rows.Values()...))
	}
	return out, rows.Err()
}

func (c *catalog) viewInt(ctx context.Context, q string) (int64, error) {
	rows, err := c.viewRows(ctx, q)
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0].Type != log.TypeInteger {
		return 0, errors.New("read the view's schema: unexpected answer to " + q)
	}
	return rows[0][0].Int, nil
}

func quoteIdent(s string) string {
	simple := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9')) {
			simple = false
		}
	}
	if simple {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// catalogSQL rewrites a catalog query's PostgreSQL spellings for SQLite (see the package
// comment at the top of this file).
func catalogSQL(q string) (string, error) {
	toks, err := lex(q)
	if err != nil {
		return "", err
	}
	var out []string
	next := func(i int) int { // index of the next non-space token after i
		for j := i + 1; j < len(toks); j++ {
			if toks[j].kind != tokSpace {
				return j
			}
		}
		return len(toks)
	}
	at := func(i int) token {
		if i < len(toks) {
			return toks[i]
		}
		return token{}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == tokPunct && t.text == "::":
			// Drop a cast: ::name, ::schema.name, ::"char", with (n) and [] suffixes.
			j := next(i)
			if at(j).kind == tokWord || at(j).kind == tokQuoted {
				if k := next(j); at(k).text == "." {
					j = next(k)
				}
				for _, w := range []string{"precision", "varying"} { // double precision
					if k := next(j); at(k).is(w) {
						j = k
					}
				}
				if k := next(j); at(k).text == "(" {
					for at(k).text != ")" && k < len(toks) {
						k++
					}
					j = k
				}
				if k := next(j); at(k).text == "[" && at(next(k)).text == "]" {
					j = next(k)
				}
				i = j
				continue
			}
			out = append(out, t.text)
		case t.is("OPERATOR") && at(next(i)).text == "(":
			// OPERATOR(pg_catalog.~) and friends.
			j := next(i)
			var op string
			for k := next(j); k < len(toks); k = next(k) {
				if at(k).text == ")" {
					j = k
					break
				}
				if at(k).kind == tokPunct && at(k).text != "." {
					op = at(k).text
				}
			}
			out = append(out, " "+sqliteOperator(op)+" ")
			i = j
		case t.kind == tokPunct && strings.ContainsRune(t.text, '~'):
			out = append(out, " "+sqliteOperator(t.text)+" ")
		case t.is("COLLATE"):
			// COLLATE pg_catalog.default, COLLATE "C": SQLite's own collations differ.
			j := next(i)
			if k := next(j); at(k).text == "." {
				j = next(k)
			}
			i = j
		case t.is("pg_catalog") && at(next(i)).text == "." && at(next(next(i))).kind == tokWord && at(next(next(next(i)))).text == "(":
			// pg_catalog.f(...) is f(...): SQLite has no schema-qualified functions.
			i = next(i)
		case (t.is("current_user") || t.is("session_user") || t.is("current_catalog") || t.is("current_schema") || t.is("user") || t.is("current_role")) && at(next(i)).text != "(" && !(i > 0 && at(i-1).text == "."):
			out = append(out, strings.ToLower(t.text)+"()")
		case t.is("ARRAY") && at(next(i)).text == "[":
			// ARRAY[a, b] is a JSON array: catalog arrays are JSON text here.
			j := next(i)
			out = append(out, "json_array(")
			depth := 0
			for k := j + 1; k < len(toks); k++ {
				if at(k).text == "[" {
					depth++
				}
				if at(k).text == "]" {
					if depth == 0 {
						toks[k] = token{tokPunct, ")"}
						break
					}
					depth--
				}
			}
			i = j
		case t.kind == tokPunct && t.text == "[" && i > 0 && (toks[i-1].kind == tokWord || toks[i-1].text == ")"):
			// a[i]: array subscripts (of catalog arrays, empty here) are dropped.
			depth := 0
			for j := i; j < len(toks); j++ {
				if toks[j].text == "[" {
					depth++
				}
				if toks[j].text == "]" {
					depth--
					if depth == 0 {
						i = j
						break
					}
				}
			}
		case (t.is("generate_series") || t.is("unnest")) && at(next(i)).text == "(":
			// Set-returning functions over catalog arrays (empty here): an empty set.
			depth := 0
			for j := next(i); j < len(toks); j++ {
				if toks[j].text == "(" {
					depth++
				}
				if toks[j].text == ")" {
					depth--
					if depth == 0 {
						i = j
						break
					}
				}
			}
			out = append(out, "(SELECT NULL AS "+strings.ToLower(t.text)+" WHERE 0)")
		case t.is("string_agg"):
			out = append(out, "group_concat")
		case t.is("ARRAY") && at(next(i)).text == "(":
			// ARRAY(SELECT ...) keeps its first value: catalog arrays here are empty or one.
		case t.kind == tokString:
			out = append(out, sqliteString(t.text))
		default:
			out = append(out, t.text)
		}
	}
	return strings.Join(out, ""), nil
}

func sqliteOperator(op string) string {
	switch op {
	case "~", "~*":
		return "REGEXP"
	case "!~", "!~*":
		return "NOT REGEXP"
	case "~~", "~~*":
		return "LIKE"
	case "!~~", "!~~*":
		return "NOT LIKE"
	}
	return op
}

// The catalog's functions.

type catalogFunc struct {
	n  int32
	fn func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error)
}

var (
	regexMu    sync.Mutex
	regexCache = map[string]*regexp.Regexp{}
)

func constant(v driver.Value) catalogFunc {
	return catalogFunc{n: -1, fn: func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) { return v, nil }}
}

var catalogFuncs = map[string]catalogFunc{
	"regexp": {n: 2, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
		if a[0] == nil || a[1] == nil {
			return nil, nil
		}
		pat, s := fmt.Sprint(a[0]), fmt.Sprint(a[1])
		regexMu.Lock()
		re, ok := regexCache[pat]
		if !ok {
			var err error
			if re, err = regexp.Compile(pat); err != nil {
				regexMu.Unlock()
				return nil, fmt.Errorf("invalid regular expression %q: %v", pat, err)
			}
			if len(regexCache) > 256 {
				clear(regexCache)
			}
			regexCache[pat] = re
		}
		regexMu.Unlock()
		return re.MatchString(s), nil
	}},
	"version":                            constant("PostgreSQL 15.0 (Patina, SQLite underneath) on x86_64-pc-linux-gnu"),
	"current_schema":                     constant("public"),
	"current_database":                   constant(dbName),
	"current_catalog":                    constant(dbName),
	"current_user":                       constant(userName),
	"current_role":                       constant(userName),
	"session_user":                       constant(userName),
	"user":                               constant(userName),
	"pg_backend_pid":                     constant(int64(1)),
	"pg_is_in_recovery":                  constant(false),
	"txid_current":                       constant(int64(1)),
	"pg_table_is_visible":                constant(true),
	"pg_type_is_visible":                 constant(true),
	"pg_function_is_visible":             constant(true),
	"has_table_privilege":                constant(true),
	"has_schema_privilege":               constant(true),
	"has_database_privilege":             constant(true),
	"pg_get_userbyid":                    constant(userName),
	"obj_description":                    constant(nil),
	"col_description":                    constant(nil),
	"shobj_description":                  constant(nil),
	"pg_get_partkeydef":                  constant(nil),
	"pg_get_statisticsobjdef_columns":    constant(nil),
	"pg_relation_size":                   constant(int64(0)),
	"pg_total_relation_size":             constant(int64(0)),
	"pg_table_size":                      constant(int64(0)),
	"pg_relation_is_publishable":         constant(false),
	"array_upper":                        constant(nil),
	"array_lower":                        constant(nil),
	"pg_encoding_to_char":                constant("UTF8"),
	"pg_get_viewdef":                     constant(nil),
	"pg_get_triggerdef":                  constant(nil),
	"pg_get_ruledef":                     constant(nil),
	"pg_get_function_identity_arguments": constant(""),
	"current_schemas":                    constant(`{public}`),
	// x = ANY(array): catalog arrays hold one value at most here (roles, keys of one column).
	"any":          {n: 1, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) { return a[0], nil }},
	"array_length": {n: -1, fn: jsonArrayLength},
	"cardinality":  {n: 1, fn: jsonArrayLength},
	"array_to_string": {n: -1, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
		if len(a) < 2 || a[0] == nil {
			return nil, nil
		}
		s := strings.Trim(fmt.Sprint(a[0]), "[]{}")
		parts := strings.Split(s, ",")
		for i := range parts {
			parts[i] = strings.Trim(strings.TrimSpace(parts[i]), `"`)
		}
		return strings.Join(parts, fmt.Sprint(a[1])), nil
	}},
	"quote_ident": {n: 1, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
		if a[0] == nil {
			return nil, nil
		}
		return quoteIdent(fmt.Sprint(a[0])), nil
	}},
	"format_type": {n: 2, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
		oid, ok := a[0].(int64)
		if !ok {
			return nil, nil
		}
		if n, ok := typeNames[uint32(oid)]; ok {
			return n, nil
		}
		return "???", nil
	}},
	"pg_get_expr": {n: -1, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
		if len(a) == 0 {
			return nil, nil
		}
		return a[0], nil
	}},
	"current_setting": {n: -1, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
		if len(a) == 0 || a[0] == nil {
			return nil, nil
		}
		if v, ok := defaults[strings.ToLower(fmt.Sprint(a[0]))]; ok {
			return v, nil
		}
		return nil, nil
	}},
	"set_config": {n: 3, fn: func(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) { return a[1], nil }},
}

func jsonArrayLength(_ *sqlite.FunctionContext, a []driver.Value) (driver.Value, error) {
	if len(a) == 0 || a[0] == nil {
		return nil, nil
	}
	s := strings.TrimSpace(strings.Trim(fmt.Sprint(a[0]), "[]{}"))
	if s == "" {
		return nil, nil
	}
	return int64(strings.Count(s, ",") + 1), nil
}

// typeNames are format_type's answers.
var typeNames = map[uint32]string{
	oidBool: "boolean", oidBytea: "bytea", oidInt8: "bigint", oidInt2: "smallint", oidInt4: "integer",
	oidText: "text", oidOID: "oid", oidFloat4: "real", oidFloat8: "double precision", oidNumeric: "numeric",
	oidVarchar: "character varying", oidBPChar: "character", oidName: "name", oidChar: "\"char\"",
	oidJSON: "json", oidUnknown: "unknown",
}

// catalogSchema is the catalog's tables, made on each connection. Columns are those clients
// read; every other column a client names is an error it reports.
const catalogSchema = `
ATTACH ':memory:' AS pg_catalog;
ATTACH ':memory:' AS information_schema;
CREATE TABLE pg_catalog.pg_namespace (oid INTEGER PRIMARY KEY, nspname TEXT, nspowner INTEGER DEFAULT 10, nspacl TEXT);
INSERT INTO pg_catalog.pg_namespace (oid, nspname) VALUES (11, 'pg_catalog'), (2200, 'public'), (13000, 'information_schema');
CREATE TABLE pg_catalog.pg_class (oid INTEGER PRIMARY KEY, relname TEXT, relnamespace INTEGER, reltype INTEGER DEFAULT 0,
  reloftype INTEGER DEFAULT 0, relowner INTEGER DEFAULT 10, relam INTEGER DEFAULT 2, relfilenode INTEGER DEFAULT 0,
  reltablespace INTEGER DEFAULT 0, relpages INTEGER DEFAULT 0, reltuples REAL DEFAULT -1, relallvisible INTEGER DEFAULT 0,
  reltoastrelid INTEGER DEFAULT 0, relhasindex BOOLEAN DEFAULT 0, relisshared BOOLEAN DEFAULT 0, relpersistence "char" DEFAULT 'p',
  relkind "char", relnatts INTEGER, relchecks INTEGER DEFAULT 0, relhasrules BOOLEAN DEFAULT 0, relhastriggers BOOLEAN DEFAULT 0,
  relhassubclass BOOLEAN DEFAULT 0, relrowsecurity BOOLEAN DEFAULT 0, relforcerowsecurity BOOLEAN DEFAULT 0,
  relispopulated BOOLEAN DEFAULT 1, relreplident "char" DEFAULT 'd', relispartition BOOLEAN DEFAULT 0, relrewrite INTEGER DEFAULT 0,
  relfrozenxid INTEGER DEFAULT 0, relminmxid INTEGER DEFAULT 0, relacl TEXT, reloptions TEXT, relpartbound TEXT, relhasoids BOOLEAN DEFAULT 0);
CREATE TABLE pg_catalog.pg_attribute (attrelid INTEGER, attname TEXT, atttypid INTEGER, attstattarget INTEGER DEFAULT -1,
  attlen INTEGER DEFAULT -1, attnum INTEGER, attndims INTEGER DEFAULT 0, attcacheoff INTEGER DEFAULT -1, atttypmod INTEGER DEFAULT -1,
  attbyval BOOLEAN DEFAULT 0, attalign "char" DEFAULT 'i', attstorage "char" DEFAULT 'p', attcompression "char" DEFAULT '',
  attnotnull BOOLEAN, atthasdef BOOLEAN, atthasmissing BOOLEAN DEFAULT 0, attidentity "char" DEFAULT '', attgenerated "char" DEFAULT '',
  attisdropped BOOLEAN DEFAULT 0, attislocal BOOLEAN DEFAULT 1, attinhcount INTEGER DEFAULT 0, attcollation INTEGER DEFAULT 0,
  attacl TEXT, attoptions TEXT, attfdwoptions TEXT, attmissingval TEXT, decltype TEXT);
CREATE TABLE pg_catalog.pg_attrdef (oid INTEGER PRIMARY KEY, adrelid INTEGER, adnum INTEGER, adbin TEXT);
CREATE TABLE pg_catalog.pg_index (indexrelid INTEGER PRIMARY KEY, indrelid INTEGER, indnatts INTEGER, indnkeyatts INTEGER,
  indisunique BOOLEAN, indnullsnotdistinct BOOLEAN DEFAULT 0, indisprimary BOOLEAN, indisexclusion BOOLEAN DEFAULT 0,
  indimmediate BOOLEAN DEFAULT 1, indisclustered BOOLEAN DEFAULT 0, indisvalid BOOLEAN DEFAULT 1, indcheckxmin BOOLEAN DEFAULT 0,
  indisready BOOLEAN DEFAULT 1, indislive BOOLEAN DEFAULT 1, indisreplident BOOLEAN DEFAULT 0, indkey TEXT, indcollation TEXT,
  indclass TEXT, indoption TEXT, indexprs TEXT, indpred TEXT, indexdef TEXT);
CREATE TABLE pg_catalog.pg_constraint (oid INTEGER PRIMARY KEY, conname TEXT, connamespace INTEGER, contype "char",
  condeferrable BOOLEAN DEFAULT 0, condeferred BOOLEAN DEFAULT 0, convalidated BOOLEAN DEFAULT 1, conrelid INTEGER,
  contypid INTEGER DEFAULT 0, conindid INTEGER, conparentid INTEGER DEFAULT 0, confrelid INTEGER DEFAULT 0,
  confupdtype "char" DEFAULT ' ', confdeltype "char" DEFAULT ' ', confmatchtype "char" DEFAULT ' ', conislocal BOOLEAN DEFAULT 1,
  coninhcount INTEGER DEFAULT 0, connoinherit BOOLEAN DEFAULT 1, conkey TEXT, confkey TEXT, conbin TEXT, condef TEXT);
CREATE TABLE pg_catalog.pg_type (oid INTEGER PRIMARY KEY, typname TEXT, typnamespace INTEGER DEFAULT 11, typowner INTEGER DEFAULT 10,
  typlen INTEGER, typbyval BOOLEAN DEFAULT 0, typtype "char" DEFAULT 'b', typcategory "char", typispreferred BOOLEAN DEFAULT 0,
  typisdefined BOOLEAN DEFAULT 1, typdelim "char" DEFAULT ',', typrelid INTEGER DEFAULT 0, typsubscript TEXT DEFAULT '-',
  typelem INTEGER DEFAULT 0, typarray INTEGER DEFAULT 0, typinput TEXT, typoutput TEXT, typreceive TEXT, typsend TEXT,
  typbasetype INTEGER DEFAULT 0, typtypmod INTEGER DEFAULT -1, typndims INTEGER DEFAULT 0, typcollation INTEGER DEFAULT 0,
  typnotnull BOOLEAN DEFAULT 0, typdefault TEXT, typacl TEXT);
INSERT INTO pg_catalog.pg_type (oid, typname, typlen, typcategory, typarray) VALUES
  (16, 'bool', 1, 'B', 1000), (17, 'bytea', -1, 'U', 1001), (18, 'char', 1, 'Z', 1002), (19, 'name', 64, 'S', 1003),
  (20, 'int8', 8, 'N', 1016), (21, 'int2', 2, 'N', 1005), (23, 'int4', 4, 'N', 1007), (25, 'text', -1, 'S', 1009),
  (26, 'oid', 4, 'N', 1028), (114, 'json', -1, 'U', 199), (700, 'float4', 4, 'N', 1021), (701, 'float8', 8, 'N', 1022),
  (705, 'unknown', -2, 'X', 0), (1042, 'bpchar', -1, 'S', 1014), (1043, 'varchar', -1, 'S', 1015),
  (1082, 'date', 4, 'D', 1182), (1114, 'timestamp', 8, 'D', 1115), (1184, 'timestamptz', 8, 'D', 1185),
  (1700, 'numeric', -1, 'N', 1231), (2950, 'uuid', 16, 'U', 2951);
UPDATE pg_catalog.pg_type SET typinput = typname || 'in', typoutput = typname || 'out', typreceive = typname || 'recv', typsend = typname || 'send';
CREATE TABLE pg_catalog.pg_am (oid INTEGER PRIMARY KEY, amname TEXT, amhandler TEXT, amtype "char");
INSERT INTO pg_catalog.pg_am VALUES (2, 'heap', 'heap_tableam_handler', 't'), (403, 'btree', 'bthandler', 'i');
CREATE TABLE pg_catalog.pg_database (oid INTEGER PRIMARY KEY, datname TEXT, datdba INTEGER DEFAULT 10, encoding INTEGER DEFAULT 6,
  datlocprovider "char" DEFAULT 'c', datistemplate BOOLEAN DEFAULT 0, datallowconn BOOLEAN DEFAULT 1, datconnlimit INTEGER DEFAULT -1,
  datcollate TEXT DEFAULT 'C', datctype TEXT DEFAULT 'C', daticulocale TEXT, datacl TEXT);
INSERT INTO pg_catalog.pg_database (oid, datname) VALUES (16383, 'patina');
CREATE TABLE pg_catalog.pg_roles (oid INTEGER PRIMARY KEY, rolname TEXT, rolsuper BOOLEAN DEFAULT 0, rolinherit BOOLEAN DEFAULT 1,
  rolcreaterole BOOLEAN DEFAULT 0, rolcreatedb BOOLEAN DEFAULT 0, rolcanlogin BOOLEAN DEFAULT 1, rolreplication BOOLEAN DEFAULT 0,
  rolconnlimit INTEGER DEFAULT -1, rolvaliduntil TEXT, rolbypassrls BOOLEAN DEFAULT 0, rolconfig TEXT);
INSERT INTO pg_catalog.pg_roles (oid, rolname) VALUES (10, 'patina');
CREATE TABLE pg_catalog.pg_user (usename TEXT, usesysid INTEGER, usecreatedb BOOLEAN DEFAULT 0, usesuper BOOLEAN DEFAULT 0);
INSERT INTO pg_catalog.pg_user VALUES ('patina', 10, 0, 0);
CREATE TABLE pg_catalog.pg_settings (name TEXT PRIMARY KEY, setting TEXT, unit TEXT, category TEXT, short_desc TEXT, context TEXT, vartype TEXT);
CREATE TABLE pg_catalog.pg_description (objoid INTEGER, classoid INTEGER, objsubid INTEGER, description TEXT);
CREATE TABLE pg_catalog.pg_inherits (inhrelid INTEGER, inhparent INTEGER, inhseqno INTEGER, inhdetachpending BOOLEAN);
CREATE TABLE pg_catalog.pg_trigger (oid INTEGER, tgrelid INTEGER, tgparentid INTEGER, tgname TEXT, tgfoid INTEGER, tgtype INTEGER,
  tgenabled "char", tgisinternal BOOLEAN, tgconstrrelid INTEGER, tgconstrindid INTEGER, tgconstraint INTEGER);
CREATE TABLE pg_catalog.pg_policy (oid INTEGER, polname TEXT, polrelid INTEGER, polcmd "char", polpermissive BOOLEAN, polroles TEXT, polqual TEXT, polwithcheck TEXT);
CREATE TABLE pg_catalog.pg_statistic_ext (oid INTEGER, stxrelid INTEGER, stxname TEXT, stxnamespace INTEGER, stxowner INTEGER, stxstattarget INTEGER, stxkeys TEXT, stxkind TEXT, stxexprs TEXT);
CREATE TABLE pg_catalog.pg_publication (oid INTEGER, pubname TEXT, pubowner INTEGER, puballtables BOOLEAN, pubinsert BOOLEAN, pubupdate BOOLEAN, pubdelete BOOLEAN, pubtruncate BOOLEAN, pubviaroot BOOLEAN);
CREATE TABLE pg_catalog.pg_publication_rel (oid INTEGER, prpubid INTEGER, prrelid INTEGER, prqual TEXT, prattrs TEXT);
CREATE TABLE pg_catalog.pg_publication_namespace (oid INTEGER, pnpubid INTEGER, pnnspid INTEGER);
CREATE TABLE pg_catalog.pg_rewrite (oid INTEGER, rulename TEXT, ev_class INTEGER, ev_type "char", ev_enabled "char", is_instead BOOLEAN);
CREATE TABLE pg_catalog.pg_foreign_table (ftrelid INTEGER, ftserver INTEGER, ftoptions TEXT);
CREATE TABLE pg_catalog.pg_partitioned_table (partrelid INTEGER, partstrat "char", partnatts INTEGER);
CREATE TABLE pg_catalog.pg_collation (oid INTEGER, collname TEXT, collnamespace INTEGER, collprovider "char");
CREATE TABLE pg_catalog.pg_tablespace (oid INTEGER, spcname TEXT, spcowner INTEGER);
CREATE TABLE pg_catalog.pg_proc (oid INTEGER, proname TEXT, pronamespace INTEGER, prokind "char", prorettype INTEGER, proargtypes TEXT);
CREATE TABLE pg_catalog.pg_extension (oid INTEGER, extname TEXT, extowner INTEGER, extnamespace INTEGER, extversion TEXT);
CREATE TABLE pg_catalog.pg_enum (oid INTEGER, enumtypid INTEGER, enumsortorder REAL, enumlabel TEXT);
CREATE TABLE pg_catalog.pg_range (rngtypid INTEGER, rngsubtype INTEGER);
CREATE TABLE pg_catalog.pg_event_trigger (oid INTEGER, evtname TEXT);
CREATE TABLE pg_catalog.pg_sequence (seqrelid INTEGER);
CREATE TABLE pg_catalog.pg_depend (classid INTEGER, objid INTEGER, objsubid INTEGER, refclassid INTEGER, refobjid INTEGER, refobjsubid INTEGER, deptype "char");
CREATE TABLE pg_catalog.pg_stat_activity (datid INTEGER, datname TEXT, pid INTEGER, usename TEXT, application_name TEXT, state TEXT, query TEXT);
CREATE VIEW pg_catalog.pg_tables AS SELECT 'public' AS schemaname, relname AS tablename, 'patina' AS tableowner, NULL AS tablespace,
  relhasindex AS hasindexes, 0 AS hasrules, 0 AS hastriggers, 0 AS rowsecurity FROM pg_class WHERE relkind = 'r';
CREATE VIEW pg_catalog.pg_indexes AS SELECT 'public' AS schemaname, t.relname AS tablename, i.relname AS indexname, NULL AS tablespace,
  x.indexdef AS indexdef FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid;
CREATE TABLE information_schema.tables (table_catalog TEXT DEFAULT 'patina', table_schema TEXT DEFAULT 'public', table_name TEXT,
  table_type TEXT DEFAULT 'BASE TABLE', is_insertable_into TEXT DEFAULT 'YES');
CREATE TABLE information_schema.columns (table_catalog TEXT DEFAULT 'patina', table_schema TEXT DEFAULT 'public', table_name TEXT,
  column_name TEXT, ordinal_position INTEGER, column_default TEXT, is_nullable TEXT, data_type TEXT);
CREATE TABLE information_schema.schemata (catalog_name TEXT, schema_name TEXT, schema_owner TEXT);
INSERT INTO information_schema.schemata VALUES ('patina', 'public', 'patina'), ('patina', 'pg_catalog', 'patina'), ('patina', 'information_schema', 'patina');
`
