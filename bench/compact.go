package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// CompactConfig configures the log-economy workload (issue 11): one in-process node (a real
// Pebble log and SQLite view) takes a churn of single-row updates of a fixed set of rows, once
// with compaction off (retention forever, the baseline) and once with retention 0, for each
// history length; the figures are what the log and the disk keep, what a fresh node pays to
// catch up, and what a rebuild costs.
type CompactConfig struct {
	// Rows is the fixed set of rows the updates churn.
	Rows int
	// Updates are the history lengths to measure (single-row UPDATE transactions each).
	Updates []int
	// Writers is how many goroutines write at once (each its own rows).
	Writers int
	// Dir holds the nodes' data; empty means a temp dir, removed after.
	Dir string
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

// DefaultCompactConfig is the shape: 10,000 rows, 10,000 and 1,000,000 updates.
func DefaultCompactConfig() CompactConfig {
	return CompactConfig{Rows: 10_000, Updates: []int{10_000, 1_000_000}, Writers: 16}
}

// Validate reports the first problem of c.
func (c *CompactConfig) Validate() error {
	switch {
	case c.Rows < 1:
		return errors.New("bench compact: rows must be at least 1")
	case len(c.Updates) == 0:
		return errors.New("bench compact: give at least one history length")
	case slices.Min(c.Updates) < 1:
		return errors.New("bench compact: updates must be at least 1")
	case c.Writers < 1:
		return errors.New("bench compact: writers must be at least 1")
	}
	return nil
}

// CompactRun is one history with compaction off or on.
type CompactRun struct {
	Updates   int
	Compacted bool // retention 0 (false: forever, the baseline)
	// Write throughput while compaction ran in the background (or not at all).
	UpdatesSec   float64
	P50, P99     time.Duration
	LogChanges   uint64 // changes the log holds
	LogBytes     uint64 // encoded bytes of the changesets it holds
	PebbleBytes  uint64 // Pebble's own size figure (tables and WAL)
	TableBytes   int64  // Pebble's tables (*.sst): what the log keeps once its WAL is flushed
	DiskBytes    int64  // allocated blocks of the log directory (du)
	ViewBytes    int64  // views.db and its WAL
	Cleared      uint64 // versions held cleared
	CatchUp      time.Duration
	CatchUpBytes uint64 // encoded bytes the fresh node received
	Rebuild      time.Duration
}

// CompactResult holds every run, baseline first for each history length.
type CompactResult struct {
	Rows, Writers int
	Runs          []CompactRun
}

// RunCompact runs the workload.
func RunCompact(ctx context.Context, cfg CompactConfig) (CompactResult, error) {
	res := CompactResult{Rows: cfg.Rows, Writers: cfg.Writers}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	logf := quiet(cfg.Logf)
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "patina-bench-compact-*")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	for _, updates := range cfg.Updates {
		for _, compact := range []bool{false, true} {
			run, err := compactRun(ctx, cfg, filepath.Join(dir, fmt.Sprintf("u%d-c%v", updates, compact)), updates, compact, logf)
			if err != nil {
				return res, err
			}
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

const compactSchema = "CREATE TABLE churn (id INTEGER PRIMARY KEY NOT NULL, v INTEGER)"

// compactNode is a log and a view in dir.
type compactNode struct {
	store  *log.Store
	mat    *materializer.Materializer
	closed bool
}

func openCompactNode(ctx context.Context, dir string, site log.SiteID, comp *materializer.Compaction) (*compactNode, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	st, err := log.Open(filepath.Join(dir, "log"), log.Options{SiteID: site})
	if err != nil {
		return nil, err
	}
	mcfg := materializer.DefaultConfig(filepath.Join(dir, "views.db"))
	mcfg.Schema = []string{compactSchema}
	mcfg.Compaction = comp
	m := materializer.New(st, mcfg)
	if err := m.Open(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return &compactNode{store: st, mat: m}, nil
}

func (n *compactNode) close() error {
	if n.closed {
		return nil
	}
	n.closed = true
	return errors.Join(n.mat.Close(), n.store.Close())
}

func compactRun(ctx context.Context, cfg CompactConfig, dir string, updates int, compact bool, logf func(string, ...any)) (CompactRun, error) {
	run := CompactRun{Updates: updates, Compacted: compact}
	var comp *materializer.Compaction
	label := "retention forever (compaction off)"
	if compact {
		comp = &materializer.Compaction{Retention: 0}
		label = "retention 0s"
	}
	n, err := openCompactNode(ctx, filepath.Join(dir, "a"), log.SiteID{15: 1}, comp)
	if err != nil {
		return run, err
	}
	defer n.close() // idempotent
	for i := 0; i < cfg.Rows; i += 500 {
		stmts := make([]materializer.Statement, 0, 500)
		for id := i + 1; id <= min(i+500, cfg.Rows); id++ {
			stmts = append(stmts, materializer.Statement{SQL: "INSERT INTO churn (id, v) VALUES (?, 0)", Params: []log.Value{log.Integer(int64(id))}})
		}
		if _, err := n.mat.Transact(ctx, stmts); err != nil {
			return run, err
		}
	}
	logf("%d updates, %s: writing", updates, label)
	lat := make([][]time.Duration, cfg.Writers)
	errs := make([]error, cfg.Writers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < updates; i += cfg.Writers {
				t0 := time.Now()
				if _, err := n.mat.Transact(ctx, []materializer.Statement{{SQL: "UPDATE churn SET v = ? WHERE id = ?",
					Params: []log.Value{log.Integer(int64(i)), log.Integer(int64(1 + i%cfg.Rows))}}}); err != nil {
					errs[w] = err
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return run, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	run.UpdatesSec = float64(updates) / el.Seconds()
	run.P50, run.P99 = all[len(all)/2], all[int(0.99*float64(len(all)-1))]
	if compact {
		// What the background loop reaches at its next pass.
		if err := compactNow(ctx, n.mat); err != nil {
			return run, err
		}
	}
	// Both logs flushed and compacted by Pebble, so that their tables compare (the
	// compacted log's space comes back; the other's is only flushed and compressed).
	if err := n.store.ReclaimSpace(ctx); err != nil {
		return run, err
	}
	st := n.store.Stats()
	run.LogChanges, run.LogBytes, run.PebbleBytes, run.Cleared = st.Changes, st.Bytes, st.DiskBytes, st.Cleared
	want, err := queryAll(ctx, n.mat, "SELECT id, v FROM churn ORDER BY id")
	if err != nil {
		return run, err
	}
	// A graceful stop, then the files: Pebble deletes obsolete tables and logs on its own
	// schedule while open, so the figures of a stopped node are the ones that compare.
	if err := n.close(); err != nil {
		return run, err
	}
	run.DiskBytes, run.TableBytes = duBytes(filepath.Join(dir, "a", "log"))
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(filepath.Join(dir, "a", "views.db"+suffix)); err == nil {
			run.ViewBytes += fi.Size()
		}
	}
	logf("%d updates, %s: %.0f updates/s; log %d bytes encoded, %d of tables, %d du; rebuilding", updates, label, run.UpdatesSec, run.LogBytes, run.TableBytes, run.DiskBytes)
	// What "patina rebuild" does on the stopped node.
	src, err := log.Open(filepath.Join(dir, "a", "log"), log.Options{ReadOnly: true})
	if err != nil {
		return run, err
	}
	defer src.Close()
	mcfg := materializer.DefaultConfig(filepath.Join(dir, "a", "views.db"))
	mcfg.Schema = []string{compactSchema}
	t0 := time.Now()
	if err := materializer.New(src, mcfg).Rebuild(ctx, nil); err != nil {
		return run, fmt.Errorf("rebuild: %w", err)
	}
	run.Rebuild = time.Since(t0)
	// Catch-up of a fresh node: what sync sends it, cleared versions as ranges and the rest
	// as changesets in arrival order, folded.
	fresh, err := openCompactNode(ctx, filepath.Join(dir, "fresh"), log.SiteID{15: 2}, nil)
	if err != nil {
		return run, err
	}
	defer fresh.close()
	logf("%d updates, %s: a fresh node catches up", updates, label)
	t0 = time.Now()
	for site, sv := range src.Vector().Sites {
		if len(sv.Cleared) > 0 {
			if _, err := fresh.store.AppendCleared(ctx, site, sv.Cleared); err != nil {
				return run, err
			}
		}
	}
	var after log.Seq
	for {
		css, err := src.Read(after, 1024)
		if err != nil {
			return run, err
		}
		if len(css) == 0 {
			break
		}
		after = css[len(css)-1].Seq
		for _, cs := range css {
			b, err := log.AppendChangeset(nil, cs)
			if err != nil {
				return run, err
			}
			run.CatchUpBytes += uint64(len(b))
			cs.Seq = 0
		}
		if _, err := fresh.mat.Apply(ctx, css); err != nil {
			return run, err
		}
	}
	run.CatchUp = time.Since(t0)
	// The fresh node must hold what the source holds: the figure is of a real catch-up.
	// (The fresh node's own site holds its schema changeset.)
	have := fresh.store.Vector()
	for site, sv := range src.Vector().Sites {
		if got := have.Sites[site]; got == nil || !slices.Equal(got.Versions, sv.Versions) || !slices.Equal(got.Cleared, sv.Cleared) {
			return run, fmt.Errorf("%d updates, %s: the fresh node holds other versions of %v than its source", updates, label, site)
		}
	}
	got, err := queryAll(ctx, fresh.mat, "SELECT id, v FROM churn ORDER BY id")
	if err != nil {
		return run, err
	}
	if got != want {
		return run, fmt.Errorf("%d updates, %s: the fresh node's rows differ", updates, label)
	}
	return run, nil
}

// compactNow runs one compaction pass through everything folded. The background loop may be
// in a pass of its own (log.ErrCompactBusy, one pass at a time): wait for it to end and run
// ours after it, so the figures are of a log compacted through its last write.
func compactNow(ctx context.Context, m *materializer.Materializer) error {
	return retryBusy(ctx, func() error {
		_, err := m.CompactLog(ctx, 0, 0)
		return err
	})
}

// retryBusy calls pass until it returns anything but log.ErrCompactBusy, backing off up to a
// second between calls.
func retryBusy(ctx context.Context, pass func() error) error {
	backoff := 10 * time.Millisecond
	for {
		err := pass()
		if !errors.Is(err, log.ErrCompactBusy) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// queryAll renders every row of q.
func queryAll(ctx context.Context, m *materializer.Materializer, q string) (string, error) {
	rows, err := m.Query(ctx, materializer.Statement{SQL: q})
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		fmt.Fprintln(&b, rows.Values())
	}
	return b.String(), rows.Err()
}

// duBytes is the allocated size of the files under dir (du's figure), and the size of its
// Pebble tables.
func duBytes(dir string) (total, tables int64) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
			if strings.HasSuffix(path, ".sst") {
				tables += fi.Size()
			}
		}
		return nil
	})
	return total, tables
}

// String prints one line per run and, per history length, the ratios to the baseline, then
// the catch-up of the longest history against the shortest (the goal: within 1.5x).
func (r CompactResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows, %d writers of single-row updates; in-process node (Pebble log + SQLite view)\n", r.Rows, r.Writers)
	fmt.Fprintf(&b, "%-9s %-9s %9s %9s %9s %11s %11s %11s %11s %10s %9s %10s %10s\n",
		"updates", "retention", "upd/s", "p50", "p99", "log bytes", "tables", "pebble", "du", "views.db", "cleared", "catch-up", "rebuild")
	for _, x := range r.Runs {
		ret := "forever"
		if x.Compacted {
			ret = "0s"
		}
		fmt.Fprintf(&b, "%-9d %-9s %9.0f %9s %9s %11d %11d %11d %11d %10d %9d %10s %10s\n",
			x.Updates, ret, x.UpdatesSec, ms(x.P50), ms(x.P99), x.LogBytes, x.TableBytes, x.PebbleBytes, x.DiskBytes, x.ViewBytes, x.Cleared,
			ms(x.CatchUp), ms(x.Rebuild))
	}
	var comp []CompactRun
	for i := 0; i+1 < len(r.Runs); i += 2 {
		off, on := r.Runs[i], r.Runs[i+1]
		comp = append(comp, on)
		fmt.Fprintf(&b, "%d updates, retention 0s / forever: throughput %.2fx, log bytes %.3fx, tables %.3fx, pebble %.3fx, du %.3fx, catch-up %.3fx, rebuild %.3fx\n",
			on.Updates, ratio(on.UpdatesSec, off.UpdatesSec), ratio(float64(on.LogBytes), float64(off.LogBytes)), ratio(float64(on.TableBytes), float64(off.TableBytes)),
			ratio(float64(on.PebbleBytes), float64(off.PebbleBytes)), ratio(float64(on.DiskBytes), float64(off.DiskBytes)),
			ratio(float64(on.CatchUp), float64(off.CatchUp)), ratio(float64(on.Rebuild), float64(off.Rebuild)))
	}
	if len(comp) > 1 {
		short, long := comp[0], comp[len(comp)-1]
		fmt.Fprintf(&b, "retention 0s, %d vs %d updates: catch-up %.2fx (goal <= 1.5x), log bytes %.2fx, rebuild %.2fx",
			long.Updates, short.Updates, ratio(float64(long.CatchUp), float64(short.CatchUp)),
			ratio(float64(long.LogBytes), float64(short.LogBytes)), ratio(float64(long.Rebuild), float64(short.Rebuild)))
	}
	return strings.TrimRight(b.String(), "\n")
}
