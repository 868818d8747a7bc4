package main

// Multi-process cluster tests: real `patina agent` processes on 127.0.0.1, written to
// through the HTTP API, compared by full dumps of their SQLite views (tables and clock
// tables). Helpers here are prefixed cl so that they never collide with other test files.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

const clSchema = "CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, node INTEGER, n INTEGER DEFAULT 0);\n"

// clNode is one agent of a test cluster; it keeps its data dir and addresses across
// restarts.
type clNode struct {
	t         *testing.T
	bin       string
	idx       int
	site      log.SiteID
	clusterID string
	dir       string
	cfgPath   string
	api       string
	gossip    string
	quic      string
	bootstrap []string
	extra     []string // more agent flags

	cmd  *exec.Cmd
	out  *testutil.LockedBuffer
	done chan struct{}
	cl   *client.Client
}

type clCluster struct {
	t     *testing.T
	bin   string
	nodes []*clNode
}

// clPorts hands out free 127.0.0.1 ports and holds them until release, so that the nodes
// of one cluster never get the same port; memberlist needs TCP and UDP on its port, which
// testutil.FreeAddr (TCP only) does not check.
type clPorts struct {
	t    *testing.T
	held []io.Closer
}

func (p *clPorts) pick(tcp, udp bool) string {
	p.t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.t.Fatal(err)
		}
		addr := ln.Addr().String()
		if tcp {
			p.held = append(p.held, ln)
		} else {
			ln.Close()
		}
		if udp {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				continue
			}
			p.held = append(p.held, pc)
		}
		return addr
	}
	p.t.Fatal("no free port")
	return ""
}

func (p *clPorts) release() {
	for _, c := range p.held {
		c.Close()
	}
	p.held = nil
}

// newClNode prepares (but does not start) a node with its own dir, config and addresses;
// ports (nil: its own) holds the addresses until the caller releases them.
func newClNode(t *testing.T, bin string, idx int, clusterID string, ports *clPorts) *clNode {
	t.Helper()
	if ports == nil {
		ports = &clPorts{t: t}
		defer ports.release()
	}
	dir := t.TempDir()
	n := &clNode{t: t, bin: bin, idx: idx, site: log.NewSiteID(), clusterID: clusterID, dir: dir,
		cfgPath: filepath.Join(dir, "patina.toml"), api: ports.pick(true, false), gossip: ports.pick(true, true),
		quic: ports.pick(false, true)}
	if err := os.WriteFile(filepath.Join(dir, "schema.sql"), []byte(clSchema), 0o644); err != nil {
		t.Fatal(err)
	}
	n.setFaults(nil)
	t.Cleanup(func() {
		if n.running() {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() && n.out != nil {
			t.Logf("node %d output (last 4 KB):\n%s", n.idx, tail(n.out.String(), 4096))
		}
	})
	return n
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// setFaults writes the node's config file with the testing-only fault section (rules as
// TOML tables); the running agent re-reads it on SIGHUP.
func (n *clNode) setFaults(rules []string) {
	n.t.Helper()
	var b strings.Builder
	b.WriteString("[gossip.fault]\nenabled = true\n")
	for _, r := range rules {
		b.WriteString("[[gossip.fault.rules]]\n" + r + "\n")
	}
	if err := os.WriteFile(n.cfgPath, []byte(b.String()), 0o644); err != nil {
		n.t.Fatal(err)
	}
	if n.running() {
		// The agent re-reads the rules on SIGHUP and logs once it has: wait for that line,
		// so that the rules hold when this returns (a write made next must meet them).
		const applied = "SIGHUP: fault rules replaced"
		before := strings.Count(n.out.String(), applied)
		if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			n.t.Fatal(err)
		}
		testutil.WaitFor(n.t, 30*time.Second, fmt.Sprintf("node %d to apply its fault rules", n.idx), func() bool {
			return strings.Count(n.out.String(), applied) > before
		})
	}
}

func (n *clNode) running() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func (n *clNode) start() {
	n.t.Helper()
	args := []string{"agent", "-c", n.cfgPath, "--data-dir", filepath.Join(n.dir, "data"), "--site-id", n.site.String(),
		"--cluster-id", n.clusterID, "--schema", filepath.Join(n.dir, "schema.sql"), "--api-addr", n.api,
		"--gossip-addr", n.gossip, "--quic-addr", n.quic, "--log-level", "info", "--gossip-sync-interval", "500ms"}
	for _, b := range n.bootstrap {
		args = append(args, "--bootstrap", b)
	}
	args = append(args, n.extra...)
	if n.out == nil {
		n.out = &testutil.LockedBuffer{}
	}
	fmt.Fprintf(n.out, "---- start %v\n", time.Now().Format(time.RFC3339Nano))
	n.cmd = exec.Command(n.bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	n.done = done
	cmd := n.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	cl, err := client.New(n.api)
	if err != nil {
		n.t.Fatal(err)
	}
	n.cl = cl
	testutil.WaitFor(n.t, 60*time.Second, fmt.Sprintf("node %d's health", n.idx), func() bool {
		if !n.running() {
			n.t.Fatalf("node %d exited at start:\n%s", n.idx, tail(n.out.String(), 4096))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cl.Health(ctx, nil)
		return err == nil
	})
}

// stop ends the process with sig (SIGTERM: graceful; SIGKILL: a crash) and waits for it.
func (n *clNode) stop(sig syscall.Signal) {
	n.t.Helper()
	if !n.running() {
		return
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatal(err)
	}
	select {
	case <-n.done:
	case <-time.After(60 * time.Second):
		n.t.Fatalf("node %d did not stop on %v", n.idx, sig)
	}
}

// startCluster starts count nodes of clusterID; each bootstraps through all the others and
// gets the extra agent flags.
func startCluster(t *testing.T, bin string, count int, clusterID string, extra ...string) *clCluster {
	t.Helper()
	c := &clCluster{t: t, bin: bin}
	ports := &clPorts{t: t}
	for i := range count {
		n := newClNode(t, bin, i, clusterID, ports)
		n.extra = extra
		c.nodes = append(c.nodes, n)
	}
	ports.release()
	for _, n := range c.nodes {
		for _, o := range c.nodes {
			if o != n {
				n.bootstrap = append(n.bootstrap, o.gossip)
			}
		}
	}
	for _, n := range c.nodes {
		n.start()
	}
	c.waitMembers(c.nodes)
	return c
}

// waitMembers waits until each node lists every node of nodes as alive.
func (c *clCluster) waitMembers(nodes []*clNode) {
	c.t.Helper()
	testutil.WaitFor(c.t, 60*time.Second, fmt.Sprintf("%d nodes to see each other", len(nodes)), func() bool {
		for _, n := range nodes {
			ms, err := n.cl.Members(context.Background())
			if err != nil {
				return false
			}
			alive := 0
			for _, m := range ms {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != len(nodes) {
				return false
			}
		}
		return true
	})
}

// clWriter writes to one node: upserts and deletes over a small shared key space, so that
// nodes conflict on purpose. It records the highest version each node acknowledged.
type clWriter struct {
	mu    sync.Mutex
	heads map[log.SiteID]log.Version
	acks  int
}

func newClWriter() *clWriter { return &clWriter{heads: map[log.SiteID]log.Version{}} }

func (w *clWriter) write(ctx context.Context, n *clNode, rng *rand.Rand) error {
	id := rng.IntN(40)
	var st client.Statement
	switch rng.IntN(10) {
	case 0:
		st = client.Stmt("DELETE FROM t WHERE id = ?", id)
	case 1, 2:
		st = client.Stmt("UPDATE t SET n = n + 1, node = ? WHERE id = ?", n.idx, id)
	default:
		st = client.Stmt("INSERT INTO t (id, v, node) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v, node = excluded.node",
			id, fmt.Sprintf("n%d-%d", n.idx, rng.IntN(1000)), n.idx)
	}
	res, err := n.cl.Exec(ctx, client.Options{}, st)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acks++
	if res.Version > w.heads[n.site] {
		w.heads[n.site] = res.Version
	}
	return nil
}

// writeAll writes count transactions on each of nodes concurrently.
func (c *clCluster) writeAll(w *clWriter, nodes []*clNode, count int) {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(n.idx), uint64(time.Now().UnixNano())))
			for range count {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := w.write(ctx, n, rng)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("write on node %d: %w", n.idx, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		c.t.Fatal(err)
	}
}

// waitConverged waits until every node of nodes holds every version acknowledged to w,
// with equal heads and nothing missing, as GET /v1/sync/state shows.
func (c *clCluster) waitConverged(w *clWriter, nodes []*clNode, timeout time.Duration) {
	c.t.Helper()
	w.mu.Lock()
	want := maps.Clone(w.heads)
	w.mu.Unlock()
	var last string
	err := testutil.Poll(timeout, func() bool {
		var first map[log.SiteID]log.Version
		for _, n := range nodes {
			st, err := n.cl.SyncState(context.Background())
			if err != nil {
				last = err.Error()
				return false
			}
			if len(st.Need) > 0 || len(st.PartialNeed) > 0 {
				last = fmt.Sprintf("node %d needs %v %v", n.idx, st.Need, st.PartialNeed)
				return false
			}
			for s, v := range want {
				if st.Heads[s] < v {
					last = fmt.Sprintf("node %d has %v at %d, want %d", n.idx, s, st.Heads[s], v)
					return false
				}
			}
			if first == nil {
				first = st.Heads
			} else if !maps.Equal(first, st.Heads) {
				last = fmt.Sprintf("node %d heads %v differ from %v", n.idx, st.Heads, first)
				return false
			}
		}
		return true
	})
	if err != nil {
		c.t.Fatalf("cluster did not converge: %v; last: %s", err, last)
	}
}

// compareDumps stops nodes gracefully and compares full dumps of their views: every user
// table and every clock table, row by row.
func (c *clCluster) compareDumps(nodes []*clNode) {
	c.t.Helper()
	for _, n := range nodes {
		n.stop(syscall.SIGTERM)
	}
	d0 := dumpView(c.t, filepath.Join(nodes[0].dir, "data", "views.db"), replicated)
	if len(d0["t"]) == 0 || len(d0["__patina_clock_t"]) == 0 {
		c.t.Fatalf("node 0's dump has no rows: %v", d0)
	}
	for _, n := range nodes[1:] {
		d := dumpView(c.t, filepath.Join(n.dir, "data", "views.db"), replicated)
		for _, table := range slices.Sorted(maps.Keys(d0)) {
			if !slices.Equal(d0[table], d[table]) {
				c.t.Fatalf("table %s differs between node 0 and node %d:\n%s\nvs\n%s", table, n.idx,
					strings.Join(d0[table], "\n"), strings.Join(d[table], "\n"))
			}
		}
		if len(d) != len(d0) {
			c.t.Fatalf("node %d has tables %v, node 0 %v", n.idx, slices.Sorted(maps.Keys(d)), slices.Sorted(maps.Keys(d0)))
		}
	}
}

// replicated keeps the tables that must be equal on every node: user tables and their clocks.
// Node-local bookkeeping (fold position, site id) differs by design.
func replicated(table string) bool {
	return !strings.HasPrefix(table, "__patina") || strings.HasPrefix(table, "__patina_clock_")
}

// dumpView reads the tables of a stopped node's view file that keep accepts (nil: every
// table, internal ones included) as sorted text rows.
func dumpView(t *testing.T, path string, keep func(table string) bool) map[string][]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		if keep == nil || keep(name) {
			tables = append(tables, name)
		}
	}
	rows.Close()
	out := map[string][]string{}
	for _, name := range tables {
		rows, err := db.Query(fmt.Sprintf(`SELECT * FROM %q`, name))
		if err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%#v", vals))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		slices.Sort(lines)
		out[name] = lines
	}
	return out
}

// metric reads one sample of the agent's /metrics page (0 when absent).
func (n *clNode) metric(name string) float64 {
	n.t.Helper()
	text, err := n.cl.Metrics(context.Background())
	if err != nil {
		return 0
	}
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum
}

// The cluster tests run real agent processes of the built binary; each makes its own cluster.

// clusterBinary skips in -short mode and returns the patina binary.
func clusterBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process cluster tests")
	}
	return buildPatina(t)
}

// TestClusterConverges checks that 3 and 5 nodes written at every node converge to identical
// views.
func TestClusterConverges(t *testing.T) {
	bin := clusterBinary(t)
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("converge %d nodes", size), func(t *testing.T) {
			c := startCluster(t, bin, size, "conv")
			w := newClWriter()
			c.writeAll(w, c.nodes, 60)
			c.waitConverged(w, c.nodes, 60*time.Second)
			c.compareDumps(c.nodes)
		})
	}
}

// TestClusterBroadcastsIngested checks that an ingested changeset of another site reaches the
// other node by broadcast alone.
func TestClusterBroadcastsIngested(t *testing.T) {
	bin := clusterBinary(t)
	// Sync rounds are an hour apart, so only broadcast can carry the changeset quickly.
	c := startCluster(t, bin, 2, "ingest", "--gossip-sync-interval", "1h")
	foreign := log.SiteID{0xF0, 0x0D}
	cs := &log.Changeset{Site: foreign, Version: 1, TS: log.Timestamp(time.Now().UnixNano()), Changes: []log.Change{
		{Table: "t", PK: log.MustPackPK(log.Integer(424242)), CID: "v", Val: log.Text("bridged"), ColVersion: 1, CL: 1},
	}}
	res, err := c.nodes[0].cl.PostChanges(context.Background(), cs)
	if err != nil || res.New != 1 {
		t.Fatalf("post changes: %+v, %v", res, err)
	}
	testutil.WaitFor(t, 20*time.Second, "the ingested row on the other node", func() bool {
		_, rows, err := c.nodes[1].cl.QueryAll(context.Background(), client.Options{}, client.Stmt("SELECT v FROM t WHERE id = 424242"))
		return err == nil && len(rows) == 1 && rows[0][0].Text == "bridged"
	})
}

// TestClusterSigkillRestart checks that a node killed with SIGKILL mid-writes restarts and the
// cluster converges with every acknowledged write.
func TestClusterSigkillRestart(t *testing.T) {
	bin := clusterBinary(t)
	c := startCluster(t, bin, 3, "kill")
	w := newClWriter()
	victim := c.nodes[2]
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.writeAll(w, c.nodes[:2], 80)
	}()
	c.writeAll(w, []*clNode{victim}, 20)
	victim.stop(syscall.SIGKILL)
	wg.Wait()
	victim.start()
	c.writeAll(w, c.nodes, 10)
	c.waitConverged(w, c.nodes, 60*time.Second)
	c.compareDumps(c.nodes)
}

// TestClusterLargeTransactionWhole checks that a 100,000-row transaction shows on the other
// nodes all at once, never in part.
func TestClusterLargeTransactionWhole(t *testing.T) {
	bin := clusterBinary(t)
	c := startCluster(t, bin, 3, "big")
	const rows = 100_000
	count := func(n *clNode) int64 {
		_, vals, err := n.cl.QueryAll(context.Background(), client.Options{}, client.Stmt("SELECT count(*) FROM t WHERE v = 'big'"))
		if err != nil || len(vals) != 1 {
			t.Fatalf("count on node %d: %v", n.idx, err)
		}
		return vals[0][0].Int
	}
	// Watch the other nodes while the transaction travels: every read must see none
	// of it or all of it.
	stop := make(chan struct{})
	var seen sync.Map
	var wg sync.WaitGroup
	for _, n := range c.nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got := count(n)
				seen.Store(got, true)
				if got == rows {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	res, err := c.nodes[0].cl.Exec(context.Background(), client.Options{Timeout: 5 * time.Minute}, client.Stmt(
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) INSERT INTO t (id, v, node) SELECT x + 1000000, 'big', 0 FROM c", rows))
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		close(stop)
		<-done
		t.Fatalf("the other nodes did not show the transaction (version %d) within 2 minutes", res.Version)
	}
	seen.Range(func(k, _ any) bool {
		t.Logf("a node showed %d rows of the transaction", k)
		if k.(int64) != 0 && k.(int64) != rows {
			t.Errorf("a node showed %d of the %d rows: half a transaction", k, rows)
		}
		return true
	})
	w := newClWriter()
	w.heads[c.nodes[0].site] = res.Version
	c.waitConverged(w, c.nodes, 60*time.Second)
	c.compareDumps(c.nodes)
}

// TestClusterLateJoiner checks that a node that joins after the writes catches up by sync.
func TestClusterLateJoiner(t *testing.T) {
	bin := clusterBinary(t)
	c := startCluster(t, bin, 3, "late")
	w := newClWriter()
	c.writeAll(w, c.nodes, 40)
	late := newClNode(t, bin, 3, "late", nil)
	late.bootstrap = []string{c.nodes[1].gossip}
	late.start()
	c.nodes = append(c.nodes, late)
	c.waitMembers(c.nodes)
	c.waitConverged(w, c.nodes, 60*time.Second)
	c.compareDumps(c.nodes)
}

// TestClusterPartitionHeals checks that a 2+3 partition keeps each side's writes to itself and
// converges once healed.
func TestClusterPartitionHeals(t *testing.T) {
	bin := clusterBinary(t)
	c := startCluster(t, bin, 5, "part")
	w := newClWriter()
	c.writeAll(w, c.nodes, 10)
	c.waitConverged(w, c.nodes, 60*time.Second)
	a, b := c.nodes[:2], c.nodes[2:]
	block := func(side, other []*clNode) {
		var peers []string
		for _, o := range other {
			peers = append(peers, strconv.Quote(o.site.String()))
		}
		for _, n := range side {
			n.setFaults([]string{"peers = [" + strings.Join(peers, ", ") + "]\nblock = true"})
		}
	}
	block(a, b)
	block(b, a)
	wa, wb := newClWriter(), newClWriter()
	c.writeAll(wa, a, 30)
	c.writeAll(wb, b, 30)
	c.waitConverged(wa, a, 60*time.Second)
	c.waitConverged(wb, b, 60*time.Second)
	// While cut, neither side has the other's new writes.
	for _, n := range a {
		st, err := n.cl.SyncState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for s, v := range wb.heads {
			if st.Heads[s] >= v {
				t.Fatalf("node %d got %v/%d across the partition", n.idx, s, v)
			}
		}
	}
	for _, n := range c.nodes {
		n.setFaults(nil)
	}
	for _, x := range []*clWriter{wa, wb} {
		for s, v := range x.heads {
			w.heads[s] = max(w.heads[s], v)
		}
	}
	c.waitMembers(c.nodes)
	c.waitConverged(w, c.nodes, 90*time.Second)
	c.compareDumps(c.nodes)
}

// TestClusterMutualTLS checks that certificates made by patina tls secure the cluster, and a
// node without them gets no data.
func TestClusterMutualTLS(t *testing.T) {
	bin := clusterBinary(t)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"tls", "ca", "--out-dir", dir},
		{"tls", "server", "--ca", filepath.Join(dir, "ca.pem"), "--ca-key", filepath.Join(dir, "ca-key.pem"), "--host", "127.0.0.1", "--out-dir", dir},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("patina %v: %v\n%s", args, err, out)
		}
	}
	c := startCluster(t, bin, 3, "tls", "--gossip-tls-ca-file", filepath.Join(dir, "ca.pem"),
		"--gossip-tls-cert-file", filepath.Join(dir, "server.pem"), "--gossip-tls-key-file", filepath.Join(dir, "server-key.pem"))
	// A node without the CA's certificate: membership has no TLS, so it joins that,
	// but every QUIC handshake with it fails and no data crosses. It is listed as
	// untrusted, never alive, so health does not count it (issue 12, item 9; on main it
	// was alive and counted), and the refusal is a warn line and a metric.
	stranger := newClNode(t, bin, 9, "tls", nil)
	stranger.bootstrap = []string{c.nodes[0].gossip}
	stranger.start()
	testutil.WaitFor(t, 60*time.Second, "the node without a certificate to be untrusted everywhere", func() bool {
		for _, n := range c.nodes {
			ms, err := n.cl.Members(context.Background())
			if err != nil {
				return false
			}
			found := false
			for _, m := range ms {
				found = found || (m.SiteID == stranger.site && m.State == "untrusted")
			}
			if !found {
				return false
			}
		}
		return true
	})
	c.waitMembers(c.nodes)
	for _, n := range c.nodes {
		if h, err := n.cl.Health(context.Background(), nil); err != nil || h.Members != len(c.nodes) {
			t.Fatalf("node %d health = %+v, %v; want %d members (the uncertified node not counted)", n.idx, h, err, len(c.nodes))
		}
	}
	testutil.WaitFor(t, 30*time.Second, "the refusal as a warn line and a metric", func() bool {
		for _, n := range c.nodes {
			if n.metric("patina_gossip_tls_refused_total") > 0 && strings.Contains(n.out.String(), "refusing a peer under mutual TLS") {
				return true
			}
		}
		return false
	})
	w, ws := newClWriter(), newClWriter()
	c.writeAll(w, c.nodes, 20)
	c.writeAll(ws, []*clNode{stranger}, 5)
	c.waitConverged(w, c.nodes, 60*time.Second)
	rounds := c.nodes[0].metric("patina_gossip_sync_rounds_total")
	testutil.WaitFor(t, 60*time.Second, "further sync rounds", func() bool {
		return c.nodes[0].metric("patina_gossip_sync_rounds_total") >= rounds+3
	})
	st, err := stranger.cl.SyncState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Heads) != 1 {
		t.Fatalf("the node without a certificate holds sites %v", st.Heads)
	}
	for _, n := range c.nodes {
		st, err := n.cl.SyncState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := st.Heads[stranger.site]; ok {
			t.Fatalf("node %d holds the uncertified node's writes", n.idx)
		}
	}
	c.compareDumps(c.nodes)
}

// TestClusterOtherClusterID checks that a node of another cluster id is refused and never
// exchanges data.
func TestClusterOtherClusterID(t *testing.T) {
	bin := clusterBinary(t)
	c := startCluster(t, bin, 2, "blue")
	stranger := newClNode(t, bin, 9, "green", nil)
	stranger.bootstrap = []string{c.nodes[0].gossip}
	stranger.start()
	w, ws := newClWriter(), newClWriter()
	c.writeAll(w, c.nodes, 10)
	c.writeAll(ws, []*clNode{stranger}, 10)
	c.waitConverged(w, c.nodes, 60*time.Second)
	c.waitConverged(ws, []*clNode{stranger}, 60*time.Second)
	rounds := c.nodes[0].metric("patina_gossip_sync_rounds_total")
	testutil.WaitFor(t, 60*time.Second, "refusals and further sync rounds", func() bool {
		return c.nodes[0].metric("patina_gossip_refused_peers_total") > 0 &&
			c.nodes[0].metric("patina_gossip_sync_rounds_total") >= rounds+3
	})
	for _, n := range append(slices.Clone(c.nodes), stranger) {
		st, err := n.cl.SyncState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Heads) != 1 && n == stranger || len(st.Heads) != 2 && n != stranger {
			t.Fatalf("node %d holds sites %v: data crossed clusters", n.idx, st.Heads)
		}
		ms, err := n.cl.Members(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := 2
		if n == stranger {
			want = 1
		}
		if len(ms) != want {
			t.Fatalf("node %d lists %d members, want %d: %+v", n.idx, len(ms), want, ms)
		}
	}
}
