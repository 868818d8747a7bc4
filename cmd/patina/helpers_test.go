package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/patinadb/patina/api/client"
)

// testAgent is an in-process agent without gossip, on a temp data dir and a loopback port.
type testAgent struct {
	*Agent
	cfg Config
}

// startTestAgent opens an agent with a default config changed by mod; it is closed when the
// test ends.
func startTestAgent(tb testing.TB, mod func(*Config)) *testAgent {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = tb.TempDir()
	cfg.APIAddr = "127.0.0.1:0"
	cfg.LogLevel = "warn"
	if mod != nil {
		mod(&cfg)
	}
	a := NewAgent(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.standalone = true
	if err := a.Open(context.Background()); err != nil {
		tb.Fatalf("open agent: %v", err)
	}
	tb.Cleanup(func() {
		if err := a.Close(); err != nil {
			tb.Errorf("close agent: %v", err)
		}
	})
	return &testAgent{Agent: a, cfg: cfg}
}

func (a *testAgent) client(tb testing.TB) *client.Client {
	tb.Helper()
	cl, err := client.New(a.APIAddr(), client.WithToken(a.cfg.API.Authz.BearerToken))
	if err != nil {
		tb.Fatal(err)
	}
	return cl
}

// testCerts are the files `patina tls` makes for a test: a CA, a server certificate for
// 127.0.0.1 and a client certificate, all in Dir.
type testCerts struct {
	Dir, CA, CAKey, ServerCert, ServerKey, ClientCert, ClientKey string
}

func makeTestCerts(t *testing.T) testCerts {
	t.Helper()
	dir := t.TempDir()
	c := testCerts{Dir: dir, CA: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca-key.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem")}
	cli(t, "tls", "ca", "--out-dir", dir)
	cli(t, "tls", "server", "--out-dir", dir, "--ca", c.CA, "--ca-key", c.CAKey, "--host", "127.0.0.1")
	cli(t, "tls", "client", "--out-dir", dir, "--ca", c.CA, "--ca-key", c.CAKey)
	return c
}
