package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/log"
)

func init() {
	register("", newBackupCmd)
	register("", newRestoreCmd)
}

// A backup file is the changeset stream in the msgpack framing of GET/POST /v1/changes (a
// 4-byte big-endian length, then log.EncodeChangeset bytes), in arrival order: the log is the
// source of truth, and the same file can be posted to a running node's /v1/changes.

func newBackupCmd(m *Main) *cobra.Command {
	var dataDir, out string
	var force bool
	c := &cobra.Command{
		Use:   "backup --data-dir DIR --out FILE [--force]",
		Short: "Write a stopped node's log to a file",
		Long: `Write every complete changeset of a STOPPED node's log, in arrival order, to FILE (or
stdout with --out -), in the msgpack framing of /v1/changes. The view is not needed: it is
rebuilt from the log. Versions held only in part are left out (sync brings them back).
An existing FILE is refused (exit 2) unless --force: a backup never replaces another silently.
Restore with "patina restore", or post the file to a running node:
curl -X POST -H 'Content-Type: application/msgpack' --data-binary @FILE host:8080/v1/changes`,
		Example: `  patina backup --data-dir ./patina-data --out patina.backup`,
		Args:    noArgs,
	}
	c.Flags().StringVar(&dataDir, "data-dir", "./patina-data", "data directory of the stopped node")
	c.Flags().StringVar(&out, "out", "", "file to write (- for stdout); must not exist")
	c.Flags().BoolVar(&force, "force", false, "replace --out if it exists")
	c.RunE = func(c *cobra.Command, args []string) error {
		if out == "" {
			return usagef("backup: --out is required")
		}
		if _, err := os.Lstat(out); out != "-" && !force && err == nil {
			return usagef("backup: %s exists; remove it, choose another --out, or give --force", out)
		}
		dir := filepath.Join(dataDir, "log")
		if !isDir(dir) {
			return usagef("%s is not a Patina data dir (no log/ in it)", dataDir)
		}
		store, err := log.Open(dir, log.Options{ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return fmt.Errorf("open %s (is an agent running on it?): %w", dir, err)
		}
		defer store.Close()
		w, commit, err := createOutput(out, m.Stdout, force)
		if err != nil {
			return err
		}
		n, err := writeBackup(store, w)
		if err == nil {
			err = commit()
		}
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		cluster, _ := store.Meta(metaClusterID)
		fmt.Fprintf(m.Stderr, "backed up %d changesets of site %s (cluster %q) to %s\n", n, store.SiteID(), cluster, out)
		return nil
	}
	return c
}

// createOutput opens path for writing through a temp file moved into place by commit, so a
// failed backup never leaves a truncated file under the final name; "-" is stdout. Without
// replace, commit links the file into place, which fails if path appeared meanwhile: an
// existing file is never overwritten, even by a race with another writer.
func createOutput(path string, stdout io.Writer, replace bool) (io.Writer, func() error, error) {
	if path == "-" {
		bw := bufio.NewWriter(stdout)
		return bw, bw.Flush, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, nil, usagef("--out: %v", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	commit := func() error {
		err := errors.Join(bw.Flush(), f.Sync(), f.Close())
		switch {
		case err != nil:
		case replace:
			err = os.Rename(f.Name(), path)
		default:
			if err = os.Link(f.Name(), path); errors.Is(err, os.ErrExist) {
				err = usagef("%s appeared while the backup was written; not replaced", path)
			}
		}
		if err != nil || !replace {
			os.Remove(f.Name())
		}
		return err
	}
	return bw, commit, nil
}

func writeBackup(store *log.Store, w io.Writer) (int, error) {
	var after log.Seq
	n := 0
	var buf []byte
	for {
		batch, err := store.Read(after, 256)
		if err != nil {
			return n, err
		}
		if len(batch) == 0 {
			return n, nil
		}
		for _, cs := range batch {
			buf = append(buf[:0], 0, 0, 0, 0)
			if buf, err = log.AppendChangeset(buf, cs); err != nil {
				return n, err
			}
			binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
			if _, err := w.Write(buf); err != nil {
				return n, err
			}
			after = cs.Seq
			n++
		}
	}
}

func newRestoreCmd(m *Main) *cobra.Command {
	var dataDir, in, siteID, clusterID string
	c := &cobra.Command{
		Use:   "restore --data-dir NEWDIR --in FILE [--site-id UUID]",
		Short: "Make a new data dir from a backup",
		Long: `Make a NEW data dir from a file written by "patina backup". With --site-id (the
backed-up node's, which "patina backup" prints) the restored node continues as that site:
its next local write takes the next version. Without it the node gets a new site id and the
backed-up site's changesets are foreign data to it. The view is built from the log when the
agent starts on the dir: give it the same --schema as the backed-up node.`,
		Example: `  patina restore --data-dir ./restored --in patina.backup --site-id 0b5e55ed-0000-4000-8000-000000000001`,
		Args:    noArgs,
	}
	c.Flags().StringVar(&dataDir, "data-dir", "", "the new data directory (must not exist or be empty)")
	c.Flags().StringVar(&in, "in", "", "backup file (- for stdin)")
	c.Flags().StringVar(&siteID, "site-id", "", "site id of the restored node")
	c.Flags().StringVar(&clusterID, "cluster-id", "", "cluster id to pin the new data dir to")
	c.RunE = func(c *cobra.Command, args []string) error {
		if dataDir == "" || in == "" {
			return usagef("restore: --data-dir and --in are required")
		}
		if ents, err := os.ReadDir(dataDir); err == nil && len(ents) > 0 {
			return usagef("restore: %s is not empty; restore makes a new data dir", dataDir)
		}
		var site log.SiteID
		if siteID != "" {
			var err error
			if site, err = parseSiteID(siteID); err != nil {
				return usagef("--site-id %q: %v", siteID, err)
			}
		}
		var r io.Reader = m.Stdin
		if in != "-" {
			f, err := os.Open(in)
			if err != nil {
				return usagef("--in: %v", err)
			}
			defer f.Close()
			r = f
		}
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return err
		}
		store, err := log.Open(filepath.Join(dataDir, "log"), log.Options{SiteID: site, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		n, err := readBackup(c.Context(), store, bufio.NewReaderSize(r, 1<<20))
		if err == nil && clusterID != "" {
			err = store.SetMeta(metaClusterID, []byte(clusterID))
		}
		if cerr := store.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("restore (the new data dir %s is incomplete; remove it): %w", dataDir, err)
		}
		fmt.Fprintf(m.Stderr, "restored %d changesets into %s (site %s)\n", n, dataDir, store.SiteID())
		return nil
	}
	return c
}

// readBackup appends the frames of r to store in batches; a bad frame is bad input.
func readBackup(ctx context.Context, store *log.Store, r *bufio.Reader) (int, error) {
	var batch []*log.Changeset
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := store.Append(ctx, batch...); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	for i := 0; ; i++ {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return n, flush()
			}
			return n, usagef("backup frame %d: truncated length", i)
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if size > 256<<20 {
			return n, usagef("backup frame %d: length %d is not plausible", i, size)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return n, usagef("backup frame %d: truncated (want %d bytes)", i, size)
		}
		cs, err := log.DecodeChangeset(b)
		if err != nil {
			return n, usagef("backup frame %d: %v", i, err)
		}
		batch = append(batch, cs)
		n++
		if len(batch) == 256 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
}
