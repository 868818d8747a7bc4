package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

func init() { register("", newReplayCmd) }

func newReplayCmd(m *Main) *cobra.Command {
	var dataDir, until, out string
	var schema []string
	var force, quiet bool
	c := &cobra.Command{
		Use:   "replay --until SEQ|TIME|DURATION --out FILE [--api-addr ADDR | --data-dir DIR]",
		Short: "Write the view as it was at a point of the log's history to a SQLite file",
		Long: `Fold a node's log up to a point into a new SQLite file: the view (rows and clock
tables) as it was then, to open with sqlite3 or any SQLite reader. --until is

  SEQ       an arrival seq of this node's log: the view right after that seq was folded here;
  TIME      an RFC 3339 time (2026-12-06T14:03:00Z): every version committed by then,
            wherever it was written and whenever it arrived;
  DURATION  that long ago (15m, 2h): as TIME.

A replay is exact inside the retention window (log.retention). A point older than the
compaction horizon is refused (exit 1) with the oldest exact point in the message.

Without --data-dir the node is a RUNNING agent, reached at --api-addr (with an admin token
when it has tokens): GET /v1/replay folds beside its view without stopping its writes and
sends the file. With --data-dir the node must be STOPPED. An existing FILE is refused
(exit 2) unless --force.`,
		Example: `  patina replay --until 2026-12-06T14:03:00Z --out routes-1403.db --api-addr 10.0.0.5:8080
  patina replay --until 15m --out before.db --api-addr 10.0.0.5:8080
  patina replay --until 120000 --out at-120000.db --data-dir ./patina-data`,
		Args: noArgs,
	}
	f := addClientFlags(c)
	c.Flags().StringVar(&until, "until", "", "the point: an arrival seq, an RFC 3339 time, or a duration ago")
	c.Flags().StringVar(&out, "out", "", "SQLite file to write; must not exist")
	c.Flags().StringVar(&dataDir, "data-dir", "", "data directory of a STOPPED node (default: the running node at --api-addr)")
	c.Flags().StringArrayVar(&schema, "schema", nil, "with --data-dir: schema file or folder, as given to the agent; repeatable")
	c.Flags().BoolVar(&force, "force", false, "replace --out if it exists")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	c.RunE = func(c *cobra.Command, args []string) error {
		if until == "" || out == "" {
			return usagef("replay: --until and --out are required")
		}
		if out == "-" {
			return usagef("replay: --out must be a file (SQLite needs one)")
		}
		opts, err := materializer.ParseUntil(until, time.Now())
		if err != nil {
			return usagef("replay: %v", err)
		}
		if _, err := os.Lstat(out); err == nil {
			if !force {
				return usagef("replay: %s exists; remove it, choose another --out, or give --force", out)
			}
		}
		if dataDir == "" {
			return m.onlineReplay(c, f, until, out, force)
		}
		if c.Flags().Changed("api-addr") {
			return usagef("replay: give --api-addr (a running node) or --data-dir (a stopped one), not both")
		}
		store, err := openStoppedLog(dataDir)
		if err != nil {
			return err
		}
		defer store.Close()
		stmts, err := readSchema(schema)
		if err != nil {
			return err
		}
		mat := materializer.New(store, materializer.DefaultConfig(filepath.Join(dataDir, "views.db")))
		defer mat.Close()
		opts.Schema = stmts
		tmp, err := os.MkdirTemp(filepath.Dir(out), ".patina-replay-*")
		if err != nil {
			return usagef("--out: %v", err)
		}
		defer os.RemoveAll(tmp)
		opts.Out = filepath.Join(tmp, "replay.db")
		bar := newProgressBar(m.Stderr, quiet)
		start := time.Now()
		res, err := mat.ReplayTo(c.Context(), opts, func(p materializer.RebuildProgress) {
			bar.update(p)
		})
		bar.done()
		if err != nil {
			if errors.Is(err, log.ErrSeqBeyondLog) || errors.Is(err, log.ErrInvalid) {
				return usagef("%v", err)
			}
			return err
		}
		if err := place(res.Path, out, force); err != nil {
			return err
		}
		fmt.Fprintf(m.Stderr, "replayed %s until seq %d: %d changesets, %d cells in %v into %s\n",
			dataDir, res.Seq, res.Changesets, res.Cells, time.Since(start).Round(time.Millisecond), out)
		return nil
	}
	return c
}

// place moves the file at tmp to out: without replace it links it, so that a file that
// appeared at out meanwhile is never overwritten.
func place(tmp, out string, replace bool) error {
	if replace {
		return os.Rename(tmp, out)
	}
	if err := os.Link(tmp, out); err != nil {
		if errors.Is(err, os.ErrExist) {
			return usagef("%s appeared while the replay was written; not replaced", out)
		}
		return err
	}
	return nil
}

// onlineReplay fetches GET /v1/replay of a running node into out.
func (m *Main) onlineReplay(c *cobra.Command, f *clientFlags, until, out string, force bool) error {
	cl, err := m.client(c, f)
	if err != nil {
		return err
	}
	start := time.Now()
	r, err := cl.Replay(c.Context(), until)
	if err != nil {
		if client.StatusOf(err) == http.StatusGone {
			// Not bad input: the history asked for is gone (exit 1).
			return fmt.Errorf("replay on %s: %s", cl, err.Error())
		}
		return fmt.Errorf("replay on %s: %w", cl, err)
	}
	defer r.Close()
	w, commit, abort, err := createOutput(out, m.Stdout, force)
	if err != nil {
		return err
	}
	n, err := io.Copy(w, r)
	if err == nil && r.Size >= 0 && n != r.Size {
		err = fmt.Errorf("the answer was cut after %d of %d bytes", n, r.Size)
	}
	if err == nil {
		err = commit()
	} else {
		abort()
	}
	if err != nil {
		return fmt.Errorf("replay on %s (nothing written to %s): %w", cl, out, err)
	}
	fmt.Fprintf(m.Stderr, "replayed %s until seq %d: %d changesets, %d bytes in %v into %s\n",
		cl, r.Seq, r.Changesets, n, time.Since(start).Round(time.Millisecond), out)
	return nil
}
