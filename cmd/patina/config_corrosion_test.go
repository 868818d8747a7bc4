package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// loadConfigFile loads path as `patina agent -c path` does, without the environment.
func loadConfigFile(t *testing.T, path string) (Config, error) {
	t.Helper()
	c := &cobra.Command{Use: "agent"}
	cf := addConfigFlags(c, true)
	if err := c.ParseFlags([]string{"-c", path}); err != nil {
		t.Fatal(err)
	}
	return cf.load(c, func(string) string { return "" })
}

func noteKeys(notes []configNote) (info, warn []string) {
	for _, n := range notes {
		if n.Level >= 4 { // slog.LevelWarn
			warn = append(warn, n.Key)
		} else {
			info = append(info, n.Key)
		}
	}
	return info, warn
}

// TestCorrosionConfigKeys reads Corrosion-style config files: each Corrosion key becomes its
// Patina key, each key Patina has no use for is one warning, and what cannot be honoured is
// a usage error naming the key.
func TestCorrosionConfigKeys(t *testing.T) {
	cfg, err := loadConfigFile(t, filepath.Join("testdata", "corrosion", "fly.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/var/lib/corrosion/state-patina" || !reflect.DeepEqual(cfg.Schema, []string{"/etc/corrosion/schemas"}) ||
		cfg.GossipAddr != "[fdaa::3]:8787" || cfg.QUICAddr != "[fdaa::3]:8788" || cfg.AdvertiseAddr != "[fdaa::3]:8787" ||
		!reflect.DeepEqual(cfg.Bootstrap, []string{"my-app.internal:8787", "10.0.0.4:8787"}) ||
		cfg.APIAddr != "[::]:8080" || cfg.PG.Addr != "[::]:5470" {
		t.Errorf("fly.toml read as %+v", cfg)
	}
	_, warn := noteKeys(cfg.notes)
	wantWarn := []string{"api.addr", "gossip.bootstrap", "gossip.plaintext", "gossip.max_mtu", "gossip.disable_gso",
		"admin.path", "telemetry.prometheus.addr", "log.colors"}
	slices.Sort(warn)
	slices.Sort(wantWarn)
	if !slices.Equal(warn, wantWarn) {
		t.Errorf("warnings for %v, want one each for %v (notes %+v)", warn, wantWarn, cfg.notes)
	}

	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Patina's keys alone: decoded as written, no notes.
	cfg, err = loadConfigFile(t, write("patina.toml", "data_dir = \"/d\"\n[log]\nretention = \"forever\"\n"))
	if err != nil || cfg.DataDir != "/d" || len(cfg.notes) != 0 {
		t.Errorf("Patina file: %v %+v", err, cfg)
	}
	// Both dialects at once agree where they meet; Patina's other keys stay.
	cfg, err = loadConfigFile(t, write("mixed.toml", `
log_format = "json"
[db]
path = "/srv/corro.sqlite"
fold_batch = 7
[log]
format = "json"
retention = "0s"
[gossip]
addr = "10.1.2.3:4000"
fanout = 5
[gossip.tls]
cert_file = "/c.pem"
insecure = true
[api]
max_concurrency = 9
[api.authorization]
bearer = "tok"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/srv/corro-patina" || cfg.DB.FoldBatch != 7 || cfg.LogFormat != "json" || cfg.Log.Retention != "0s" ||
		cfg.GossipAddr != "10.1.2.3:4000" || cfg.QUICAddr != "10.1.2.3:4001" || cfg.Gossip.Fanout != 5 ||
		cfg.Gossip.TLS.CertFile != "/c.pem" || cfg.API.MaxConcurrency != 9 || cfg.API.Authz.BearerToken != "tok" {
		t.Errorf("mixed file read as %+v", cfg)
	}
	if _, warn := noteKeys(cfg.notes); !slices.Equal(warn, []string{"gossip.tls.insecure"}) {
		t.Errorf("mixed file warnings %v", warn)
	}

	for _, tc := range []struct{ name, text, want string }{
		{"clash", "log_format = \"text\"\n[log]\nformat = \"json\"\n", "log.format and Patina's log_format"},
		{"read-only pg", "[api.pg]\naddr = \"127.0.0.1:5470\"\nreadonly = true\n", "api.pg.readonly"},
		{"bad log format", "[log]\nformat = \"xml\"\n", "log.format \"xml\""},
		{"bad api addr", "[api]\naddr = 8080\n", "api.addr: want a string"},
		{"no next port", "[gossip]\naddr = \"127.0.0.1:65535\"\n", "set quic_addr"},
		{"unknown key still refused", "[db]\npath = \"/x.db\"\npth = 1\n", "unknown keys db.pth"},
	} {
		_, err := loadConfigFile(t, write(tc.name+".toml", tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.want)
		}
		var ue *usageError
		if err != nil && !errors.As(err, &ue) {
			t.Errorf("%s: %v is not a usage error (exit 2)", tc.name, err)
		}
	}
}

// TestCorrosionConfigStartsAgent starts an agent on testdata/corrosion/config.toml as a
// Corrosion operator would (from the directory its relative paths name), then uses it: the
// schema came from db.schema_paths, the token from api.authz.bearer-token, the data sits
// beside db.path, the cluster id is gossip.member_id, and every key Patina ignores was
// logged as one warning line.
func TestCorrosionConfigStartsAgent(t *testing.T) {
	src := filepath.Join("testdata", "corrosion")
	dir := t.TempDir()
	for _, f := range []string{"config.toml", "schemas/todos.sql"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err) // the data is in the repo; missing is a failure
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)

	var stderr testutil.LockedBuffer
	ready := make(chan *Agent, 1)
	m := &Main{Stdout: &bytes.Buffer{}, Stderr: &stderr, onAgentReady: func(a *Agent) { ready <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() { defer wg.Done(); runErr = m.Run(ctx, []string{"agent", "-c", "config.toml"}) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	var a *Agent
	select {
	case a = <-ready:
	case <-time.After(60 * time.Second):
		cancel()
		wg.Wait()
		t.Fatalf("agent did not start: %v\n%s", runErr, stderr.String())
	}

	if a.cfg.ClusterID != "7" {
		t.Errorf("cluster id %q, want gossip.member_id 7", a.cfg.ClusterID)
	}
	if _, err := os.Stat(filepath.Join(dir, "corrosion-patina", "views.db")); err != nil {
		t.Errorf("data dir beside db.path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "corrosion.db")); !os.IsNotExist(err) {
		t.Errorf("Corrosion's db.path was touched: %v", err)
	}
	// The bearer token is required and works.
	open, _ := client.New(a.APIAddr())
	if _, _, err := open.QueryAll(context.Background(), client.Options{}, client.Statement{SQL: "SELECT 1"}); err == nil {
		t.Error("a query without the token was served")
	}
	cl, err := client.New(a.APIAddr(), client.WithToken("corrosion-token"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Exec(context.Background(), client.Options{}, client.Statement{SQL: "INSERT INTO todos (id, title) VALUES (x'01', 'from a corrosion config')"}); err != nil {
		t.Fatalf("write into the schema of db.schema_paths: %v", err)
	}
	_, rows, err := cl.QueryAll(context.Background(), client.Options{}, client.Statement{SQL: "SELECT title FROM todos"})
	if err != nil || len(rows) != 1 || !rows[0][0].Equal(log.Text("from a corrosion config")) {
		t.Fatalf("read back: %v %+v", err, rows)
	}

	// api.endpoint_name: a request meant for another endpoint is refused with 421, as
	// Corrosion does; the right name or none is served.
	for _, tc := range []struct {
		name string
		want int
	}{{"", 200}, {"corrosion-local-1", 200}, {"corrosion-iad-2", 421}} {
		req, _ := http.NewRequest("POST", "http://"+a.APIAddr()+"/v1/queries", strings.NewReader(`"SELECT 1"`))
		req.Header.Set("Authorization", "Bearer corrosion-token")
		if tc.name != "" {
			req.Header.Set("x-corrosion-requested-endpoint-name", tc.name)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("x-corrosion-requested-endpoint-name %q: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}

	// log.format = "json": every line is JSON; one warning per ignored key.
	wantWarn := []string{"db.subscriptions_path", "db.cache_size_kib", "gossip.plaintext", "gossip.max_mtu",
		"gossip.disable_gso", "gossip.idle_timeout_secs", "admin.path", "telemetry.prometheus.addr",
		"log.colors", "perf.apply_queue_timeout", "perf.sql_tx_timeout"}
	var warned []string
	testutil.WaitFor(t, 10*time.Second, "the config notes in the log", func() bool {
		warned = warned[:0]
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		for sc.Scan() {
			var line struct{ Level, Msg, Key string }
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("log.format json: a line is not JSON: %q", sc.Text())
			}
			if line.Level == "WARN" && strings.HasPrefix(line.Msg, "config: Corrosion key ") {
				warned = append(warned, line.Key)
			}
		}
		return len(warned) >= len(wantWarn)
	})
	slices.Sort(warned)
	slices.Sort(wantWarn)
	if !slices.Equal(warned, wantWarn) {
		t.Errorf("warned about %v, want one line each for %v\n%s", warned, wantWarn, stderr.String())
	}
	cancel()
	wg.Wait()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		t.Errorf("agent run: %v", runErr)
	}
}
