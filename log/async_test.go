package log

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/patinadb/patina/internal/testutil"
)

// closedWithin reports whether ch is closed within d (a deadline for a test that fails, not
// a synchronization: the passing case returns at once).
func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestAppendAsyncSeqsBeforeDurability holds the WAL's fsync: AppendAsync's groups are
// written (their seqs known) behind the held sync, up to the commit depth, while nothing of
// them is published (LastSeq, Contains, Read) nor answered; letting the syncs through
// answers them with the seqs Results gave, and publishes them.
func TestAppendAsyncSeqsBeforeDurability(t *testing.T) {
	g := testutil.NewWALGate(vfs.NewMem())
	s, err := Open("log", Options{FS: g, CommitDepth: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer g.Free()
	ctx := context.Background()
	site := SiteID{0xa2}
	if _, err := s.Append(ctx, crashCS(site, 1)); err != nil {
		t.Fatal(err)
	}
	base := s.LastSeq()
	g.Hold()
	p1, err := s.AppendAsync(ctx, crashCS(site, 2))
	if err != nil {
		t.Fatal(err)
	}
	if !closedWithin(p1.Written(), 10*time.Second) {
		t.Fatal("group 1 not written while its sync is held")
	}
	testutil.WaitFor(t, 10*time.Second, "group 1's sync to start", func() bool { return g.Entered() >= 1 })
	p2, err := s.AppendAsync(ctx, crashCS(site, 3))
	if err != nil {
		t.Fatal(err)
	}
	if !closedWithin(p2.Written(), 10*time.Second) {
		t.Fatal("group 2 not written behind group 1's held sync (depth 2)")
	}
	r1, err := p1.Results()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p2.Results()
	if err != nil {
		t.Fatal(err)
	}
	if !r1[0].New || !r1[0].Complete || r1[0].Seq != base+1 || r2[0].Seq != base+2 {
		t.Fatalf("results before the sync: %+v %+v, want seqs %d and %d", r1, r2, base+1, base+2)
	}
	if isClosed(p1.Done()) || isClosed(p2.Done()) {
		t.Fatal("an append was answered while its sync was held")
	}
	if s.LastSeq() != base || s.Contains(site, 2) || s.Contains(site, 3) {
		t.Fatalf("published before durable: last seq %d (was %d)", s.LastSeq(), base)
	}
	if css, err := s.Read(base, 10); err != nil || len(css) != 0 {
		t.Fatalf("Read before durable: %d changesets, %v", len(css), err)
	}
	// A third group waits for a slot: its Written comes only after group 1's sync.
	p3, err := s.AppendAsync(ctx, crashCS(site, 4))
	if err != nil {
		t.Fatal(err)
	}
	if closedWithin(p3.Written(), 100*time.Millisecond) {
		t.Fatal("a third group was written with two groups' syncs outstanding (depth 2)")
	}
	g.Free()
	for i, p := range []*Pending{p1, p2, p3} {
		res, err := p.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Seq != base+Seq(i)+1 {
			t.Fatalf("append %d answered seq %d, want %d", i, res[0].Seq, base+Seq(i)+1)
		}
		if s.LastSeq() < res[0].Seq || !s.Contains(site, Version(i)+2) {
			t.Fatalf("append %d answered before it was published", i)
		}
	}
}

// TestAppendAsyncWALFailure: a group written and then refused by its failing WAL sync
// fails Wait (never answered as a success) and is never published, and a later AppendAsync
// is refused at once, in Results.
func TestAppendAsyncWALFailure(t *testing.T) {
	var failing atomic.Bool
	s, err := Open("log", Options{FS: testutil.FailingWAL(vfs.NewMem(), &failing), CommitDepth: 2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	site := SiteID{0xa3}
	if _, err := s.Append(ctx, crashCS(site, 1)); err != nil {
		t.Fatal(err)
	}
	base := s.LastSeq()
	failing.Store(true)
	p, err := s.AppendAsync(ctx, crashCS(site, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err == nil {
		t.Fatal("an append whose WAL failed was answered with success")
	}
	if s.LastSeq() != base || s.Contains(site, 2) {
		t.Fatal("a failed group was published")
	}
	if s.CommitFailure() == nil {
		t.Fatal("the store did not record the commit failure")
	}
	p, err = s.AppendAsync(ctx, crashCS(site, 3))
	if err == nil {
		<-p.Written()
		if _, err = p.Results(); err == nil {
			t.Fatal("an append after the failure was written")
		}
		if _, werr := p.Wait(); werr == nil {
			t.Fatal("an append after the failure was answered with success")
		}
	}
	if !errors.Is(err, s.CommitFailure()) && err.Error() != s.CommitFailure().Error() {
		t.Fatalf("refusal after the failure: %v, want the store's failure %v", err, s.CommitFailure())
	}
}
