package gossip

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// storeApplier is the Applier of the in-process tests: it appends to the node's own log,
// as the materializer does before folding, and reports what was new.
type storeApplier struct {
	st *log.Store
	// ingest: Ingest (the materializer's path: forged and colliding versions refused)
	// rather than Append.
	ingest bool
	// calls counts Apply calls, so that tests can wait for traffic without sleeping.
	mu    sync.Mutex
	calls int
	// traces counts the changesets applied per trace ID of the context Apply was given
	// (trace_test.go): a traced broadcast's receive span continues the sender's trace.
	traces map[trace.TraceID]int
}

var _ Applier = (*storeApplier)(nil)

func (a *storeApplier) Apply(ctx context.Context, css []*log.Changeset) ([]bool, error) {
	apply := a.st.Append
	if a.ingest {
		apply = a.st.Ingest
	}
	res, err := apply(ctx, css...)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.calls++
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		if a.traces == nil {
			a.traces = map[trace.TraceID]int{}
		}
		a.traces[sc.TraceID()] += len(css)
	}
	a.mu.Unlock()
	news := make([]bool, len(res))
	for i, r := range res {
		news[i] = r.New
	}
	return news, nil
}

func testLogger() *slog.Logger {
	if os.Getenv("PATINA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testNode is one in-process node: a real log.Store in its own directory and a real Gossip
// on 127.0.0.1.
type testNode struct {
	tb   testing.TB
	dir  string
	site log.SiteID
	cfg  Config
	st   *log.Store
	app  *storeApplier
	g    *Gossip
	up   bool
	// ingest: the node applies what it receives with Ingest, as an agent does.
	ingest bool
}

type nodeOpt func(*Config)

func withCluster(id string) nodeOpt { return func(c *Config) { c.ClusterID = id } }

func withBootstrap(n *testNode) nodeOpt {
	return func(c *Config) { c.Bootstrap = []string{n.g.GossipAddr()} }
}

func withFaults() nodeOpt { return func(c *Config) { c.Fault.Enabled = true } }

func startNode(tb testing.TB, opts ...nodeOpt) *testNode {
	tb.Helper()
	cfg := TestConfig()
	cfg.ClusterID = "test"
	cfg.Logger = testLogger()
	for _, o := range opts {
		o(&cfg)
	}
	n := &testNode{tb: tb, dir: tb.TempDir(), site: log.NewSiteID(), cfg: cfg}
	n.start()
	tb.Cleanup(n.stop)
	return n
}

func (n *testNode) start() {
	n.tb.Helper()
	st, err := log.Open(filepath.Join(n.dir, "log"), log.Options{SiteID: n.site, Logger: n.cfg.Logger})
	if err != nil {
		n.tb.Fatalf("open log: %v", err)
	}
	n.st, n.app = st, &storeApplier{st: st, ingest: n.ingest}
	// memberlist binds UDP on the port the kernel gave its TCP listener: another test's
	// socket may hold that UDP port already. A fresh port on the next try, as the brief says.
	var g *Gossip
	for attempt := 1; ; attempt++ {
		if g, err = New(n.cfg, st, n.app); err != nil {
			st.Close()
			n.tb.Fatalf("gossip new: %v", err)
		}
		err = g.Open(context.Background())
		if err == nil {
			break
		}
		if attempt == 5 || !strings.Contains(err.Error(), "address already in use") {
			st.Close()
			n.tb.Fatalf("gossip open: %v", err)
		}
	}
	n.g, n.up = g, true
}

func (n *testNode) stop() {
	if !n.up {
		return
	}
	n.up = false
	if err := n.g.Close(); err != nil {
		n.tb.Errorf("gossip close: %v", err)
	}
	if err := n.st.Close(); err != nil {
		n.tb.Errorf("log close: %v", err)
	}
}

// restart stops the node and starts it again on the same data and the same addresses, as
// an agent restarted with the same config would.
func (n *testNode) restart() {
	n.tb.Helper()
	n.cfg.GossipAddr, n.cfg.QUICAddr = n.g.GossipAddr(), n.g.QUICAddr()
	n.stop()
	n.start()
}

// write appends one local transaction of rows changes (rows on table t keyed by key+i,
// a value naming the writer) and broadcasts it, as the materializer's commit hook does.
func (n *testNode) write(key, rows int) *log.Changeset {
	n.tb.Helper()
	cs := &log.Changeset{Kind: log.KindData}
	for i := range rows {
		cs.Changes = append(cs.Changes, log.Change{
			Table: "t", PK: log.MustPackPK(log.Integer(int64(key + i))), CID: "v",
			Val: log.Text(fmt.Sprintf("%s-%d", n.site, key+i)), ColVersion: 1, CL: 1,
		})
	}
	if _, _, err := n.st.AppendLocal(context.Background(), cs); err != nil {
		n.tb.Fatalf("append local: %v", err)
	}
	n.g.Broadcast(cs)
	return cs
}

// complete is how many complete versions the node holds.
func (n *testNode) complete() uint64 {
	c, _ := n.st.Vector().Counts()
	return c
}

// digest hashes everything the log holds, version by version with its parts joined, so
// that two logs that hold the same changesets cut into different parts digest the same.
func (n *testNode) digest() string {
	n.tb.Helper()
	h := sha256.New()
	v := n.st.Vector()
	sites := make([]log.SiteID, 0, len(v.Sites))
	for s := range v.Sites {
		sites = append(sites, s)
	}
	slices.SortFunc(sites, log.SiteID.Compare)
	for _, s := range sites {
		var cur *log.Changeset
		flush := func() {
			if cur == nil {
				return
			}
			cur.Seq = 0
			cur.Span = log.OrdRange{First: 0, Last: cur.LastOrd}
			b, err := log.EncodeChangeset(cur)
			if err != nil {
				n.tb.Fatalf("encode: %v", err)
			}
			h.Write(b)
			cur = nil
		}
		for cs, err := range n.st.Scan(s, 1, ^log.Version(0)) {
			if err != nil {
				n.tb.Fatalf("scan: %v", err)
			}
			if cur != nil && cur.Version == cs.Version {
				cur.Changes = append(cur.Changes, cs.Changes...)
				continue
			}
			flush()
			c := *cs
			c.Changes = slices.Clone(cs.Changes)
			cur = &c
		}
		flush()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cluster starts n nodes, each bootstrapping through the first, and waits until every node
// sees every other as alive.
func cluster(tb testing.TB, n int, opts ...nodeOpt) []*testNode {
	tb.Helper()
	nodes := []*testNode{startNode(tb, opts...)}
	for range n - 1 {
		nodes = append(nodes, startNode(tb, append(slices.Clone(opts), withBootstrap(nodes[0]))...))
	}
	waitMembers(tb, nodes)
	return nodes
}

// waitMembers waits until every node has every other node as a live peer.
func waitMembers(tb testing.TB, nodes []*testNode) {
	tb.Helper()
	testutil.WaitFor(tb, 30*time.Second, fmt.Sprintf("%d nodes to see each other", len(nodes)), func() bool {
		for _, n := range nodes {
			if len(n.g.alivePeers()) != len(nodes)-1 {
				return false
			}
		}
		return true
	})
}

// waitSyncIdle waits until no node runs a sync round, has one armed to start at once or
// serves a session: the rounds that joins trigger are over, and with a long SyncInterval
// only what the test does moves versions by sync.
func waitSyncIdle(tb testing.TB, nodes []*testNode) {
	tb.Helper()
	testutil.WaitFor(tb, 30*time.Second, "join-time sync rounds to end", func() bool {
		for _, n := range nodes {
			if !n.g.SyncIdle() {
				return false
			}
		}
		return true
	})
}

// waitConverged waits until every node holds want complete versions with equal vectors and
// no partial versions, then checks that every log holds the same data.
func waitConverged(tb testing.TB, nodes []*testNode, want uint64, timeout time.Duration) {
	tb.Helper()
	err := testutil.Poll(timeout, func() bool {
		v0 := nodes[0].st.Vector()
		for _, n := range nodes {
			c, p := n.st.Vector().Counts()
			if c != want || p != 0 {
				return false
			}
			if !n.st.Vector().Equal(v0) {
				return false
			}
		}
		return true
	})
	if err != nil {
		for i, n := range nodes {
			c, p := n.st.Vector().Counts()
			tb.Logf("node %d %v: %d complete, %d partial; stats %+v", i, n.site, c, p, n.g.Stats())
		}
		tb.Fatalf("cluster did not converge on %d versions: %v", want, err)
	}
	d0 := nodes[0].digest()
	for i, n := range nodes[1:] {
		if d := n.digest(); d != d0 {
			tb.Fatalf("node %d's log differs from node 0's: %s vs %s", i+1, d, d0)
		}
	}
	for i, n := range nodes {
		if gaps := n.g.Stats().Gaps; gaps != 0 {
			tb.Fatalf("node %d reports %d gaps after converging", i, gaps)
		}
	}
}

// syncWith runs one sync session with p as the client and waits for its outcome.
func (g *Gossip) syncWith(p *peer) error {
	ch := make(chan error, 1)
	g.startSync(p, func(err error) { ch <- err })
	return <-ch
}

// syncRoundWait runs one sync round and waits for its counts.
func (g *Gossip) syncRoundWait() (done, busy int) {
	type res struct{ done, busy int }
	ch := make(chan res, 1)
	g.syncRound(func(done, busy int) { ch <- res{done, busy} })
	r := <-ch
	return r.done, r.busy
}
