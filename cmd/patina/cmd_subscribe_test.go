package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
)

// subLines reads a process's stdout line by line into a channel.
func subLines(tb testing.TB, cmd *exec.Cmd) <-chan string {
	tb.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return ch
}

func subExpect(tb testing.TB, ch <-chan string, want ...string) {
	tb.Helper()
	for _, w := range want {
		select {
		case got, ok := <-ch:
			if !ok {
				tb.Fatalf("stream ended, want %s", w)
			}
			if strings.HasSuffix(w, "*") && strings.HasPrefix(got, strings.TrimSuffix(w, "*")) {
				continue
			}
			if got != w {
				tb.Fatalf("got %s, want %s", got, w)
			}
		case <-time.After(30 * time.Second):
			tb.Fatalf("no line within 30s, want %s", w)
		}
	}
}

// TestSubscribeTwoNodes: two agent processes joined by gossip; `patina subscribe` on node B
// sees a write acknowledged by node A, as a change event.
func TestSubscribeTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildPatina(t)
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(`CREATE TABLE apps (id INTEGER PRIMARY KEY NOT NULL, name TEXT);
CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app_id INTEGER, addr TEXT);`), 0o644); err != nil {
		t.Fatal(err)
	}
	gossipA := testutil.FreeAddr(t)
	apiA, apiB := testutil.FreeAddr(t), testutil.FreeAddr(t)
	startAgentProc(t, bin, apiA, "--data-dir", filepath.Join(dir, "a"), "--schema", schema, "--cluster-id", "subs",
		"--gossip-addr", gossipA, "--quic-addr", testutil.FreeUDPAddr(t), "--gossip-sync-interval", "200ms")
	startAgentProc(t, bin, apiB, "--data-dir", filepath.Join(dir, "b"), "--schema", schema, "--cluster-id", "subs",
		"--gossip-addr", testutil.FreeAddr(t), "--quic-addr", testutil.FreeUDPAddr(t), "--gossip-sync-interval", "200ms",
		"--bootstrap", gossipA)
	run(t, bin, "exec", "--api-addr", apiA, "INSERT INTO apps VALUES (1, 'web')")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := exec.CommandContext(ctx, bin, "subscribe", "--api-addr", apiB,
		"SELECT m.id, m.addr, a.name FROM machines m JOIN apps a ON a.id = m.app_id")
	lines := subLines(t, sub)
	subExpect(t, lines, `{"columns":["id","addr","name"]}`, `{"eoq":*`)

	run(t, bin, "exec", "--api-addr", apiA, "INSERT INTO machines VALUES ('m1', 1, '10.0.0.1')")
	// The app's row may reach B after the machine's: the join shows the machine once both
	// are there, whichever order they come in.
	subExpect(t, lines, `{"change":["insert",1,["m1","10.0.0.1","web"],1]}`)
	run(t, bin, "exec", "--api-addr", apiA, "UPDATE machines SET addr = '10.0.0.2' WHERE id = 'm1'")
	subExpect(t, lines, `{"change":["update",1,["m1","10.0.0.2","web"],2]}`)
}

// BenchmarkSubscribeOtherNode: time from a write acknowledged by node A (POST
// /v1/transactions answered) to the change event on a subscription of node B, two agent
// processes joined by gossip on loopback.
func BenchmarkSubscribeOtherNode(b *testing.B) {
	bin := buildPatina(b)
	dir := b.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(`CREATE TABLE apps (id INTEGER PRIMARY KEY NOT NULL, name TEXT);
CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app_id INTEGER, addr TEXT);`), 0o644); err != nil {
		b.Fatal(err)
	}
	gossipA := testutil.FreeAddr(b)
	apiA, apiB := testutil.FreeAddr(b), testutil.FreeAddr(b)
	startAgentProc(b, bin, apiA, "--data-dir", filepath.Join(dir, "a"), "--schema", schema, "--cluster-id", "subs",
		"--gossip-addr", gossipA, "--quic-addr", testutil.FreeUDPAddr(b), "--log-level", "warn")
	startAgentProc(b, bin, apiB, "--data-dir", filepath.Join(dir, "b"), "--schema", schema, "--cluster-id", "subs",
		"--gossip-addr", testutil.FreeAddr(b), "--quic-addr", testutil.FreeUDPAddr(b), "--log-level", "warn",
		"--bootstrap", gossipA)
	ca, err := client.New(apiA)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	exec := func(sql string) {
		if _, err := ca.Exec(ctx, client.Options{}, client.Stmt(sql)); err != nil {
			b.Fatal(err)
		}
	}
	exec(`INSERT INTO apps VALUES (1, 'web')`)
	exec(`INSERT INTO machines VALUES ('m1', 1, '10.0.0.0')`)
	body := `"SELECT m.id, m.addr, a.name FROM machines m JOIN apps a ON a.id = m.app_id WHERE m.app_id = 1"`
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "POST", "http://"+apiB+"/v1/subscriptions?skip_rows=true", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(30 * time.Second):
			b.Fatal("no event within 30s")
			return ""
		}
	}
	// skip_rows: no columns, rows or eoq; the 200 answer means the subscription is live.
	// Wait until B has both rows: the first write's event proves replication works.
	exec(`UPDATE machines SET addr = '10.0.0.1' WHERE id = 'm1'`)
	for !strings.Contains(next(), `"10.0.0.1"`) {
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		exec(fmt.Sprintf(`UPDATE machines SET addr = '10.1.%d' WHERE id = 'm1'`, i))
		acked := time.Now()
		want := fmt.Sprintf(`"10.1.%d"`, i)
		for l := next(); !strings.Contains(l, want); l = next() {
		}
		lat = append(lat, time.Since(acked))
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}

// TestSubscribeCommand drives `patina subscribe` against an in-process agent: the events,
// resuming by id, and its errors with their exit codes.
func TestSubscribeCommand(t *testing.T) {
	schema := filepath.Join(t.TempDir(), "kv.sql")
	if err := os.WriteFile(schema, []byte("CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v INTEGER);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startTestAgent(t, func(c *Config) {
		c.Schema = []string{schema}
		c.Subscriptions.RetainChanges = 2
	})
	addr := a.APIAddr()
	cli(t, "exec", "--api-addr", addr, "INSERT INTO kv VALUES ('a', 1)")

	ctx, cancel := context.WithCancel(context.Background())
	var out, errb testutil.LockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- (&Main{Stdout: &out, Stderr: &errb}).Run(ctx, []string{"subscribe", "--api-addr", addr, "SELECT k, v FROM kv WHERE v > ?", "-p", "0"})
	}()
	waitOut := func(want string) {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, "output "+want, func() bool { return strings.Contains(out.String(), want) })
	}
	waitOut(`{"eoq":`)
	cli(t, "exec", "--api-addr", addr, "UPDATE kv SET v = 2 WHERE k = 'a'")
	cli(t, "exec", "--api-addr", addr, "INSERT INTO kv VALUES ('b', 5)")
	cli(t, "exec", "--api-addr", addr, "DELETE FROM kv WHERE k = 'a'")
	waitOut(`{"change":["delete",1,["a",2],3]}`)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("interrupted subscribe: %v", err)
	}
	want := `{"columns":["k","v"]}
{"row":[1,["a",1]]}
`
	if got := out.String(); !strings.HasPrefix(got, want) || !strings.Contains(got, `{"change":["update",1,["a",2],1]}
{"change":["insert",2,["b",5],2]}
{"change":["delete",1,["a",2],3]}
`) {
		t.Errorf("output:\n%s", got)
	}
	id := strings.TrimSpace(strings.TrimPrefix(errb.String(), "subscription "))

	// Resume by id: the changes after 2 (ctx ends the stream once it is printed).
	ctx2, cancel2 := context.WithCancel(context.Background())
	var out2 testutil.LockedBuffer
	go func() {
		done <- (&Main{Stdout: &out2, Stderr: io.Discard}).Run(ctx2, []string{"subscribe", "--api-addr", addr, "--id", id, "--from", "2"})
	}()
	testutil.WaitFor(t, 10*time.Second, "resumed output", func() bool { return out2.String() != "" })
	cancel2()
	if err := <-done; err != nil {
		t.Fatalf("resume: %v", err)
	}
	if got := out2.String(); got != `{"change":["delete",1,["a",2],3]}`+"\n" {
		t.Errorf("resumed output %q", got)
	}

	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no statement", []string{"subscribe"}, 2, "either SQL or --id"},
		{"both", []string{"subscribe", "--id", id, "SELECT 1"}, 2, "either SQL or --id"},
		{"not a select", []string{"subscribe", "DELETE FROM kv"}, 2, "SELECT"},
		{"unknown id", []string{"subscribe", "--id", "00000000-0000-4000-8000-000000000000"}, 2, "no such subscription"},
		{"ahead", []string{"subscribe", "--id", id, "--from", "99"}, 1, "not reached"},
		{"from without a subscription", []string{"subscribe", "--from", "1", "SELECT k FROM kv WHERE k > 'z'"}, 2, "no subscription of this statement"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := cliErr(t, append(c.args, "--api-addr", addr)...)
			if err == nil || exitCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("got %v (exit %d), want exit %d with %q", err, exitCode(err), c.code, c.msg)
			}
		})
	}
}
