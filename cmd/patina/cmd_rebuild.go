package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

func init() { register("", newRebuildCmd) }

func newRebuildCmd(m *Main) *cobra.Command {
	var (
		dataDir string
		schema  []string
		quiet   bool
	)
	c := &cobra.Command{
		Use:   "rebuild --data-dir DIR",
		Short: "Rebuild a stopped node's view from its log",
		Long: `Fold the whole log of a STOPPED node into a fresh view beside the old one, with a
progress bar, then swap it in atomically. The log is the source of truth: the rebuilt view
holds exactly what the live one held. Use it after a damaged or deleted views.db, or to
check a view. The agent must not be running on the data dir (the log is locked).`,
		Example: `  patina rebuild --data-dir ./patina-data`,
		Args:    noArgs,
	}
	c.Flags().StringVar(&dataDir, "data-dir", "./patina-data", "data directory of the stopped node")
	c.Flags().StringArrayVar(&schema, "schema", nil, "schema file or folder, as given to the agent; repeatable")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	c.RunE = func(c *cobra.Command, args []string) error {
		store, err := openStoppedLog(dataDir)
		if err != nil {
			return err
		}
		defer store.Close()
		stmts, err := readSchema(schema)
		if err != nil {
			return err
		}
		cfg := materializer.DefaultConfig(filepath.Join(dataDir, "views.db"))
		cfg.Schema = stmts
		mat := materializer.New(store, cfg)
		defer mat.Close()
		bar := newProgressBar(m.Stderr, quiet)
		start := time.Now()
		var last materializer.RebuildProgress
		err = mat.Rebuild(c.Context(), func(p materializer.RebuildProgress) {
			last = p
			bar.update(p)
		})
		bar.done()
		if err != nil && errors.Is(err, log.ErrCorrupt) {
			// Name what is damaged, in the log's terms, rather than Pebble's error chain.
			return fmt.Errorf("rebuild: the log is damaged, the old view is left in place: %s; restore this node's log from a healthy peer (patina backup there, patina restore here) (%w)",
				strings.Join(store.DamageReport(), "; "), log.ErrCorrupt)
		}
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		el := time.Since(start)
		fmt.Fprintf(m.Stdout, "rebuilt %s: %d changesets, %d cells in %v (%.0f cells/s)\n",
			cfg.Path, last.Done, last.Cells, el.Round(time.Millisecond), float64(last.Cells)/max(el.Seconds(), 1e-9))
		return nil
	}
	return c
}

// openStoppedLog opens the log of a data dir for an offline command, with a clear error when
// the dir is not a data dir or an agent holds it.
func openStoppedLog(dataDir string) (*log.Store, error) {
	dir := filepath.Join(dataDir, "log")
	if !isDir(dir) {
		return nil, usagef("%s is not a Patina data dir (no log/ in it)", dataDir)
	}
	// Read-only: an offline command must never change the source of truth it reads.
	// The command reports damage in its own error; the store's log line would repeat it.
	store, err := log.Open(dir, log.Options{ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		if errors.Is(err, log.ErrLocked) {
			return nil, fmt.Errorf("open %s: is an agent running on it? stop it first (%w)", dir, err)
		}
		return nil, err
	}
	return store, nil
}

// progressBar draws a one-line progress bar with \r, at most ten times a second.
type progressBar struct {
	w     io.Writer
	off   bool
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer, quiet bool) *progressBar { return &progressBar{w: w, off: quiet} }

func (b *progressBar) update(p materializer.RebuildProgress) {
	if b.off || (time.Since(b.last) < 100*time.Millisecond && p.Done != p.Total) {
		return
	}
	b.last, b.drawn = time.Now(), true
	const width = 40
	frac := 1.0
	if p.Total > 0 {
		frac = float64(p.Done) / float64(p.Total)
	}
	n := int(frac * width)
	fmt.Fprintf(b.w, "\r[%s%s] %3.0f%% %d/%d changesets, %d cells", strings.Repeat("#", n), strings.Repeat(" ", width-n), frac*100, p.Done, p.Total, p.Cells)
}

// step draws done of total with a unit of its own ("seq", "bytes"); see update.
func (b *progressBar) step(done, total uint64, unit string) {
	if b.off || (time.Since(b.last) < 100*time.Millisecond && done != total) {
		return
	}
	b.last, b.drawn = time.Now(), true
	const width = 40
	frac := 1.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	n := int(frac * width)
	fmt.Fprintf(b.w, "\r[%s%s] %3.0f%% %d/%d %s", strings.Repeat("#", n), strings.Repeat(" ", width-n), frac*100, done, total, unit)
}

func (b *progressBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}
