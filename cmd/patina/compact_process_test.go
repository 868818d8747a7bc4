package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// tableBytes is the size of Pebble's tables (*.sst) under dir.
func tableBytes(tb testing.TB, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".sst") {
			n += fi.Size()
		}
	}
	return n
}

// listDir lists the files of dir with their sizes, for failure messages.
func listDir(tb testing.TB, dir string) string {
	ents, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d\n", e.Name(), fi.Size())
		}
	}
	return b.String()
}

// dirBytes is the size of the files under dir: apparent (what they hold) and allocated
// (what du counts; Pebble preallocates each WAL file to 110% of its 4 MB memtable).
func dirBytes(tb testing.TB, dir string) (apparent, allocated int64) {
	tb.Helper()
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			apparent += fi.Size()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				allocated += st.Blocks * 512
			} else {
				allocated += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return apparent, allocated
}

// churn runs count single-row updates of rows 1..rows (at least writers of them) from
// writers goroutines; each writer owns the rows congruent to its index modulo writers and
// cycles through them, so a row's last acknowledged value and its one write in flight are
// known. (Rows shared by two writers have no such answer: their acknowledgements can come
// back in another order than their commits.) It returns, per row, the last acknowledged and
// the last attempted value, and stops early (without failing) when the agent goes away.
func churn(ctx context.Context, cl *client.Client, rows, count, writers int, base int64) (acked, tried map[int64]int64) {
	acked, tried = map[int64]int64{}, map[int64]int64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	per := count / writers
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := (rows - w + writers - 1) / writers // ids 1+w, 1+w+writers, ... <= rows
			for i := range per {
				id := int64(1 + w + writers*(i%own))
				v := base + int64(i)
				mu.Lock()
				tried[id] = v
				mu.Unlock()
				if _, err := cl.Exec(ctx, client.Options{}, client.Stmt("UPDATE m SET v = ? WHERE id = ?", v, id)); err != nil {
					return
				}
				mu.Lock()
				acked[id] = v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acked, tried
}

// TestCompactionProcess runs real agents with log.retention 0s: a node under a churn of
// single-row updates of a fixed set of rows keeps at most 3 changes per row once compaction
// caught up, and a log at most 3 times its view plus a few MB after a graceful stop; a fresh
// node joining it catches up to the same rows and clocks with a log as small; its
// GET /v1/changes?since=0 folded into an empty node gives the same state; a SIGKILL while
// compaction runs loses no acknowledged write and leaves the log clean (log inspect
// --check). By default 2,000 updates of 200 rows (uncompacted, that is 11 changes a row);
// PATINA_COMPACT_UPDATES=100000 runs the figure, on 1,000 rows.
func TestCompactionProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agent processes")
	}
	updates, rows := 2000, 200
	if s := os.Getenv("PATINA_COMPACT_UPDATES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		updates, rows = n, 1000
	}
	bin := buildPatina(t)
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	os.WriteFile(schema, []byte("CREATE TABLE m (id INTEGER PRIMARY KEY NOT NULL, v INTEGER);\n"), 0o644)
	type proc struct {
		data, api, gossip string
		args              []string
		p                 *agentProc
	}
	mk := func(name string, extra ...string) *proc {
		p := &proc{data: filepath.Join(dir, name), api: testutil.FreeAddr(t), gossip: testutil.FreeAddr(t)}
		p.args = append([]string{"--data-dir", p.data, "--schema", schema, "--cluster-id", "compact",
			"--gossip-addr", p.gossip, "--quic-addr", testutil.FreeUDPAddr(t), "--log-retention", "0s",
			"--gossip-sync-interval", "200ms"}, extra...)
		return p
	}
	start := func(p *proc) *client.Client {
		p.p = startAgentProc(t, bin, p.api, p.args...)
		cl, _ := client.New(p.api)
		return cl
	}
	stop := func(p *proc) {
		if err := p.p.stop(t, syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM: %v\n%s", err, p.p.out)
		}
	}
	ctx := context.Background()
	a := mk("a")
	cla := start(a)
	for i := 0; i < rows; i += 100 {
		stmts := make([]client.Statement, 0, 100)
		for id := i + 1; id <= min(i+100, rows); id++ {
			stmts = append(stmts, client.Stmt("INSERT INTO m (id, v) VALUES (?, 0)", id))
		}
		if _, err := cla.Exec(ctx, client.Options{}, stmts...); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	acked, _ := churn(ctx, cla, rows, updates, 16, 1)
	if len(acked) != rows {
		t.Fatalf("%d rows updated", len(acked))
	}
	t.Logf("%d updates in %v", updates, time.Since(t0))
	// Compaction catches up once the writes stop.
	testutil.WaitFor(t, 60*time.Second, "compaction to catch up", func() bool {
		return metricValue(cla, "patina_log_changes") <= float64(3*rows)
	})
	stop(a)
	logA, allocA := dirBytes(t, filepath.Join(a.data, "log"))
	viewA, _ := dirBytes(t, filepath.Join(a.data, "views.db"))
	t.Logf("after %d updates of %d rows: log %d bytes (%d allocated, tables %d), views.db %d bytes", updates, rows, logA, allocA, tableBytes(t, filepath.Join(a.data, "log")), viewA)
	// Pebble keeps the WAL of its unflushed memtables (up to four of 4 MB, preallocated):
	// a fixed cost, not history. Tables must stay within 3x the view plus 1 MB, the whole
	// directory within 3x the view plus 12 MB.
	tablesA := tableBytes(t, filepath.Join(a.data, "log"))
	if logA > 3*viewA+12<<20 || tablesA > 3*viewA+1<<20 {
		t.Errorf("log %d bytes (tables %d) > 3 x views.db (%d) + 12 MB (1 MB):\n%s", logA, tablesA, viewA, listDir(t, filepath.Join(a.data, "log")))
	}
	if out := run(t, bin, "log", "inspect", "--data-dir", a.data, "--check"); !strings.Contains(out, "cleared") {
		t.Errorf("log inspect: %s", out)
	}
	wantA := dumpView(t, filepath.Join(a.data, "views.db"), replicated)

	// A fresh node catches up from the compacted log, with a log as small.
	cla = start(a)
	b := mk("b", "--bootstrap", a.gossip)
	clb := start(b)
	testutil.WaitFor(t, 120*time.Second, "the fresh node to catch up", func() bool {
		va, err1 := cla.SyncState(ctx)
		vb, err2 := clb.SyncState(ctx)
		return err1 == nil && err2 == nil && reflect.DeepEqual(va.Heads, vb.Heads) && len(vb.Need) == 0 &&
			metricValue(clb, "patina_materializer_fold_lag") == 0
	})
	stop(b)
	// The compacted stream of A, folded into an empty node C.
	c := mk("c")
	start(c)
	var css []*log.Changeset
	for cs, err := range cla.Changes(ctx, client.ChangesOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		css = append(css, cs)
	}
	// A compacted stream has holes where versions were cleared: the ingest must be told
	// (allow_gaps, README "Log retention and compaction").
	for i := 0; i < len(css); i += 500 {
		var body []byte
		for _, cs := range css[i:min(i+500, len(css))] {
			frame, err := log.AppendChangeset(nil, cs)
			if err != nil {
				t.Fatal(err)
			}
			body = append(binary.BigEndian.AppendUint32(body, uint32(len(frame))), frame...)
		}
		resp, err := http.Post("http://"+c.api+"/v1/changes?allow_gaps=true", "application/msgpack", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST the compacted stream: %s", resp.Status)
		}
	}
	stop(c)
	stop(a)
	for _, n := range []*proc{b, c} {
		if got := dumpView(t, filepath.Join(n.data, "views.db"), replicated); !reflect.DeepEqual(got, wantA) {
			t.Errorf("%s: rows and clocks differ from the compacted node's", filepath.Base(n.data))
		}
	}
	logB, allocB := dirBytes(t, filepath.Join(b.data, "log"))
	t.Logf("fresh node: log %d bytes (%d allocated; the source's %d); %d changesets streamed", logB, allocB, logA, len(css))
	if logB > 3*viewA+12<<20 {
		t.Errorf("fresh node's log %d bytes > 3 x views.db (%d) + 12 MB", logB, viewA)
	}

	// SIGKILL while compaction runs: nothing acknowledged is lost, the log checks clean.
	cla = start(a)
	kctx, cancel := context.WithCancel(ctx)
	var acked2, tried2 map[int64]int64
	done := make(chan struct{})
	// Writes go on until the kill (churn stops at the first failed write).
	go func() { acked2, tried2 = churn(kctx, cla, rows, 1<<30, 16, 1_000_000); close(done) }()
	passes := metricValue(cla, "patina_log_compaction_passes_total")
	testutil.WaitFor(t, 120*time.Second, "two compaction passes under load", func() bool {
		return metricValue(cla, "patina_log_compaction_passes_total") >= passes+2
	})
	a.p.cmd.Process.Kill()
	<-a.p.done
	cancel()
	<-done
	if out := run(t, bin, "log", "inspect", "--data-dir", a.data, "--check"); strings.Contains(out, "corrupt") {
		t.Fatalf("log inspect --check after SIGKILL: %s", out)
	}
	cla = start(a)
	_, got, err := cla.QueryAll(ctx, client.Options{}, client.Stmt("SELECT id, v FROM m"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]int64{}
	for _, r := range got {
		have[r[0].Int] = r[1].Int
	}
	for id, v := range acked2 {
		if have[id] != v && have[id] != tried2[id] {
			t.Errorf("row %d: v = %d, acknowledged %d", id, have[id], v)
		}
	}
	stop(a)
	t.Logf("%d rows written under SIGKILL, all acknowledged values present", len(acked2))
}

// metricValue is the sum of a metric's samples on the agent's /metrics (0 when unreadable).
func metricValue(cl *client.Client, name string) float64 {
	text, err := cl.Metrics(context.Background())
	if err != nil {
		return 0
	}
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}
