package materializer

// SKELETON: the API below is the contract the api package and the agent code against; the
// bodies are being written (issue 4). Keep the signatures (add fields and methods freely).

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/patinadb/patina/log"
)

// Sentinel errors. The api package maps them to HTTP status codes.
var (
	// ErrClosed: the materializer is closed or closing (HTTP 503).
	ErrClosed = errors.New("materializer: closed")
	// ErrBadStatement: SQL syntax error, unknown table or column, wrong parameters (HTTP 400).
	ErrBadStatement = errors.New("bad statement")
	// ErrReadOnly: a statement that would write was sent to a read-only call (HTTP 400).
	ErrReadOnly = errors.New("statement would write; use a transaction")
	// ErrInternalTable: a write to a __patina table (HTTP 400).
	ErrInternalTable = errors.New("internal tables are read-only")
	// ErrSchema: a schema statement DESIGN.md refuses (HTTP 400).
	ErrSchema = errors.New("schema refused")
	// ErrSchemaConflict: a destructive or conflicting schema change (HTTP 409).
	ErrSchemaConflict = errors.New("schema conflict")
	// ErrConstraint: a constraint violation (NOT NULL, primary key) in a transaction (HTTP 400).
	ErrConstraint = errors.New("constraint violation")
)

// Config configures a Materializer.
type Config struct {
	// Path of the view database, normally <data>/views.db.
	Path string
	// Schema holds CREATE TABLE / CREATE INDEX statements applied at Open.
	Schema []string
	// FoldBatch is the most changesets folded per SQLite transaction; FoldDelay how long the
	// writer waits to fill a batch.
	FoldBatch int
	FoldDelay time.Duration
	// ReadConns is the size of the read-only connection pool.
	ReadConns int
	Logger    *slog.Logger
}

// DefaultConfig returns the defaults for path.
func DefaultConfig(path string) Config {
	return Config{Path: path, FoldBatch: 512, FoldDelay: time.Millisecond, ReadConns: 4}
}

// Statement is one SQL statement with positional or named parameters (not both).
type Statement struct {
	SQL    string
	Params []log.Value
	Named  map[string]log.Value // keys without the leading ':', '@' or '$'
}

// StmtResult is the outcome of one statement of a transaction.
type StmtResult struct {
	RowsAffected int64
	Time         time.Duration
}

// TxResult is the outcome of a committed transaction. Version is 0 when it changed nothing.
type TxResult struct {
	Results []StmtResult
	Version log.Version
	Seq     log.Seq
	Time    time.Duration
}

// StmtError says which statement of a transaction failed. Err wraps a sentinel above.
type StmtError struct {
	Index int
	Err   error
}

func (e *StmtError) Error() string { return e.Err.Error() }
func (e *StmtError) Unwrap() error { return e.Err }

// Rows is a streaming result of a read-only query. Not safe for concurrent use.
type Rows interface {
	Columns() []string
	// Next advances to the next row; false at the end or on error (see Err).
	Next() bool
	// Values returns the current row's cells, type-exact. Valid until the next call to Next.
	Values() []log.Value
	Err() error
	Close() error
}

// RowChange is one row a commit changed: its table, packed pk and new causal length
// (odd: live, even: deleted).
type RowChange struct {
	Table string
	PK    log.PK
	CL    uint64
}

// Notice is published after each commit of the writer loop (local or fold).
type Notice struct {
	Seq  log.Seq // fold position after the commit
	Rows []RowChange
	// Lagged is set when this listener missed notices before this one (its buffer was
	// full); it must resynchronise from the view.
	Lagged bool
}

// MigrateResult says what a migration changed.
type MigrateResult struct {
	Applied []string // statements that changed the schema (others were no-ops)
}

// TableStat is the row count of a table.
type TableStat struct {
	Table string
	Rows  int64
}

// Materializer folds a log into SQLite views.
type Materializer struct{}

// New returns a materializer over store; it does no I/O.
func New(store *log.Store, cfg Config) *Materializer { return &Materializer{} }

// Open opens or creates the view, applies the schema, refolds what the log holds beyond the
// view's fold position, and starts the writer loop.
func (m *Materializer) Open(ctx context.Context) error { return errors.New("TODO") }

// Close stops the writer loop and closes the database; idempotent.
func (m *Materializer) Close() error { return nil }

// Transact runs statements as one local transaction (all or nothing) and appends its
// changeset to the log durably before the commit becomes visible.
func (m *Materializer) Transact(ctx context.Context, stmts []Statement) (TxResult, error) {
	return TxResult{}, errors.New("TODO")
}

// Query runs one read-only statement on the read pool; a write is ErrReadOnly.
func (m *Materializer) Query(ctx context.Context, st Statement) (Rows, error) {
	return nil, errors.New("TODO")
}

// Apply appends remote changesets (or parts) to the log and returns once every complete
// version among them is folded into the view, so a read right after sees them. It reports
// per changeset whether it was new to the log. Invalid changesets are refused (ErrInvalid
// from package log) before anything is written.
func (m *Materializer) Apply(ctx context.Context, css []*log.Changeset) ([]bool, error) {
	return nil, errors.New("TODO")
}

// Migrate applies schema statements (CREATE TABLE / CREATE INDEX / DROP INDEX).
func (m *Materializer) Migrate(ctx context.Context, stmts []string) (MigrateResult, error) {
	return MigrateResult{}, errors.New("TODO")
}

// Notify registers a listener for commit notices. A listener whose buffer is full misses
// notices (a later notice has Lagged set) rather than blocking the writer.
// cancel unregisters it.
func (m *Materializer) Notify(buf int) (ch <-chan Notice, cancel func()) { return nil, func() {} }

// FoldPosition is the last log seq folded into the view.
func (m *Materializer) FoldPosition() log.Seq { return 0 }

// TableStats counts rows of the named tables; unknown names are returned in invalid.
func (m *Materializer) TableStats(ctx context.Context, tables []string) (stats []TableStat, invalid []string, err error) {
	return nil, nil, errors.New("TODO")
}

// Tables lists the user tables.
func (m *Materializer) Tables() []string { return nil }

// DB path of the live view.
func (m *Materializer) Path() string { return "" }

// RebuildProgress reports rebuild progress.
type RebuildProgress struct {
	Done, Total uint64 // changesets
	Cells       uint64
}

// Rebuild folds the whole log into a fresh file beside the live view and swaps it in
// atomically. On a stopped node it is called on a Materializer that is not open; on a
// running one, readers move to the new file.
func (m *Materializer) Rebuild(ctx context.Context, progress func(RebuildProgress)) error {
	return errors.New("TODO")
}
