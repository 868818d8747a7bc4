package materializer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer/internal/sqltok"
)

// affinity is a column's SQLite type affinity (https://sqlite.org/datatype3.html 3.1).
type affinity uint8

const (
	affBlob affinity = iota
	affText
	affNumeric
	affInteger
	affReal
)

func affinityOf(declType string) affinity {
	t := strings.ToUpper(declType)
	switch {
	case strings.Contains(t, "INT"):
		return affInteger
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return affText
	case t == "", strings.Contains(t, "BLOB"):
		return affBlob
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"):
		return affReal
	}
	return affNumeric
}

// column is one column of a user table as SQLite reports it.
type column struct {
	Name    string
	Type    string
	NotNull bool
	Default sql.NullString // the DEFAULT expression's text
	PK      int            // 1-based position in the primary key, 0 if not in it
	aff     affinity
}

// table is a user table and what the materializer derives from it.
type table struct {
	Name  string
	Cols  []column
	PK    []int // indexes into Cols, in primary key order
	NonPK []int // indexes into Cols of the other columns, in declared order: the clock ordinal

	ordByName map[string]int // lower-case column name -> non-pk ordinal
	pkByName  map[string]int // lower-case column name -> position in PK

	clock  string // quoted clock table name
	quoted string // quoted table name

	// Statements of the fold, built once per schema load.
	sqlClockGet, sqlClockPut, sqlDelete, sqlEnsure, sqlReadRow string
	upserts                                                    map[string]string // by written-column mask (and rows, see upsertRows)
	masks                                                      map[string]string // interned written-column masks (maskKey)

	filter clockFilter // rows known to have no clock (clock.go); the writer's
}

func clockTableName(t string) string { return "__patina_clock_" + t }

func (t *table) nonPKCol(ord int) *column { return &t.Cols[t.NonPK[ord]] }

// pkWhere is `"a" = ? AND "b" = ?` over the pk columns.
func (t *table) pkWhere() string {
	parts := make([]string, len(t.PK))
	for i, c := range t.PK {
		parts[i] = quoteIdent(t.Cols[c].Name) + " = ?"
	}
	return strings.Join(parts, " AND ")
}

func (t *table) pkList() string {
	parts := make([]string, len(t.PK))
	for i, c := range t.PK {
		parts[i] = quoteIdent(t.Cols[c].Name)
	}
	return strings.Join(parts, ", ")
}

// loadTable reads a table's columns from SQLite (inside or outside a transaction).
func loadTable(ctx context.Context, q querier, name string) (*table, error) {
	rows, err := q.QueryContext(ctx, "SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?)", name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	t := &table{Name: name, ordByName: map[string]int{}, pkByName: map[string]int{}}
	for rows.Next() {
		var c column
		var notnull, pk, hidden int
		if err := rows.Scan(&c.Name, &c.Type, &notnull, &c.Default, &pk, &hidden); err != nil {
			return nil, err
		}
		if hidden != 0 {
			return nil, fmt.Errorf("%w: table %q: generated or hidden column %q is not supported", ErrSchema, name, c.Name)
		}
		c.NotNull, c.PK, c.aff = notnull != 0, pk, affinityOf(c.Type)
		t.Cols = append(t.Cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(t.Cols) == 0 {
		return nil, fmt.Errorf("%w: no such table %q", ErrBadStatement, name)
	}
	t.finish()
	return t, nil
}

func (t *table) finish() {
	type pkc struct{ pos, idx int }
	var pks []pkc
	t.NonPK = t.NonPK[:0]
	for i, c := range t.Cols {
		if c.PK > 0 {
			pks = append(pks, pkc{c.PK, i})
		} else {
			t.ordByName[strings.ToLower(c.Name)] = len(t.NonPK)
			t.NonPK = append(t.NonPK, i)
		}
	}
	slices.SortFunc(pks, func(a, b pkc) int { return a.pos - b.pos })
	t.PK = t.PK[:0]
	for i, p := range pks {
		t.PK = append(t.PK, p.idx)
		t.pkByName[strings.ToLower(t.Cols[p.idx].Name)] = i
	}
	t.clock = quoteIdent(clockTableName(t.Name))
	t.quoted = quoteIdent(t.Name)
	t.sqlClockGet = "SELECT clock FROM " + t.clock + " WHERE pk = ?"
	t.sqlClockPut = "INSERT OR REPLACE INTO " + t.clock + " (pk, cl, clock) VALUES (?, ?, ?)"
	t.sqlDelete = "DELETE FROM " + t.quoted + " WHERE " + t.pkWhere()
	t.sqlEnsure = "INSERT OR IGNORE INTO " + t.quoted + " (" + t.pkList() + ") VALUES (" + placeholders(len(t.PK)) + ")"
	sel := make([]string, len(t.NonPK))
	for i, c := range t.NonPK {
		// Unary + keeps the value and drops the declared type, so that the driver never turns
		// a DATE column's text into a time.Time.
		sel[i] = "+" + quoteIdent(t.Cols[c].Name)
	}
	if len(sel) > 0 {
		t.sqlReadRow = "SELECT " + strings.Join(sel, ", ") + " FROM " + t.quoted + " WHERE " + t.pkWhere()
	}
	t.upserts = map[string]string{}
	t.masks = map[string]string{}
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// checkTable applies the schema rules of docs/DESIGN.md section 5 to a table.
func checkTable(ctx context.Context, q querier, t *table, toks []sqltok.Token) error {
	if len(t.PK) == 0 {
		return fmt.Errorf("%w: table %q has no PRIMARY KEY; every table needs one", ErrSchema, t.Name)
	}
	for _, i := range t.PK {
		if !t.Cols[i].NotNull {
			return fmt.Errorf("%w: table %q: primary key column %q must be NOT NULL", ErrSchema, t.Name, t.Cols[i].Name)
		}
	}
	for _, i := range t.NonPK {
		c := t.Cols[i]
		if c.NotNull && (!c.Default.Valid || strings.EqualFold(c.Default.String, "NULL")) {
			return fmt.Errorf("%w: table %q: NOT NULL column %q needs a DEFAULT (a row can arrive before its values)", ErrSchema, t.Name, c.Name)
		}
	}
	for _, tk := range toks {
		if tk.Is("AUTOINCREMENT") {
			return fmt.Errorf("%w: table %q: AUTOINCREMENT cannot hold across sites", ErrSchema, t.Name)
		}
	}
	var n int
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM pragma_index_list(?) WHERE origin = 'u' OR (\"unique\" AND origin <> 'pk')", t.Name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: table %q: UNIQUE constraints other than the primary key cannot hold under concurrent writes at several sites", ErrSchema, t.Name)
	}
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM pragma_foreign_key_list(?)", t.Name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: table %q: foreign keys cannot be checked across sites", ErrSchema, t.Name)
	}
	return nil
}

// schemaStmt is one parsed schema statement.
type schemaStmt struct {
	kind        string // "table", "index", "dropindex"
	sql         string
	name        string // table or index name
	on          string // the table of an index
	ifNotExists bool
	unique      bool
	colDefs     map[string]string // table: lower-case column name -> its definition text
	toks        []sqltok.Token
}

// parseSchemaStmt recognises the statements a schema may hold.
func parseSchemaStmt(stmt string) (*schemaStmt, error) {
	toks, err := sqltok.Tokenize(stmt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchema, err)
	}
	ps := &schemaParser{stmt: stmt, toks: toks}
	s := &schemaStmt{sql: stmt, toks: toks}
	switch first := ps.next(); {
	case first.Is("CREATE"):
		return s, ps.create(s)
	case first.Is("DROP"):
		t := ps.next()
		if !t.Is("INDEX") {
			return nil, fmt.Errorf("%w: dropping a %s is destructive and is refused: %q", ErrSchemaConflict, strings.ToLower(t.Text), stmt)
		}
		s.kind = "dropindex"
		if ps.peek().Is("IF") {
			ps.next()
			ps.next()
			s.ifNotExists = true
		}
		if s.name, err = ps.name(); err != nil {
			return nil, err
		}
		return s, nil
	case first.Is("ALTER"):
		return nil, fmt.Errorf("%w: ALTER TABLE is refused; add columns by re-applying CREATE TABLE with the new columns (renames and drops are destructive): %q", ErrSchemaConflict, stmt)
	}
	return nil, fmt.Errorf("%w: only CREATE TABLE, CREATE INDEX and DROP INDEX are allowed: %q", ErrSchema, stmt)
}

// schemaParser walks one statement's tokens; past the end it reads an empty punctuation
// token, which no check accepts, so a truncated statement fails where it stops.
type schemaParser struct {
	stmt string
	toks []sqltok.Token
	p    int
}

func (ps *schemaParser) next() sqltok.Token {
	if ps.p < len(ps.toks) {
		ps.p++
		return ps.toks[ps.p-1]
	}
	return sqltok.Token{Kind: sqltok.Punct}
}

func (ps *schemaParser) peek() sqltok.Token {
	if ps.p < len(ps.toks) {
		return ps.toks[ps.p]
	}
	return sqltok.Token{Kind: sqltok.Punct}
}

// name reads a possibly schema-qualified name; only main is accepted.
func (ps *schemaParser) name() (string, error) {
	t := ps.next()
	if t.Kind != sqltok.Word && t.Kind != sqltok.Quoted && t.Kind != sqltok.String {
		return "", fmt.Errorf("%w: expected a name in %q", ErrSchema, ps.stmt)
	}
	n := t.Ident()
	if ps.peek().Kind == sqltok.Punct && ps.peek().Text == "." {
		ps.next()
		if !strings.EqualFold(n, "main") {
			return "", fmt.Errorf("%w: only the main schema is supported: %q", ErrSchema, ps.stmt)
		}
		n = ps.next().Ident()
	}
	return n, nil
}

// create parses the rest of a CREATE TABLE or CREATE [UNIQUE] INDEX into s.
func (ps *schemaParser) create(s *schemaStmt) error {
	stmt := ps.stmt
	t := ps.next()
	if t.Is("TEMP") || t.Is("TEMPORARY") {
		return fmt.Errorf("%w: temporary objects are not replicated: %q", ErrSchema, stmt)
	}
	if t.Is("VIRTUAL") {
		return fmt.Errorf("%w: virtual tables are not supported: %q", ErrSchema, stmt)
	}
	if t.Is("UNIQUE") {
		s.unique = true
		t = ps.next()
	}
	switch {
	case t.Is("TABLE") && !s.unique:
		s.kind = "table"
	case t.Is("INDEX"):
		s.kind = "index"
	default:
		return fmt.Errorf("%w: only CREATE TABLE, CREATE INDEX and DROP INDEX are allowed: %q", ErrSchema, stmt)
	}
	if ps.peek().Is("IF") {
		ps.next()
		if !ps.next().Is("NOT") || !ps.next().Is("EXISTS") {
			return fmt.Errorf("%w: bad IF NOT EXISTS in %q", ErrSchema, stmt)
		}
		s.ifNotExists = true
	}
	var err error
	if s.name, err = ps.name(); err != nil {
		return err
	}
	if s.kind == "index" {
		if !ps.next().Is("ON") {
			return fmt.Errorf("%w: expected ON in %q", ErrSchema, stmt)
		}
		s.on, err = ps.name()
		return err
	}
	if ps.peek().Is("AS") {
		return fmt.Errorf("%w: CREATE TABLE ... AS SELECT is not supported (no primary key): %q", ErrSchema, stmt)
	}
	if t := ps.next(); t.Kind != sqltok.Punct || t.Text != "(" {
		return fmt.Errorf("%w: expected ( after the table name in %q", ErrSchema, stmt)
	}
	s.colDefs = ps.columnDefs()
	return nil
}

// columnDefs reads a table's definitions up to its closing parenthesis and returns each
// column's definition text by lower-cased name (table constraints are skipped).
func (ps *schemaParser) columnDefs() map[string]string {
	defs := map[string]string{}
	toks := ps.toks
	depth, start := 0, ps.p
	for ; ps.p < len(toks); ps.p++ {
		t := toks[ps.p]
		if t.Kind == sqltok.Punct && t.Text == "(" {
			depth++
		}
		end := t.Kind == sqltok.Punct && (t.Text == "," && depth == 0 || t.Text == ")" && depth == 0)
		if t.Kind == sqltok.Punct && t.Text == ")" && depth > 0 {
			depth--
		}
		if !end {
			continue
		}
		if start < ps.p {
			def := toks[start:ps.p]
			h := def[0]
			if !(h.Is("CONSTRAINT") || h.Is("PRIMARY") || h.Is("UNIQUE") || h.Is("CHECK") || h.Is("FOREIGN")) {
				defs[strings.ToLower(h.Ident())] = strings.TrimSpace(ps.stmt[h.Start:t.Start])
			}
		}
		start = ps.p + 1
		if t.Text == ")" {
			break
		}
	}
	return defs
}

// applySchema applies schema statements inside the open transaction on conn and returns the
// statements that changed something and the schema elements (see schemamerge.go) that
// describe the change. It refuses what docs/DESIGN.md section 5 refuses. With lag set (schema
// files at start), a statement that lags the schema the view has (a table with fewer
// columns, an index defined otherwise or dropped since) is reported to lag and skipped
// instead of refused: the replicated schema wins over a stale file.
func applySchema(ctx context.Context, conn querier, stmts []string, lag func(stmt, why string)) ([]string, []element, error) {
	var applied []string
	var els []element
	for _, raw := range stmts {
		parts, err := sqltok.Split(raw)
		if err != nil {
			return applied, els, fmt.Errorf("%w: %w", ErrSchema, err)
		}
		for _, stmt := range parts {
			e, err := applyOne(ctx, conn, stmt, lag)
			if err != nil {
				return applied, els, err
			}
			if len(e) > 0 {
				applied = append(applied, stmt)
				els = append(els, e...)
			}
		}
	}
	return applied, els, nil
}

func objectSQL(ctx context.Context, q querier, typ, name string) (string, bool, error) {
	var s sql.NullString
	err := q.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE type = ? AND name = ? COLLATE NOCASE", typ, name).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return s.String, err == nil, err
}

func applyOne(ctx context.Context, q querier, stmt string, lag func(stmt, why string)) ([]element, error) {
	s, err := parseSchemaStmt(stmt)
	if err != nil {
		return nil, err
	}
	if isInternalName(s.name) {
		return nil, fmt.Errorf("%w: %q: names starting with __patina or sqlite_ are reserved", ErrSchema, s.name)
	}
	switch s.kind {
	case "table":
		return applyTable(ctx, q, s, lag)
	case "index":
		if s.unique {
			return nil, fmt.Errorf("%w: unique index %q: UNIQUE constraints other than the primary key cannot hold under concurrent writes at several sites", ErrSchema, s.name)
		}
		if isInternalName(s.on) {
			return nil, fmt.Errorf("%w: index %q on internal table %q", ErrSchema, s.name, s.on)
		}
		if _, ok, err := objectSQL(ctx, q, "table", s.on); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("%w: index %q: no such table %q", ErrSchema, s.name, s.on)
		}
		old, ok, err := objectSQL(ctx, q, "index", s.name)
		if err != nil {
			return nil, err
		}
		if ok {
			if normalizeSQL(old) == normalizeSQL(stmt) || s.ifNotExists {
				return nil, nil
			}
			if lag != nil {
				lag(stmt, fmt.Sprintf("index %q is defined otherwise in the replicated schema", s.name))
				return nil, nil
			}
			// An index holds no data of its own, so a changed definition is rebuilt.
			if _, err := q.ExecContext(ctx, "DROP INDEX "+quoteIdent(s.name)); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrSchema, err)
			}
		}
		if _, err := q.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSchema, err)
		}
		return indexElement(ctx, q, s.name)
	case "dropindex":
		_, ok, err := objectSQL(ctx, q, "index", s.name)
		if err != nil {
			return nil, err
		}
		if !ok {
			if s.ifNotExists {
				return nil, nil
			}
			return nil, fmt.Errorf("%w: no such index %q", ErrSchema, s.name)
		}
		var name, tbl string
		if err := q.QueryRowContext(ctx, "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND name = ? COLLATE NOCASE", s.name).Scan(&name, &tbl); err != nil {
			return nil, err
		}
		if _, err := q.ExecContext(ctx, "DROP INDEX "+quoteIdent(s.name)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSchema, err)
		}
		return []element{{Kind: log.SchemaDropIndex, Table: tbl, Name: name}}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrSchema, stmt)
}

// indexElement describes an index as SQLite keeps it.
func indexElement(ctx context.Context, q querier, name string) ([]element, error) {
	var e element
	if err := q.QueryRowContext(ctx, "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = ? COLLATE NOCASE", name).Scan(&e.Name, &e.Table, &e.SQL); err != nil {
		return nil, err
	}
	e.Kind = log.SchemaIndex
	return []element{e}, nil
}

// normalizeSQL makes two spellings of the same statement compare equal.
func normalizeSQL(s string) string {
	toks, err := sqltok.Tokenize(s)
	if err != nil {
		return s
	}
	var b strings.Builder
	for _, t := range toks {
		if t.Kind == sqltok.Word {
			b.WriteString(strings.ToUpper(t.Text))
		} else if t.Kind == sqltok.Quoted {
			b.WriteString(strings.ToUpper(t.Ident()))
		} else {
			b.WriteString(t.Text)
		}
		b.WriteByte(' ')
	}
	return b.String()
}

func applyTable(ctx context.Context, q querier, s *schemaStmt, lag func(stmt, why string)) ([]element, error) {
	_, exists, err := objectSQL(ctx, q, "table", s.name)
	if err != nil {
		return nil, err
	}
	if !exists {
		if _, err := q.ExecContext(ctx, s.sql); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSchema, err)
		}
		t, err := loadTable(ctx, q, s.name)
		if err != nil {
			return nil, err
		}
		if err := checkTable(ctx, q, t, s.toks); err != nil {
			return nil, err
		}
		if err := createClock(ctx, q, t.Name); err != nil {
			return nil, err
		}
		text, _, err := objectSQL(ctx, q, "table", t.Name)
		if err != nil {
			return nil, err
		}
		return []element{{Kind: log.SchemaTable, Table: t.Name, Name: t.Name, SQL: text}}, nil
	}
	// The table exists: the new definition may only add columns at the end.
	cur, err := loadTable(ctx, q, s.name)
	if err != nil {
		return nil, err
	}
	if err := checkTable(ctx, q, cur, nil); err != nil {
		return nil, err
	}
	want, err := scratchTable(ctx, s)
	if err != nil {
		return nil, err
	}
	for i, c := range cur.Cols {
		if i >= len(want.Cols) {
			if lag != nil && sameColumns(want.Cols, cur.Cols[:len(want.Cols)]) {
				lag(s.sql, fmt.Sprintf("table %q has %d columns in the replicated schema, %d here", cur.Name, len(cur.Cols), len(want.Cols)))
				return nil, nil
			}
			return nil, fmt.Errorf("%w: table %q: column %q is missing from the new definition (dropping or renaming a column is destructive)", ErrSchemaConflict, s.name, c.Name)
		}
		w := want.Cols[i]
		if !strings.EqualFold(w.Name, c.Name) {
			return nil, fmt.Errorf("%w: table %q: column %d is %q, was %q (dropping, renaming or reordering columns is destructive)", ErrSchemaConflict, s.name, i+1, w.Name, c.Name)
		}
		if !strings.EqualFold(w.Type, c.Type) || w.NotNull != c.NotNull || w.Default != c.Default || w.PK != c.PK {
			return nil, fmt.Errorf("%w: table %q: column %q changes its type, constraints, default or key membership (refused)", ErrSchemaConflict, s.name, c.Name)
		}
	}
	if len(want.Cols) == len(cur.Cols) {
		return nil, nil
	}
	var els []element
	for _, w := range want.Cols[len(cur.Cols):] {
		if w.PK > 0 {
			return nil, fmt.Errorf("%w: table %q: new column %q changes the primary key (refused)", ErrSchemaConflict, s.name, w.Name)
		}
		def, ok := s.colDefs[strings.ToLower(w.Name)]
		if !ok {
			return nil, fmt.Errorf("%w: table %q: cannot find the definition of new column %q", ErrSchema, s.name, w.Name)
		}
		if _, err := q.ExecContext(ctx, "ALTER TABLE "+quoteIdent(cur.Name)+" ADD COLUMN "+def); err != nil {
			return nil, fmt.Errorf("%w: table %q: add column %q: %w", ErrSchema, s.name, w.Name, err)
		}
		els = append(els, element{Kind: log.SchemaColumn, Table: cur.Name, Name: w.Name, SQL: def})
	}
	return els, nil
}

// createClock creates the clock table of a user table.
func createClock(ctx context.Context, q querier, name string) error {
	_, err := q.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+quoteIdent(clockTableName(name))+
		" (pk BLOB NOT NULL PRIMARY KEY, cl INTEGER NOT NULL, clock BLOB NOT NULL) WITHOUT ROWID")
	return err
}

// scratchTable creates the table in a private in-memory database to read its definition,
// and checks it against the rules.
func scratchTable(ctx context.Context, s *schemaStmt) (*table, error) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, s.sql); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchema, err)
	}
	t, err := loadTable(ctx, db, s.name)
	if err != nil {
		return nil, err
	}
	if err := checkTable(ctx, db, t, s.toks); err != nil {
		return nil, err
	}
	return t, nil
}

// querier is what *sql.DB, *sql.Conn and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// loadTables reads every user table of the view.
func loadTables(ctx context.Context, q querier) (map[string]*table, error) {
	rows, err := q.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		if !isInternalName(n) {
			names = append(names, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := map[string]*table{}
	for _, n := range names {
		t, err := loadTable(ctx, q, n)
		if err != nil {
			return nil, err
		}
		out[strings.ToLower(n)] = t
	}
	return out, nil
}
