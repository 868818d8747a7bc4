package log

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/patinadb/patina/internal/testutil"
)

// damageBlockOf damages, in the stopped store's table file at path, the data block that a
// read of key needs, and says whether it found one: it tries each block on a copy.
func damageBlockOf(tb testing.TB, path string, key []byte) bool {
	tb.Helper()
	orig, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	tmp := filepath.Join(tb.TempDir(), "t.sst")
	reader := func(b []byte) *sstable.Reader {
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			tb.Fatal(err)
		}
		f, err := vfs.Default.Open(tmp)
		if err != nil {
			tb.Fatal(err)
		}
		rd, err := objstorageprovider.NewFileReadable(f, vfs.Default, objstorageprovider.NewReadaheadConfig(), tmp)
		if err != nil {
			tb.Fatal(err)
		}
		r, err := sstable.NewReader(context.Background(), rd, sstable.ReaderOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		return r
	}
	r := reader(orig)
	layout, err := r.Layout()
	if err != nil {
		tb.Fatal(err)
	}
	r.Close()
	for _, h := range layout.Data {
		b := slices.Clone(orig)
		for i := h.Offset; i < h.Offset+min(h.Length, 64); i++ {
			b[i] ^= 0x5a
		}
		r := reader(b)
		it, err := r.NewIter(sstable.NoTransforms, key, append(slices.Clone(key), 0), sstable.AssertNoBlobHandles)
		if err != nil {
			tb.Fatal(err)
		}
		kv := it.First()
		failed := kv == nil && it.Error() != nil
		it.Close()
		r.Close()
		if failed {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				tb.Fatal(err)
			}
			return true
		}
	}
	return false
}

// fillOwnAndTheirs appends n versions of siteB and, every third, one of this node's own
// site; it returns the peers' copies of both.
func fillOwnAndTheirs(t *testing.T, s *Store, from, to Version) (theirs, ours []*Changeset) {
	t.Helper()
	for v := from; v <= to; v++ {
		cs := makeCS(siteB, v, 10)
		theirs = append(theirs, cs)
		mustAppend(t, s, cs)
		if v%3 == 0 {
			own, _, err := s.AppendLocal(context.Background(), makeCS(siteA, Version(v/3), 3))
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(siteA, own)
			if err != nil {
				t.Fatal(err)
			}
			ours = append(ours, got)
		}
	}
	return theirs, ours
}

// Issue 12: damage in the keys read at open (the vector entries here) no longer stops the
// node: open rebuilds the vector and counters from the data, the repair re-writes the log,
// whatever the damage took comes back from peers (this node's own versions too), LastSeq
// does not go back, and the next local version is after every one this node wrote.
func TestOpenRebuildsDamagedVectorFromData(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA})
	theirs, ours := fillOwnAndTheirs(t, s, 1, 300)
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	lastBefore, ownHead := s.LastSeq(), s.NextLocalVersion()-1
	s.Close()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) != 1 {
		t.Fatalf("%d table files, want 1", len(ssts))
	}
	if !damageBlockOf(t, ssts[0], vectorKey(siteA)) {
		t.Fatal("no block holds the vector")
	}
	if _, err := Open(dir, Options{ReadOnly: true}); err == nil {
		t.Fatal("the damage does not stop a read-only open: it missed the vector")
	}

	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open with a damaged vector: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if s.SiteID() != siteA {
		t.Fatalf("site %v after the rebuild", s.SiteID())
	}
	if s.LastSeq() < lastBefore {
		t.Fatalf("LastSeq went back from %d to %d", lastBefore, s.LastSeq())
	}
	if next := s.NextLocalVersion(); next <= ownHead {
		t.Fatalf("next local version %d, but this node wrote up to %d", next, ownHead)
	}
	testutil.WaitFor(t, 30*time.Second, "the repair", func() bool { done, _, _ := s.Repairs(); return done > 0 })
	if err := s.Check(); err != nil {
		t.Fatalf("check after the rebuild and repair: %v", err)
	}
	// Peers send back what the damage took, this node's own versions included.
	var back []*Changeset
	for _, cs := range append(slices.Clone(theirs), ours...) {
		if !s.Contains(cs.Site, cs.Version) {
			back = append(back, cs)
		}
	}
	t.Logf("%d of %d versions to fetch again", len(back), len(theirs)+len(ours))
	if len(back) > 0 {
		out, err := s.Ingest(context.Background(), back...)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range out {
			if r.Refused != nil {
				t.Fatalf("%v/%d from a peer refused: %v", back[i].Site, back[i].Version, r.Refused)
			}
		}
	}
	for _, cs := range append(slices.Clone(theirs), ours...) {
		got, err := s.Get(cs.Site, cs.Version)
		if err != nil {
			t.Fatalf("%v/%d: %v", cs.Site, cs.Version, err)
		}
		if !bytes.Equal(mustEncode(t, withoutTS(got)), mustEncode(t, withoutTS(cs))) {
			t.Fatalf("%v/%d differs after the rebuild", cs.Site, cs.Version)
		}
	}
	v, _, err := s.AppendLocal(context.Background(), makeCS(siteA, 0, 2))
	if err != nil || v <= ownHead {
		t.Fatalf("a new local write got version %d (%v); this node wrote up to %d", v, err, ownHead)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("check at the end: %v", err)
	}
	s.Close()
	s = openStore(t, dir, Options{}) // and the repaired log opens as any other
	if s.NextLocalVersion() != v+1 {
		t.Fatalf("next local version %d after reopen, want %d", s.NextLocalVersion(), v+1)
	}
}

// When the blocks of both the own head and the vector entries are damaged, nothing says
// which versions this node wrote last: open refuses with ErrOwnHistoryLost and a line that
// says what to do, rather than risk writing one version number twice.
func TestOpenRefusesUnknownOwnHead(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA})
	fillOwnAndTheirs(t, s, 1, 30)
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	hit := 0
	for _, p := range ssts {
		for _, k := range [][]byte{metaKey(metaOwnHead), vectorKey(siteA)} {
			if damageBlockOf(t, p, k) {
				hit++
			}
		}
	}
	if hit < 2 {
		t.Fatalf("damaged %d blocks, want those of the own head and of the vector", hit)
	}
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrOwnHistoryLost) {
		t.Fatalf("open: %v, want ErrOwnHistoryLost", err)
	}
	for _, want := range []string{"patina restore", "new, empty data dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
}

// Issue 12: the site id (the node's identity, in the first block of the oldest table) is
// the one key open cannot rebuild from the data: its copy in the IDENTITY file stands in;
// without that either, open refuses with ErrIdentityLost and a message that says what to
// do, never a panic.
func TestOpenUnreadableIdentity(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA})
	for v := Version(1); v <= 200; v++ {
		mustAppend(t, s, makeCS(siteB, v, 10))
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) != 1 || !damageBlockOf(t, ssts[0], metaKey(metaSiteID)) {
		t.Fatalf("no block of %v holds the site id", ssts)
	}
	backup := t.TempDir()
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open with the site id's block damaged and the IDENTITY file: %v", err)
	}
	if s.SiteID() != siteA {
		t.Fatalf("site %v, want %v", s.SiteID(), siteA)
	}
	testutil.WaitFor(t, 30*time.Second, "the repair", func() bool { done, _, _ := s.Repairs(); return done > 0 })
	if err := s.Check(); err != nil {
		t.Fatalf("check after the repair: %v", err)
	}
	s.Close()

	if err := os.Remove(filepath.Join(backup, identityFile)); err != nil {
		t.Fatal(err)
	}
	_, err = Open(backup, Options{})
	if !errors.Is(err, ErrIdentityLost) {
		t.Fatalf("open with an unreadable site id and no IDENTITY file: %v, want ErrIdentityLost", err)
	}
	for _, want := range []string{"patina restore", "new, empty data dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
}
