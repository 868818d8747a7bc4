package materializer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer/internal/sqltok"
)

// Rebuild folds the whole log into a fresh file beside the live view and swaps it in
// atomically (rename). On a stopped node it is called on a Materializer that is not open; on
// a running one it runs in the writer loop (writes wait meanwhile) and readers move to the
// new file; queries already running finish on the old one. The rebuilt view holds the same
// rows and the same clock rows as a view kept up to date incrementally.
func (m *Materializer) Rebuild(ctx context.Context, progress func(RebuildProgress)) error {
	if m.opened {
		r := &request{kind: reqRebuild, progress: progress, done: make(chan struct{})}
		if err := m.send(ctx, r); err != nil {
			return err
		}
		<-r.done
		return r.err
	}
	if err := m.cfg.Validate(); err != nil {
		return err
	}
	m.site = m.store.SiteID()
	schema, err := liveSchema(ctx, m.cfg.Path, true)
	if err != nil {
		if !isCorrupt(err) {
			return err
		}
		// The damaged view is what a rebuild is for: the log's schema changesets and the
		// schema files give its schema.
		m.logger.Warn("rebuild: the old view is damaged; taking its schema from the log and the schema files", "err", err)
		schema = nil
	}
	seed, from, err := viewElements(ctx, m.cfg.Path)
	if err != nil {
		m.logger.Warn("rebuild: cannot read the schema elements of the old view; reading them from the whole log", "err", err)
		seed, from = nil, 0
	}
	tmp, err := m.buildFresh(ctx, seed, from, append(schema, m.cfg.Schema...), progress)
	if err != nil {
		return err
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(m.cfg.Path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	if err := os.Rename(tmp, m.cfg.Path); err != nil {
		return fmt.Errorf("rebuild: swap: %w", err)
	}
	return nil
}

// liveSchema reads the CREATE statements of the user tables and indexes of the view at path,
// in creation order. A missing file has no schema.
func liveSchema(ctx context.Context, path string, mayBeMissing bool) ([]string, error) {
	if _, err := os.Stat(path); err != nil {
		if mayBeMissing && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(path, true, 0))
	if err != nil {
		return nil, fmt.Errorf("rebuild: read schema: %w", err)
	}
	defer db.Close()
	return schemaOf(ctx, db)
}

func schemaOf(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT name, type, sql FROM main.sqlite_master WHERE type IN ('table', 'index') AND sql IS NOT NULL ORDER BY rowid")
	if err != nil {
		return nil, fmt.Errorf("rebuild: read schema: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, typ, s string
		if err := rows.Scan(&name, &typ, &s); err != nil {
			return nil, err
		}
		if isInternalName(name) {
			continue
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// viewElements reads the schema elements and the fold position of the view at path; a
// missing file has none.
func viewElements(ctx context.Context, path string) ([]element, log.Seq, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	db, err := sql.Open("sqlite", dsn(path, true, 0))
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	var pos int64
	if err := db.QueryRowContext(ctx, "SELECT value FROM "+metaTable+" WHERE key = 'fold_pos'").Scan(&pos); err != nil {
		return nil, 0, err
	}
	els, err := readElements(ctx, db)
	return els, log.Seq(pos), err
}

// logElements adds to seed the elements of the schema changesets the log holds after seq
// from, up to target, those keep accepts (nil: all).
func (m *Materializer) logElements(seed []element, from, target log.Seq, keep func(*log.Changeset) bool) ([]element, error) {
	for from < target {
		css, err := m.store.Read(from, 4096)
		if err != nil {
			return nil, err
		}
		if len(css) == 0 {
			break
		}
		for _, cs := range css {
			if cs.Seq > target {
				return seed, nil
			}
			if cs.Kind == log.KindSchema && (keep == nil || keep(cs)) {
				seed = append(seed, elementsOf(cs)...)
			}
			from = cs.Seq
		}
	}
	return seed, nil
}

// buildFresh folds the whole log into <path>.rebuild and returns its path, closed. The new
// view starts with the merged schema of every schema changeset up to the log's end (seed
// holds the elements of those up to seq from; the rest are read from the log), so data
// never waits for its tables and concurrent columns come out in the merged order at once.
// extra statements (the old view's and the schema files') are applied for the tables and
// indexes the merged schema does not name.
func (m *Materializer) buildFresh(ctx context.Context, seed []element, from log.Seq, extra []string, progress func(RebuildProgress)) (string, error) {
	tmp := m.cfg.Path + ".rebuild"
	return tmp, m.build(ctx, buildSpec{path: tmp, seed: seed, from: from, target: m.store.LastSeq(), extra: extra}, progress, nil)
}

// buildSpec is what build folds: the log up to target into a new file at path (removed
// first), keeping only the changesets keep accepts (nil: all; replays to a time).
type buildSpec struct {
	path   string
	seed   []element
	from   log.Seq
	target log.Seq
	keep   func(*log.Changeset) bool
	extra  []string
}

// build is buildFresh for spec; stats, when not nil, receives the replay's counts.
func (m *Materializer) build(ctx context.Context, spec buildSpec, progress func(RebuildProgress), stats *ReplayResult) error {
	tmp, target, extra := spec.path, spec.target, spec.extra
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(tmp + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	seed, err := m.logElements(spec.seed, spec.from, target, spec.keep)
	if err != nil {
		return fmt.Errorf("rebuild: read schema changesets: %w", err)
	}
	cfg := m.cfg
	cfg.Path = tmp
	cfg.FoldBatch = max(cfg.FoldBatch, 2048)
	r := New(m.store, cfg)
	r.site = m.site
	r.keep = spec.keep
	met, _ := newMetrics(nil)
	r.met = met
	if err := r.openWriter(ctx, tmp, nil); err != nil {
		r.closeConns()
		return fmt.Errorf("rebuild: %w", err)
	}
	if err := r.seedSchema(ctx, seed, extra); err != nil {
		r.closeConns()
		return fmt.Errorf("rebuild: %w", err)
	}
	// The file is not the view until the rename: a crash before it leaves a stray file that
	// the next rebuild removes. So no fsync per commit, one at the end (below).
	if _, err := r.w.c.ExecContext(ctx, "PRAGMA synchronous = OFF"); err != nil {
		r.closeConns()
		return fmt.Errorf("rebuild: %w", err)
	}
	var p RebuildProgress
	p.Total = uint64(target)
	for r.FoldPosition() < target {
		if err := ctx.Err(); err != nil {
			r.closeConns()
			return fmt.Errorf("rebuild: %w", err)
		}
		// Statements run without the caller's context: modernc watches a cancellable
		// context with a goroutine per statement (a sixth of the rebuild's CPU in issue 14's
		// profile); cancellation is checked between batches above instead.
		n, err := r.foldOnly(context.WithoutCancel(ctx), target)
		if err != nil {
			r.closeConns()
			return fmt.Errorf("rebuild: %w", err)
		}
		p.Done = uint64(r.FoldPosition())
		p.Cells += uint64(n)
		if stats != nil {
			stats.Cells = p.Cells
		}
		if progress != nil {
			progress(p)
		}
	}
	// Copy the WAL into the file and make it durable before the rename swaps it in.
	for _, q := range []string{"PRAGMA synchronous = FULL", "PRAGMA wal_checkpoint(TRUNCATE)"} {
		if _, err := r.w.c.ExecContext(ctx, q); err != nil {
			r.closeConns()
			return fmt.Errorf("rebuild: %s: %w", q, err)
		}
	}
	if err := r.closeConns(); err != nil {
		return fmt.Errorf("rebuild: close: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	if stats != nil {
		stats.Seq, stats.Changesets, stats.Skipped = r.FoldPosition(), r.replayed, r.skipped
	}
	return nil
}

// seedSchema records seed, brings the (new) view to the merged schema, and applies extra
// statements for objects it does not name.
func (m *Materializer) seedSchema(ctx context.Context, seed []element, extra []string) error {
	w := m.w
	if err := dropCapture(ctx, w.c); err != nil {
		return err
	}
	w.resetStmts()
	if _, err := w.c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	var ms *mergedSchema
	err := func() error {
		if err := insertElements(ctx, w.c, seed); err != nil {
			return err
		}
		var err error
		if ms, err = mergeSchema(ctx, seed); err != nil {
			return err
		}
		if _, _, err := realize(ctx, w.c, ms, false); err != nil {
			return err
		}
		var rest []string
		for _, raw := range extra {
			parts, err := sqltok.Split(raw)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrSchema, err)
			}
			for _, stmt := range parts {
				s, err := parseSchemaStmt(stmt)
				if err != nil {
					return err
				}
				if s.kind == "table" && ms.table(s.name) != nil || s.kind != "table" && ms.hasIndex(s.name) {
					continue
				}
				rest = append(rest, stmt)
			}
		}
		_, _, err = applySchema(ctx, w.c, rest, func(stmt, why string) {
			m.logger.Warn("schema statement lags the replicated schema; keeping the replicated one", "why", why, "statement", oneLine(stmt))
		})
		return err
	}()
	if err == nil {
		_, err = w.c.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	return m.reloadSchema(ctx)
}

// foldOnly is iterate without local transactions or notices, for rebuilds; it folds up to
// target and returns the cells folded. Schema changesets were seeded (seedSchema).
func (m *Materializer) foldOnly(ctx context.Context, target log.Seq) (int, error) {
	w := m.w
	if _, err := w.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, err
	}
	pos := m.FoldPosition()
	css, err := m.store.Read(pos, m.cfg.FoldBatch)
	if err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		return 0, err
	}
	if len(css) > 0 {
		// The position moves past what keep leaves out, too.
		pos = css[len(css)-1].Seq
	}
	for i, cs := range css {
		if cs.Seq > target {
			// Read past target: everything up to it is read (target itself may be a seq
			// compaction cleared, for a replay).
			css, pos = css[:i], target
			break
		}
	}
	if m.keep != nil {
		kept := css[:0:0]
		for _, cs := range css {
			if m.keep(cs) {
				kept = append(kept, cs)
			}
		}
		m.skipped += uint64(len(css) - len(kept))
		css = kept
	}
	m.replayed += uint64(len(css))
	var st foldState
	if err := m.foldAll(ctx, css, &st, true, func() error {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		_, err := w.exec(ctx, "BEGIN IMMEDIATE")
		return err
	}); err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		return 0, err
	}
	if _, err := w.exec(ctx, "UPDATE "+metaTable+" SET value = ? WHERE key = 'fold_pos'", int64(pos)); err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		return 0, err
	}
	if _, err := w.exec(ctx, "COMMIT"); err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		return 0, err
	}
	m.setFoldPos(pos)
	return st.cells, nil
}

// rebuildLive rebuilds a running view from the writer loop and swaps it in.
func (m *Materializer) rebuildLive(ctx context.Context, progress func(RebuildProgress)) error {
	if m.w == nil {
		return errors.New("materializer: the view is not open (a failed rebuild?); reopen the node")
	}
	damaged := m.ViewCorruption() != nil
	schema, err := schemaOf(ctx, m.w.c)
	if err != nil && !damaged {
		return err
	}
	seed, from := []element(nil), m.FoldPosition()
	if err == nil {
		seed, err = readElements(ctx, m.w.c)
	}
	if err != nil {
		if !damaged {
			return err
		}
		// A damaged view may not even give its schema back: the log's schema changesets
		// and the schema files give it.
		m.logger.Warn("rebuild: the damaged view's schema is unreadable; taking it from the log and the schema files", "err", err)
		schema, seed, from = m.cfg.Schema, nil, 0
	}
	tmp, err := m.buildFresh(ctx, seed, from, schema, progress)
	if err != nil {
		return err
	}
	// Readers first: new queries wait on rmu while the files move.
	m.rmu.Lock()
	defer m.rmu.Unlock()
	if m.rdb != nil {
		m.rdb.Close()
		m.rdb = nil
	}
	m.w.close()
	m.wdb.Close()
	m.w, m.wdb = nil, nil
	if damaged {
		if err := swapDamaged(tmp, m.cfg.Path); err != nil {
			return err
		}
	} else if err := os.Rename(tmp, m.cfg.Path); err != nil {
		return fmt.Errorf("rebuild: swap: %w", err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(m.cfg.Path + suffix)
	}
	m.foldMu.Lock()
	m.foldPos, m.wpos = 0, 0
	m.foldMu.Unlock()
	clear(m.ahead)
	if err := m.openWriter(ctx, m.cfg.Path, nil); err != nil {
		return fmt.Errorf("rebuild: reopen: %w", err)
	}
	if err := m.loadSchema(ctx); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(m.cfg.Path, true, 0))
	if err != nil {
		return fmt.Errorf("rebuild: reopen readers: %w", err)
	}
	db.SetMaxOpenConns(m.cfg.ReadConns)
	db.SetMaxIdleConns(m.cfg.ReadConns)
	m.rdb = db
	if m.sup.on.Load() {
		// The refold from the new view's position marks what it displaces, but what the
		// old view had displaced and no pass judged yet is in no mark: one full pass.
		m.sup.needFull(m.store.LastSeq())
	}
	return nil
}

// syncFile fsyncs the file at path.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
