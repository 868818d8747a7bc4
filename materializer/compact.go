package materializer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/patinadb/patina/log"
)

// Compaction configures log compaction (Config.Compaction): the materializer judges which
// changes of the log are superseded (it holds the winners) and the log drops them
// (log.Store.Compact). The log never imports the materializer: the judge is a function of
// log's API.
type Compaction struct {
	// Retention keeps every change committed less than this long ago, and every change whose
	// winner was committed less than this long ago: tails, CDC consumers and replays see the
	// full history inside the window. 0 compacts as soon as a change is superseded.
	Retention time.Duration
	// Interval is how often the loop looks for work; 0 means 1 s. A pass runs when the log
	// grew by at least half the versions the last pass left (or by MinGrowth), so the work of
	// compaction stays proportional to the writes, and the log at most about 1.5 times what
	// it must keep.
	Interval time.Duration
	// MinGrowth is the least number of new versions worth a pass; 0 means 1024.
	MinGrowth int
	// Batch is how many versions one Pebble batch (one short turn of the log's committer and
	// of the view's writer) judges and rewrites; 0 means 256.
	Batch int
	// ReclaimBytes: after passes that removed this many encoded bytes in total, Pebble is
	// asked to compact the log's key ranges so the disk space comes back; 0 means 16 MB.
	ReclaimBytes uint64
}

// CompactLog runs one compaction pass over what the view has folded, with retention as
// the window (0: drop everything superseded). It is what the background loop runs, and what
// tests and tools call to force compaction. The pass is incremental: it judges only the
// versions the fold marked since the last pass (superseded.go), and those a pass could not
// drop yet; a full pass over every version comes first when marks were lost (the first pass
// after a start, a rebuild, or too many marks waiting for the window).
func (m *Materializer) CompactLog(ctx context.Context, retention time.Duration, batch int) (log.CompactResult, error) {
	m.sup.enable(m.store.LastSeq())
	var horizon log.Timestamp
	if retention > 0 {
		horizon = log.Timestamp(time.Now().Add(-retention).UnixNano())
	}
	opts := log.CompactOptions{Through: m.FoldPosition(), Horizon: horizon, Batch: batch, Judge: m.judge}
	// Taken before the full pass reads the log: a mark made while it runs is judged by
	// the candidate pass after it, whatever the full pass saw.
	cands, n, fullUntil := m.sup.take(horizon)
	var res log.CompactResult
	if fullUntil != 0 {
		full, err := m.store.Compact(ctx, opts)
		m.sup.retry(full.Retry)
		if err != nil {
			m.sup.putBack(cands)
			return full, err
		}
		m.sup.fullDone(fullUntil, full.Next)
		m.met.compactFull.Inc()
		res = full
	}
	opts.Candidates = cands
	inc, err := m.store.Compact(ctx, opts)
	m.met.compactWaiting.Set(float64(m.sup.held()))
	if err != nil {
		m.sup.putBack(cands)
		return res, err
	}
	m.sup.retry(inc.Retry)
	m.met.compactWaiting.Set(float64(m.sup.held()))
	m.logger.Debug("compaction candidates judged", "named", n, "judged", inc.Judged, "retry", len(inc.Retry))
	res.Scanned += inc.Scanned
	res.Judged += inc.Judged
	res.Rewritten += inc.Rewritten
	res.Cleared += inc.Cleared
	res.Dropped += inc.Dropped
	res.Bytes += inc.Bytes
	res.Retry = append(res.Retry, inc.Retry...)
	return res, nil
}

// judge answers log.Judge on the writer goroutine, which owns the tables and the write
// connection and sees exactly what the fold committed.
func (m *Materializer) judge(ctx context.Context, css []*log.Changeset) ([][]log.Dominator, error) {
	r := &request{kind: reqJudge, judge: css, done: make(chan struct{})}
	if err := m.send(ctx, r); err != nil {
		return nil, err
	}
	<-r.done
	return r.verdicts, r.err
}

// judgeNow decides, on the writer, which changes of css are superseded: a change is live
// when some record of its row's clock (a cell, the sentinel, or a sentinel R4 made from a
// column change) names its origin (site, version, ordinal); otherwise the record that beat it
// is its dominator. Anything the view did not fold as usual (refused changesets, changes
// waiting for schema, tables or columns unknown here, a row without a clock) is live: only
// what the view proves superseded is dropped.
func (m *Materializer) judgeNow(ctx context.Context, css []*log.Changeset) ([][]log.Dominator, error) {
	w := m.w
	if w == nil {
		return nil, errors.New("materializer: the view is not open")
	}
	failed := map[[2]any]bool{}
	rows, err := w.c.QueryContext(ctx, "SELECT site, version FROM "+failedTable)
	if err != nil {
		return nil, fmt.Errorf("judge: read failed changesets: %w", err)
	}
	for rows.Next() {
		var site []byte
		var ver int64
		if err := rows.Scan(&site, &ver); err != nil {
			rows.Close()
			return nil, err
		}
		failed[[2]any{string(site), ver}] = true
	}
	rows.Close()
	pending := map[log.Seq]bool{}
	rows, err = w.c.QueryContext(ctx, "SELECT seq FROM "+pendingTable)
	if err != nil {
		return nil, fmt.Errorf("judge: read pending changesets: %w", err)
	}
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return nil, err
		}
		pending[log.Seq(s)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	folded := m.FoldPosition()
	judged := func(cs *log.Changeset) bool {
		return cs.Kind == log.KindData && cs.Seq != 0 && cs.Seq <= folded && !pending[cs.Seq] && !failed[[2]any{string(cs.Site[:]), int64(cs.Version)}]
	}
	// Every row's clock first, a few statements a table (one query a row cost the
	// writer as much again as the write it judges).
	byTable := map[*table][][]byte{}
	clocks := map[string]*rowClock{}
	for _, cs := range css {
		if !judged(cs) {
			continue
		}
		for j := range cs.Changes {
			c := &cs.Changes[j]
			t := m.lookupTable(c.Table)
			if t == nil {
				continue
			}
			key := t.Name + "\x00" + string(c.PK)
			if _, ok := clocks[key]; !ok {
				clocks[key] = nil
				byTable[t] = append(byTable[t], c.PK)
			}
		}
	}
	for t, pks := range byTable {
		if err := m.loadClocks(ctx, t, pks, clocks); err != nil {
			return nil, fmt.Errorf("judge: %w", err)
		}
	}
	out := make([][]log.Dominator, len(css))
	for i, cs := range css {
		v := make([]log.Dominator, len(cs.Changes))
		out[i] = v
		if !judged(cs) {
			continue
		}
		for j := range cs.Changes {
			c := &cs.Changes[j]
			t := m.lookupTable(c.Table)
			if t == nil {
				continue
			}
			ord := -1
			if !c.IsSentinel() {
				o, ok := t.ordOf(c.CID)
				if !ok {
					continue
				}
				ord = o
			}
			rc := clocks[t.Name+"\x00"+string(c.PK)]
			if rc == nil {
				continue
			}
			v[j] = dominator(rc, cs, c, ord)
		}
	}
	return out, nil
}

// loadClocks reads the clocks of the rows pks of t into clocks (by table name, NUL, pk;
// rows without a clock are left nil), with statements of 64, 16, 4 and 1 keys.
func (m *Materializer) loadClocks(ctx context.Context, t *table, pks [][]byte, clocks map[string]*rowClock) error {
	for _, pk := range pks {
		if m.wb.pendingKey(t, pk) {
			// An earlier transaction of the group buffered this row's clock: write the
			// buffer first (scanClocks reads the table).
			if err := m.flush(ctx); err != nil {
				return err
			}
			break
		}
	}
	return m.scanClocks(ctx, t, pks, make([]any, 0, 64), func(pk, raw []byte) error {
		var rc rowClock
		if err := decodeClock(raw, &rc); err != nil {
			return fmt.Errorf("clock of %s %v: %w", t.Name, log.PK(pk), err)
		}
		clocks[t.Name+"\x00"+string(pk)] = &rc
		return nil
	})
}

// scanClocks reads the clock rows of t's rows pks with statements of 64, 16, 4 and 1 keys
// and calls fn with each row's pk and encoded clock (valid during the call only); rows
// without a clock are not met, and those the clock filter knows have none are not read.
// args is scratch for the statements' arguments. Nothing may be buffered for pks (callers
// flush first).
func (m *Materializer) scanClocks(ctx context.Context, t *table, pks [][]byte, args []any, fn func(pk, raw []byte) error) error {
	pks = m.mayHaveClocks(ctx, t, pks)
	for i := 0; i < len(pks); {
		size := 64
		for size > len(pks)-i {
			size /= 4
		}
		s, err := m.w.stmt(ctx, t.clockGetN(size))
		if err != nil {
			return err
		}
		args = args[:0]
		for _, pk := range pks[i : i+size] {
			args = append(args, pk)
		}
		i += size
		rows, err := s.QueryContext(ctx, args...)
		clear(args)
		if err != nil {
			return fmt.Errorf("read clocks of %s: %w", t.Name, err)
		}
		for rows.Next() {
			var pk, raw sql.RawBytes
			if err := rows.Scan(&pk, &raw); err != nil {
				rows.Close()
				return fmt.Errorf("read clocks of %s: %w", t.Name, err)
			}
			if err := fn(pk, raw); err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read clocks of %s: %w", t.Name, err)
		}
	}
	return nil
}

// clockGetN is the query of n rows' clocks.
func (t *table) clockGetN(n int) string {
	return "SELECT pk, clock FROM " + t.clock + " WHERE pk IN (" + placeholders(n) + ")"
}

// names reports whether rec records change ordinal of cs.
func names(rec *cellClock, cs *log.Changeset, seq uint64) bool {
	return rec.Present && rec.Site == cs.Site && rec.Version == cs.Version && rec.Seq == seq
}

// dominator is judgeNow for one change c of cs (ord: its column's clock ordinal, -1 for the
// sentinel) against its row's clock.
func dominator(rc *rowClock, cs *log.Changeset, c *log.Change, ord int) log.Dominator {
	if names(&rc.Sentinel, cs, c.Ord) {
		return log.Dominator{}
	}
	for k := range rc.Cols {
		if names(&rc.Cols[k], cs, c.Ord) {
			return log.Dominator{}
		}
	}
	cl := rc.CL()
	switch {
	case c.CL < cl && rc.Sentinel.Present:
		// A higher causal length (a delete, a resurrection) beat it: the sentinel that
		// carries it is the dominator.
		return log.Dominator{Site: rc.Sentinel.Site, Version: rc.Sentinel.Version}
	case c.CL == cl && ord >= 0 && ord < len(rc.Cols) && rc.Cols[ord].Present:
		return log.Dominator{Site: rc.Cols[ord].Site, Version: rc.Cols[ord].Version}
	case c.CL == cl && ord < 0 && rc.Sentinel.Present:
		return log.Dominator{Site: rc.Sentinel.Site, Version: rc.Sentinel.Version}
	}
	return log.Dominator{} // unsure: keep
}

// compactLoop runs compaction in the background (Config.Compaction).
func (m *Materializer) compactLoop(cfg Compaction) {
	defer m.wg.Done()
	interval := cfg.Interval
	if interval <= 0 {
		interval = time.Second
	}
	minGrowth := cfg.MinGrowth
	if minGrowth <= 0 {
		minGrowth = 1024
	}
	reclaim := cfg.ReclaimBytes
	if reclaim == 0 {
		reclaim = 16 << 20
	}
	var lastThrough, lastSeen log.Seq
	var kept uint64 // versions left with data after the last pass
	var freed uint64
	lastPass := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.run.Done():
			return
		case <-t.C:
		}
		pos := m.FoldPosition()
		grown := uint64(pos - min(pos, lastThrough))
		m.met.compactLag.Set(float64(grown))
		idle := pos == lastSeen // no write since the last tick: a burst ended
		lastSeen = pos
		// Also when writes pause, and now and then whatever the growth: the retention window
		// moves with the clock.
		if grown == 0 || grown < max(uint64(minGrowth), kept/2) && !idle && time.Since(lastPass) < 60*interval {
			continue
		}
		start := time.Now()
		res, err := m.CompactLog(m.run, cfg.Retention, cfg.Batch)
		lastPass = time.Now()
		if err != nil {
			if m.run.Err() == nil && !errors.Is(err, log.ErrCompactBusy) {
				m.logger.Warn("log compaction failed", "err", err)
			}
			continue
		}
		lastThrough = pos
		st := m.store.Stats()
		kept = st.Versions - st.Cleared
		m.met.compactLag.Set(float64(m.FoldPosition() - min(m.FoldPosition(), pos)))
		m.met.compactPasses.Inc()
		m.logger.Debug("log compacted", "scanned", res.Scanned, "dropped", res.Dropped, "cleared", res.Cleared,
			"rewritten", res.Rewritten, "bytes", res.Bytes, "took", time.Since(start))
		freed += res.Bytes
		if freed >= reclaim {
			freed = 0
			if err := m.store.ReclaimSpace(m.run); err != nil && m.run.Err() == nil {
				m.logger.Warn("log space reclaim failed", "err", err)
			}
		}
	}
}
