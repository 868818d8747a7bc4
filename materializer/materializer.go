package materializer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/patinadb/patina/internal/fsmode"
	"github.com/patinadb/patina/log"
)

// Validate checks a Config.
func (c *Config) Validate() error {
	if c.Path == "" {
		return errors.New("materializer config: empty path")
	}
	if c.FoldBatch < 0 || c.ReadConns < 0 || c.MaxGroup < 0 || c.FoldDelay < 0 || c.WriterDepth < 0 || c.CheckpointInterval < 0 {
		return errors.New("materializer config: negative size or delay")
	}
	return nil
}

// Materializer folds a log into SQLite views. Transact, Query, Apply, Migrate, Notify and the
// accessors are safe for concurrent use; Open and Close are not concurrent with each other.
type Materializer struct {
	store  *log.Store
	cfg    Config
	logger *slog.Logger
	site   log.SiteID
	// fileVersion is the schema changeset this process appended for its schema files at
	// Open (0: none); set before the writer starts, read by it.
	fileVersion log.Version
	hlc         *log.HLC
	met         *metrics

	// Writer-owned state: only the writer goroutine (or Open before it starts) touches it.
	wdb    *sql.DB
	w      *dbconn
	tables map[string]*table // lower-case name -> table
	ahead  map[log.Seq]bool  // local seqs folded beyond a gap in the fold position
	aff    *affinityConv
	cap    captureSink // the capture events of the running local transaction (capture.go)
	capID  int64       // cap's key in captureSinks, baked into the capture triggers
	wb     writeBuf    // the current changeset's row and clock writes (writebuf.go)
	// scanKeys is scanClocks's scratch for the keys the clock filter cannot rule out.
	scanKeys [][]byte
	// lr is the rows of the local transaction being captured, reused by the next one
	// (captured).
	lr localRows
	// clockPreloads counts the rows whose clocks a fold read ahead (fold.go's clockPreload).
	clockPreloads atomic.Int64
	// clockSkips counts the clock reads the clock filter saved, clockFilterLoads its loads
	// (clock.go).
	clockSkips, clockFilterLoads atomic.Int64

	tablesSnap atomic.Pointer[[]string] // sorted user table names, for Tables()
	schemaSnap atomic.Pointer[schemaSnapshot]

	rmu sync.RWMutex // guards rdb against a swap by Rebuild
	rdb *sql.DB
	// ckptWake wakes the checkpointer after a commit (checkpoint.go); nil when it is off.
	ckptWake chan struct{}

	sendMu sync.RWMutex // held shared while enqueueing; Close takes it to drain for good
	reqs   chan *request
	wake   chan struct{}
	run    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	opened bool
	closed atomic.Bool
	// inUser is 1 while the writer runs a statement of a local transaction (tests wait on it).
	inUser atomic.Int32
	// capturedFault, set by tests before any transaction, makes captured fail after its
	// work (the transaction's rows read and its clocks buffered): the failure paths of
	// runLocal that no statement can reach.
	capturedFault func([]captureEvent) error

	foldMu  sync.Mutex
	foldPos log.Seq       // published: every group up to it is durable in the log
	foldCh  chan struct{} // closed and replaced when foldPos grows
	// wpos is the writer's own fold position (writer only): what the view has committed,
	// ahead of foldPos while groups wait for their log sync (group.go's group).
	wpos log.Seq

	// The writer's pipeline: pipe carries committed groups to the completer, a token in
	// pipeSlots stands for each (the log's commit depth at most), pipeWG counts them.
	pipe      chan *group
	pipeSlots chan struct{}
	pipeDone  chan struct{} // a group completed (fillGroup's wake-up)
	pipeWG    sync.WaitGroup
	// pipeFailed: the log failed a group the view had committed; held are the answers
	// that wait for the view's rebuild (healAhead).
	pipeFailed atomic.Pointer[error]
	heldMu     sync.Mutex
	held       []*request

	notify notifier
	commit *commitQueue

	closeOnce sync.Once
	closeErr  error

	// Only on the fresh view a rebuild or a replay folds into (build): keep, when set, says
	// which changesets a replay to a time folds; replayed and skipped count them.
	keep              func(*log.Changeset) bool
	replayed, skipped uint64
	// corrupt is the damage SQLite reported in the view, until a rebuild repairs it; healWG
	// waits for that rebuild's goroutine (heal.go).
	corrupt atomic.Pointer[error]
	healWG  sync.WaitGroup

	// sup: the versions compaction has to judge next (superseded.go).
	sup superseded
}

// New returns a materializer over store; it does no I/O.
func New(store *log.Store, cfg Config) *Materializer {
	if cfg.FoldBatch <= 0 {
		cfg.FoldBatch = 512
	}
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = 4
	}
	if cfg.MaxGroup <= 0 {
		cfg.MaxGroup = 64
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Materializer{
		store: store, cfg: cfg, logger: logger.With("component", "materializer"),
		hlc: log.NewHLC(), reqs: make(chan *request, 1024), wake: make(chan struct{}, 1),
		foldCh: make(chan struct{}), ahead: map[log.Seq]bool{},
	}
}

// Open opens or creates the view, applies the schema, refolds what the log holds beyond the
// view's fold position, and starts the writer loop.
func (m *Materializer) Open(ctx context.Context) error {
	if err := m.cfg.Validate(); err != nil {
		return err
	}
	if m.opened {
		return errors.New("materializer: already opened")
	}
	m.site = m.store.SiteID()
	met, err := newMetrics(m.cfg.Registerer)
	if err != nil {
		return fmt.Errorf("materializer metrics: %w", err)
	}
	if err := m.registerClockFilterMetrics(m.cfg.Registerer); err != nil {
		return fmt.Errorf("materializer metrics: %w", err)
	}
	m.met = met
	if _, err := fsmode.Dir(filepath.Dir(m.cfg.Path)); err != nil {
		return fmt.Errorf("open view: %w", err)
	}
	if err := m.openView(ctx); err != nil {
		m.closeConns()
		return err
	}
	if err := m.openReaders(m.cfg.Path); err != nil {
		m.closeConns()
		return err
	}
	// A crash may have come between a migration and its refold.
	if err := m.refoldPending(ctx); err != nil {
		m.closeConns()
		return fmt.Errorf("open view: refold pending changes: %w", err)
	}
	// Refold what the log holds beyond the stored fold position before serving: after a
	// crash this replays the tail with exactly-once effect (merging is idempotent and the
	// fold position commits with the data).
	for m.store.LastSeq() > m.FoldPosition() {
		if err := ctx.Err(); err != nil {
			m.closeConns()
			return fmt.Errorf("open view: refold: %w", err)
		}
		if _, err := m.iterate(ctx, nil); err != nil {
			m.closeConns()
			return fmt.Errorf("open view: refold: %w", err)
		}
	}
	m.commit = newCommitQueue(m.cfg.OnCommit, m.cfg.OnCommitContext)
	if err := m.loadSchema(ctx); err != nil {
		m.closeConns()
		m.commit.close()
		return fmt.Errorf("open view: %w", err)
	}
	if err := m.startSchema(ctx, m.cfg.Schema); err != nil {
		m.closeConns()
		m.commit.close()
		return fmt.Errorf("open view: schema: %w", err)
	}
	m.run, m.cancel = context.WithCancelCause(context.Background())
	m.opened = true
	depth := max(min(m.cfg.WriterDepth, m.store.CommitDepth()), 1)
	m.pipe, m.pipeSlots, m.pipeDone = make(chan *group, depth), make(chan struct{}, depth), make(chan struct{}, 1)
	m.wg.Add(3)
	go m.completer()
	go m.writerLoop()
	go m.watchLog()
	if every := m.cfg.CheckpointInterval; every > 0 {
		m.ckptWake = make(chan struct{}, 1)
		m.wg.Add(1)
		go m.checkpointLoop(every)
	}
	if c := m.cfg.Compaction; c != nil {
		m.sup.enable(m.store.LastSeq())
		m.wg.Add(1)
		go m.compactLoop(*c)
	}
	m.logger.Debug("view open", "path", m.cfg.Path, "fold_pos", m.FoldPosition(), "tables", len(m.tables))
	return nil
}

// openView opens the writer on the view file, checked unless Config.NoOpenCheck. A file
// SQLite finds damaged is rebuilt from the log first (heal.go).
func (m *Materializer) openView(ctx context.Context) error {
	err := m.openWriter(ctx, m.cfg.Path, nil)
	if ahead := (*viewAheadError)(nil); errors.As(err, &ahead) {
		m.closeConns()
		if err := m.healAheadAtOpen(ctx, ahead); err != nil {
			return err
		}
		return m.openWriter(ctx, m.cfg.Path, nil)
	}
	if err == nil && !m.cfg.NoOpenCheck {
		err = m.checkView(ctx)
	}
	if err == nil || !isCorrupt(err) {
		return err
	}
	m.closeConns()
	if err := m.healAtOpen(ctx, err); err != nil {
		return err
	}
	return m.openWriter(ctx, m.cfg.Path, nil)
}

// openWriter opens the write connection on path, creates the internal tables, applies
// schema and prepares capture.
func (m *Materializer) openWriter(ctx context.Context, path string, schema []string) error {
	if err := m.privateFiles(path); err != nil {
		return fmt.Errorf("open view %s: %w", path, err)
	}
	db := openWriterDB(dsn(path, false, m.cfg.writerAutocheckpoint()))
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	c, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return fmt.Errorf("open view %s: %w", path, err)
	}
	m.wdb, m.w = db, newDBConn(c)
	if err := m.w.hookRollbacks(); err != nil {
		return fmt.Errorf("open view %s: %w", path, err)
	}
	if err := m.initDB(ctx, schema); err != nil {
		return fmt.Errorf("open view %s: %w", path, err)
	}
	return nil
}

func (m *Materializer) initDB(ctx context.Context, schema []string) error {
	w := m.w
	var mode string
	if err := w.c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %s, want wal", mode)
	}
	if _, err := w.c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	err := func() error {
		for _, q := range append(internalDDL, schemaDDL) {
			if _, err := w.c.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		var raw []byte
		err := w.c.QueryRowContext(ctx, "SELECT value FROM "+metaTable+" WHERE key = 'site'").Scan(&raw)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := w.c.ExecContext(ctx, "INSERT INTO "+metaTable+"(key, value) VALUES ('site', ?), ('fold_pos', 0)", m.site[:]); err != nil {
				return err
			}
		case err != nil:
			return err
		case log.SiteID(raw) != m.site || len(raw) != 16:
			return fmt.Errorf("the view belongs to site %x, the log to %v: rebuild the view", raw, m.site)
		}
		if _, _, err := applySchema(ctx, w.c, schema, nil); err != nil {
			return err
		}
		var pos int64
		if err := w.c.QueryRowContext(ctx, "SELECT value FROM "+metaTable+" WHERE key = 'fold_pos'").Scan(&pos); err != nil {
			return err
		}
		var viewSeq int64 // the highest seq folded, when beyond pos (commitAt)
		err = w.c.QueryRowContext(ctx, "SELECT value FROM "+metaTable+" WHERE key = 'view_seq'").Scan(&viewSeq)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if held := max(log.Seq(pos), log.Seq(viewSeq)); held > m.store.LastSeq() {
			return &viewAheadError{view: held, log: m.store.LastSeq()}
		}
		m.setFoldPos(log.Seq(pos))
		return nil
	}()
	if err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	if _, err := w.c.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	return m.reloadSchema(ctx)
}

// reloadSchema reads the user tables and (re)creates capture triggers and statements.
func (m *Materializer) reloadSchema(ctx context.Context) error {
	m.w.resetStmts()
	tables, err := loadTables(ctx, m.w.c)
	if err != nil {
		return err
	}
	m.tables = tables
	names := make([]string, 0, len(tables))
	for _, t := range tables {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	m.tablesSnap.Store(&names)
	if err := m.setupCapture(ctx, m.w.c, tables); err != nil {
		return fmt.Errorf("capture triggers: %w", err)
	}
	m.aff = &affinityConv{}
	return nil
}

func (m *Materializer) openReaders(path string) error {
	db, err := sql.Open("sqlite", dsn(path, true, 0))
	if err != nil {
		return fmt.Errorf("open view readers: %w", err)
	}
	db.SetMaxOpenConns(m.cfg.ReadConns)
	db.SetMaxIdleConns(m.cfg.ReadConns)
	m.rmu.Lock()
	m.rdb = db
	m.rmu.Unlock()
	return nil
}

func (m *Materializer) closeConns() error {
	var first error
	m.rmu.Lock()
	if m.rdb != nil {
		first = m.rdb.Close()
		m.rdb = nil
	}
	m.rmu.Unlock()
	if m.w != nil {
		if err := m.w.close(); err != nil && first == nil {
			first = err
		}
		m.w = nil
	}
	if m.wdb != nil {
		if err := m.wdb.Close(); err != nil && first == nil {
			first = err
		}
		m.wdb = nil
	}
	m.closeCapture()
	return first
}

// Close stops the writer loop and closes the database; idempotent. Queued requests fail
// with ErrClosed; a transaction already committing finishes first.
func (m *Materializer) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		if m.cancel != nil {
			m.cancel(ErrClosed)
			m.wg.Wait()
			// A sender that passed the closed check before it was set may have enqueued
			// after the writer's last drain.
			m.sendMu.Lock()
			m.failQueued()
			m.sendMu.Unlock()
			m.healWG.Wait()
		}
		if m.commit != nil {
			m.commit.close()
		}
		m.notify.closeAll()
		m.closeErr = m.closeConns()
	})
	return m.closeErr
}

// FoldPosition is the last log seq folded into the view: every version with an arrival seq
// up to it is visible.
func (m *Materializer) FoldPosition() log.Seq {
	m.foldMu.Lock()
	defer m.foldMu.Unlock()
	return m.foldPos
}

// setFoldPos moves the writer's and the published fold position together (writer, or
// Open before it starts, with no group on its way).
func (m *Materializer) setFoldPos(s log.Seq) {
	if s > m.wpos || s == 0 {
		m.wpos = s
	}
	m.setPublished(s)
}

// setPublished moves the published fold position (complete, once the group is durable).
func (m *Materializer) setPublished(s log.Seq) {
	m.foldMu.Lock()
	if s > m.foldPos || s == 0 {
		m.foldPos = s
		close(m.foldCh)
		m.foldCh = make(chan struct{})
	}
	m.foldMu.Unlock()
}

// waitFold blocks until the fold position reaches target.
func (m *Materializer) waitFold(ctx context.Context, target log.Seq) error {
	for {
		m.foldMu.Lock()
		pos, ch := m.foldPos, m.foldCh
		m.foldMu.Unlock()
		if pos >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-m.run.Done():
			return ErrClosed
		}
	}
}

// Tables lists the user tables, sorted.
func (m *Materializer) Tables() []string {
	p := m.tablesSnap.Load()
	if p == nil {
		return nil
	}
	return append([]string(nil), (*p)...)
}

// Path of the live view.
func (m *Materializer) Path() string { return m.cfg.Path }

// Apply appends remote changesets (or parts) to the log and returns once every complete
// version among them is folded into the view, so a read right after sees them. It reports
// per changeset whether it was new to the log. Invalid changesets are refused (ErrInvalid
// from package log) before anything is written. Concurrent callers are group-committed by
// the log; the writer folds whatever arrived since its last commit in one SQLite transaction.
func (m *Materializer) Apply(ctx context.Context, css []*log.Changeset) (_ []bool, err error) {
	if m.closed.Load() || !m.opened {
		return nil, ErrClosed
	}
	if traced(ctx) {
		var span trace.Span
		ctx, span = tracer().Start(ctx, "materializer.apply", trace.WithAttributes(attribute.Int("patina.changesets", len(css))))
		defer func() { endSpan(span, err) }()
		_, app := tracer().Start(ctx, "log.append")
		res, ierr := m.store.Ingest(ctx, css...)
		app.End()
		// The fold: Apply returns once the writer has folded what it appended.
		_, fold := tracer().Start(ctx, "materializer.fold")
		defer fold.End()
		return m.applied(ctx, res, ierr)
	}
	// Ingest, not Append: versions of this node's own site it did not write, and versions
	// held with other content, are refused (counted and logged by the log), not stored.
	res, err := m.store.Ingest(ctx, css...)
	return m.applied(ctx, res, err)
}

// applied is the rest of Apply once the log took the changesets: it waits for the fold.
func (m *Materializer) applied(ctx context.Context, res []log.AppendResult, err error) ([]bool, error) {
	if err != nil {
		if errors.Is(err, log.ErrClosed) {
			return nil, ErrClosed
		}
		return nil, err
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r.New
	}
	// Wait for everything the log holds now, duplicates included: a duplicate may have been
	// appended by a concurrent caller whose fold has not committed yet.
	target := m.store.LastSeq()
	m.poke()
	if err := m.waitFold(ctx, target); err != nil {
		return out, err
	}
	return out, nil
}

func (m *Materializer) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// watchLog wakes the writer when the log grows, whoever appended.
func (m *Materializer) watchLog() {
	defer m.wg.Done()
	after := m.store.LastSeq()
	for {
		if err := m.store.Wait(m.run, after); err != nil {
			return
		}
		after = m.store.LastSeq()
		m.poke()
	}
}

// Transact runs statements as one local transaction (all or nothing) and appends its
// changeset to the log; it returns once the changeset is durable. The view commits it as
// soon as the log has written it, so a concurrent reader may see it up to one log sync
// before Transact returns (and loses it if that sync fails: see group.go's group). If the
// view's commit fails once the log has the changeset (a full disk), the transaction is still
// committed and Transact says so; the view folds it from the log later (viewLost). A
// transaction that changes nothing gets Version 0. A failing statement is reported as a *StmtError. When ctx ends
// (deadline, client gone) or the materializer closes, the running statement is interrupted
// and the transaction rolls back; the error wraps context.Cause(ctx) (or ErrClosed). The
// other transactions of the writer's group are not affected: they run again if SQLite rolled
// the group back with the interrupted statement.
func (m *Materializer) Transact(ctx context.Context, stmts []Statement) (_ TxResult, err error) {
	if traced(ctx) {
		var span trace.Span
		ctx, span = tracer().Start(ctx, "materializer.transact", trace.WithAttributes(attribute.Int("patina.statements", len(stmts))))
		defer func() { endSpan(span, err) }()
	}
	start := time.Now()
	if len(stmts) == 0 {
		return TxResult{}, fmt.Errorf("%w: no statements", ErrBadStatement)
	}
	checks := make([]writeCheck, len(stmts))
	for i := range stmts {
		var err error
		if checks[i], err = checkWrite(stmts[i].SQL); err != nil {
			return TxResult{}, &StmtError{Index: i, Err: err}
		}
	}
	r := &request{ctx: ctx, kind: reqTx, stmts: stmts, checks: checks, done: make(chan struct{})}
	if err := m.send(ctx, r); err != nil {
		return TxResult{}, err
	}
	// Once the writer has taken it, wait for the outcome even if ctx ends: the answer must be
	// true, and the end of ctx interrupts the transaction's statements, so the wait is short.
	// A transaction still queued when ctx ends is abandoned: the writer will skip it.
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			m.met.txAbandoned.Inc()
			return TxResult{}, fmt.Errorf("%w (the transaction waited for the writer and did not run)", context.Cause(ctx))
		}
		<-r.done
	}
	if r.err != nil {
		return TxResult{}, r.err
	}
	r.tx.Time = time.Since(start)
	m.met.txLatency.Observe(r.tx.Time.Seconds())
	return r.tx, nil
}

// Migrate applies schema statements (CREATE TABLE / CREATE INDEX / DROP INDEX). Changes for
// tables or columns the migration adds that the log already holds are folded before it
// returns.
func (m *Materializer) Migrate(ctx context.Context, stmts []string) (MigrateResult, error) {
	r := &request{kind: reqMigrate, schema: stmts, done: make(chan struct{})}
	if err := m.send(ctx, r); err != nil {
		return MigrateResult{}, err
	}
	<-r.done
	return r.migrate, r.err
}

// Replay refolds the log from seq after (exclusive) on: the path used after a crash or to
// repair a view. Merging is idempotent, so replaying versions already folded changes nothing.
func (m *Materializer) Replay(ctx context.Context, after log.Seq) error {
	r := &request{kind: reqReplay, seq: after, done: make(chan struct{})}
	if err := m.send(ctx, r); err != nil {
		return err
	}
	<-r.done
	return r.err
}

func (m *Materializer) send(ctx context.Context, r *request) error {
	m.sendMu.RLock()
	defer m.sendMu.RUnlock()
	if m.closed.Load() || !m.opened {
		return ErrClosed
	}
	select {
	case m.reqs <- r:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-m.run.Done():
		return ErrClosed
	}
}

// TableStats counts rows of the named tables; unknown names are returned in invalid.
func (m *Materializer) TableStats(ctx context.Context, tables []string) (stats []TableStat, invalid []string, err error) {
	known := map[string]string{}
	for _, n := range m.Tables() {
		known[strings.ToLower(n)] = n
	}
	db, release, err := m.readDB()
	if err != nil {
		return nil, nil, err
	}
	defer release()
	for _, t := range tables {
		name, ok := known[strings.ToLower(t)]
		if !ok {
			invalid = append(invalid, t)
			continue
		}
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(name)).Scan(&n); err != nil {
			return nil, nil, fmt.Errorf("table stats %s: %w", name, err)
		}
		stats = append(stats, TableStat{Table: name, Rows: n})
	}
	return stats, invalid, nil
}

// Stats are the writer loop's gauges, for health checks (GET /v1/health's queue_size).
type Stats struct {
	FoldPosition log.Seq
	FoldLag      uint64 // complete versions in the log not folded yet
	Queue        int    // requests waiting for the writer loop
}

// Stats returns the writer loop's gauges; it never blocks on the writer.
func (m *Materializer) Stats() Stats {
	pos := m.FoldPosition()
	var lag uint64
	if last := m.store.LastSeq(); last > pos {
		lag = uint64(last - pos)
	}
	return Stats{FoldPosition: pos, FoldLag: lag, Queue: len(m.reqs)}
}

// privateFiles creates the view file at path 0600 before SQLite opens it (SQLite would
// create it 0644, and its -wal and -shm files take the database file's mode), and tightens
// the files an older version left readable by others.
func (m *Materializer) privateFiles(path string) error {
	tightened, err := fsmode.File(path)
	if err != nil {
		return err
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		st, err := os.Stat(path + suffix)
		if err != nil || st.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := fsmode.Chmod(path + suffix); err != nil {
			return err
		}
		tightened = true
	}
	if tightened {
		m.logger.Warn("view files were readable by other users; made them private (0600)", "path", path)
	}
	return nil
}
