package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
)

// buildPatina returns the path of the patina binary, built once per test process (a link
// of the whole binary costs seconds, and a dozen tests need it) into a temp dir that
// TestMain removes. It builds it exactly as the Dockerfile does (static, same flags; see
// dockerBuild), so that every process test runs the binary that ships, and CI builds it
// the Dockerfile's way.
func buildPatina(tb testing.TB) string {
	tb.Helper()
	patinaBin.once.Do(func() {
		patinaBin.err = errors.New("the build stopped the test that ran it")
		dir, err := os.MkdirTemp("", "patina-bin-")
		if err != nil {
			patinaBin.err = err
			return
		}
		patinaBin.dir = dir
		bin := filepath.Join(dir, "patina")
		env, args := dockerBuild(tb)
		// The Dockerfile's flags, through go run: the build cache keeps what go run links
		// (go build links again every time), and -exec cp copies it out instead of running
		// it. bench's tests build the same way with the same flags, so whichever package's
		// tests come second, or run again, skip the link (10-35 s on the shared machine).
		var run []string
		for i := 0; i < len(args); i++ {
			if args[i] == "-o" {
				i++ // go run has no -o: cp gets the destination
				continue
			}
			run = append(run, args[i])
		}
		if len(run) == 0 {
			patinaBin.err = fmt.Errorf("the Dockerfile's go build line %v names no package", args)
			return
		}
		pkg := run[len(run)-1]
		run = append(append(run[:len(run)-1], "-exec", "cp", pkg), bin)
		build := exec.Command("go", append([]string{"run"}, run...)...)
		build.Dir = repoRoot
		build.Env = append(os.Environ(), env...)
		if out, err := build.CombinedOutput(); err != nil {
			patinaBin.err = fmt.Errorf("go run %v (env %v, the Dockerfile's build flags): %v\n%s", run, env, err, out)
			return
		}
		patinaBin.path, patinaBin.err = bin, nil
	})
	if patinaBin.err != nil {
		tb.Fatal(patinaBin.err)
	}
	return patinaBin.path
}

var patinaBin struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if patinaBin.dir != "" {
		os.RemoveAll(patinaBin.dir)
	}
	os.Exit(code)
}

// agentProc is `patina agent` running as a real process.
type agentProc struct {
	cmd    *exec.Cmd
	out    *testutil.LockedBuffer
	done   chan struct{}
	err    error
	apiURL string
}

// startAgentProc starts the binary with args and waits until GET /v1/health answers 200.
func startAgentProc(tb testing.TB, bin, apiAddr string, args ...string) *agentProc {
	tb.Helper()
	p := &agentProc{out: &testutil.LockedBuffer{}, done: make(chan struct{}), apiURL: "http://" + apiAddr}
	p.cmd = exec.Command(bin, append([]string{"agent", "--api-addr", apiAddr}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	cl, _ := client.New(apiAddr)
	testutil.WaitFor(tb, 30*time.Second, "the agent's health", func() bool {
		select {
		case <-p.done:
			tb.Fatalf("agent exited early: %v\n%s", p.err, p.out)
		default:
		}
		_, err := cl.Health(context.Background(), nil)
		return err == nil
	})
	return p
}

// stop sends sig and waits for the exit.
func (p *agentProc) stop(tb testing.TB, sig syscall.Signal) error {
	tb.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		tb.Fatalf("agent did not exit on %v:\n%s", sig, p.out)
	}
	return p.err
}

// run runs a client command of the binary and returns its stdout; it fails the test on a
// non-zero exit.
func run(tb testing.TB, bin string, args ...string) string {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("patina %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestAgentProcessCrashAndRebuild runs the real binary: writes through `patina exec`, reads
// through `patina query`, SIGKILLs the agent while writers are busy, restarts it and finds
// every acknowledged write; then stops it with SIGTERM, runs `patina rebuild` on the stopped
// dir and checks that the view is unchanged, clock tables included.
func TestAgentProcessCrashAndRebuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildPatina(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	schema := filepath.Join(dir, "schema.sql")
	os.WriteFile(schema, []byte("CREATE TABLE items (id INTEGER PRIMARY KEY NOT NULL, name TEXT, n INTEGER DEFAULT 0);\n"), 0o644)
	apiAddr := testutil.FreeAddr(t)
	site := "0b5e55ed-0000-4000-8000-000000000001"
	args := []string{"--data-dir", data, "--schema", schema, "--site-id", site, "--cluster-id", "test",
		"--gossip-addr", testutil.FreeAddr(t), "--quic-addr", testutil.FreeUDPAddr(t), "--log-format", "json"}
	p := startAgentProc(t, bin, apiAddr, args...)

	// Writes and reads through the CLI.
	for i := 1; i <= 5; i++ {
		run(t, bin, "exec", "--api-addr", apiAddr, "INSERT INTO items (id, name) VALUES (?, ?)", "--param", fmt.Sprint(i), "--param", fmt.Sprintf(`"cli-%d"`, i))
	}
	run(t, bin, "exec", "--api-addr", apiAddr, `["UPDATE items SET n = n + 1 WHERE id = ?", [3]]`)
	out := run(t, bin, "query", "--api-addr", apiAddr, "--output", "json", "SELECT id, name, n FROM items ORDER BY id")
	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("query output line %q: %v", line, err)
		}
		got = append(got, m)
	}
	if len(got) != 5 || got[2]["name"] != "cli-3" || got[2]["n"] != float64(1) {
		t.Fatalf("query output = %v", got)
	}
	if table := run(t, bin, "query", "--api-addr", apiAddr, "SELECT id, name FROM items WHERE id = 1"); !strings.Contains(table, "cli-1") || !strings.Contains(table, "(1 row(s))") {
		t.Errorf("table output = %q", table)
	}

	// Concurrent writers; SIGKILL in the middle of their work.
	cl, _ := client.New(apiAddr)
	var mu sync.Mutex
	acked := map[int]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := 1000 + w*100000 + i
				_, err := cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO items (id, name) VALUES (?, ?)", id, "w"))
				if err != nil {
					return // the agent is gone
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		}()
	}
	testutil.WaitFor(t, 60*time.Second, "200 acknowledged writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 200
	})
	p.cmd.Process.Kill()
	<-p.done
	cancel()
	wg.Wait()

	p = startAgentProc(t, bin, apiAddr, args...)
	_, rows, err := cl.QueryAll(context.Background(), client.Options{}, client.Stmt("SELECT id FROM items WHERE id >= 1000"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]bool{}
	for _, r := range rows {
		have[r[0].Int] = true
	}
	lost := 0
	for id := range acked {
		if !have[int64(id)] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost after SIGKILL", lost, len(acked))
	}
	t.Logf("%d acknowledged writes survived SIGKILL (%d rows present)", len(acked), len(have))

	// A restarted node with another site id is refused with exit code 2.
	cmd := exec.Command(bin, "agent", "--data-dir", data, "--site-id", "0b5e55ed-0000-4000-8000-000000000002", "--api-addr", testutil.FreeAddr(t))
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: exit %v\n%s", err, p.out)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 || !strings.Contains(stderr.String(), "another site") {
		t.Errorf("another --site-id on the data dir: %v, stderr %q; want exit 2 saying so", err, stderr.String())
	}

	before := dumpView(t, filepath.Join(data, "views.db"), nil)
	rb := run(t, bin, "rebuild", "--data-dir", data, "--schema", schema)
	if !strings.Contains(rb, "rebuilt") {
		t.Errorf("rebuild output = %q", rb)
	}
	after := dumpView(t, filepath.Join(data, "views.db"), nil)
	if !reflect.DeepEqual(before, after) {
		for name := range before {
			if !reflect.DeepEqual(before[name], after[name]) {
				t.Errorf("table %s differs after rebuild: %d rows before, %d after", name, len(before[name]), len(after[name]))
			}
		}
		t.Fatalf("the rebuilt view differs (%d tables before, %d after)", len(before), len(after))
	}
	// The rebuilt view serves.
	p = startAgentProc(t, bin, apiAddr, args...)
	if total, _, err := cl.TableStats(context.Background(), "items"); err != nil || total != int64(len(have)+5) {
		t.Errorf("rows after rebuild = %d, %v; want %d", total, err, len(have)+5)
	}
	if err := p.stop(t, syscall.SIGINT); err != nil {
		t.Errorf("SIGINT: exit %v", err)
	}
}

// TestAgentSecondSignal: the first SIGTERM starts a graceful stop, which waits for requests
// in flight; a second one exits at once, with exit code 1.
func TestAgentSecondSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t0 := time.Now()
	bin := buildPatina(t)
	t.Logf("built in %v", time.Since(t0))
	apiAddr := testutil.FreeAddr(t)
	p := startAgentProc(t, bin, apiAddr, "--data-dir", t.TempDir(),
		"--gossip-addr", testutil.FreeAddr(t), "--quic-addr", testutil.FreeUDPAddr(t))
	// A query that runs until the agent is killed keeps the graceful stop waiting.
	cl, _ := client.New(apiAddr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cl.QueryAll(ctx, client.Options{}, client.Stmt(
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) SELECT count(*) FROM c"))
	testutil.WaitFor(t, 10*time.Second, "the query in flight", func() bool {
		text, err := cl.Metrics(context.Background())
		return err == nil && strings.Contains(text, `patina_http_requests_in_flight{route="POST /v1/queries"} 1`)
	})
	t.Logf("query in flight after %v", time.Since(t0))
	p.cmd.Process.Signal(syscall.SIGTERM)
	testutil.WaitFor(t, 10*time.Second, "the graceful stop to begin", func() bool {
		return strings.Contains(p.out.String(), "shutting down")
	})
	select {
	case <-p.done:
		t.Fatalf("the agent stopped before its query ended: %v\n%s", p.err, p.out)
	default:
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("a second SIGTERM did not stop the agent at once:\n%s", p.out)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(p.out.String(), "second signal") {
		t.Errorf("exit code %d after %v, want 1 and a message:\n%s", code, time.Since(start), p.out)
	}
}
