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
	s, g := openGated(t, 2)
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

// TestAppendWrittenByIdleCaller: an append that finds the committer idle writes its group
// on its own goroutine (tryCommit), so its Written is closed when AppendAsync returns; with
// every pipeline slot taken, an append queues for the committer instead (and is written only
// once a slot frees).
func TestAppendWrittenByIdleCaller(t *testing.T) {
	s, g := openGated(t, 1)
	ctx := context.Background()
	site := SiteID{0xa4}
	g.Hold()
	p1, err := s.AppendAsync(ctx, crashCS(site, 1))
	if err != nil {
		t.Fatal(err)
	}
	if !isClosed(p1.Written()) {
		t.Fatal("an append to an idle committer returned before its group was written")
	}
	p2, err := s.AppendAsync(ctx, crashCS(site, 2))
	if err != nil {
		t.Fatal(err)
	}
	if closedWithin(p2.Written(), 100*time.Millisecond) {
		t.Fatal("a second group was written while the only slot's group waited for its sync (depth 1)")
	}
	g.Free()
	for i, p := range []*Pending{p1, p2} {
		if _, err := p.Wait(); err != nil {
			t.Fatalf("append %d: %v", i+1, err)
		}
	}
	if s.LastSeq() != 2 {
		t.Fatalf("last seq %d, want 2", s.LastSeq())
	}
}

// TestLaterWaiterPublishesInOrder: the caller of a later group that waits first publishes
// every group written before its own, in order, before its own (awaitGroup): its answer never
// shows a state where an earlier group is missing.
func TestLaterWaiterPublishesInOrder(t *testing.T) {
	s, g := openGated(t, 2)
	ctx := context.Background()
	site := SiteID{0xa5}
	g.Hold()
	p1, err := s.AppendAsync(ctx, crashCS(site, 1))
	if err != nil {
		t.Fatal(err)
	}
	<-p1.Written()
	testutil.WaitFor(t, 10*time.Second, "group 1's sync to start", func() bool { return g.Entered() >= 1 })
	p2, err := s.AppendAsync(ctx, crashCS(site, 2))
	if err != nil {
		t.Fatal(err)
	}
	<-p2.Written()
	type answer struct {
		res       []AppendResult
		err       error
		lastSeq   Seq
		has1, p1d bool
	}
	got := make(chan answer, 1)
	go func() {
		res, err := p2.Wait()
		got <- answer{res, err, s.LastSeq(), s.Contains(site, 1), isClosed(p1.Done())}
	}()
	if closedWithin(p1.Done(), 100*time.Millisecond) {
		t.Fatal("group 1 answered while its sync was held")
	}
	g.Free()
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.res[0].Seq != 2 || a.lastSeq < 2 || !a.has1 || !a.p1d {
		t.Fatalf("group 2 answered seq %d with last seq %d, version 1 held %v, group 1 answered %v: want 2, >= 2, true, true",
			a.res[0].Seq, a.lastSeq, a.has1, a.p1d)
	}
	if res, err := p1.Wait(); err != nil || res[0].Seq != 1 {
		t.Fatalf("group 1: %+v, %v", res, err)
	}
}

// TestConcurrentLocalAppendsKeepOrder: local versions are reserved and written in the same
// order (localMu), whether an append writes its own group or queues for the committer: read
// back in arrival order, the local versions only grow.
func TestConcurrentLocalAppendsKeepOrder(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const writers, each = 8, 100
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				cs := &Changeset{Kind: KindData, Changes: []Change{{Table: "t", PK: MustPackPK(Integer(int64(w)), Integer(int64(i))), CID: "c", Val: Integer(1), ColVersion: 1, CL: 1}}}
				if _, _, err := s.AppendLocal(ctx, cs); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	css, err := s.Read(0, writers*each+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(css) != writers*each {
		t.Fatalf("read %d changesets, want %d", len(css), writers*each)
	}
	for i, cs := range css {
		if cs.Version != Version(i+1) {
			t.Fatalf("arrival %d (seq %d) holds local version %d, want %d", i+1, cs.Seq, cs.Version, i+1)
		}
	}
}
