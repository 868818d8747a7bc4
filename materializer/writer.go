package materializer

import (
	"context"
	"errors"
	"fmt"
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
// (each group has a fixed CPU cost whatever its size, BEGIN, COMMIT and the log's WAL write
// and fsync, several times a single row's: bench/RESULTS.md, issue 14 round 14). The wait ends at the latest when
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
