package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/patinadb/patina/api/client"
)

// cli runs a command in-process and returns its stdout; it fails the test on an error.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cliErr(t, args...)
	if err != nil {
		t.Fatalf("patina %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func cliErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb}
	err := m.Run(context.Background(), args)
	return out.String(), err
}

// TestClientCommands drives every client command against an in-process agent, then the
// offline ones on its stopped data dir.
func TestClientCommands(t *testing.T) {
	a := startTestAgent(t, nil)
	addr := a.APIAddr()
	dir := t.TempDir()
	schemaDir := filepath.Join(dir, "schema")
	os.MkdirAll(schemaDir, 0o755)
	os.WriteFile(filepath.Join(schemaDir, "001_apps.sql"), []byte("CREATE TABLE apps (id INTEGER PRIMARY KEY NOT NULL, name TEXT, cpu REAL);\n"), 0o644)
	os.WriteFile(filepath.Join(schemaDir, "002_idx.sql"), []byte("CREATE INDEX apps_name ON apps (name);\n"), 0o644)

	if out := cli(t, "migrate", "--api-addr", addr, schemaDir); !strings.Contains(out, "2 statement(s) changed the schema") {
		t.Errorf("migrate: %q", out)
	}
	if out := cli(t, "migrate", "--api-addr", addr, schemaDir); !strings.Contains(out, "0 statement(s)") {
		t.Errorf("migrate again: %q", out)
	}
	// The migration is version 1 of the log: a schema changeset.
	if out := cli(t, "schema", "--api-addr", addr); !strings.Contains(out, "apps") || !strings.Contains(out, "id, name, cpu") ||
		!strings.Contains(out, a.SiteID().String()+"/1") {
		t.Errorf("schema: %q", out)
	}
	if out := cli(t, "schema", "--api-addr", addr, "-o", "json"); !strings.Contains(out, `"version": 2`) || !strings.Contains(out, `"conflicts": []`) {
		t.Errorf("schema -o json: %q", out)
	}
	out := cli(t, "exec", "--api-addr", addr, "INSERT INTO apps (id, name, cpu) VALUES (1, 'web', 0.5)", `["INSERT INTO apps (id, name, cpu) VALUES (?, ?, ?)", [2, "db\tmain", 2.0]]`)
	if !strings.Contains(out, "statement 1: 1 row(s) affected") || !strings.Contains(out, "version 2 of site "+a.SiteID().String()) {
		t.Errorf("exec: %q", out)
	}
	if out := cli(t, "exec", "--api-addr", addr, "--json", "UPDATE apps SET cpu = ? WHERE id = ?", "-p", "1.5", "-p", "1"); !strings.Contains(out, `"version": 3`) {
		t.Errorf("exec --json: %q", out)
	}
	if _, err := cliErr(t, "exec", "--api-addr", addr, "INSERT INTO nope VALUES (1)"); exitCode(err) != 2 || !strings.Contains(err.Error(), "nope") {
		t.Errorf("exec of bad SQL: %v (exit %d), want exit 2", err, exitCode(err))
	}

	table := cli(t, "query", "--api-addr", addr, "SELECT id, name, cpu FROM apps ORDER BY id")
	for _, want := range []string{"id  name", "1   web", `db\tmain`, "2.0", "(2 row(s))"} {
		if !strings.Contains(table, want) {
			t.Errorf("query table lacks %q:\n%s", want, table)
		}
	}
	js := cli(t, "query", "--api-addr", addr, "-o", "json", "SELECT id, cpu, NULL AS n, X'0A' AS b FROM apps WHERE id = ?", "-p", "2")
	if strings.TrimSpace(js) != `{"id":2,"cpu":2.0,"n":null,"b":[10]}` {
		t.Errorf("query json = %q", js)
	}

	tail := cli(t, "tail", "--api-addr", addr, "--follow=false", "-o", "summary")
	if n := strings.Count(tail, "\n"); n != 3 || !strings.Contains(tail, "seq 3 site "+a.SiteID().String()+" version 3: 1 change(s)") {
		t.Errorf("tail summary (%d lines):\n%s", n, tail)
	}
	tailJSON := cli(t, "tail", "--api-addr", addr, "--follow=false", "--since", "2")
	var cs struct {
		Seq     int `json:"seq"`
		Changes []struct {
			CID string          `json:"cid"`
			Val json.RawMessage `json:"val"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(tailJSON), &cs); err != nil || cs.Seq != 3 || len(cs.Changes) != 1 || string(cs.Changes[0].Val) != "1.5" {
		t.Errorf("tail --since 2 = %q (%v)", tailJSON, err)
	}

	var st struct {
		Heads map[string]int `json:"heads"`
	}
	if err := json.Unmarshal([]byte(cli(t, "sync", "state", "--api-addr", addr)), &st); err != nil || st.Heads[a.SiteID().String()] != 3 {
		t.Errorf("sync state heads = %v (%v)", st.Heads, err)
	}
	if out := cli(t, "members", "--api-addr", addr); !strings.Contains(out, a.SiteID().String()) || !strings.Contains(out, "alive (self)") {
		t.Errorf("members: %q", out)
	}
	if _, err := cliErr(t, "members", "--api-addr", "127.0.0.1:1"); exitCode(err) != 1 {
		t.Errorf("members of no agent: %v, exit %d, want 1", err, exitCode(err))
	}

	// The agent's /metrics carries every component's metrics, the log's included.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"patina_log_last_seq 3", "patina_log_append_queue_length", "patina_http_requests_in_flight"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Offline commands on the stopped data dir.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	ins := cli(t, "log", "inspect", "--data-dir", a.cfg.DataDir, "--check")
	if !strings.Contains(ins, a.SiteID().String()) || !strings.Contains(ins, "check: ok") {
		t.Errorf("log inspect:\n%s", ins)
	}
	lines := cli(t, "log", "inspect", "--data-dir", a.cfg.DataDir, "--changesets-only")
	if strings.Count(lines, "\n") != 3 || !strings.Contains(lines, `"kind":"schema"`) {
		t.Errorf("log inspect --changesets-only:\n%s", lines)
	}
	if out := cli(t, "rebuild", "--data-dir", a.cfg.DataDir, "-q"); !strings.Contains(out, "3 changesets") {
		t.Errorf("rebuild: %q", out)
	}
}

func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	cli(t, "tls", "ca", "--out-dir", dir)
	ca, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	cli(t, "tls", "server", "--out-dir", dir, "--ca", ca, "--ca-key", key, "--host", "127.0.0.1", "--host", "node1")
	cli(t, "tls", "client", "--out-dir", dir, "--ca", ca, "--ca-key", key)
	for _, base := range []string{"server", "client"} {
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem")); err != nil {
			t.Errorf("%s pair: %v", base, err)
		}
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode: %v %v", st.Mode(), err)
	}
	if _, err := cliErr(t, "tls", "ca", "--out-dir", dir); exitCode(err) != 2 || !strings.Contains(err.Error(), "--force") {
		t.Errorf("overwriting the CA: %v, want exit 2 mentioning --force", err)
	}
	if _, err := cliErr(t, "tls", "server", "--out-dir", dir, "--ca", filepath.Join(dir, "server.pem"), "--ca-key", filepath.Join(dir, "server-key.pem"), "--force"); exitCode(err) != 2 {
		t.Errorf("signing with a non-CA: %v, want exit 2", err)
	}
}

// TestTokenAndClusterID: client commands send the token from a flag, the environment or the
// config file; a data dir stays in the cluster it was made for.
func TestTokenAndClusterID(t *testing.T) {
	a := startTestAgent(t, func(c *Config) {
		c.API.Authz.BearerToken = "s3cret"
		c.ClusterID = "blue"
	})
	addr := a.APIAddr()
	if _, err := cliErr(t, "sync", "state", "--api-addr", addr); exitCode(err) != 2 || !strings.Contains(err.Error(), "401") {
		t.Errorf("without a token: %v (exit %d), want exit 2 and 401", err, exitCode(err))
	}
	cli(t, "sync", "state", "--api-addr", addr, "--token", "s3cret")
	cfgFile := filepath.Join(t.TempDir(), "client.toml")
	os.WriteFile(cfgFile, []byte("api_addr = \""+addr+"\"\n[api.authz]\nbearer_token = \"s3cret\"\n"), 0o644)
	cli(t, "members", "-c", cfgFile)
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		return map[string]string{"PATINA_API_ADDR": addr, "PATINA_API_AUTHZ_BEARER_TOKEN": "s3cret"}[k]
	}}
	if err := m.Run(context.Background(), []string{"query", "SELECT 1"}); err != nil {
		t.Errorf("token and address from the environment: %v", err)
	}

	dir := a.cfg.DataDir
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	other := NewAgent(Config{DataDir: dir, ClusterID: "green", APIAddr: "127.0.0.1:0", LogLevel: "info", LogFormat: "text"}, nil)
	other.standalone = true
	err := other.Open(context.Background())
	if exitCode(err) != 2 || !strings.Contains(err.Error(), `belongs to cluster "blue"`) {
		t.Errorf("another cluster id on the data dir: %v, want exit 2 naming the cluster", err)
	}
	other.Close()
}

// TestBackupRestore: a stopped node's log written to a file and restored into a new data
// dir with the same site id gives the same rows, and the restored node's next local write
// takes the next version of that site.
func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	os.WriteFile(schema, []byte("CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v);\n"), 0o644)
	a := startTestAgent(t, func(c *Config) { c.Schema = []string{schema} })
	cl := a.client(t)
	for i := range 5 {
		if _, err := cl.Exec(context.Background(), client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES (?, ?)", fmt.Sprint("k", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	site := a.SiteID()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "b.backup")
	cli(t, "backup", "--data-dir", a.cfg.DataDir, "--out", file)
	first, _ := os.ReadFile(file)
	os.WriteFile(file, []byte("keep me"), 0o644)
	if _, err := cliErr(t, "backup", "--data-dir", a.cfg.DataDir, "--out", file); exitCode(err) != 2 || !strings.Contains(err.Error(), "exists") {
		t.Errorf("backup onto an existing file: %v, want exit 2", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("backup overwrote an existing file without --force")
	}
	cli(t, "backup", "--data-dir", a.cfg.DataDir, "--out", file, "--force")
	if b, _ := os.ReadFile(file); !bytes.Equal(b, first) || len(b) == 0 {
		t.Errorf("backup --force wrote %d bytes, want the %d of the first backup", len(b), len(first))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 { // schema.sql and b.backup: no temp file left
		t.Errorf("files left beside the backup: %v", ents)
	}
	restored := filepath.Join(dir, "restored")
	cli(t, "restore", "--data-dir", restored, "--in", file, "--site-id", site.String(), "--no-cluster-check")
	if _, err := cliErr(t, "restore", "--data-dir", restored, "--in", file); exitCode(err) != 2 || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a used dir: %v, want exit 2", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.backup"), []byte{0, 0, 0, 3, 1, 2, 3}, 0o644)
	if _, err := cliErr(t, "restore", "--data-dir", filepath.Join(dir, "r2"), "--in", filepath.Join(dir, "bad.backup")); exitCode(err) != 2 || !strings.Contains(err.Error(), "frame 0") {
		t.Errorf("restore of a bad file: %v, want exit 2 naming the frame", err)
	}

	b := startTestAgent(t, func(c *Config) { c.DataDir, c.Schema = restored, []string{schema} })
	if b.SiteID() != site {
		t.Fatalf("restored site %v, want %v", b.SiteID(), site)
	}
	bcl := b.client(t)
	_, rows, err := bcl.QueryAll(context.Background(), client.Options{}, client.Stmt("SELECT k, v FROM kv ORDER BY k"))
	if err != nil || len(rows) != 5 || rows[4][1].Int != 4 {
		t.Fatalf("restored rows = %v, %v", rows, err)
	}
	res, err := bcl.Exec(context.Background(), client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES ('new', 1)"))
	// Version 1 is the schema changeset of a's start, then five writes.
	if err != nil || res.Version != 7 {
		t.Errorf("first write after restore: version %v, %v; want 7", res, err)
	}

	// The same file posted to a running node's /v1/changes, as the help text says.
	c := startTestAgent(t, func(c *Config) { c.Schema = []string{schema} })
	body, _ := os.ReadFile(file)
	resp, err := http.Post("http://"+c.APIAddr()+"/v1/changes", "application/msgpack", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(ans), `"new":6`) {
		t.Errorf("posting the backup: %d %s", resp.StatusCode, ans)
	}
}

// TestBenchSimUsage: the simulator's commands refuse bad flags with exit 2 before running.
func TestBenchSimUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "sim", "--nodes", "1"},
		{"bench", "sim", "--regions", "41"},
		{"bench", "sim", "--loss", "1"},
		{"bench", "sim", "--nodes", "10", "--regions", "1", "--partition"},
		{"bench", "membership", "--nodes", "2"},
		{"bench", "membership", "--rounds", "0"},
		{"bench", "write", "--binary", "/nonexistent/patina"},
	} {
		if _, err := cliErr(t, args...); exitCode(err) != 2 {
			t.Errorf("patina %v: %v, want exit 2", args, err)
		}
	}
}

// TestBenchSimSignal: a signal (the run context's end, with main's cause) stops patina bench
// sim with exit 1 and one line saying it was interrupted and by what; the progress bar's
// line is cleared. A signal mid-run takes the same path (sim.TestRunCancel stops a run in
// the middle).
func TestBenchSimSignal(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(fmt.Errorf("%w: %v", errSignal, "interrupt"))
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb}
	err := m.Run(ctx, []string{"bench", "sim", "--nodes", "20", "--regions", "2"})
	if exitCode(err) != 1 || !strings.Contains(oneLine(err.Error()), "interrupted") ||
		!strings.Contains(err.Error(), "signal: interrupt") || !errors.Is(err, context.Canceled) {
		t.Fatalf("bench sim after a signal: %v (exit %d), want exit 1 and an interrupted line", err, exitCode(err))
	}
	if !strings.HasSuffix(errb.String(), "\r\033[K") {
		t.Errorf("stderr %q does not end by clearing the progress line", errb.String())
	}
}

// TestVersion: patina version and patina --version print the same line, and a build stamped
// with -ldflags prints the stamped version and commit.
func TestVersion(t *testing.T) {
	v := cli(t, "version")
	if !strings.HasPrefix(v, "patina ") || !strings.Contains(v, runtime.Version()) {
		t.Errorf("patina version = %q", v)
	}
	if f := cli(t, "--version"); f != v {
		t.Errorf("patina --version = %q, patina version = %q", f, v)
	}
	if _, err := cliErr(t, "version", "extra"); exitCode(err) != 2 {
		t.Errorf("version with an argument: %v, want exit 2", err)
	}
	bin := filepath.Join(t.TempDir(), "patina")
	out, err := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=v9.8.7-test -X main.commit=0123456789abcdef0123", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if want := "patina v9.8.7-test (commit 0123456789ab) " + runtime.Version(); err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("stamped %s = %q, %v; want prefix %q", arg, out, err, want)
		}
	}
}

// TestHelpIntro: the root help's introduction names every top-level command, so that a new
// command is not forgotten there.
func TestHelpIntro(t *testing.T) {
	root := (&Main{}).rootCmd()
	intro := root.Long
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		if !strings.Contains(intro, c.Name()) {
			t.Errorf("patina help's introduction does not mention %q", c.Name())
		}
	}
	if out := cli(t, "help"); !strings.HasPrefix(out, intro[:40]) {
		t.Errorf("patina help = %q", out)
	}
}
