package materializer

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The view's WAL checkpoints run beside the writer, not inside its commits.
//
// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past its threshold
// (1000 pages), on the committing connection: the writer copies the WAL's pages into the
// database file and fsyncs the WAL and the file (synchronous=NORMAL syncs at checkpoints),
// while every client of the group it is building waits (4% of the writer's time in a traced
// run of 32 single-row writers; under 1% untraced, and no change of rate or p99 measured:
// bench/RESULTS.md, round 13). It also never runs on an idle view, whose WAL then waits for
// the next 1000 pages. So the writer's own threshold is raised to a safety net
// (checkpointSafetyPages) and a checkpointer goroutine runs PASSIVE checkpoints on a
// connection of its own, at most every Config.CheckpointInterval while commits come: a
// PASSIVE checkpoint never blocks the writer or a reader, and the next write transaction
// after a complete one restarts the WAL from its start, as the automatic one does.

const (
	// DefaultCheckpointInterval is Config.CheckpointInterval's (DefaultConfig): at the write rates
	// of bench http (4-6k WAL frames a second) the WAL holds about the 1000 pages SQLite's
	// own threshold would let it.
	DefaultCheckpointInterval = 200 * time.Millisecond
	// checkpointSafetyPages is the writer's own automatic checkpoint threshold while the
	// checkpointer runs: reached only if it falls behind (a fold of a huge backlog between
	// two of its turns) or fails, and then the writer checkpoints as SQLite always does.
	checkpointSafetyPages = 10000
)

// writerAutocheckpoint is the writer connection's wal_autocheckpoint: 0 (SQLite's own) when
// no checkpointer runs.
func (c *Config) writerAutocheckpoint() int {
	if c.CheckpointInterval == 0 {
		return 0
	}
	return checkpointSafetyPages
}

// wakeCheckpointer tells the checkpointer the view committed (writer, after a commit); with
// no checkpointer (ckptWake nil) the send is never ready and it does nothing.
func (m *Materializer) wakeCheckpointer() {
	select {
	case m.ckptWake <- struct{}{}:
	default:
	}
}

// checkpointLoop runs a PASSIVE checkpoint after commits, at most one per interval.
func (m *Materializer) checkpointLoop(every time.Duration) {
	defer m.wg.Done()
	t := time.NewTimer(every)
	t.Stop()
	for {
		select {
		case <-m.run.Done():
			return
		case <-m.ckptWake:
		}
		if err := m.checkpoint(m.run); err != nil && m.run.Err() == nil {
			m.met.checkpointFailures.Inc()
			m.logger.Warn("view checkpoint failed; the writer checkpoints the WAL itself past its safety threshold",
				"err", err, "safety_pages", checkpointSafetyPages)
		}
		// Rate: commits keep waking it, and a checkpoint per commit would fsync the view
		// file as often as the log.
		t.Reset(every)
		select {
		case <-m.run.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// checkpoint runs one PASSIVE checkpoint of the view on a connection opened for it. Opening
// one per checkpoint (a few a second at most) keeps the checkpointer out of the file swaps
// of a rebuild: it holds rmu shared, as a query does, and finds no view while one moves.
func (m *Materializer) checkpoint(ctx context.Context) error {
	m.rmu.RLock()
	defer m.rmu.RUnlock()
	if m.rdb == nil || m.closed.Load() {
		return nil
	}
	start := time.Now()
	db, err := sql.Open("sqlite", checkpointDSN(m.cfg.Path))
	if err != nil {
		return err
	}
	defer db.Close()
	var busy, frames, done int64
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("checkpoint %s: %w", m.cfg.Path, err)
	}
	m.met.checkpoints.Inc()
	m.met.checkpointSeconds.Observe(time.Since(start).Seconds())
	m.met.walFrames.Set(float64(frames))
	m.met.walBehind.Set(float64(frames - done))
	return nil
}
