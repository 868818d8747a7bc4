package log

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/patinadb/patina/internal/testutil"
)

// openGated opens a log on an in-memory file system whose WAL syncs g can hold, with depth
// groups on their way at most; its cleanup frees the gate first, so that a failed test
// does not leave Close stuck behind a held sync.
func openGated(t *testing.T, depth int) (*Store, *testutil.WALGate) {
	t.Helper()
	g := testutil.NewWALGate(vfs.NewMem())
	s, err := Open("log", Options{FS: g, CommitDepth: depth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Free()
		s.Close()
	})
	return s, g
}

// TestPipelinedCommitAcksAfterSync holds the WAL's fsync: while group 1's sync is held,
// group 2 is written behind it (the pipeline), and a group 3 that only repeats group 1's
// version (held by the committer's working vector, not yet durable) queues behind them;
// none of the callers is answered nor any version published. Letting one sync through
// answers group 1 alone; group 2 (and 3 behind it) wait for group 2's own sync.
func TestPipelinedCommitAcksAfterSync(t *testing.T) {
	s, g := openGated(t, 3)
	site := SiteID{0xa1}
	append1 := func(v Version) chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := s.Append(context.Background(), crashCS(site, v))
			ch <- err
		}()
		return ch
	}
	answered := func(ch chan error) bool {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
			return true
		default:
			return false
		}
	}
	g.Hold()
	a := append1(1)
	testutil.WaitFor(t, 10*time.Second, "group 1's sync to start", func() bool { return g.Entered() >= 1 })
	b := append1(2)
	testutil.WaitFor(t, 10*time.Second, "group 2 written behind group 1's sync", func() bool { return len(s.slots) == 2 })
	c := append1(1)
	testutil.WaitFor(t, 10*time.Second, "group 3 behind group 2", func() bool { return len(s.slots) == 3 })
	if answered(a) || answered(b) || answered(c) || s.Contains(site, 1) || s.Contains(site, 2) {
		t.Fatal("a version was answered or published while its group's sync was held")
	}
	g.Release()
	var aDone bool
	testutil.WaitFor(t, 10*time.Second, "group 1 answered after its sync", func() bool {
		aDone = aDone || answered(a)
		return aDone
	})
	testutil.WaitFor(t, 10*time.Second, "group 2's sync to start", func() bool { return g.Entered() >= 2 })
	if answered(b) || answered(c) || s.Contains(site, 2) {
		t.Fatal("group 2 was answered or published before its own sync")
	}
	if !s.Contains(site, 1) {
		t.Fatal("group 1 answered but not published")
	}
	g.Free()
	if err := <-b; err != nil {
		t.Fatal(err)
	}
	if err := <-c; err != nil {
		t.Fatal(err)
	}
	if !s.Contains(site, 2) {
		t.Fatal("group 2 answered but not published")
	}
}

// TestAckedAppendsSurvivePowerLoss appends from several writers on a filesystem that can
// forget everything not synced (Pebble's crashable in-memory one), takes "power loss"
// copies of it at random moments, and checks that every append answered before a copy was
// taken is in the log opened from that copy, byte for byte, for the pipelined committer and
// for the one without overlap. Unlike the SIGKILL test (TestCrashSafety), whose page cache
// survives the kill, this one loses the data that was written and not synced.
func TestAckedAppendsSurvivePowerLoss(t *testing.T) {
	for _, depth := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("depth=%d", depth), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s, err := Open("log", Options{FS: fs, CommitDepth: depth, MaxPartChanges: crashMaxPart})
			if err != nil {
				t.Fatal(err)
			}
			const writers, perWriter, copies = 6, 60, 4
			var mu sync.Mutex
			acked := map[SiteID]Version{} // highest version answered per site (each writes in order)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					site := crashSite(w)
					for v := Version(1); v <= perWriter; v++ {
						if _, err := s.Append(context.Background(), crashCS(site, v)); err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						acked[site] = v
						mu.Unlock()
					}
				})
			}
			type snapshot struct {
				acked map[SiteID]Version
				fs    *vfs.MemFS
			}
			var snaps []snapshot
			for i := range copies {
				want := (i + 1) * writers * perWriter / (copies + 1)
				testutil.WaitFor(t, 30*time.Second, "appends to be answered", func() bool {
					mu.Lock()
					defer mu.Unlock()
					n := 0
					for _, v := range acked {
						n += int(v)
					}
					return n >= want
				})
				mu.Lock()
				seen := make(map[SiteID]Version, len(acked))
				for k, v := range acked {
					seen[k] = v
				}
				mu.Unlock()
				// Everything answered before this line must be in the copy.
				snaps = append(snaps, snapshot{seen, fs.CrashClone(vfs.CrashCloneCfg{})})
			}
			wg.Wait()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for i, sn := range snaps {
				r, err := Open("log", Options{FS: sn.fs})
				if err != nil {
					t.Fatalf("copy %d: %v", i, err)
				}
				for site, last := range sn.acked {
					for v := Version(1); v <= last; v++ {
						got, err := r.Get(site, v)
						if err != nil {
							t.Fatalf("copy %d: %v/%d answered before the power loss: %v", i, site, v, err)
						}
						sameChangeset(t, got, crashCS(site, v))
					}
				}
				if err := r.Check(); err != nil {
					t.Fatalf("copy %d: %v", i, err)
				}
				r.Close()
			}
		})
	}
}
