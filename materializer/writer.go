package materializer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/patinadb/patina/log"
)

type reqKind uint8

const (
	reqTx reqKind = iota
	reqMigrate
	reqReplay
	reqRebuild
	reqJudge
)

// request is one unit of work queued to the writer loop.
type request struct {
	// ctx is the caller's: its end (deadline, client gone) interrupts the transaction's
	// statements, and a transaction whose ctx ended while it waited in the queue is not run.
	ctx   context.Context
	state atomic.Int32 // reqQueued, reqTaken or reqAbandoned (transactions only)
	kind  reqKind
	stmts []Statement
	// checks[i]: what checkWrite learnt of stmts[i]: whether SQLite's row count is its own
	// (DML; the others affect 0 rows), and whether it may run unwatched (bounded).
	checks   []writeCheck
	schema   []string
	seq      log.Seq
	progress func(RebuildProgress)
	judge    []*log.Changeset
	verdicts [][]log.Dominator

	tx      TxResult
	migrate MigrateResult
	cs      *log.Changeset // the committed local changeset, for OnCommit
	err     error
	// retry: the writer transaction was rolled back under this request through no fault of
	// its own (another statement of its group was interrupted); it runs again, unanswered.
	retry bool
	done  chan struct{}
}

// States of a queued transaction: the writer takes it to run it, or its caller abandons it
// when its context ends first; whichever comes first wins, so the answer is always true.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// failLogEvery spaces the writer's lines about a failing iteration (a full disk fails
// every retry, 100 ms apart); patina_materializer_writer_failures_total counts them all.
const failLogEvery = 10 * time.Second

// errGroupLost: an interrupted statement made SQLite roll back the whole writer transaction,
// not just its own savepoint (SQLite does that for an interrupted write statement), so the
// other transactions and the folds of the group must run again.
var errGroupLost = errors.New("materializer: writer transaction rolled back by an interrupted statement")

// writerLoop owns the write connection: it folds what the log holds beyond the fold position
// and runs queued local transactions, several per SQLite commit and log sync.
func (m *Materializer) writerLoop() {
	defer m.wg.Done()
	ctx := m.run
	// Work already taken runs to its end on Close: SQLite statements are not interrupted
	// halfway, and every taken request gets a true answer.
	work := context.WithoutCancel(ctx)
	defer func() {
		// Every group handed to the completer is answered before the writer ends.
		m.drainPipe()
		m.answerHeld()
		close(m.pipe)
	}()
	var batch []*request
	lastGroup := 0 // transactions in the last group built
	var failLogged time.Time
	failQuiet := 0
	for {
		batch = batch[:0]
		m.healAhead(work)
		if m.store.LastSeq() <= m.wpos {
			select {
			case <-ctx.Done():
				m.failQueued()
				return
			case r := <-m.reqs:
				batch = append(batch, r)
			case <-m.wake:
				if m.store.LastSeq() <= m.wpos {
					continue // a stale wake (our own local appends wake us too), or a heal to do
				}
				backlog := m.store.LastSeq() - m.wpos
				if d := m.cfg.FoldDelay; d > 0 && uint64(backlog) < uint64(m.cfg.FoldBatch) {
					// A short wait lets concurrent appends join this fold transaction.
					t := time.NewTimer(d)
					select {
					case r := <-m.reqs:
						batch = append(batch, r)
					case <-t.C:
					case <-ctx.Done():
					}
					t.Stop()
				}
			}
		} else if ctx.Err() != nil {
			m.failQueued()
			return
		}
	more:
		for len(batch) < m.cfg.MaxGroup {
			select {
			case r := <-m.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		m.met.queue.Set(float64(len(m.reqs)))
		// Keep arrival order between transactions and schema work: runs of transactions are
		// grouped, every other request runs on its own.
		for len(batch) > 0 || m.store.LastSeq() > m.wpos {
			// A group takes its place in the pipeline before it is built, not once
			// committed: while the groups ahead sync, requests keep queueing, and they join
			// this group instead of the one after it (fewer, bigger groups per fsync).
			m.pipeSlots <- struct{}{}
			m.met.pipeDepth.Set(float64(len(m.pipeSlots)))
			batch = m.fillGroup(ctx, batch, lastGroup)
			n := 0
			for n < len(batch) && batch[n].kind == reqTx {
				n++
			}
			var txs []*request
			if n > 0 {
				txs = batch[:n]
			}
			lastGroup = n
			err := m.iterateAsync(work, txs)
			if errors.Is(err, errGroupLost) {
				// Run the group's innocent transactions again, first, in their order.
				var again []*request
				for _, r := range txs {
					if r.retry {
						r.retry, r.tx, r.cs = false, TxResult{}, nil
						again = append(again, r)
					}
				}
				m.met.txRetried.Add(float64(len(again)))
				batch = append(again, batch[n:]...)
				continue
			}
			if err != nil {
				err = m.fault(err) // damage in the view starts its rebuild from the log
				m.met.writerFailures.Inc()
				// A persistent fault fails every try, ten a second: say it once per
				// failLogEvery, with how many tries failed unsaid in between.
				if now := time.Now(); now.Sub(failLogged) >= failLogEvery {
					m.logger.Error("writer iteration failed", "err", err, "failures_since_last_line", failQuiet)
					failLogged, failQuiet = now, 0
				} else {
					failQuiet++
				}
				// A persistent fault (disk full, I/O error) must not spin the loop: back off
				// before trying the backlog again.
				t := time.NewTimer(100 * time.Millisecond)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
			}
			batch = batch[n:]
			if len(batch) > 0 {
				r := batch[0]
				batch = batch[1:]
				// Schema work, replays and rebuilds read and move the published fold
				// position: nothing may be on its way when they start.
				m.drainPipe()
				m.healAhead(work)
				m.special(work, r)
			}
			if m.pipeFailed.Load() != nil {
				m.healAhead(work)
			}
			if ctx.Err() != nil {
				for _, r := range batch {
					r.err = ErrClosed
					close(r.done)
				}
				batch = batch[:0]
				break
			}
		}
	}
}

// fillGroup adds queued requests to batch, up to MaxGroup, for the group about to be built
// (its pipeline slot taken). While a group ahead still waits for its fsync and batch holds
// fewer transactions than the last group, it waits for more, until that group is complete:
// with a closed loop of clients, the clients of the group completed last are on their way
// back, and a group started without them would make every fsync carry fewer transactions
// (each group costs about 0.4 ms of CPU whatever its size). The wait ends at the latest when
// the group ahead completes, so the writer never idles past the fsync it overlaps.
func (m *Materializer) fillGroup(ctx context.Context, batch []*request, want int) []*request {
	want = min(want, m.cfg.MaxGroup)
	for len(batch) < m.cfg.MaxGroup {
		select {
		case r := <-m.reqs:
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 || len(batch) >= want {
		return batch
	}
	for _, r := range batch {
		if r.kind != reqTx {
			return batch // schema work waits for no one
		}
	}
	select { // a stale signal of a completion before this point
	case <-m.pipeDone:
	default:
	}
	if len(m.pipeSlots) < 2 {
		return batch // nothing ahead: build at once
	}
	for len(batch) < want {
		select {
		case r := <-m.reqs:
			batch = append(batch, r)
			if r.kind != reqTx {
				return batch
			}
		case <-m.pipeDone:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// callerErr is the cause of the end of the caller's context, or nil while it lasts.
func (r *request) callerErr() error {
	if r.ctx == nil || r.ctx.Err() == nil {
		return nil
	}
	return context.Cause(r.ctx)
}

// allBounded: every statement of the transaction may run unwatched (checkWrite), so its
// statements need no context of their own (userContext).
func (r *request) allBounded() bool {
	for _, c := range r.checks {
		if !c.bounded {
			return false
		}
	}
	return len(r.checks) == len(r.stmts)
}

// userContext is the context a transaction's own statements run under: it ends with the
// caller's (deadline, client gone) and when the materializer closes (closing), and its end
// interrupts the running statement, so that a runaway statement cannot hold the single
// writer. Call done once the statements have run.
func (r *request) userContext(closing *closeWatch) (ctx context.Context, done func()) {
	parent := r.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancelCause(parent)
	closing.watch(cancel)
	return ctx, func() { closing.watch(nil); cancel(nil) }
}

// closeWatch ends the context of the transaction running when the materializer closes:
// one context.AfterFunc on the materializer's run context per group, instead of one per
// transaction (each registers with and later leaves run's list of children, under its lock).
type closeWatch struct {
	run  context.Context
	cur  atomic.Pointer[context.CancelCauseFunc]
	stop func() bool
}

// watchClose starts watching run for a group; end stops it.
func watchClose(run context.Context) *closeWatch {
	w := &closeWatch{run: run}
	w.stop = context.AfterFunc(run, func() {
		if c := w.cur.Load(); c != nil {
			(*c)(ErrClosed)
		}
	})
	return w
}

// watch makes cancel (nil: none) the one to call when run ends, and calls it now if run
// has ended already (the AfterFunc may have looked before it was set).
func (w *closeWatch) watch(cancel context.CancelCauseFunc) {
	if cancel == nil {
		w.cur.Store(nil)
		return
	}
	w.cur.Store(&cancel)
	if w.run.Err() != nil {
		cancel(ErrClosed)
	}
}

func (w *closeWatch) end() { w.stop() }

func (m *Materializer) failQueued() {
	for {
		select {
		case r := <-m.reqs:
			r.err = ErrClosed
			close(r.done)
		default:
			return
		}
	}
}

func (m *Materializer) special(ctx context.Context, r *request) {
	switch r.kind {
	case reqMigrate:
		r.migrate, r.err = m.migrate(ctx, r.schema, nil)
	case reqReplay:
		r.err = m.replay(ctx, r.seq)
	case reqRebuild:
		r.err = m.rebuildLive(ctx, r.progress)
	case reqJudge:
		r.verdicts, r.err = m.judgeNow(ctx, r.judge)
	default:
		r.err = fmt.Errorf("materializer: unknown request %d", r.kind)
	}
	close(r.done)
}

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
	if m.ckptWake != nil {
		m.wakeCheckpointer()
	}
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

// replay lowers the fold position to after; the loop then refolds the log from there.
func (m *Materializer) replay(ctx context.Context, after log.Seq) error {
	if after > m.store.LastSeq() {
		return fmt.Errorf("replay after %d: %w", after, log.ErrSeqBeyondLog)
	}
	if _, err := m.w.exec(ctx, "UPDATE "+metaTable+" SET value = ? WHERE key = 'fold_pos'", int64(after)); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	clear(m.ahead)
	m.foldMu.Lock()
	m.foldPos, m.wpos = after, after
	m.foldMu.Unlock()
	return nil
}

// foldAll folds css in order inside the writer's open transaction, skipping those the
// writer already folded ahead. It first folds them without a savepoint each: a savepoint
// makes SQLite copy every page it touches first to a statement journal, and a batch almost
// never holds a changeset the view refuses. If one fails, restart rolls the transaction
// back and begins a new one, and foldAll folds the batch again with one savepoint per
// changeset (foldIsolated), so that only the refused one is left out. With dropRows the
// folded rows are not collected (rebuilds, which notify no one).
func (m *Materializer) foldAll(ctx context.Context, css []*log.Changeset, st *foldState, dropRows bool, restart func() error) error {
	for _, cs := range css {
		if m.ahead[cs.Seq] {
			continue
		}
		if err := m.foldChangeset(ctx, cs, st); err != nil {
			m.logger.Debug("a changeset of the batch failed; folding it again one changeset per savepoint",
				"site", cs.Site, "version", cs.Version, "seq", cs.Seq, "err", err)
			if err := restart(); err != nil {
				return err
			}
			*st = foldState{buf: st.buf, rc: st.rc}
			return m.foldEach(ctx, css, st, dropRows)
		}
		if dropRows {
			st.rows = st.rows[:0]
		}
	}
	return nil
}

// foldEach folds css one savepoint per changeset (see foldIsolated).
func (m *Materializer) foldEach(ctx context.Context, css []*log.Changeset, st *foldState, dropRows bool) error {
	for _, cs := range css {
		if m.ahead[cs.Seq] {
			continue
		}
		if err := m.foldIsolated(ctx, cs, st); err != nil {
			return fmt.Errorf("fold %v/%d: %w", cs.Site, cs.Version, err)
		}
		if dropRows {
			st.rows = st.rows[:0]
		}
	}
	return nil
}

// foldIsolated folds one changeset inside a savepoint. A changeset SQLite refuses (a value
// that breaks a NOT NULL or CHECK constraint of this node's schema, say) is rolled back
// alone, recorded in __patina_failed with the reason and logged, so that one bad changeset
// can never stall the view; it stays in the log. Only an error of the savepoint machinery
// itself is returned.
func (m *Materializer) foldIsolated(ctx context.Context, cs *log.Changeset, st *foldState) error {
	w := m.w
	if _, err := w.exec(ctx, "SAVEPOINT patina_fold"); err != nil {
		return err
	}
	rows, cells := len(st.rows), st.cells
	ferr := m.foldChangeset(ctx, cs, st)
	if ferr == nil {
		_, err := w.exec(ctx, "RELEASE patina_fold")
		return err
	}
	if _, err := w.exec(ctx, "ROLLBACK TO patina_fold"); err != nil {
		return err
	}
	if _, err := w.exec(ctx, "RELEASE patina_fold"); err != nil {
		return err
	}
	st.rows, st.cells = st.rows[:rows], cells
	m.met.failed.Inc()
	m.logger.Error("changeset refused by the view; kept in the log", "site", cs.Site, "version", cs.Version, "seq", cs.Seq, "err", ferr)
	_, err := w.exec(ctx, "INSERT OR REPLACE INTO "+failedTable+" (seq, site, version, error) VALUES (?, ?, ?, ?)",
		int64(cs.Seq), cs.Site[:], int64(cs.Version), ferr.Error())
	return err
}
