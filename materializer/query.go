package materializer

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer/internal/sqltok"
)

// readDB returns the read pool; release must be called once the query has started.
func (m *Materializer) readDB() (*sql.DB, func(), error) {
	m.rmu.RLock()
	if m.rdb == nil || m.closed.Load() {
		m.rmu.RUnlock()
		return nil, nil, ErrClosed
	}
	return m.rdb, m.rmu.RUnlock, nil
}

// Query runs one read-only statement on the read pool; a write is ErrReadOnly. It never
// waits for the writer (WAL readers see the last commit).
func (m *Materializer) Query(ctx context.Context, st Statement) (Rows, error) {
	if err := checkReadStatement(st.SQL); err != nil {
		return nil, err
	}
	args, err := bindArgs(st)
	if err != nil {
		return nil, err
	}
	db, release, err := m.readDB()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, st.SQL, args...)
	release()
	return m.newRows(rows, err)
}

// QueryDB runs st on db exactly as Query runs it on the view (the same parameter binding,
// value decoding and error classes), for code that consumes Rows against a plain SQLite
// database: the subscription engine's tests use it instead of a copy of this file.
func QueryDB(ctx context.Context, db *sql.DB, st Statement) (Rows, error) {
	if err := checkReadStatement(st.SQL); err != nil {
		return nil, err
	}
	args, err := bindArgs(st)
	if err != nil {
		return nil, err
	}
	var none *Materializer // a plain database: no view to heal
	return none.newRows(db.QueryContext(ctx, st.SQL, args...))
}

// bindArgs turns st's parameters into database/sql arguments, refusing invalid values and
// a mix of positional and named parameters.
func bindArgs(st Statement) ([]any, error) {
	args := make([]any, 0, len(st.Params)+len(st.Named))
	err := eachArg(st, func(name string, v any) {
		if name == "" {
			args = append(args, v)
		} else {
			args = append(args, sql.Named(name, v))
		}
	})
	return args, err
}

// eachArg calls fn with each of st's parameters as a driver value, positional ones in order
// (name ""), then named ones (name without its prefix), refusing invalid values.
func eachArg(st Statement, fn func(name string, v any)) error {
	if len(st.Params) > 0 && len(st.Named) > 0 {
		return fmt.Errorf("%w: positional and named parameters together", ErrBadStatement)
	}
	for _, v := range st.Params {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadStatement, err)
		}
		fn("", v.SQL())
	}
	for k, v := range st.Named {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadStatement, err)
		}
		name := strings.TrimLeft(k, ":@$")
		if r, _ := utf8.DecodeRuneInString(name); name != "" && !unicode.IsLetter(r) {
			// database/sql's rule, kept for the writer's driver-level path (execUser).
			return fmt.Errorf("%w: parameter name %q does not begin with a letter", ErrBadStatement, name)
		}
		fn(name, v.SQL())
	}
	return nil
}

// newRows wraps the result of QueryContext as Rows; m (nil for a plain database) hears of
// damage in the view.
func (m *Materializer) newRows(rows *sql.Rows, err error) (Rows, error) {
	if err != nil {
		return nil, m.fault(classify(err))
	}
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return nil, m.fault(classify(err))
	}
	decl := make([]string, len(cols))
	if cts, err := rows.ColumnTypes(); err == nil {
		for i, ct := range cts {
			decl[i] = ct.DatabaseTypeName()
		}
	}
	return &sqlRows{m: m, rows: rows, cols: cols, decl: decl, vals: make([]log.Value, len(cols)), tmp: make([]any, len(cols))}, nil
}

type sqlRows struct {
	m    *Materializer
	rows *sql.Rows
	cols []string
	decl []string
	vals []log.Value
	tmp  []any
	err  error
}

func (r *sqlRows) Columns() []string { return r.cols }

// DeclTypes returns each column's declared type as written in CREATE TABLE, upper-cased ("" for
// an expression); see DeclTyper.
func (r *sqlRows) DeclTypes() []string { return r.decl }

func (r *sqlRows) Next() bool {
	if r.err != nil || !r.rows.Next() {
		return false
	}
	if err := scanValues(r.rows, r.vals, r.tmp); err != nil {
		r.err = r.m.fault(err)
		return false
	}
	return true
}

func (r *sqlRows) Values() []log.Value { return r.vals }

func (r *sqlRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.m.fault(classify(r.rows.Err()))
}

func (r *sqlRows) Close() error { return r.rows.Close() }

// oneStatement tokenizes sql, refuses several statements and returns the tokens.
func oneStatement(q string) ([]sqltok.Token, error) {
	parts, err := sqltok.Split(q)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadStatement, err)
	}
	switch len(parts) {
	case 0:
		return nil, fmt.Errorf("%w: empty statement", ErrBadStatement)
	case 1:
	default:
		return nil, fmt.Errorf("%w: one statement per entry, got %d", ErrBadStatement, len(parts))
	}
	return sqltok.Tokenize(parts[0])
}

// checkedWrites remembers statements checkWrite let through: a client sends the
// same statement texts over and over (a 100-row INSERT is 500 placeholders), and tokenizing
// them twice per request was 14% of the agents' allocated bytes in issue 14's profiles. The
// verdict depends on the text alone. Bounded: cleared when full.
var checkedWrites = struct {
	sync.Mutex
	ok map[string]writeCheck
}{ok: map[string]writeCheck{}}

// checkedWritesMax bounds the remembered statements (and so their texts' memory, with
// checkedWriteMaxLen).
const (
	checkedWritesMax   = 1024
	checkedWriteMaxLen = 64 << 10
)

// writeCheck is what checkWrite learns of a statement a local transaction may run.
type writeCheck struct {
	// changesRows: an INSERT, REPLACE, UPDATE or DELETE (after any WITH clause): only those
	// have a row count of their own.
	changesRows bool
	// bounded: an INSERT or REPLACE whose rows are VALUES lists (or DEFAULT VALUES), with no
	// SELECT or WITH anywhere in it: its work is bounded by its text and its rows, so it
	// cannot run away, and it runs without the driver watching its context (see
	// runLocal).
	bounded bool
}

// checkWrite lets through the statements a local transaction may run: DML (and SELECT) on
// user tables. Schema changes go through Migrate; internal tables are never written by
// users.
func checkWrite(q string) (writeCheck, error) {
	checkedWrites.Lock()
	c, ok := checkedWrites.ok[q]
	checkedWrites.Unlock()
	if ok {
		return c, nil
	}
	c, err := checkWriteText(q)
	if err == nil && len(q) <= checkedWriteMaxLen {
		checkedWrites.Lock()
		if len(checkedWrites.ok) >= checkedWritesMax {
			clear(checkedWrites.ok)
		}
		checkedWrites.ok[q] = c
		checkedWrites.Unlock()
	}
	return c, err
}

func checkWriteText(q string) (writeCheck, error) {
	toks, err := oneStatement(q)
	if err != nil {
		return writeCheck{}, err
	}
	bounded := true
	for _, t := range toks {
		if (t.Kind == sqltok.Word || t.Kind == sqltok.Quoted) && isInternalName(t.Ident()) {
			return writeCheck{}, fmt.Errorf("%w: %q", ErrInternalTable, t.Ident())
		}
		if t.Is("SELECT") || t.Is("WITH") {
			bounded = false
		}
	}
	switch first := toks[0]; {
	case first.Is("INSERT"), first.Is("REPLACE"):
		return writeCheck{changesRows: true, bounded: bounded}, nil
	case first.Is("UPDATE"), first.Is("DELETE"):
		return writeCheck{changesRows: true}, nil
	case first.Is("WITH"), first.Is("SELECT"), first.Is("VALUES"):
		return writeCheck{changesRows: mainVerbChangesRows(toks)}, nil
	case first.Is("CREATE"), first.Is("DROP"), first.Is("ALTER"):
		return writeCheck{}, fmt.Errorf("%w: schema changes go through migrations, not transactions", ErrBadStatement)
	default:
		return writeCheck{}, fmt.Errorf("%w: %s statements are not allowed in a transaction", ErrBadStatement, strings.ToUpper(first.Text))
	}
}

// mainVerbChangesRows says whether a statement that starts with WITH, SELECT or VALUES is in
// fact an INSERT, REPLACE, UPDATE or DELETE: the first of those words or SELECT/VALUES
// outside parentheses is the statement's own verb (a WITH clause's tables are all in
// parentheses). SQLite's change count (sqlite3_changes) is the last such statement's, so a
// SELECT run in a transaction would otherwise report an earlier statement's rows.
func mainVerbChangesRows(toks []sqltok.Token) bool {
	depth := 0
	for _, t := range toks {
		switch {
		case t.Kind == sqltok.Punct && t.Text == "(":
			depth++
		case t.Kind == sqltok.Punct && t.Text == ")":
			depth--
		case depth != 0:
		case t.Is("SELECT"), t.Is("VALUES"):
			return false
		case t.Is("INSERT"), t.Is("REPLACE"), t.Is("UPDATE"), t.Is("DELETE"):
			return true
		}
	}
	return false
}

// checkReadStatement lets through what can only read. The read pool's connections are opened
// read-only as well, so anything that slips past is refused by SQLite.
func checkReadStatement(q string) error {
	toks, err := oneStatement(q)
	if err != nil {
		return err
	}
	switch first := toks[0]; {
	case first.Is("SELECT"), first.Is("WITH"), first.Is("VALUES"), first.Is("EXPLAIN"):
		return nil
	case first.Is("PRAGMA"):
		for _, t := range toks {
			if t.Kind == sqltok.Punct && t.Text == "=" {
				return fmt.Errorf("%w: %s", ErrReadOnly, q)
			}
		}
		return nil
	}
	for _, w := range writeKeywords {
		if toks[0].Is(w) {
			return fmt.Errorf("%w: %s", ErrReadOnly, q)
		}
	}
	// Anything else is not a statement SQLite knows ("SELEC 1"): let SQLite say why, so the
	// user reads a syntax error rather than "would write". The read-only connection refuses
	// whatever could still write.
	return nil
}

// writeKeywords start the statements that change a database or a connection's attachments.
var writeKeywords = []string{
	"INSERT", "REPLACE", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "ATTACH", "DETACH",
	"VACUUM", "REINDEX", "ANALYZE", "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE",
}

func logSeq(s int64) log.Seq { return log.Seq(s) }
