package materializer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/patinadb/patina/log"
)

// ErrBeforeHorizon: a replay was asked for a point the log no longer holds exactly
// (compaction dropped changes that were visible then). The message names the oldest exact
// point.
var ErrBeforeHorizon = errors.New("replay point is older than the compaction horizon")

// ReplayOptions say how far a replay folds: exactly one of UntilSeq and UntilTS.
type ReplayOptions struct {
	// UntilSeq folds what arrived at this node up to this arrival seq: the view as it was
	// right after that seq was folded here.
	UntilSeq log.Seq
	// UntilTS folds every version committed (its origin's HLC) at or before this time,
	// wherever it came from and whenever it arrived: the fleet's state as of that instant.
	// A hybrid logical clock orders a write after everything its writer had seen, so a
	// version folded never lacks one it was written on top of.
	UntilTS log.Timestamp
	// Out is the file to write; it must not exist. Empty: a new file beside the view, whose
	// path ReplayResult gives and which the caller removes.
	Out string
	// Schema holds statements for tables the replicated schema does not name (the agent's
	// schema files); the view's own are added.
	Schema []string
}

// ReplayResult says what a replay folded.
type ReplayResult struct {
	Path       string
	Seq        log.Seq // the arrival seq the replay stopped at
	Changesets uint64  // changesets folded
	Skipped    uint64  // with UntilTS: changesets read but committed after it
	Cells      uint64
	// The compaction horizon when the replay ended (zero: nothing compacted).
	HorizonSeq log.Seq
	HorizonTS  log.Timestamp
}

// ReplayTo folds the log up to a point of its history into a new SQLite file (a view of its
// own, with clock tables, that any SQLite reader opens), on a stopped node or a running one:
// it reads the log beside the live view and never waits for or delays its writer. Exact
// inside the retention window; a point before the compaction horizon is refused with
// ErrBeforeHorizon naming the oldest exact point, and so is one that compaction passed
// while the replay ran.
func (m *Materializer) ReplayTo(ctx context.Context, opts ReplayOptions, progress func(RebuildProgress)) (ReplayResult, error) {
	var res ReplayResult
	if (opts.UntilSeq == 0) == (opts.UntilTS == 0) {
		return res, fmt.Errorf("replay: %w: give a seq or a time to replay until", log.ErrInvalid)
	}
	last := m.store.LastSeq()
	if opts.UntilSeq > last {
		return res, fmt.Errorf("replay until seq %d: %w (last seq %d)", opts.UntilSeq, log.ErrSeqBeyondLog, last)
	}
	if err := m.exact(opts); err != nil {
		return res, err
	}
	out := opts.Out
	if out == "" {
		f, err := os.CreateTemp(filepath.Dir(m.cfg.Path), "replay-*.db")
		if err != nil {
			return res, fmt.Errorf("replay: %w", err)
		}
		out = f.Name()
		f.Close()
	} else if _, err := os.Lstat(out); err == nil {
		return res, fmt.Errorf("replay: %w: %s exists", log.ErrInvalid, out)
	}
	spec := buildSpec{path: out + ".tmp", target: opts.UntilSeq}
	if opts.UntilTS != 0 {
		spec.target = last
		until := opts.UntilTS
		spec.keep = func(cs *log.Changeset) bool { return cs.TS <= until }
	}
	live, err := liveSchema(ctx, m.cfg.Path, true)
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	spec.extra = append(live, append(m.cfg.Schema, opts.Schema...)...)
	r := m.cfgCopy()
	if r.site.IsZero() {
		r.site = m.store.SiteID()
	}
	fail := func(err error) (ReplayResult, error) {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(spec.path + suffix)
		}
		if opts.Out == "" {
			os.Remove(out)
		}
		return ReplayResult{}, err
	}
	if err := r.build(ctx, spec, progress, &res); err != nil {
		return fail(fmt.Errorf("replay: %w", err))
	}
	// Compaction may have run meanwhile: what was read is exact only if the horizon is
	// still at or before the point (every change it dropped lost to one the replay read).
	if err := m.exact(opts); err != nil {
		return fail(err)
	}
	if opts.Out == "" {
		err = os.Rename(spec.path, out)
	} else if err = os.Link(spec.path, out); err == nil {
		err = os.Remove(spec.path) // linked, never replacing a file that appeared meanwhile
	}
	if err != nil {
		return fail(fmt.Errorf("replay: %w", err))
	}
	st := m.store.Stats()
	res.Path, res.HorizonSeq, res.HorizonTS = out, st.HorizonSeq, st.HorizonTS
	return res, nil
}

// exact refuses a replay point before the compaction horizon.
func (m *Materializer) exact(opts ReplayOptions) error {
	st := m.store.Stats()
	oldest := func() string {
		if st.HorizonTS == 0 {
			return fmt.Sprintf("seq %d", st.HorizonSeq)
		}
		return fmt.Sprintf("seq %d or time %s", st.HorizonSeq, st.HorizonTS)
	}
	switch {
	case opts.UntilSeq != 0 && opts.UntilSeq < st.HorizonSeq:
		return fmt.Errorf("replay until seq %d: %w; the oldest exact point is %s", opts.UntilSeq, ErrBeforeHorizon, oldest())
	case opts.UntilTS != 0 && opts.UntilTS < st.HorizonTS:
		return fmt.Errorf("replay until %s: %w; the oldest exact point is %s", opts.UntilTS, ErrBeforeHorizon, oldest())
	}
	return nil
}

// cfgCopy is a Materializer that shares m's store, config and site, for build (which makes
// its own fresh view from it and touches nothing of m's).
func (m *Materializer) cfgCopy() *Materializer {
	r := New(m.store, m.cfg)
	r.site = m.site
	return r
}

// ParseUntil reads a replay point: an integer is an arrival seq; an RFC 3339 time is a
// commit time; a duration (15m, 2h30m) is that long before now.
func ParseUntil(s string, now time.Time) (ReplayOptions, error) {
	var opts ReplayOptions
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			return opts, fmt.Errorf("%w: until %q: seqs start at 1", log.ErrInvalid, s)
		}
		opts.UntilSeq = log.Seq(n)
		return opts, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		opts.UntilTS = log.Timestamp(now.Add(-d).UnixNano())
		return opts, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.UnixNano() <= 0 {
		return opts, fmt.Errorf("%w: until %q: want an arrival seq (1234), an RFC 3339 time (2026-12-06T14:03:00Z) or a duration ago (15m)", log.ErrInvalid, s)
	}
	opts.UntilTS = log.Timestamp(t.UnixNano())
	return opts, nil
}
