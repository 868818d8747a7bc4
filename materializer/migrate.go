package materializer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer/internal/sqltok"
)

// schemaTable keeps every schema element the view has folded (see schemamerge.go); the
// schema is computed from it. It commits with the fold position, like the data.
const schemaTable = "__patina_schema"

const schemaDDL = "CREATE TABLE IF NOT EXISTS " + schemaTable + " (site BLOB NOT NULL, version INTEGER NOT NULL, " +
	"seq INTEGER NOT NULL, ts INTEGER NOT NULL, kind TEXT NOT NULL, tbl TEXT NOT NULL, name TEXT NOT NULL, " +
	"sql TEXT NOT NULL, PRIMARY KEY (site, version, seq)) WITHOUT ROWID"

// errRebuild says that the view cannot reach the merged schema by appending: it must be
// rebuilt from the log.
var errRebuild = errors.New("the view must be rebuilt to reach the merged schema")

func insertElements(ctx context.Context, q querier, els []element) error {
	for _, e := range els {
		if _, err := q.ExecContext(ctx, "INSERT OR IGNORE INTO "+schemaTable+" (site, version, seq, ts, kind, tbl, name, sql) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			e.Site[:], int64(e.Version), int64(e.Seq), int64(e.TS), e.Kind, e.Table, e.Name, e.SQL); err != nil {
			return fmt.Errorf("record schema element: %w", err)
		}
	}
	return nil
}

func readElements(ctx context.Context, q querier) ([]element, error) {
	rows, err := q.QueryContext(ctx, "SELECT site, version, seq, ts, kind, tbl, name, sql FROM "+schemaTable)
	if err != nil {
		return nil, fmt.Errorf("read schema elements: %w", err)
	}
	defer rows.Close()
	var out []element
	for rows.Next() {
		var e element
		var site []byte
		var ver, seq, ts int64
		if err := rows.Scan(&site, &ver, &seq, &ts, &e.Kind, &e.Table, &e.Name, &e.SQL); err != nil {
			return nil, err
		}
		copy(e.Site[:], site)
		e.Version, e.Seq, e.TS = log.Version(ver), uint64(seq), log.Timestamp(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// realize brings the view's tables and indexes to the merged schema by creating tables,
// appending columns and (re)creating or dropping indexes, inside the open transaction. It
// reports whether it changed anything and which tables it recreated empty (see
// recreateTable) because appending could not get them there; with rebuild false such a
// table is errRebuild instead. Tables and indexes the merged schema does not know are left
// alone.
func realize(ctx context.Context, q querier, ms *mergedSchema, rebuild bool) (changed bool, rebuilt []string, err error) {
	for _, mt := range ms.Tables {
		_, exists, err := objectSQL(ctx, q, "table", mt.Name)
		if err != nil {
			return changed, rebuilt, err
		}
		if !exists {
			if err := createMerged(ctx, q, mt); err != nil {
				return changed, rebuilt, err
			}
			changed = true
			continue
		}
		phys, err := loadTable(ctx, q, mt.Name)
		if err != nil {
			return changed, rebuilt, err
		}
		why := ""
		if len(phys.Cols) > len(mt.Cols) || !sameColumns(phys.Cols, mt.Cols[:len(phys.Cols)]) {
			why = "its columns are not a prefix of the merged ones"
		} else {
			for _, c := range mt.Cols[len(phys.Cols):] {
				if c.PK > 0 {
					why = fmt.Sprintf("it lacks key column %q", c.Name)
				}
			}
		}
		if why != "" {
			if !rebuild {
				return changed, rebuilt, fmt.Errorf("%w: table %q: %s", errRebuild, mt.Name, why)
			}
			if err := recreateTable(ctx, q, mt, ms); err != nil {
				return changed, rebuilt, fmt.Errorf("table %q (%s): %w", mt.Name, why, err)
			}
			changed, rebuilt = true, append(rebuilt, mt.Name)
			continue
		}
		for _, c := range mt.Cols[len(phys.Cols):] {
			if c.PK > 0 {
				return changed, rebuilt, fmt.Errorf("%w: table %q lacks key column %q", errRebuild, mt.Name, c.Name)
			}
			if _, err := q.ExecContext(ctx, "ALTER TABLE "+quoteIdent(mt.Name)+" ADD COLUMN "+mt.defs[strings.ToLower(c.Name)]); err != nil {
				return changed, rebuilt, fmt.Errorf("%w: table %q: add column %q: %w", errRebuild, mt.Name, c.Name, err)
			}
			changed = true
		}
	}
	for _, ix := range ms.Indexes {
		old, ok, err := objectSQL(ctx, q, "index", ix.Name)
		if err != nil {
			return changed, rebuilt, err
		}
		if ix.Last.Kind == log.SchemaDropIndex || ok && normalizeSQL(old) != normalizeSQL(ix.Last.SQL) {
			if ok {
				if _, err := q.ExecContext(ctx, "DROP INDEX "+quoteIdent(ix.Name)); err != nil {
					return changed, rebuilt, fmt.Errorf("drop index %q: %w", ix.Name, err)
				}
				changed, ok = true, false
			}
		}
		if ix.Last.Kind == log.SchemaIndex && !ok {
			if _, err := q.ExecContext(ctx, ix.Last.SQL); err != nil {
				return changed, rebuilt, fmt.Errorf("create index %q: %w", ix.Name, err)
			}
			changed = true
		}
	}
	return changed, rebuilt, nil
}

// createMerged creates the merged table mt and its clock table: the winning definition,
// then the accepted columns in the merged order.
func createMerged(ctx context.Context, q querier, mt *mergedTable) error {
	if _, err := q.ExecContext(ctx, mt.Create.SQL); err != nil {
		return fmt.Errorf("create table %q: %w", mt.Name, err)
	}
	if err := createClock(ctx, q, mt.Name); err != nil {
		return err
	}
	for _, a := range mt.Added {
		if _, err := q.ExecContext(ctx, "ALTER TABLE "+quoteIdent(mt.Name)+" ADD COLUMN "+a.SQL); err != nil {
			return fmt.Errorf("table %q: add column %q: %w", mt.Name, a.Name, err)
		}
	}
	return nil
}

// recreateTable replaces a table whose columns cannot reach the merged ones by appending (a
// concurrent column that sorts before one this node added, a column or table whose other
// definition won) with an empty table of the merged definition and an empty clock table;
// the caller refolds the table's changes from the log (refoldTables) in the same
// transaction. Indexes the merged schema names are created again by realize; the table's
// other indexes (from schema files not replicated) are created again here.
func recreateTable(ctx context.Context, q querier, mt *mergedTable, ms *mergedSchema) error {
	rows, err := q.QueryContext(ctx, "SELECT name, sql FROM main.sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name = ? COLLATE NOCASE", mt.Name)
	if err != nil {
		return err
	}
	var local []string
	for rows.Next() {
		var name, text string
		if err := rows.Scan(&name, &text); err != nil {
			rows.Close()
			return err
		}
		if !ms.hasIndex(name) {
			local = append(local, text)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, stmt := range []string{"DROP TABLE " + quoteIdent(mt.Name), "DROP TABLE IF EXISTS " + quoteIdent(clockTableName(mt.Name))} {
		if _, err := q.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	if err := createMerged(ctx, q, mt); err != nil {
		return err
	}
	for _, text := range local {
		if _, err := q.ExecContext(ctx, text); err != nil {
			// An index of this node's own files that no longer fits the merged columns.
			return fmt.Errorf("%w: recreate index %q: %w", errRebuild, text, err)
		}
	}
	return nil
}

// refoldTables folds again, into the tables named (recreated empty by realize), every
// change the view had folded into them: the changesets of the log before seq before, and
// the local ones folded ahead of the fold position. Only those tables' changes are folded,
// in arrival order with the merged schema, which is what a rebuild of the whole view gives
// them (the merge is per row); the other tables are not touched. Runs in the caller's
// transaction, with m.tables describing the recreated tables.
func (m *Materializer) refoldTables(ctx context.Context, names []string, before log.Seq) (changes int, err error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[strings.ToLower(n)] = true
	}
	limit := before - 1
	for s := range m.ahead {
		limit = max(limit, s)
	}
	var st foldState
	after := log.Seq(0)
	for after < limit {
		css, err := m.store.Read(after, 1024)
		if err != nil {
			return changes, err
		}
		if len(css) == 0 {
			break
		}
		for _, cs := range css {
			after = cs.Seq
			if cs.Seq > limit {
				break
			}
			if cs.Kind != log.KindData || cs.Seq >= before && !m.ahead[cs.Seq] {
				continue
			}
			var keep []log.Change
			for _, ch := range cs.Changes {
				if want[strings.ToLower(ch.Table)] {
					keep = append(keep, ch)
				}
			}
			if len(keep) == 0 {
				continue
			}
			c := *cs
			c.Changes = keep
			if err := m.foldChangeset(ctx, &c, &st); err != nil {
				return changes, fmt.Errorf("refold %v/%d: %w", cs.Site, cs.Version, err)
			}
			changes += len(keep)
			st.rows = st.rows[:0] // nobody is told: the rows are what they were
		}
	}
	return changes, nil
}

// foldSchema folds the schema changeset at the head of the backlog (its seq is the fold
// position + 1) in a transaction of its own: it records the elements, merges, brings the
// view to the merged schema and refolds the changesets that waited for it. When the view
// cannot get there by appending it is rebuilt from the log.
func (m *Materializer) foldSchema(ctx context.Context, cs *log.Changeset) error {
	start := time.Now()
	if err := m.hlc.Update(cs.TS); err != nil {
		m.logger.Warn("schema changeset from a clock far ahead", "site", cs.Site, "version", cs.Version, "err", err)
	}
	w := m.w
	if els := elementsOf(cs); m.schemaSnap.Load().duplicates(els) {
		if err := m.foldDuplicateSchema(ctx, cs, els); err != nil {
			return fmt.Errorf("fold schema %v/%d: %w", cs.Site, cs.Version, err)
		}
		m.met.schemaChangesets.Inc()
		m.setFoldPos(cs.Seq)
		return nil
	}
	// Capture triggers name columns; drop them while tables change.
	if err := dropCapture(ctx, w.c); err != nil {
		return fmt.Errorf("fold schema: %w", err)
	}
	w.resetStmts()
	if _, err := w.c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("fold schema: %w", err)
	}
	var f schemaFold
	err := m.foldSchemaTx(ctx, cs, &f)
	if err == nil {
		_, err = w.c.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		if rerr := m.reloadSchema(ctx); rerr != nil {
			return fmt.Errorf("fold schema: %w (and reload: %v)", err, rerr)
		}
		if errors.Is(err, errRebuild) {
			// Only when a recreated table's own indexes no longer fit: rebuilding everything
			// applies the files' statements to the merged schema as a fresh start does.
			m.logger.Warn("schema changeset reorders or redefines what the view holds; rebuilding the view from the log",
				"site", cs.Site, "version", cs.Version, "why", err)
			m.met.schemaRebuilds.Inc()
			return m.rebuildLive(ctx, nil)
		}
		return fmt.Errorf("fold schema %v/%d: %w", cs.Site, cs.Version, err)
	}
	if err := m.reloadSchema(ctx); err != nil {
		return fmt.Errorf("fold schema: reload: %w", err)
	}
	m.met.schemaChangesets.Inc()
	if len(f.rebuilt) > 0 {
		m.met.schemaTableRebuilds.Add(float64(len(f.rebuilt)))
		m.logger.Warn("schema changeset reorders or redefines columns; rebuilt those tables from the log",
			"site", cs.Site, "version", cs.Version, "tables", f.rebuilt, "changes", f.refolded, "took", time.Since(start))
	}
	if err := m.publishSchema(ctx, f.ms); err != nil {
		return err
	}
	level := slog.LevelDebug
	if f.changed {
		level = slog.LevelInfo
	}
	m.logger.Log(ctx, level, "schema changeset folded", "site", cs.Site, "version", cs.Version, "elements", len(cs.Changes),
		"changed", f.changed, "took", time.Since(start))
	if f.changed {
		if err := m.refoldPending(ctx); err != nil {
			return fmt.Errorf("fold schema: refold pending changes: %w", err)
		}
	}
	// Only now: Apply's callers wait for the fold position, and the data that waited for
	// this schema is part of what they expect to read.
	m.setFoldPos(cs.Seq)
	return nil
}

// schemaFold is what foldSchemaTx did: the merged schema, whether the view changed, the
// tables recreated and the changes refolded into them.
type schemaFold struct {
	ms       *mergedSchema
	changed  bool
	rebuilt  []string
	refolded int
}

// foldSchemaTx is foldSchema's transaction (BEGIN is done, COMMIT or ROLLBACK is the
// caller's): record cs's elements, merge every element held, bring the view to the merged
// schema and refold the tables that had to be recreated.
func (m *Materializer) foldSchemaTx(ctx context.Context, cs *log.Changeset, f *schemaFold) error {
	w := m.w
	if err := insertElements(ctx, w.c, elementsOf(cs)); err != nil {
		return err
	}
	els, err := readElements(ctx, w.c)
	if err != nil {
		return err
	}
	if f.ms, err = mergeSchema(ctx, els); err != nil {
		return err
	}
	if f.changed, f.rebuilt, err = realize(ctx, w.c, f.ms, true); err != nil {
		return err
	}
	if len(f.rebuilt) > 0 {
		// The refold needs the recreated tables' new shape (no capture triggers: those
		// writes are the log's, not local ones).
		tables, err := loadTables(ctx, w.c)
		if err != nil {
			return err
		}
		m.tables, m.aff = tables, &affinityConv{}
		w.resetStmts()
		if f.refolded, err = m.refoldTables(ctx, f.rebuilt, cs.Seq); err != nil {
			return err
		}
	}
	_, err = w.exec(ctx, "UPDATE "+metaTable+" SET value = ? WHERE key = 'fold_pos'", int64(cs.Seq))
	return err
}

// foldDuplicateSchema records elements that change nothing (see duplicates) with the fold
// position, in one transaction.
func (m *Materializer) foldDuplicateSchema(ctx context.Context, cs *log.Changeset, els []element) error {
	w := m.w
	if _, err := w.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	err := insertElements(ctx, w.c, els)
	if err == nil {
		_, err = w.exec(ctx, "UPDATE "+metaTable+" SET value = ? WHERE key = 'fold_pos'", int64(cs.Seq))
	}
	if err == nil {
		_, err = w.exec(ctx, "COMMIT")
	}
	if err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
	}
	return err
}

// migrate validates schema statements against the schema the view has (in a transaction
// it rolls back), appends what they add as one schema changeset to the log and folds it:
// the same path a remote schema changeset takes. lag is set for schema files at start.
func (m *Materializer) migrate(ctx context.Context, stmts []string, lag func(stmt, why string)) (MigrateResult, error) {
	// Validate against everything the log holds.
	if err := m.catchUp(ctx); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: %w", err)
	}
	w := m.w
	if err := dropCapture(ctx, w.c); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: %w", err)
	}
	w.resetStmts()
	if _, err := w.c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: %w", err)
	}
	applied, els, err := applySchema(ctx, w.c, stmts, lag)
	w.c.ExecContext(context.Background(), "ROLLBACK")
	if rerr := m.reloadSchema(ctx); rerr != nil {
		return MigrateResult{}, fmt.Errorf("migrate: reload: %w", rerr)
	}
	if err != nil {
		return MigrateResult{}, err
	}
	if len(els) == 0 {
		return MigrateResult{}, nil
	}
	cs, err := m.appendSchema(ctx, els)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: %w", err)
	}
	return MigrateResult{Applied: applied, Version: cs.Version}, nil
}

// appendSchema appends elements as this node's next version, folds it, and hands it to
// OnCommit for broadcast.
func (m *Materializer) appendSchema(ctx context.Context, els []element) (*log.Changeset, error) {
	ch := schemaChanges(els)
	// After every element held, even one from a clock further ahead than the HLC follows
	// (log.MaxClockDrift): a migration made after another was seen must order after it (a
	// DROP INDEX after the CREATE INDEX it drops, or it would lose to it on every node).
	ts := m.hlc.Now()
	if snap := m.schemaSnap.Load(); snap != nil && ts <= snap.latest {
		ts = snap.latest + 1
	}
	cs := &log.Changeset{Site: m.site, Version: m.store.NextLocalVersion(), TS: ts, Kind: log.KindSchema,
		Span: log.OrdRange{First: 0, Last: uint64(len(ch) - 1)}, LastOrd: uint64(len(ch) - 1), Changes: ch}
	res, err := m.store.Append(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("append schema changeset: %w", err)
	}
	if !res[0].New || !res[0].Complete {
		return nil, fmt.Errorf("append schema changeset: the log already held version %d", cs.Version)
	}
	cs.Seq = res[0].Seq
	for m.FoldPosition() < cs.Seq {
		if _, err := m.iterate(ctx, nil); err != nil {
			return nil, err
		}
	}
	if m.commit != nil {
		m.commit.push([]*log.Changeset{cs}, nil)
	}
	return cs, nil
}

// catchUp folds everything the log holds.
func (m *Materializer) catchUp(ctx context.Context) error {
	for m.store.LastSeq() > m.FoldPosition() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := m.iterate(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// startSchema runs at Open: it adopts tables and indexes the view has but no schema
// changeset describes (a view made before schemas were replicated, or by an offline
// rebuild with schema files) and then applies the schema files, appending what they add.
// Files that lag the replicated schema are reported and skipped.
func (m *Materializer) startSchema(ctx context.Context, files []string) error {
	if err := m.catchUp(ctx); err != nil {
		return err
	}
	adopt, err := m.unreplicated(ctx)
	if err != nil {
		return err
	}
	if len(adopt) > 0 {
		if _, err := m.appendSchema(ctx, adopt); err != nil {
			return fmt.Errorf("replicate the view's schema: %w", err)
		}
		m.logger.Info("schema of the view appended to the log", "elements", len(adopt))
	}
	stmts, err := m.dropLaggingIndexes(files)
	if err != nil {
		return err
	}
	if len(stmts) == 0 {
		return nil
	}
	res, err := m.migrate(ctx, stmts, func(stmt, why string) {
		m.met.schemaLagging.Inc()
		m.logger.Warn("schema file lags the replicated schema; keeping the replicated one", "why", why, "statement", oneLine(stmt))
	})
	if err != nil {
		return err
	}
	if len(res.Applied) > 0 {
		m.fileVersion = res.Version
		m.logger.Debug("schema files ahead of the replicated schema appended to the log", "statements", len(res.Applied), "version", res.Version)
	}
	return nil
}

// dropLaggingIndexes leaves out CREATE INDEX statements of files for indexes the
// replicated schema has dropped since.
func (m *Materializer) dropLaggingIndexes(files []string) ([]string, error) {
	snap := m.schemaSnap.Load()
	var out []string
	for _, raw := range files {
		parts, err := sqltok.Split(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSchema, err)
		}
		for _, stmt := range parts {
			if s, err := parseSchemaStmt(stmt); err == nil && s.kind == "index" && snap != nil && snap.dropped[strings.ToLower(s.name)] {
				m.met.schemaLagging.Inc()
				m.logger.Warn("schema file lags the replicated schema; keeping the replicated one",
					"why", fmt.Sprintf("index %q was dropped", s.name), "statement", oneLine(stmt))
				continue
			}
			out = append(out, stmt)
		}
	}
	return out, nil
}

// unreplicated describes the user tables and indexes of the view that no folded schema
// element defines.
func (m *Materializer) unreplicated(ctx context.Context) ([]element, error) {
	snap := m.schemaSnap.Load()
	rows, err := m.w.c.QueryContext(ctx, "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('table', 'index') AND sql IS NOT NULL ORDER BY rowid")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []element
	for rows.Next() {
		var typ string
		var e element
		if err := rows.Scan(&typ, &e.Name, &e.Table, &e.SQL); err != nil {
			return nil, err
		}
		if isInternalName(e.Name) || isInternalName(e.Table) {
			continue
		}
		if typ == "table" {
			if snap != nil && snap.tables[strings.ToLower(e.Name)] {
				// Columns the view added beyond the replicated ones (an offline rebuild
				// with a newer schema file) are replicated too.
				more, err := m.unreplicatedColumns(ctx, e.Name, e.SQL, snap.columns[strings.ToLower(e.Name)])
				if err != nil {
					return nil, err
				}
				out = append(out, more...)
				continue
			}
			e.Kind = log.SchemaTable
		} else {
			if snap != nil && snap.indexes[strings.ToLower(e.Name)] {
				continue
			}
			e.Kind = log.SchemaIndex
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// unreplicatedColumns describes the columns of a table after the first known ones.
func (m *Materializer) unreplicatedColumns(ctx context.Context, name, text string, known int) ([]element, error) {
	t := m.lookupTable(name)
	if t == nil || len(t.Cols) <= known {
		return nil, nil
	}
	s, err := parseSchemaStmt(text)
	if err != nil {
		return nil, err
	}
	var out []element
	for _, c := range t.Cols[known:] {
		def, ok := s.colDefs[strings.ToLower(c.Name)]
		if !ok {
			return nil, fmt.Errorf("%w: table %q: cannot find the definition of column %q", ErrSchema, name, c.Name)
		}
		out = append(out, element{Kind: log.SchemaColumn, Table: t.Name, Name: c.Name, SQL: def})
	}
	return out, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// refoldPending refolds every changeset recorded as pending. Merging is idempotent, so the
// parts that were folded the first time change nothing; a changeset that still has unknown
// changes is recorded again.
func (m *Materializer) refoldPending(ctx context.Context) error {
	w := m.w
	rows, err := w.c.QueryContext(ctx, "SELECT seq FROM "+pendingTable+" ORDER BY seq")
	if err != nil {
		return err
	}
	var seqs []int64
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return err
		}
		seqs = append(seqs, s)
	}
	rows.Close()
	if len(seqs) == 0 {
		return nil
	}
	if _, err := w.c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	var st foldState
	err = func() error {
		if _, err := w.c.ExecContext(ctx, "DELETE FROM "+pendingTable); err != nil {
			return err
		}
		for _, s := range seqs {
			css, err := m.store.Read(logSeq(s-1), 1)
			if err != nil {
				return err
			}
			if len(css) == 0 {
				continue
			}
			if err := m.foldChangeset(ctx, css[0], &st); err != nil {
				return err
			}
		}
		_, err := w.c.ExecContext(ctx, "COMMIT")
		return err
	}()
	if err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	if len(st.rows) > 0 {
		m.notify.publish(Notice{Seq: m.FoldPosition(), Rows: st.rows})
	}
	return nil
}
