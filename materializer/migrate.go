package materializer

import (
	"context"
	"fmt"
)

// migrate applies schema statements in one SQLite transaction on the writer connection,
// then refolds the changesets that waited for tables or columns the migration added.
func (m *Materializer) migrate(ctx context.Context, stmts []string) (MigrateResult, error) {
	w := m.w
	// Capture triggers name columns; drop them while tables change.
	if err := dropCapture(ctx, w.c); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: %w", err)
	}
	w.resetStmts()
	if _, err := w.c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: %w", err)
	}
	applied, err := applySchema(ctx, w.c, stmts)
	if err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		if rerr := m.reloadSchema(ctx); rerr != nil {
			return MigrateResult{}, fmt.Errorf("migrate: %w (and reload: %v)", err, rerr)
		}
		return MigrateResult{}, err
	}
	if _, err := w.c.ExecContext(ctx, "COMMIT"); err != nil {
		w.c.ExecContext(context.Background(), "ROLLBACK")
		m.reloadSchema(ctx)
		return MigrateResult{}, fmt.Errorf("migrate: commit: %w", err)
	}
	if err := m.reloadSchema(ctx); err != nil {
		return MigrateResult{Applied: applied}, fmt.Errorf("migrate: reload: %w", err)
	}
	if len(applied) > 0 {
		if err := m.refoldPending(ctx); err != nil {
			return MigrateResult{Applied: applied}, fmt.Errorf("migrate: refold pending changes: %w", err)
		}
	}
	return MigrateResult{Applied: applied}, nil
}

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
