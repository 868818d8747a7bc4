package materializer

// The API below is the contract the api package, the agent and the subscription engine code
// against; the bodies live in materializer.go, writer.go, group.go, fold.go and local.go.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/prometheus/client_golang/prometheus"
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
	// ErrSchema: a schema statement docs/DESIGN.md section 5 refuses (HTTP 400).
	ErrSchema = errors.New("schema refused")
	// ErrSchemaConflict: a destructive or conflicting schema change (HTTP 409).
	ErrSchemaConflict = errors.New("schema conflict")
	// ErrConstraint: a constraint violation (NOT NULL, primary key) in a transaction (HTTP 400).
	ErrConstraint = errors.New("constraint violation")
	// ErrViewCorrupt: SQLite found the view file damaged ("database disk image is malformed",
	// "file is not a database"). The log is the source of truth: the materializer rebuilds the
	// view from it by itself and the request can be retried (HTTP 503).
	ErrViewCorrupt = errors.New("the view (views.db) is damaged; it is being rebuilt from the log, retry shortly")
)

// Config configures a Materializer.
type Config struct {
	// Path of the view database, normally <data>/views.db.
	Path string
	// Schema holds CREATE TABLE / CREATE INDEX statements applied at Open: what they add to
	// the replicated schema is appended to the log as a schema changeset; what lags it is
	// logged and skipped.
	Schema []string
	// FoldBatch is the most changesets folded per SQLite transaction; FoldDelay how long the
	// writer, woken by the log alone, waits for more before folding a small batch. The default
	// 0 folds at once: batches form anyway while the previous fold commits, and each wait
	// adds to every replication's latency.
	FoldBatch int
	FoldDelay time.Duration
	// ReadConns is the size of the read-only connection pool.
	ReadConns int
	Logger    *slog.Logger
	// OnCommit, when set, is called with each local transaction's changeset after it is
	// durable in the log and committed to the view, in commit order, from one goroutine of
	// its own: it never blocks the writer (a slow OnCommit only grows its queue). The agent
	// uses it to broadcast local writes; received changesets are broadcast by gossip itself.
	// The changesets must not be modified.
	OnCommit func(css []*log.Changeset)
	// OnCommitContext, when set, replaces OnCommit: it is called once per changeset, with a
	// context that carries the committing transaction's trace span (when the caller of
	// Transact traced it; trace.go), so that the broadcast joins the write's trace. The
	// context is not the caller's: it never ends.
	OnCommitContext func(ctx context.Context, cs *log.Changeset)
	// Registerer receives the Prometheus metrics; nil registers none.
	Registerer prometheus.Registerer
	// MaxGroup is the most queued local transactions committed together (one SQLite commit
	// and one log sync); 0 means 64.
	MaxGroup int
	// WriterDepth is how many writer groups may be on their way at once (group.go's
	// group): 0 or 1, one (a group is built once the previous one is durable); 2 or more
	// build the next group while the previous one's log fsync runs, up to the log's commit
	// depth. The overlap costs CPU (smaller groups per fsync) and paid off only with idle
	// CPU (bench/RESULTS.md, round 6), so it is off by default.
	WriterDepth int
	// Compaction, when set, runs log compaction in the background (see Compaction); nil
	// keeps every version (log.retention = forever).
	Compaction *Compaction
	// NoOpenCheck skips the PRAGMA quick_check Open runs on the view (it reads the whole
	// file). A damaged view is then found by the first statement that meets the damage, and
	// rebuilt from the log then. For views so large that the check delays start too much.
	NoOpenCheck bool
	// CheckpointInterval: a checkpointer checkpoints the view's WAL beside the writer, at
	// most this often while commits come (checkpoint.go); 0 leaves checkpoints to SQLite's
	// automatic one in the writer's commits (every 1000 pages). DefaultConfig sets
	// DefaultCheckpointInterval.
	CheckpointInterval time.Duration

	// noClockPreload folds without reading a changeset's clocks ahead (fold.go): the tests
	// fold with and without it and compare.
	noClockPreload bool
	// noClockFilter reads every clock the fold and local transactions ask for, even of rows
	// the clock filter (clock.go) knows have none; clockFilterWords fixes the filter's size
	// (tests make it tiny, so that it loads again and raises its bound often).
	noClockFilter    bool
	clockFilterWords int
}

// DefaultConfig returns the defaults for path.
func DefaultConfig(path string) Config {
	return Config{Path: path, FoldBatch: 512, ReadConns: 4, CheckpointInterval: DefaultCheckpointInterval}
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

// DeclTyper is implemented by the Rows of Query: the declared type of each result column
// ("INTEGER", "TEXT", ...; "" for an expression), for clients that type columns before the
// first row (the PostgreSQL protocol's RowDescription).
type DeclTyper interface {
	DeclTypes() []string
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
	// Version is the schema changeset's version in this node's log; 0 when nothing changed.
	Version log.Version
}

// TableStat is the row count of a table.
type TableStat struct {
	Table string
	Rows  int64
}

// RebuildProgress reports rebuild progress.
type RebuildProgress struct {
	Done, Total uint64 // changesets
	Cells       uint64
}
