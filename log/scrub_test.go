package log

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// damageLiveSST flips bytes at a fraction of every table file of a running store's dir, in
// place (the files Pebble has open see it; nothing is truncated): a disk going bad under a
// running node. It returns the damaged paths.
func damageLiveSST(tb testing.TB, dir string, at float64) []string {
	tb.Helper()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, p := range ssts {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			tb.Fatal(err)
		}
		st, err := f.Stat()
		if err != nil {
			tb.Fatal(err)
		}
		off := int64(float64(st.Size()) * at)
		b := make([]byte, 64)
		n, _ := f.ReadAt(b, off)
		for i := range b[:n] {
			b[i] ^= 0x5a
		}
		if _, err := f.WriteAt(b[:n], off); err != nil {
			tb.Fatal(err)
		}
		f.Close()
	}
	return ssts
}

// Issue 12: damage in a file that no read touches is found by the background scrub
// (log.scrub_interval), which records it (health, metrics) and starts the repair: the file
// leaves the log, the log passes Check, and what the damage made unreadable is pending, to
// be fetched again from peers. Without the scrub nothing finds it: the store would report
// no damage until a read met it.
func TestScrubFindsAndRepairsUnreadDamage(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA, ScrubInterval: time.Hour})
	for v := Version(1); v <= 300; v++ {
		mustAppend(t, s, makeCS(siteB, v, 20))
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	damaged := damageLiveSST(t, dir, 0.25)
	if len(damaged) == 0 {
		t.Fatal("no sst to damage")
	}
	if len(s.Damage()) != 0 || s.Corruption() != nil {
		t.Fatalf("damage known before any read or scrub: %v", s.Damage())
	}
	// The background loop's first pass is up to an hour away; run it now, as it would.
	res, err := s.Scrub(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scrub: %d files, %d bytes, %d versions checked, %d found, repaired %v, took %v", res.Files, res.Bytes, res.Versions, res.Found(), res.Repaired, res.Duration)
	if len(res.Damage) == 0 || !res.Repaired {
		t.Fatalf("the scrub found no damage (found %v, repaired %v)", res.Problems, res.Repaired)
	}
	if !strings.Contains(res.Damage[0].Path, filepath.Base(damaged[0])) && len(damaged) == 1 {
		t.Fatalf("damage in %s, the damaged file is %s", res.Damage[0].Path, damaged[0])
	}
	if done, _, _ := s.Repairs(); done == 0 {
		t.Fatal("no repair ran")
	}
	if len(s.Damage()) != 0 || s.Corruption() != nil {
		t.Fatalf("after the scrub's repair: damage %v, corruption %v", s.Damage(), s.Corruption())
	}
	if err := s.Check(); err != nil {
		t.Fatalf("check after the scrub's repair: %v", err)
	}
	// Every version is either readable or pending (to be fetched again).
	_, _, pending := s.Repairs()
	held := s.Vector().Sites[siteB].Versions.Count()
	if held+pending != 300 {
		t.Fatalf("%d versions held and %d pending, want 300 in all", held, pending)
	}
	for _, err := range s.Scan(siteB, 1, 300) {
		if err != nil {
			t.Fatalf("scan after the repair: %v", err)
		}
	}
	// Metrics: a pass, bytes read, damage found.
	st := s.ScrubStats()
	if st.Passes != 1 || st.Bytes == 0 || st.Found == 0 || st.LastEnd.IsZero() {
		t.Fatalf("scrub stats %+v", st)
	}
	got := gatherLog(t, s)
	if got["patina_log_scrub_passes_total"] != 1 || got["patina_log_scrub_found_total"] < 1 || got["patina_log_scrub_last_timestamp_seconds"] == 0 {
		t.Fatalf("scrub metrics: %v", got)
	}
	// A clean pass finds nothing more, and the time of the last pass survives a restart.
	if res, err := s.Scrub(context.Background()); err != nil || res.Found() != 0 || res.Repaired {
		t.Fatalf("second pass: %v, found %v", err, res.Problems)
	}
	last := s.ScrubStats().LastEnd
	s.Close()
	s = openStore(t, dir, Options{})
	if got := s.ScrubStats().LastEnd; !got.Equal(last) {
		t.Fatalf("last scrub after reopen %v, want %v", got, last)
	}
}

// The background loop runs passes by itself at log.scrub_interval.
func TestScrubLoopRuns(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA, ScrubInterval: 20 * time.Millisecond, ScrubBytesPerSec: -1})
	for v := Version(1); v <= 50; v++ {
		mustAppend(t, s, makeCS(siteB, v, 5))
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	damageLiveSST(t, dir, 0.25)
	testutil.WaitFor(t, 30*time.Second, "the scrub loop to find and repair the damage", func() bool {
		done, _, _ := s.Repairs()
		return done > 0 && s.ScrubStats().Passes >= 2
	})
}

// A version whose stored bytes decode (Pebble's checksums pass) but no longer match the
// digest taken when it was written is found by the scrub, removed with its digest, and
// taken back from a peer.
func TestScrubFindsDigestMismatch(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA})
	var orig []*Changeset
	for v := Version(1); v <= 20; v++ {
		cs := makeCS(siteB, v, 4)
		orig = append(orig, cs)
		mustAppend(t, s, cs)
	}
	// Version 7's data, altered behind the store's back.
	bad := makeCS(siteB, 7, 4)
	bad.Changes[2].Val = Text("rotten")
	enc := mustEncode(t, bad)
	if err := s.db.Set(dataKey(nil, siteB, 7, 0), enc, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("check of an altered version: %v", err)
	}
	res, err := s.Scrub(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Mismatched[siteB].Contains(7) || !res.Repaired {
		t.Fatalf("scrub: mismatched %v, repaired %v, problems %v", res.Mismatched, res.Repaired, res.Problems)
	}
	if s.Contains(siteB, 7) {
		t.Fatal("the altered version is still held")
	}
	out, err := s.Ingest(context.Background(), orig[6])
	if err != nil || out[0].Refused != nil {
		t.Fatalf("the peer's copy of v7: %v, refused %v", err, out[0].Refused)
	}
	got, err := s.Get(siteB, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustEncode(t, withoutTS(got)), mustEncode(t, withoutTS(orig[6]))) {
		t.Fatal("v7 after the re-fetch differs from the original")
	}
	if err := s.Check(); err != nil {
		t.Fatalf("check after the re-fetch: %v", err)
	}
}

// A paced pass sleeps rather than read ahead of its budget, and Close ends a pass that is
// sleeping (it holds the store's read lock) instead of waiting for it.
func TestScrubPaceAndClose(t *testing.T) {
	p := newPacer(context.Background(), 1<<20)
	start := time.Now()
	for range 5 {
		if err := p.take(100 << 10); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("500 KiB at 1 MiB/s took %v", el)
	}

	dir := t.TempDir()
	s, err := Open(dir, Options{SiteID: siteA, ScrubBytesPerSec: 1})
	if err != nil {
		t.Fatal(err)
	}
	for v := Version(1); v <= 20; v++ {
		mustAppend(t, s, makeCS(siteB, v, 4))
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := s.Scrub(context.Background()); errc <- err }()
	testutil.WaitFor(t, 10*time.Second, "the pass to start", func() bool {
		if s.scrub.mu.TryLock() {
			s.scrub.mu.Unlock()
			return false
		}
		return true
	})
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for a sleeping scrub pass")
	}
	if err := <-errc; err == nil {
		t.Fatal("a pass cut short by Close returned no error")
	}
}

// gatherLog collects the store's metrics by name, and those with labels also by
// name{value,...}.
func gatherLog(tb testing.TB, s *Store) map[string]float64 {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[mf.GetName()] = v
			if ls := m.GetLabel(); len(ls) > 0 {
				vals := make([]string, len(ls))
				for i, l := range ls {
					vals[i] = l.GetValue()
				}
				got[mf.GetName()+"{"+strings.Join(vals, ",")+"}"] = v
			}
		}
	}
	return got
}
