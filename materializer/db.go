package materializer

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/patinadb/patina/log"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dbconn is one SQLite connection with its prepared statements.
type dbconn struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
	raw   map[string]rawStmt  // execRaw's statements, prepared on the driver connection
	nv    []driver.NamedValue // execRaw's arguments
	// rollbacks counts the transactions SQLite rolled back on this connection, explicitly or
	// by itself (an interrupted write, OR ROLLBACK, a full disk): its rollback hook, set by
	// hookRollbacks (hooked). runLocal reads it to know whether a failed statement left the
	// writer transaction whole.
	rollbacks atomic.Uint64
	hooked    bool
}

// rawStmt is a statement prepared on the driver connection (modernc's implements both).
type rawStmt interface {
	driver.Stmt
	driver.StmtExecContext
}

func newDBConn(c *sql.Conn) *dbconn {
	return &dbconn{c: c, stmts: map[string]*sql.Stmt{}, raw: map[string]rawStmt{}}
}

// execRaw runs q with args, which must be driver values already (int64, float64, string,
// []byte, nil: what log.Value.SQL gives), through a statement prepared on the driver
// connection itself. database/sql's Stmt.ExecContext copies the arguments of every call
// into a new []driver.NamedValue and runs each through its converter: for the fold's
// multi-row statements (hundreds of arguments each) that was 8% of the bytes a node
// allocated under 100-row batches (issue 14).
func (d *dbconn) execRaw(ctx context.Context, q string, args []any) error {
	d.nv = d.nv[:0]
	for i, a := range args {
		d.nv = append(d.nv, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	defer clear(d.nv)
	return d.c.Raw(func(dc any) error {
		s, err := d.rawPrepared(ctx, dc, q)
		if err != nil {
			return err
		}
		_, err = s.ExecContext(ctx, d.nv)
		return err
	})
}

// hookRollbacks sets the connection's rollback hook, which counts rollbacks. Without it
// (another driver) hooked stays false and every local transaction runs in a savepoint.
func (d *dbconn) hookRollbacks() error {
	return d.c.Raw(func(dc any) error {
		h, ok := dc.(interface {
			RegisterRollbackHook(sqlite.RollbackHookFn)
		})
		if ok {
			h.RegisterRollbackHook(func() { d.rollbacks.Add(1) })
			d.hooked = true
		}
		return nil
	})
}

// run is execRaw for a statement with few arguments (internal statements of the writer).
func (d *dbconn) run(ctx context.Context, q string, args ...any) error {
	return d.execRaw(ctx, q, args)
}

// rawPrepared returns q prepared on the driver connection dc (d.raw caches it).
func (d *dbconn) rawPrepared(ctx context.Context, dc any, q string) (rawStmt, error) {
	if s, ok := d.raw[q]; ok {
		return s, nil
	}
	p, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("materializer: driver connection %T cannot prepare", dc)
	}
	ds, err := p.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s, ok := ds.(rawStmt)
	if !ok {
		ds.Close()
		return nil, fmt.Errorf("materializer: driver statement %T cannot execute with a context", ds)
	}
	d.raw[q] = s
	return s, nil
}

// execUser runs a user statement on the driver connection, as execRaw does (no copy of its
// arguments per call by database/sql), and returns SQLite's count of the rows it changed.
// ctx's end interrupts it (the driver watches ctx, as database/sql's path did). Parameters
// are bound as database/sql would: positional ones by ordinal, named ones by name; a missing
// one is the driver's error, as before.
func (d *dbconn) execUser(ctx context.Context, st *Statement) (int64, error) {
	d.nv = d.nv[:0]
	if err := eachArg(*st, func(name string, v any) {
		d.nv = append(d.nv, driver.NamedValue{Name: name, Ordinal: len(d.nv) + 1, Value: v})
	}); err != nil {
		return 0, err
	}
	defer clear(d.nv)
	if len(d.raw) > maxRawStmts {
		// Bound the statement cache; internal statements are re-prepared on demand.
		d.resetStmts()
	}
	var n int64
	err := d.c.Raw(func(dc any) error {
		s, err := d.rawPrepared(ctx, dc, st.SQL)
		if err != nil {
			return err
		}
		r, err := s.ExecContext(ctx, d.nv)
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	return n, err
}

// maxRawStmts bounds the statements prepared on the writer's driver connection: users send
// any number of statement texts.
const maxRawStmts = 512

func (d *dbconn) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if s, ok := d.stmts[q]; ok {
		return s, nil
	}
	s, err := d.c.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	d.stmts[q] = s
	return s, nil
}

func (d *dbconn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	s, err := d.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

// resetStmts drops the prepared statements (after a schema change).
func (d *dbconn) resetStmts() {
	for _, s := range d.stmts {
		s.Close()
	}
	clear(d.stmts)
	if len(d.raw) > 0 {
		d.c.Raw(func(any) error {
			for _, s := range d.raw {
				s.Close()
			}
			return nil
		})
		clear(d.raw)
	}
}

func (d *dbconn) close() error {
	if d == nil || d.c == nil {
		return nil
	}
	d.resetStmts()
	err := d.c.Close()
	d.c = nil
	return err
}

// dsn builds a modernc DSN for path with pragmas: a reader's, or (not readOnly) the writer's,
// whose automatic WAL checkpoint runs past autocheckpoint pages (0: SQLite's 1000; the
// checkpointer's safety net, checkpoint.go). In the DSN, not run once on the connection,
// so that a connection database/sql opens again has them too.
func dsn(path string, readOnly bool, autocheckpoint int) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	if readOnly {
		q.Set("mode", "ro")
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		// The log is the durable source of truth and a crash refolds from the stored fold
		// position, so the view does not need an fsync per commit; WAL with NORMAL cannot
		// corrupt on power loss.
		q.Add("_pragma", "synchronous(NORMAL)")
		// Savepoints (one per folded changeset or local transaction) copy each page they
		// first touch to a statement journal, and the capture table is a temp table: in
		// memory both cost a memcpy instead of a pwrite system call (the fold's biggest
		// cost after the B-tree work, issue 14's profiles in bench/RESULTS.md).
		q.Add("_pragma", "temp_store(MEMORY)")
		// A 32 MB page cache (2 MB by default) keeps the clock tables' upper B-tree levels
		// and the recently written leaves in memory across commits.
		q.Add("_pragma", "cache_size(-32768)")
		if autocheckpoint > 0 {
			q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", autocheckpoint))
		}
	}
	return fileURI(path, q)
}

// fileURI is the URI of the file at path with the query q.
func fileURI(path string, q url.Values) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// checkpointDSN is the checkpointer's connection (checkpoint.go): read-write, since a
// checkpoint writes the database file, and with no pragma that would write anything else.
func checkpointDSN(path string) string {
	return fileURI(path, url.Values{"_pragma": {"busy_timeout(10000)"}})
}

// scanValues reads the current row into type-exact values. The caller must select
// expressions (e.g. +"col") rather than bare columns declared DATE, DATETIME or TIMESTAMP,
// which the driver would turn into time.Time.
func scanValues(rows *sql.Rows, dst []log.Value, tmp []any) error {
	ptrs := make([]any, len(tmp))
	for i := range tmp {
		ptrs[i] = &tmp[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return err
	}
	for i := range tmp {
		if t, ok := tmp[i].(time.Time); ok {
			// The driver turns the text of columns declared exactly DATE, DATETIME or
			// TIMESTAMP into time.Time; give it back as SQLite's canonical text.
			tmp[i] = formatSQLiteTime(t)
		}
		v, err := log.FromSQL(tmp[i])
		if err != nil {
			return err
		}
		dst[i] = v
		tmp[i] = nil
	}
	return nil
}

// sqliteCode returns the primary SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// IsDiskFull reports whether err is the disk's lack of space: the log's refusal
// (log.ErrDiskFull), SQLite's SQLITE_FULL from any of the node's SQLite files (the view, the
// subscriptions' store), or ENOSPC. The API answers all of them 507, not 500: the node is not
// at fault, its disk is.
func IsDiskFull(err error) bool {
	return err != nil && (errors.Is(err, log.ErrDiskFull) || errors.Is(err, syscall.ENOSPC) || sqliteCode(err) == sqlite3.SQLITE_FULL)
}

// classify wraps a SQLite error from a user statement in the matching sentinel.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrInternalTable) || errors.Is(err, ErrReadOnly) ||
		errors.Is(err, ErrBadStatement) || errors.Is(err, ErrConstraint) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG:
		return fmt.Errorf("%w: %w", ErrConstraint, err)
	case sqlite3.SQLITE_READONLY:
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOMEM,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOTADB:
		return err // a fault of the node, not of the statement
	}
	// Everything else a user statement can fail with (syntax, unknown table or column, wrong
	// parameter count from database/sql) is the statement's fault.
	return fmt.Errorf("%w: %w", ErrBadStatement, err)
}

func formatSQLiteTime(t time.Time) string {
	if _, off := t.Zone(); off != 0 {
		return t.Format("2006-01-02 15:04:05.999999999-07:00")
	}
	return t.Format("2006-01-02 15:04:05.999999999")
}
