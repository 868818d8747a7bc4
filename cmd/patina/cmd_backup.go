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
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/fsmode"
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
	var quiet, force bool
	c := &cobra.Command{
		Use:   "backup --out FILE [--api-addr ADDR | --data-dir DIR] [--force]",
		Short: "Write a node's log to a file: a running node over the API, or a stopped one's data dir",
		Long: `Write every complete changeset of a node's log, in arrival order, to FILE (or stdout
with --out -), in the msgpack framing of /v1/changes. The view is not needed: it is rebuilt
from the log.

Without --data-dir the node is a RUNNING agent, reached at --api-addr (with an admin token
when it has tokens): GET /v1/backup streams a consistent snapshot, the log up to its end as of
the request, while writes go on. With --data-dir the node must be STOPPED; versions held only
in part are left out (sync brings them back). An existing FILE is refused (exit 2) unless
--force: a backup never replaces another silently.

Restore with "patina restore", or post the file to a running node:
curl -X POST -H 'Content-Type: application/msgpack' --data-binary @FILE host:8080/v1/changes`,
		Example: `  patina backup --api-addr 10.0.0.5:8080 --token $ADMIN_TOKEN --out patina.backup
  patina backup --data-dir ./patina-data --out patina.backup`,
		Args: noArgs,
	}
	f := addClientFlags(c)
	c.Flags().StringVar(&dataDir, "data-dir", "", "data directory of a STOPPED node (default: back up the running node at --api-addr)")
	c.Flags().StringVar(&out, "out", "", "file to write (- for stdout); must not exist")
	c.Flags().BoolVar(&force, "force", false, "replace --out if it exists")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	c.RunE = func(c *cobra.Command, args []string) error {
		if out == "" {
			return usagef("backup: --out is required")
		}
		if _, err := os.Lstat(out); out != "-" && !force && err == nil {
			return usagef("backup: %s exists; remove it, choose another --out, or give --force", out)
		}
		if dataDir == "" {
			return m.onlineBackup(c, f, out, quiet, force)
		}
		if c.Flags().Changed("api-addr") {
			return usagef("backup: give --api-addr (a running node) or --data-dir (a stopped one), not both")
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
		w, commit, abort, err := createOutput(out, m.Stdout, force)
		if err != nil {
			return err
		}
		n, err := writeBackup(store, w)
		if err == nil {
			err = commit()
		} else {
			abort()
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

// onlineBackup streams GET /v1/backup of a running node into out, with a progress bar.
func (m *Main) onlineBackup(c *cobra.Command, f *clientFlags, out string, quiet, force bool) error {
	cl, err := m.client(c, f)
	if err != nil {
		return err
	}
	b, err := cl.Backup(c.Context())
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer b.Close()
	w, commit, abort, err := createOutput(out, m.Stdout, force)
	if err != nil {
		return err
	}
	bar := newProgressBar(m.Stderr, quiet || out == "-")
	n := 0
	var buf []byte
	for b.Next() {
		cs := b.Changeset()
		buf = append(buf[:0], 0, 0, 0, 0)
		if buf, err = log.AppendChangeset(buf, cs); err != nil {
			break
		}
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		if _, err = w.Write(buf); err != nil {
			break
		}
		n++
		bar.step(uint64(cs.Seq), uint64(b.LastSeq), "seq")
	}
	if err == nil {
		err = b.Err()
	}
	if err == nil && len(b.Cleared) > 0 {
		if buf, err = client.AppendClearedFrame(buf[:0], b.Cleared); err == nil {
			_, err = w.Write(buf)
		}
	}
	if err == nil {
		bar.step(uint64(b.LastSeq), uint64(b.LastSeq), "seq")
		err = commit()
	} else {
		abort()
	}
	bar.done()
	if err != nil {
		return fmt.Errorf("backup of %s (nothing written to %s): %w", cl, out, err)
	}
	fmt.Fprintf(m.Stderr, "backed up %d changesets of site %s (up to seq %d) from %s to %s\n", n, b.SiteID, b.LastSeq, cl, out)
	return nil
}

// createOutput opens path for writing through a temp file moved into place by commit (abort
// removes it), so a failed backup never leaves a truncated file under the final name; "-" is
// stdout. Without replace, commit links the file into place, which fails if path appeared
// meanwhile: an existing file is never overwritten, even by a race with another writer.
func createOutput(path string, stdout io.Writer, replace bool) (w io.Writer, commit, abort func() error, err error) {
	if path == "-" {
		bw := bufio.NewWriter(stdout)
		return bw, bw.Flush, func() error { return nil }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, nil, nil, usagef("--out: %v", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	commit = func() error {
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
	abort = func() error {
		f.Close()
		return os.Remove(f.Name())
	}
	return bw, commit, abort, nil
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
			// Last, the versions held cleared: a restore records them (no gaps there).
			if cl := client.ClearedOf(store.Vector()); len(cl) > 0 {
				if buf, err = client.AppendClearedFrame(buf[:0], cl); err != nil {
					return n, err
				}
				_, err = w.Write(buf)
			}
			return n, err
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
	var noCheck, quiet bool
	c := &cobra.Command{
		Use:   "restore --data-dir NEWDIR --in FILE [--site-id UUID [--api-addr ADDR]]",
		Short: "Make a new data dir from a backup",
		Long: `Make a NEW data dir from a file written by "patina backup". With --site-id (the
backed-up node's, which "patina backup" prints) the restored node continues as that site:
its next local write takes the next version. Without it the node gets a new site id and the
backed-up site's changesets are foreign data to it. The view is built from the log when the
agent starts on the dir: give it the same --schema as the backed-up node. Started with the
cluster's --bootstrap, the restored node catches up what was written after the backup by sync.

Identity safety: two live nodes with one site id would both write its next versions, each
with other changes, and the cluster could never agree. So with --site-id, restore first asks
a live node of the cluster (--api-addr, with a token that may read members) whether that site
is alive or suspect, and refuses if it is, or if no node can be asked (--no-cluster-check
skips the question when you know the whole cluster, that site included, is down).`,
		Example: `  patina restore --data-dir ./restored --in patina.backup
  patina restore --data-dir ./restored --in patina.backup --site-id 0b5e55ed-0000-4000-8000-000000000001 --api-addr 10.0.0.6:8080`,
		Args: noArgs,
	}
	f := addClientFlags(c)
	c.Flags().BoolVar(&noCheck, "no-cluster-check", false, "with --site-id: do not ask the cluster whether the site is alive")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
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
		var clusterHead log.Version // the cluster's newest version of the restored site
		if siteID != "" {
			var err error
			if site, err = parseSiteID(siteID); err != nil {
				return usagef("--site-id %q: %v", siteID, err)
			}
			if !noCheck {
				var err error
				if clusterHead, err = m.checkSiteDown(c, f, site); err != nil {
					return err
				}
			}
		}
		var r io.Reader = m.Stdin
		var size int64
		if in != "-" {
			file, err := os.Open(in)
			if err != nil {
				return usagef("--in: %v", err)
			}
			defer file.Close()
			if st, err := file.Stat(); err == nil {
				size = st.Size()
			}
			r = file
		}
		cr := &countingReader{r: r}
		bar := newProgressBar(m.Stderr, quiet || size == 0)
		if _, err := fsmode.Dir(dataDir); err != nil {
			return err
		}
		store, err := log.Open(filepath.Join(dataDir, "log"), log.Options{SiteID: site, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		n, err := readBackup(c.Context(), store, bufio.NewReaderSize(cr, 1<<20), func() { bar.step(uint64(cr.n), uint64(size), "bytes") })
		bar.done()
		if err == nil && clusterID != "" {
			err = store.SetMeta(metaClusterID, []byte(clusterID))
		}
		if err == nil && clusterHead > 0 {
			// The versions the replaced node wrote after the backup exist in the cluster:
			// this node takes them back by sync (its log refuses versions of its own site it
			// did not write, except these) and writes after them, never over them.
			err = store.TrustOwnVersions(clusterHead)
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
func readBackup(ctx context.Context, store *log.Store, r *bufio.Reader, progress func()) (int, error) {
	var batch []*log.Changeset
	var cleared map[log.SiteID]log.RangeSet
	n := 0
	// The cleared versions (a frame after the changesets) are recorded once every changeset
	// is in: a version held cleared drops any part of it held.
	done := func() error {
		for _, site := range client.SortedSites(cleared) {
			if _, err := store.AppendCleared(ctx, site, cleared[site]); err != nil {
				return fmt.Errorf("cleared versions of %v: %w", site, err)
			}
		}
		return nil
	}
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
				if err := flush(); err != nil {
					return n, err
				}
				return n, done()
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
		if client.IsClearedFrame(b) {
			m, err := client.DecodeClearedFrame(b)
			if err != nil {
				return n, usagef("backup frame %d: %v", i, err)
			}
			if cleared == nil {
				cleared = map[log.SiteID]log.RangeSet{}
			}
			for site, rs := range m {
				all := cleared[site]
				all.AddSet(rs)
				cleared[site] = all
			}
			continue
		}
		cs, err := log.DecodeChangeset(b)
		if err != nil {
			return n, usagef("backup frame %d: %v", i, err)
		}
		batch = append(batch, cs)
		n++
		progress()
		if len(batch) == 256 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
}

// countingReader counts the bytes read through it (for restore's progress bar).
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// checkSiteDown refuses a restore as site when a live node of the cluster says that site is
// alive or suspect, or when no node can be asked (see restore's help).
// It returns the newest version of site the asked node knows.
func (m *Main) checkSiteDown(c *cobra.Command, f *clientFlags, site log.SiteID) (log.Version, error) {
	cl, err := m.client(c, f)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(c.Context(), 10*time.Second)
	defer cancel()
	members, err := cl.Members(ctx)
	if err != nil {
		return 0, usagef("restore --site-id %s: cannot ask the cluster whether that site is alive (%s: %v); give --api-addr of a live node, or --no-cluster-check if the whole cluster is down", site, cl, err)
	}
	for _, mb := range members {
		if mb.SiteID == site && (mb.State == "alive" || mb.State == "suspect") {
			return 0, usagef("restore --site-id %s: that site is %s in the cluster (member %s, api %s); two nodes with one site id would write different changes under the same versions: stop it first, or restore without --site-id to get a new one", site, mb.State, mb.Name, mb.APIAddr)
		}
	}
	st, err := cl.SyncState(ctx)
	if err != nil {
		return 0, usagef("restore --site-id %s: cannot ask %s for the cluster's versions of that site: %v", site, cl, err)
	}
	return st.Heads[site], nil
}
