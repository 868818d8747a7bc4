package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/template"
)

// TestTemplateCluster: a template rendered from node 0 of a real two-process cluster follows
// a write made on node 1 (the change reaches node 0 by gossip, its subscription fires, DEST is
// rewritten and COMMAND runs); a render that fails keeps the last good file and reports the
// error, and the next good change recovers.
func TestTemplateCluster(t *testing.T) {
	bin := buildPatina(t)
	ports := &clPorts{t: t}
	n0 := newClNode(t, bin, 0, "tmpl", ports)
	n1 := newClNode(t, bin, 1, "tmpl", ports)
	ports.release()
	n0.bootstrap, n1.bootstrap = []string{n1.gossip}, []string{n0.gossip}
	c := &clCluster{t: t, bin: bin, nodes: []*clNode{n0, n1}}
	n0.start()
	n1.start()
	c.waitMembers(c.nodes)
	ctx := context.Background()
	exec := func(n *clNode, sql string, args ...any) {
		t.Helper()
		if _, err := n.cl.Exec(ctx, client.Options{}, client.Stmt(sql, args...)); err != nil {
			t.Fatal(err)
		}
	}
	exec(n0, "INSERT INTO t (id, v, node) VALUES (1, '{\"port\": 80}', 0)")

	dir := t.TempDir()
	src, dest, marker := filepath.Join(dir, "proxy.tmpl"), filepath.Join(dir, "proxy.conf"), filepath.Join(dir, "reloaded")
	os.WriteFile(src, []byte(`{{- range query "SELECT id, v FROM t ORDER BY id" -}}
server {{ .id }} port {{ (parseJSON .v).port }}
{{ end -}}
count {{ queryValue "SELECT count(*) FROM t" }}
`), 0o644)
	os.WriteFile(dest, []byte("old\n"), 0o600)
	r := template.New(template.Config{Client: n0.cl, Templates: []template.Spec{{Source: src, Dest: dest, Command: "echo x >> " + marker}},
		Debounce: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() {
		cancel()
		<-done
	}()
	read := func() string { b, _ := os.ReadFile(dest); return string(b) }
	testutil.WaitFor(t, 10*time.Second, "the first render", func() bool { return read() == "server 1 port 80\ncount 1\n" })
	if st, _ := os.Stat(dest); st.Mode().Perm() != 0o600 {
		t.Errorf("DEST mode %v, want 0600 kept", st.Mode().Perm())
	}

	// The runner subscribes to the render's queries after the render; write once both
	// subscriptions are in place, so the write is a change event of them.
	testutil.WaitFor(t, 10*time.Second, "the template's subscriptions", func() bool {
		return n0.metric("patina_subscriptions") == 2
	})

	// A write on the other node: DEST follows.
	start := time.Now()
	exec(n1, "INSERT INTO t (id, v, node) VALUES (2, '{\"port\": 8080}', 1)")
	testutil.WaitFor(t, 30*time.Second, "DEST to follow node 1's write", func() bool {
		return read() == "server 1 port 80\nserver 2 port 8080\ncount 2\n"
	})
	t.Logf("a write on node 1 reached DEST (via node 0) in %v", time.Since(start))
	testutil.WaitFor(t, 10*time.Second, "COMMAND to run", func() bool {
		b, _ := os.ReadFile(marker)
		return strings.Count(string(b), "x") >= 2
	})

	// A row that breaks the template: the last good file stays, the error is reported.
	exec(n1, "UPDATE t SET v = 'not json' WHERE id = 2")
	testutil.WaitFor(t, 10*time.Second, "the render error", func() bool {
		return strings.Contains(errorOf(r, dest), "parseJSON")
	})
	if got := read(); got != "server 1 port 80\nserver 2 port 8080\ncount 2\n" {
		t.Fatalf("a failed render changed DEST: %q", got)
	}
	// Fixed: the next change renders again.
	exec(n1, "UPDATE t SET v = '{\"port\": 9090}' WHERE id = 2")
	testutil.WaitFor(t, 10*time.Second, "DEST after the fix", func() bool {
		return read() == "server 1 port 80\nserver 2 port 9090\ncount 2\n" && errorOf(r, dest) == ""
	})
}

func errorOf(r *template.Runner, dest string) string {
	if err := r.Errors()[dest]; err != nil {
		return err.Error()
	}
	return ""
}

// TestTemplateCommand: patina template --once renders through the CLI; bad specs are usage
// errors.
func TestTemplateCommand(t *testing.T) {
	a := startTestAgent(t, nil)
	dir := t.TempDir()
	src, dest := filepath.Join(dir, "a.tmpl"), filepath.Join(dir, "a.out")
	os.WriteFile(src, []byte(`n={{ queryValue "SELECT 40 + 2" }} {{ toJSON (queryRow "SELECT 1 AS one") }}`), 0o644)
	cli(t, "template", "--api-addr", a.APIAddr(), "--once", src+":"+dest)
	if b, _ := os.ReadFile(dest); string(b) != `n=42 {"one":1}` {
		t.Fatalf("DEST %q", b)
	}
	for _, args := range [][]string{{"template"}, {"template", "nocolon"}, {"template", filepath.Join(dir, "missing") + ":" + dest}} {
		if _, err := cliErr(t, append(args, "--api-addr", a.APIAddr())...); exitCode(err) != 2 {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
	}
	os.WriteFile(src, []byte(`{{ query "SELECT * FROM nope" }}`), 0o644)
	if _, err := cliErr(t, "template", "--api-addr", a.APIAddr(), "--once", src+":"+dest); exitCode(err) == 0 {
		t.Error("a failing render exited 0")
	}
}

// TestTemplateAgentConfig: the agent renders its [[template]] entries and keeps them current,
// whatever guards its API: none, a Unix socket, HTTPS (its CA not configured, and bound to
// 0.0.0.0, which its certificate does not name), mutual TLS, or hashed tokens only (which
// give the agent no token to send).
func TestTemplateAgentConfig(t *testing.T) {
	certs := makeTestCerts(t)
	ca := certs.CA
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(ca); err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("read the CA: %v", err)
	}
	clientCert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	adminToken, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := func(c *Config) {
		c.API.TLS.CertFile, c.API.TLS.KeyFile = certs.ServerCert, certs.ServerKey
	}
	for _, tc := range []struct {
		name string
		mod  func(c *Config, dir string)
		// addr and opts make the test's own client (the writes, the metrics).
		addr func(a *testAgent) string
		opts []client.Option
	}{
		{name: "plain"},
		{name: "socket", mod: func(c *Config, dir string) { c.API.Socket = filepath.Join(dir, "api.sock") },
			addr: func(a *testAgent) string { return "unix://" + a.srv.SocketPath() }},
		{name: "https", mod: func(c *Config, _ string) { serverTLS(c); c.APIAddr = "0.0.0.0:0" },
			addr: func(a *testAgent) string { return "127.0.0.1:" + portOf(t, a.APIAddr()) },
			opts: []client.Option{client.WithTLS(&tls.Config{RootCAs: pool})}},
		{name: "mutual tls", mod: func(c *Config, _ string) { serverTLS(c); c.API.TLS.CAFile = ca },
			opts: []client.Option{client.WithTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}})}},
		{name: "hashed tokens", mod: func(c *Config, _ string) {
			c.API.Authz.Tokens = []TokenConfig{{Name: "ops", Scope: "admin", Hash: api.HashToken(adminToken)}}
			c.API.Authz.GuardPublic = true
		}, opts: []client.Option{client.WithToken(adminToken)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dest := filepath.Join(dir, "kv.tmpl"), filepath.Join(dir, "kv.out")
			os.WriteFile(src, []byte(`{{ range query "SELECT k FROM kv ORDER BY k" }}{{ .k }} {{ end }}`), 0o644)
			schema := filepath.Join(dir, "schema.sql")
			os.WriteFile(schema, []byte("CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v);\n"), 0o644)
			cfgFile := filepath.Join(dir, "patina.toml")
			os.WriteFile(cfgFile, []byte("[[template]]\nsource = \""+src+"\"\ndest = \""+dest+"\"\n"), 0o644)
			var cfg Config = DefaultConfig()
			if err := loadFile(cfgFile, &cfg); err != nil {
				t.Fatal(err)
			}
			a := startTestAgent(t, func(c *Config) {
				c.Templates, c.Schema = cfg.Templates, []string{schema}
				if tc.mod != nil {
					tc.mod(c, dir)
				}
			})
			addr := a.APIAddr()
			if tc.addr != nil {
				addr = tc.addr(a)
			}
			cl, err := client.New(addr, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			read := func() string { b, _ := os.ReadFile(dest); return string(b) }
			testutil.WaitFor(t, 10*time.Second, "the first render", func() bool { _, err := os.Stat(dest); return err == nil })
			// The runner subscribes to the render's query after the render: write once the
			// subscription exists, so the write is a change event of it.
			testutil.WaitFor(t, 10*time.Second, "the template's subscription", func() bool {
				return metricValue(cl, "patina_subscriptions") == 1
			})
			if _, err := cl.Exec(context.Background(), client.Options{}, client.Stmt("INSERT INTO kv (k) VALUES ('a'), ('b')")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 10*time.Second, "DEST to follow the write", func() bool { return read() == "a b " })
			if n := metricValue(cl, `patina_template_renders_total{result="error"}`); n != 0 {
				t.Errorf("%v failed renders", n)
			}
		})
	}
}

// TestOwnTLS: the agent's own client accepts its own certificate and no other, even one
// its CA signed.
func TestOwnTLS(t *testing.T) {
	certs := makeTestCerts(t)
	load := func(cert, key string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	server, other := load(certs.ServerCert, certs.ServerKey), load(certs.ClientCert, certs.ClientKey)
	verify := ownTLS(server).VerifyPeerCertificate
	if err := verify(server.Certificate, nil); err != nil {
		t.Errorf("own certificate refused: %v", err)
	}
	if err := verify(other.Certificate, nil); err == nil {
		t.Error("another certificate of the same CA accepted")
	}
	if err := verify(nil, nil); err == nil {
		t.Error("no certificate accepted")
	}
}

// portOf is the port of a host:port address.
func portOf(tb testing.TB, addr string) string {
	tb.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return port
}
