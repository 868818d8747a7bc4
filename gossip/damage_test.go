package gossip

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// foreignCS is version v of site, n changes.
func foreignCS(site log.SiteID, v log.Version, n int) *log.Changeset {
	cs := &log.Changeset{Site: site, Version: v, Kind: log.KindData, TS: log.Timestamp(1e18 + uint64(v)), LastOrd: uint64(n - 1), Span: log.OrdRange{First: 0, Last: uint64(n - 1)}}
	for i := range n {
		cs.Changes = append(cs.Changes, log.Change{
			Table: "t", PK: log.MustPackPK(log.Integer(int64(v)), log.Integer(int64(i))), CID: "v",
			Val: log.Text(fmt.Sprintf("%v/%d/%d", site, v, i)), ColVersion: 1, CL: 1, Ord: uint64(i),
		})
	}
	return cs
}

// appendAndFlush appends css to the (stopped) log in dir and leaves them in a table file of
// their own: Pebble flushes the recovered write-ahead log when the store is opened again.
func appendAndFlush(tb testing.TB, dir string, site log.SiteID, css []*log.Changeset) []string {
	tb.Helper()
	before, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for range 2 {
		st, err := log.Open(dir, log.Options{SiteID: site, Logger: testLogger()})
		if err != nil {
			tb.Fatal(err)
		}
		if css != nil {
			if _, err := st.Append(context.Background(), css...); err != nil {
				tb.Fatal(err)
			}
			css = nil
		}
		st.Close()
	}
	after, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	var fresh []string
	for _, p := range after {
		if !slices.Contains(before, p) {
			fresh = append(fresh, p)
		}
	}
	if len(fresh) == 0 {
		tb.Fatal("no table file written")
	}
	return fresh
}

// Issue 12, item 2: a node whose log has a damaged file serves sync without crashing and
// without ending the session: it sends every version it can read, skips the damaged ones and
// says so in its done frame. The peer takes the skipped versions from another node, so the
// damaged range is repaired from replicas.
func TestSyncSkipsDamagedVersions(t *testing.T) {
	// Data keys sort by site: X's versions come first in the table file.
	siteX, siteY := log.SiteID{1}, log.SiteID{2}
	var xs, ys []*log.Changeset
	for v := log.Version(1); v <= 150; v++ {
		xs = append(xs, foreignCS(siteX, v, 20))
		ys = append(ys, foreignCS(siteY, v, 20))
	}

	// A holds X and Y in one table file, in which a failing disk damages a block of X's.
	a := &testNode{tb: t, dir: t.TempDir(), site: log.NewSiteID()}
	for _, p := range appendAndFlush(t, filepath.Join(a.dir, "log"), a.site, append(slices.Clone(xs), ys...)) {
		testutil.DamageFile(t, p, 0.25)
	}
	a.cfg = TestConfig()
	a.cfg.ClusterID, a.cfg.Logger = "test", testLogger()
	a.start()
	t.Cleanup(a.stop)

	// B syncs from A alone: it gets all of Y and the readable part of X.
	b := startNode(t, withBootstrap(a))
	testutil.WaitFor(t, 30*time.Second, "B to hold Y", func() bool {
		sv := b.st.Vector().Sites[siteY]
		return sv != nil && sv.Versions.ContainsRange(1, 150)
	})
	// B counts what A's done frame reported: the session with the damaged node ran to its
	// end (whichever side started it).
	testutil.WaitFor(t, 30*time.Second, "A to report the versions it skipped", func() bool {
		return counterValue(a.g.m.damaged.WithLabelValues("skipped")) > 0 &&
			counterValue(b.g.m.damaged.WithLabelValues("peer")) > 0
	})
	got := b.st.Vector().Sites[siteX]
	if got == nil || got.Versions.Count() == 0 || got.Versions.ContainsRange(1, 150) {
		t.Fatalf("B holds X versions %v from A: want the readable ones, not all", got)
	}
	// A repairs itself: the damaged file and the versions it made unreadable leave its log.
	testutil.WaitFor(t, 30*time.Second, "A to repair its log", func() bool { done, _, _ := a.st.Repairs(); return done > 0 })
	// What all of A's repairs removed, not the last one's: a read under way when the first
	// repair swapped the files can meet the old file once and start a second repair, which
	// finds nothing more (as log's TestRepairRemovesDamagedVersions knows; this test failed
	// 5 runs in 32 on LastRepair, each with two repairs, 5 versions removed by the first).
	if done, removed, _ := a.st.Repairs(); removed == 0 {
		t.Fatalf("A's %d repairs removed nothing; the last: %+v", done, a.st.LastRepair())
	}

	// C holds a healthy copy of X: B repairs what A could not send.
	c := startNode(t, withBootstrap(a))
	if _, err := c.st.Append(context.Background(), xs...); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "B to hold X from C", func() bool {
		sv := b.st.Vector().Sites[siteX]
		return sv != nil && sv.Versions.ContainsRange(1, 150)
	})
	// And A takes back, through sync, what its repair removed: it ends whole and clean.
	testutil.WaitFor(t, 30*time.Second, "A to hold X and Y again", func() bool {
		x, y := a.st.Vector().Sites[siteX], a.st.Vector().Sites[siteY]
		return x != nil && y != nil && x.Versions.ContainsRange(1, 150) && y.Versions.ContainsRange(1, 150)
	})
	if _, _, pending := a.st.Repairs(); pending != 0 || len(a.st.Damage()) != 0 || a.st.Corruption() != nil {
		t.Fatalf("A after the re-fetch: %d pending, damage %v, corruption %v", pending, a.st.Damage(), a.st.Corruption())
	}
	for _, cs := range append(xs, ys...) {
		got, err := a.st.Get(cs.Site, cs.Version)
		if err != nil || len(got.Changes) != len(cs.Changes) || got.Changes[7].Val.Text != cs.Changes[7].Val.Text {
			t.Fatalf("A's %v/%d after the repair: %v", cs.Site, cs.Version, err)
		}
	}
	if err := a.st.Check(); err != nil {
		t.Fatalf("A's log after the repair: %v", err)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
