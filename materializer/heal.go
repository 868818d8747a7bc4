package materializer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/patinadb/patina/log"
)

// A damaged view heals from the log (issue 12, item 7). The view is derived data: every row
// in it comes from a changeset the log keeps (or a compaction judged superseded). So when
// SQLite says the file is damaged, the materializer does not serve errors forever: at Open it
// checks the file (PRAGMA quick_check, unless Config.NoOpenCheck) and rebuilds a damaged one
// before serving; while running, the first statement that meets damage starts the same
// rebuild in the writer loop, and requests answer ErrViewCorrupt (503) until it is done. The
// damaged file is kept beside the view as views.db.corrupt, for a post-mortem.

// errCheckFailed: PRAGMA quick_check listed damage.
var errCheckFailed = errors.New("integrity check failed")

// isCorrupt reports whether err is SQLite saying that the file is damaged.
func isCorrupt(err error) bool {
	if errors.Is(err, errCheckFailed) {
		return true
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return true
	}
	return false
}

// ViewCorruption returns the damage SQLite reported in the view while a rebuild from the log
// has not yet repaired it, or nil. Health reports it.
func (m *Materializer) ViewCorruption() error {
	if p := m.corrupt.Load(); p != nil {
		return *p
	}
	return nil
}

// fault turns SQLite's corruption errors into ErrViewCorrupt, and the first of them starts a
// rebuild from the log; other errors pass unchanged (and all of them on a nil m). A view
// that found the disk full (SQLITE_FULL, ENOSPC) makes the log ask for the free space at
// once, so that health says disk_full and the next writes are refused before they run.
func (m *Materializer) fault(err error) error {
	if m == nil || err == nil {
		return err
	}
	if m.store != nil && IsDiskFull(err) && !errors.Is(err, log.ErrDiskFull) {
		m.store.CheckFree()
	}
	if !isCorrupt(err) || errors.Is(err, ErrViewCorrupt) {
		return err
	}
	m.met.viewCorruptions.Inc()
	e := fmt.Errorf("%w: %w", ErrViewCorrupt, err)
	if m.corrupt.CompareAndSwap(nil, &e) {
		m.met.viewCorrupt.Set(1)
		m.logger.Error("view corruption: views.db is damaged; rebuilding it from the log (requests answer 503 meanwhile)",
			"path", m.cfg.Path, "err", err)
		m.healWG.Add(1)
		go m.heal()
	}
	return e
}

// heal rebuilds the running view from the log, in the writer loop.
func (m *Materializer) heal() {
	defer m.healWG.Done()
	start := time.Now()
	if err := m.Rebuild(m.run, nil); err != nil {
		if errors.Is(err, ErrClosed) || m.closed.Load() {
			return // the next start checks the file again
		}
		m.met.viewHeals.WithLabelValues("failed").Inc()
		m.logger.Error("view corruption: rebuilding the view from the log failed; stop the node and run patina rebuild",
			"path", m.cfg.Path, "err", err)
		return
	}
	m.met.viewHeals.WithLabelValues("ok").Inc()
	m.met.viewCorrupt.Set(0)
	m.corrupt.Store(nil)
	m.logger.Info("view rebuilt from the log after corruption", "path", m.cfg.Path, "took", time.Since(start).Round(time.Millisecond),
		"kept", m.cfg.Path+corruptSuffix)
}

// corruptSuffix names the damaged view kept beside the rebuilt one.
const corruptSuffix = ".corrupt"

// checkView runs PRAGMA quick_check on the writer connection: nil when the file is sound,
// an error that isCorrupt otherwise (or the error that kept the check from running).
func (m *Materializer) checkView(ctx context.Context) error {
	rows, err := m.w.c.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		if s != "ok" && len(msgs) < 5 {
			msgs = append(msgs, s)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%w: quick_check: %q", errCheckFailed, msgs)
	}
	return nil
}

// healAtOpen replaces a view found damaged at Open with one rebuilt from the log. The
// damaged file's schema is read if it still can be (the log's schema changesets and the
// schema files give it otherwise).
func (m *Materializer) healAtOpen(ctx context.Context, cause error) error {
	m.met.viewCorruptions.Inc()
	m.logger.Error("view corruption found at start: views.db is damaged; rebuilding it from the log",
		"path", m.cfg.Path, "err", cause)
	start := time.Now()
	tmp, err := m.buildFromLog(ctx)
	if err != nil {
		m.met.viewHeals.WithLabelValues("failed").Inc()
		return fmt.Errorf("views.db is damaged (%v) and rebuilding it from the log failed: %w; stop the node and run patina rebuild", cause, err)
	}
	if err := swapAside(tmp, m.cfg.Path, corruptSuffix); err != nil {
		return fmt.Errorf("views.db is damaged (%v): %w; stop the node and run patina rebuild", cause, err)
	}
	m.met.viewHeals.WithLabelValues("ok").Inc()
	m.logger.Info("view rebuilt from the log after corruption", "path", m.cfg.Path, "took", time.Since(start).Round(time.Millisecond),
		"kept", m.cfg.Path+corruptSuffix)
	return nil
}

// buildFromLog builds a new view file from the log beside the view, with the schema the old
// file still gives if it can be read (the log's schema changesets and the schema files give
// it otherwise), and returns its path.
func (m *Materializer) buildFromLog(ctx context.Context) (string, error) {
	schema, err := liveSchema(ctx, m.cfg.Path, true)
	if err != nil {
		schema = nil
	}
	return m.buildFresh(ctx, nil, 0, append(schema, m.cfg.Schema...), nil)
}

// swapDamaged moves the damaged view at path aside (path.corrupt, replacing an older one)
// and the rebuilt file tmp in its place.
func swapDamaged(tmp, path string) error { return swapAside(tmp, path, corruptSuffix) }

// swapAside moves the view at path aside (path+suffix, replacing an older one) and the
// rebuilt file tmp in its place. A crash between the two renames leaves no view: the next
// start folds the whole log into a new one, which is the same rebuild.
func swapAside(tmp, path, suffix string) error {
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	if err := os.Rename(path, path+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rebuild: keep the damaged view: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rebuild: swap: %w", err)
	}
	return nil
}

// A view ahead of its log. The writer commits a group's SQLite transaction as soon as the log
// has written the group's changesets, before their WAL sync (group.go), so a crash or a
// power loss in that window leaves a view holding changesets the log lost. None of them was
// acknowledged (answers wait for the sync), so losing them is allowed, but the view must not
// keep them: they were never sent anywhere, and the log gives their versions again to other
// changesets. Open finds such a view (its fold position, or the highest seq it folded, beyond
// the log's end) and rebuilds it from the log before serving.

// viewAheadError: the view holds seqs up to view, the log ends at log.
type viewAheadError struct{ view, log log.Seq }

func (e *viewAheadError) Error() string {
	return fmt.Sprintf("the view holds changesets up to seq %d but the log ends at %d: the view is newer than the log", e.view, e.log)
}

// aheadSuffix names the view kept beside the rebuilt one when it was ahead of the log.
const aheadSuffix = ".ahead"

// healAheadAtOpen replaces a view found ahead of its log at Open with one rebuilt from the
// log; the old file is kept as views.db.ahead.
func (m *Materializer) healAheadAtOpen(ctx context.Context, ahead *viewAheadError) error {
	m.met.viewAheadRebuilds.WithLabelValues("open").Inc()
	m.logger.Warn("the view is ahead of the log (a crash between a commit and its log sync: those transactions were never acknowledged); rebuilding it from the log",
		"path", m.cfg.Path, "view_seq", ahead.view, "log_seq", ahead.log)
	start := time.Now()
	tmp, err := m.buildFromLog(ctx)
	if err != nil {
		return fmt.Errorf("%v, and rebuilding it from the log failed: %w; stop the node and run patina rebuild", ahead, err)
	}
	if err := swapAside(tmp, m.cfg.Path, aheadSuffix); err != nil {
		return fmt.Errorf("%v: %w; stop the node and run patina rebuild", ahead, err)
	}
	m.logger.Info("view rebuilt from the log", "path", m.cfg.Path, "took", time.Since(start).Round(time.Millisecond), "kept", m.cfg.Path+aheadSuffix)
	return nil
}
