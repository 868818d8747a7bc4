package main

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/log"
)

func init() { register("log", newLogInspectCmd) }

func newLogInspectCmd(m *Main) *cobra.Command {
	var (
		dataDir          string
		changesets, only bool
		check            bool
		site             string
		from, to         uint64
		limit            int
	)
	c := &cobra.Command{
		Use:   "inspect --data-dir DIR",
		Short: "Print what a stopped node's log holds",
		Long: `Print what the log of a STOPPED node holds: its metadata (site id, last seq, counts,
bytes), its version vector per site (head, versions held, gaps, partially held versions) and,
with --changesets, the changesets in arrival order as JSON lines (the form of GET
/v1/changes). --check verifies the log against itself and exits 1 if it finds a problem.
The log is opened read-only; nothing is changed.`,
		Example: `  patina log inspect --data-dir ./patina-data
  patina log inspect --data-dir ./patina-data --changesets-only --from 100 --limit 10
  patina log inspect --data-dir ./patina-data --check`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.StringVar(&dataDir, "data-dir", "./patina-data", "data directory of the stopped node")
	fs.BoolVar(&changesets, "changesets", false, "print the changesets as JSON lines after the summary")
	fs.BoolVar(&only, "changesets-only", false, "print only the changesets, as JSON lines")
	fs.BoolVar(&check, "check", false, "verify the log against itself")
	fs.StringVar(&site, "site", "", "only this site's changesets (UUID)")
	fs.Uint64Var(&from, "from", 0, "first arrival seq to print (0: the first)")
	fs.Uint64Var(&to, "to", 0, "last arrival seq to print (0: the last)")
	fs.IntVar(&limit, "limit", 0, "print at most this many changesets (0: all)")
	c.RunE = func(c *cobra.Command, args []string) error {
		opt := log.InspectOptions{
			Changesets: changesets, ChangesetsOnly: only, Check: check,
			FromSeq: log.Seq(from), ToSeq: log.Seq(to), Limit: limit,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		if site != "" {
			id, err := parseSiteID(site)
			if err != nil {
				return usagef("--site %q: %v", site, err)
			}
			opt.Site = id
		}
		if limit < 0 {
			return usagef("--limit %d: want >= 0", limit)
		}
		dir := filepath.Join(dataDir, "log")
		if !isDir(dir) {
			return usagef("%s is not a Patina data dir (no log/ in it)", dataDir)
		}
		if err := log.Inspect(dir, m.Stdout, opt); err != nil {
			return fmt.Errorf("log inspect: %w", err)
		}
		return nil
	}
	return c
}
