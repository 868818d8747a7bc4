package materializer

// A writer group: one SQLite transaction of the writer loop (writer.go) that folds the log's
// backlog and runs queued local transactions, appends their changesets to the log, commits
// the view, and is published (answers, commit notice, broadcast, fold position) once the
// log has synced it, in commit order: at depth 1 by the writer itself, deeper by the
// completer while the writer builds the next group.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/patinadb/patina/log"
)

// foldCellBudget bounds the cells one writer transaction folds (beyond its first changeset).
const foldCellBudget = 1 << 16

// group is one writer transaction committed to the view on its way to being published:
// the log append of its local changesets (pend) may still wait for its WAL sync. Its
// answers, commit notice, broadcast and fold position are given once the append is durable
// (complete), in the order the groups committed.
type group struct {
	pend   *log.Pending // nil: nothing appended
	pos    log.Seq      // the writer's fold position after the group
	folded int          // changesets folded from the log
	cells  int
	rows   []RowChange
	locals []*log.Changeset
	owners []*request // the request of each of locals
	txs    []*request // every request of the group, answered by complete
	// foldTimed: the group folded rows of the log (patina_materializer_commit_seconds).
	foldTimed          bool
	start, appendStart time.Time
	// viewErr: the view's commit failed after the log had taken the group's changesets
	// (viewLost); nothing of the group is in the view.
	viewErr error
}

// iterate runs one writer transaction (runGroup) and completes it before it returns:
// Open's refold and the schema work, which read the published fold position.
func (m *Materializer) iterate(ctx context.Context, txs []*request) (folded int, err error) {
	g, err := m.runGroup(ctx, txs)
	if err != nil {
		if g != nil {
			m.complete(g)
		}
		return 0, err
	}
	if err := m.complete(g); err != nil {
		return 0, err
	}
	return g.folded, nil
}

// iterateAsync runs one writer transaction and hands it to the completer, so that the
// writer goes on with the next group while this one's log append waits for its sync. The
// caller took the group's token in pipeSlots: at most the writer's depth of groups are on
// their way (being built, or waiting for their sync) at once. At depth 1 nothing overlaps,
// and the writer completes the group itself: it then waits for the fsync in the log's
// awaitGroup and is woken by Pebble's flush loop directly, where the completer would add
// two hand-offs (log to completer, completer to writer), each a turn in the scheduler's run
// queue behind the HTTP handlers.
func (m *Materializer) iterateAsync(ctx context.Context, txs []*request) error {
	g, err := m.runGroup(ctx, txs)
	if err != nil && g == nil {
		m.leavePipe()
		return err
	}
	if cap(m.pipeSlots) == 1 {
		m.complete(g)
		m.leavePipe()
		return err
	}
	m.pipeWG.Add(1)
	m.pipe <- g
	return err
}

// completer completes the groups the writer handed over, in order.
func (m *Materializer) completer() {
	defer m.wg.Done()
	for g := range m.pipe {
		m.complete(g)
		m.leavePipe()
		m.pipeWG.Done()
	}
}

// leavePipe ends a group's turn in the pipeline, completed or failed: it frees the group's
// slot and wakes a writer filling its group (fillGroup).
func (m *Materializer) leavePipe() {
	<-m.pipeSlots
	m.met.pipeDepth.Set(float64(len(m.pipeSlots)))
	select {
	case m.pipeDone <- struct{}{}:
	default:
	}
}

// drainPipe waits until every group handed to the completer is complete (writer only).
func (m *Materializer) drainPipe() { m.pipeWG.Wait() }

// runGroup runs one SQLite transaction: fold up to FoldBatch changesets of the log backlog,
// then run txs (each in a savepoint), append their changesets to the log, and commit with
// the new fold position as soon as the log has written them (their seqs are known), before
// their WAL sync. On an error every tx request is answered, but for the owners of the
// group viewLost returns with the error, which complete answers; otherwise complete answers
// them all.
func (m *Materializer) runGroup(ctx context.Context, txs []*request) (out *group, err error) {
	defer func() {
		if err == nil {
			return
		}
		for _, r := range txs {
			if out != nil && slices.Contains(out.owners, r) {
				continue // in the log: answered by complete (viewLost)
			}
			if errors.Is(err, errGroupLost) && r.err == nil {
				r.retry = true // answered when it runs again
				continue
			}
			if r.err == nil {
				r.err = err
			}
			close(r.done)
		}
	}()
	pos, css, err := m.readBacklog(ctx)
	if err != nil {
		return nil, err
	}
	w := m.w
	if err := w.run(ctx, "BEGIN IMMEDIATE"); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	rollback := func() { w.run(context.Background(), "ROLLBACK") }
	g := &group{txs: txs, start: time.Now()}
	var st foldState
	css = foldable(css, m.ahead)
	if err := m.foldAll(ctx, css, &st, false, func() error {
		rollback()
		_, err := w.exec(ctx, "BEGIN IMMEDIATE")
		return err
	}); err != nil {
		rollback()
		return nil, err
	}
	for _, cs := range css {
		delete(m.ahead, cs.Seq)
		pos = cs.Seq
	}
	foldedRows := len(st.rows)
	locals, owners, err := m.runLocals(ctx, w, txs, &st)
	if err != nil {
		rollback()
		return nil, err
	}
	var added []log.Seq
	viewSeq := pos
	g.appendStart = time.Now()
	if len(locals) > 0 {
		if g.pend, err = m.store.AppendAsync(ctx, locals...); err != nil {
			rollback()
			return nil, fmt.Errorf("append local changesets: %w", err)
		}
		<-g.pend.Written()
		if pos, added, viewSeq, err = m.placeLocals(g.pend, locals, owners, pos); err != nil {
			rollback()
			return nil, err
		}
	}
	if err := commitAt(ctx, w, pos, viewSeq, len(locals) > 0); err != nil {
		rollback()
		for _, s := range added {
			delete(m.ahead, s)
		}
		if g.pend != nil {
			return m.viewLost(g, locals, owners, err), err
		}
		return nil, err
	}
	m.wpos = pos
	m.wakeCheckpointer()
	g.pos, g.folded, g.cells, g.rows = pos, len(css), st.cells, st.rows
	g.locals, g.owners, g.foldTimed = locals, owners, foldedRows > 0 && len(css) > 0
	return g, nil
}

// viewLost handles a view commit that failed (a full disk, an I/O error) after the log had
// taken the group's changesets. The log is the source of truth: those transactions are
// committed once their append is durable, whatever the view does, and the writer folds
// them from the log as soon as the view can commit again (the fold position did not move
// past them). So their answers are the log's, given by complete; answering them with the
// view's error would tell a client its write failed while every node will apply it. The
// group's other requests changed nothing and get the view's error from runGroup.
func (m *Materializer) viewLost(g *group, locals []*log.Changeset, owners []*request, err error) *group {
	g.locals, g.owners, g.viewErr = locals, owners, err
	return g
}

// completeViewLost answers a viewLost group's transactions once the log has synced their
// changesets, and hands the changesets to broadcast as any local commit: the view lacks
// them for now, so no fold position and no row notice is published (the fold of the
// backlog publishes them later).
func (m *Materializer) completeViewLost(g *group) error {
	_, err := g.pend.Wait()
	if err != nil {
		// Not durable: the view does not hold them either (its transaction rolled back).
		err = fmt.Errorf("append local changesets: %w", err)
		for _, r := range g.owners {
			r.err = err
		}
	} else {
		m.met.txViewDeferred.Add(float64(len(g.owners)))
		m.logger.Warn("the view failed to commit transactions the log had taken: they are committed, and the view folds them from the log once it can commit again",
			"transactions", len(g.owners), "err", g.viewErr)
		m.commit.push(g.locals, traceCommitted(g.owners, g.start, g.appendStart, time.Now()))
	}
	for _, r := range g.owners {
		close(r.done)
	}
	return err
}

// complete waits until the group's log append is durable and then publishes the group: its
// fold position, its commit notice, the broadcast of its changesets and its answers, in this
// order (when Transact returns, listeners already have their notices). A group whose append
// failed (the WAL failed after the view committed it) is not published: its answers are
// held, with the error, until the writer has rebuilt the view from the log (healAhead).
func (m *Materializer) complete(g *group) error {
	if g.viewErr != nil {
		return m.completeViewLost(g)
	}
	var err error
	if g.pend != nil {
		if _, err = g.pend.Wait(); err != nil {
			err = fmt.Errorf("append local changesets: %w", err)
			m.failPipe(err)
		}
	}
	appendEnd := time.Now()
	if p := m.pipeFailed.Load(); p != nil {
		// This group, or one before it, holds changesets the log refused: its fold
		// position passes them. The heal resets the view.
		if err == nil {
			err = *p
		}
		if len(g.locals) == 0 && len(g.rows) > 0 {
			// Folded from the durable log only: true rows.
			m.notify.publish(Notice{Seq: m.FoldPosition(), Rows: g.rows})
		}
		for _, r := range g.owners {
			r.err = err
		}
		m.holdAnswers(g.txs)
		return err
	}
	m.setPublished(g.pos)
	lastSeq := m.store.LastSeq()
	m.met.observeCommit(g.folded, len(g.locals), g.cells, time.Since(g.start), lastSeq-min(lastSeq, g.pos))
	if g.foldTimed {
		m.met.foldLatency.Observe(time.Since(g.start).Seconds())
	}
	if len(g.rows) > 0 {
		m.notify.publish(Notice{Seq: g.pos, Rows: g.rows})
	}
	if len(g.locals) > 0 {
		m.commit.push(g.locals, traceCommitted(g.owners, g.start, g.appendStart, appendEnd))
	}
	for _, r := range g.txs {
		close(r.done)
	}
	return nil
}

// failPipe records that the log refused a group the view had committed and wakes the
// writer, which rebuilds the view (healAhead).
func (m *Materializer) failPipe(err error) {
	e := err
	if m.pipeFailed.CompareAndSwap(nil, &e) {
		m.logger.Error("the log failed to make durable changesets the view had committed; their transactions fail, and the view is rebuilt from the log", "err", err)
	}
	m.poke()
}

// holdAnswers keeps the answers of requests until healAhead has rebuilt the view.
func (m *Materializer) holdAnswers(rs []*request) {
	m.heldMu.Lock()
	m.held = append(m.held, rs...)
	m.heldMu.Unlock()
}

// answerHeld answers the requests holdAnswers kept.
func (m *Materializer) answerHeld() {
	m.heldMu.Lock()
	held := m.held
	m.held = nil
	m.heldMu.Unlock()
	for _, r := range held {
		close(r.done)
	}
}

// healAhead, once the log has refused a group the view had committed (a WAL failure after
// the view's COMMIT, see complete), rebuilds the view from the log, so that it does not
// serve rows the log does not have, and then answers the refused groups' transactions with
// their errors (writer only). The log refuses every write from then on until the node
// restarts; reads go on, from the rebuilt view.
func (m *Materializer) healAhead(ctx context.Context) {
	p := m.pipeFailed.Load()
	if p == nil {
		return
	}
	m.drainPipe()
	m.met.viewAheadRebuilds.WithLabelValues("running").Inc()
	m.logger.Warn("rebuilding the view from the log: it holds changesets the log failed to make durable", "err", *p)
	start := time.Now()
	if err := m.rebuildLive(ctx, nil); err != nil {
		m.logger.Error("rebuilding the view from the log failed; it may hold rows of failed transactions until the node restarts (the start rebuilds it)", "err", err)
	} else {
		m.logger.Info("view rebuilt from the log", "took", time.Since(start).Round(time.Millisecond))
	}
	m.pipeFailed.Store(nil)
	m.answerHeld()
}

// readBacklog reads up to FoldBatch changesets after the fold position. A schema changeset
// at the front folds alone, in a transaction of its own, before anything after it in the
// log: data that needs it then finds its tables and columns.
func (m *Materializer) readBacklog(ctx context.Context) (log.Seq, []*log.Changeset, error) {
	errClosed := errors.New("materializer: the view is not open (a failed rebuild?); reopen the node")
	if m.w == nil {
		return 0, nil, errClosed
	}
	pos := m.wpos
	css, err := m.store.Read(pos, m.cfg.FoldBatch)
	if err != nil {
		return 0, nil, fmt.Errorf("read log: %w", err)
	}
	for len(css) > 0 && css[0].Kind == log.KindSchema && !m.ahead[css[0].Seq] {
		// A schema fold publishes its position itself: nothing may be on its way.
		m.drainPipe()
		if m.pipeFailed.Load() != nil {
			return 0, nil, errors.New("materializer: the log refused a group; the view is rebuilt first")
		}
		if err := m.foldSchema(ctx, css[0]); err != nil {
			return 0, nil, err
		}
		if m.w == nil {
			return 0, nil, errClosed
		}
		pos = m.wpos
		if css, err = m.store.Read(pos, m.cfg.FoldBatch); err != nil {
			return 0, nil, fmt.Errorf("read log: %w", err)
		}
	}
	return pos, css, nil
}

// foldable cuts css to what one writer transaction folds: up to the next schema changeset
// (it folds alone, next time) and, beyond the first changeset, up to foldCellBudget cells.
func foldable(css []*log.Changeset, ahead map[log.Seq]bool) []*log.Changeset {
	cells := 0
	for i, cs := range css {
		if cs.Kind == log.KindSchema && !ahead[cs.Seq] {
			return css[:i]
		}
		if i > 0 && cells >= foldCellBudget {
			// Big changesets: commit what is folded so that local transactions and readers
			// do not wait behind one huge SQLite transaction; the rest comes next time.
			return css[:i]
		}
		cells += len(cs.Changes)
	}
	return css
}

// runLocals runs the group's local transactions, each in a savepoint so that one failing
// leaves the others intact, and returns the changesets of those that changed something,
// with their requests. errGroupLost means the whole SQLite transaction must roll back.
func (m *Materializer) runLocals(ctx context.Context, w *dbconn, txs []*request, st *foldState) (locals []*log.Changeset, owners []*request, err error) {
	if len(txs) == 0 {
		return nil, nil, nil
	}
	// Capture is on for the group's transactions and off again on every way out, before a
	// rollback or a fold. Each transaction takes its own events (runLocal).
	m.cap.on = true
	defer func() { m.cap.on = false }()
	// The transactions' clocks are buffered and written once, after the last of them
	// (writeBuf); a group that fails drops them.
	defer func() {
		if err != nil {
			m.wb.reset()
		}
	}()
	base := m.store.NextLocalVersion()
	closing := watchClose(m.run)
	defer closing.end()
	for _, r := range txs {
		if r.state.Load() != reqTaken && !r.state.CompareAndSwap(reqQueued, reqTaken) {
			r.err = context.Cause(r.ctx) // abandoned: nobody waits for this answer
			continue
		}
		if err := r.callerErr(); err != nil {
			r.err = fmt.Errorf("%w (the transaction waited for the writer and did not run)", err)
			continue
		}
		if inSavepoint(w, r.stmts) {
			// It runs in a savepoint: rolling that back must not undo the clocks of the
			// transactions before it.
			if err := m.flush(ctx); err != nil {
				return nil, nil, err
			}
		}
		uctx, done := ctx, func() {}
		if !r.allBounded() {
			uctx, done = r.userContext(closing)
		}
		res, cs, err := m.runLocal(ctx, uctx, r.stmts, r.checks, base+log.Version(len(locals)), st)
		done()
		if errors.Is(err, errGroupLost) {
			r.err = errors.Unwrap(err)
			return nil, nil, errGroupLost
		}
		if err != nil {
			r.err = err
			continue
		}
		r.tx = res
		if cs != nil {
			r.cs = cs
			locals = append(locals, cs)
			owners = append(owners, r)
		}
	}
	if err := m.flush(ctx); err != nil {
		return nil, nil, err
	}
	return locals, owners, nil
}

// placeLocals reads the seqs the log gave the group's changesets (written, not yet synced)
// and returns the fold position past them, the seqs of those that landed after someone
// else's appends (folded next time, after those; merging is order-independent), and the
// highest seq the view now holds.
func (m *Materializer) placeLocals(p *log.Pending, locals []*log.Changeset, owners []*request, pos log.Seq) (log.Seq, []log.Seq, log.Seq, error) {
	res, err := p.Results()
	if err != nil {
		return 0, nil, 0, fmt.Errorf("append local changesets: %w", err)
	}
	var added []log.Seq
	viewSeq := pos
	for i, ar := range res {
		if !ar.New || !ar.Complete {
			return 0, nil, 0, fmt.Errorf("append local version %d: the log already held it", locals[i].Version)
		}
		locals[i].Seq = ar.Seq
		owners[i].tx.Version, owners[i].tx.Seq = locals[i].Version, ar.Seq
		viewSeq = max(viewSeq, ar.Seq)
		if ar.Seq == pos+1 {
			pos = ar.Seq
		} else {
			m.ahead[ar.Seq] = true
			added = append(added, ar.Seq)
		}
	}
	for m.ahead[pos+1] {
		delete(m.ahead, pos+1)
		pos++
	}
	return pos, added, viewSeq, nil
}

// commitAt stores the fold position, and the highest seq folded when it is beyond (a local
// changeset folded ahead of a gap: Open compares it with the log, see viewAheadError), and
// commits the writer's transaction. The local changesets of the group (appended) are
// written in the log but may not be durable yet.
func commitAt(ctx context.Context, w *dbconn, pos, viewSeq log.Seq, appended bool) error {
	if err := w.run(ctx, "UPDATE "+metaTable+" SET value = ? WHERE key = 'fold_pos'", int64(pos)); err != nil {
		return fmt.Errorf("store fold position: %w", err)
	}
	if viewSeq > pos {
		if err := w.run(ctx, "INSERT OR REPLACE INTO "+metaTable+" (key, value) VALUES ('view_seq', ?)", int64(viewSeq)); err != nil {
			return fmt.Errorf("store view seq: %w", err)
		}
	}
	if err := w.run(ctx, "COMMIT"); err != nil {
		if appended {
			// The changesets are in the log: the next iterations fold them.
			return fmt.Errorf("commit: commit view (the transaction is in the log and will be folded): %w", err)
		}
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
