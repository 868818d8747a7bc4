package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
)

// TestPGAgent: the agent serves the PostgreSQL protocol on pg.addr with the API token as the
// password, and a write through it is a Patina transaction the HTTP API sees.
func TestPGAgent(t *testing.T) {
	a := startTestAgent(t, func(c *Config) {
		c.PG.Addr = "127.0.0.1:0"
		c.API.Authz.BearerToken = "s3cret"
		c.Schema = []string{writePGSchema(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);")}
	})
	ctx := context.Background()
	url := fmt.Sprintf("postgres://patina:s3cret@%s/patina?sslmode=disable", a.PGAddr())
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "INSERT INTO t (id, v) VALUES ($1, $2)", 1, "from pg"); err != nil {
		t.Fatal(err)
	}
	_, rows, err := a.client(t).QueryAll(ctx, client.Options{}, client.Stmt("SELECT v FROM t WHERE id = 1"))
	if err != nil || len(rows) != 1 || rows[0][0].Text != "from pg" {
		t.Fatalf("over HTTP: %v %v", rows, err)
	}
	// A wrong password is refused.
	bad := strings.Replace(url, "s3cret", "wrong", 1)
	if c2, err := pgx.Connect(ctx, bad); err == nil {
		c2.Close(ctx)
		t.Fatal("wrong password accepted")
	} else if !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("wrong password: %v", err)
	}
}

// TestPGTokens: with scoped tokens the PG port takes a token as the password, over TLS with
// the API's certificate (made by patina tls): a read token reads and is refused a write
// (42501), a write token and the single bearer token write, and a client without TLS or with
// an unknown token is refused. Without any TLS material the agent refuses to start.
func TestPGTokens(t *testing.T) {
	dir := t.TempDir()
	cli(t, "tls", "ca", "--out-dir", dir)
	cli(t, "tls", "server", "--out-dir", dir, "--ca", filepath.Join(dir, "ca.pem"), "--ca-key", filepath.Join(dir, "ca-key.pem"), "--host", "127.0.0.1")
	readTok, writeTok := "r-"+strings.Repeat("a", 40), "w-"+strings.Repeat("b", 40)
	schema := writePGSchema(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);")
	tokens := func(c *Config) {
		c.PG.Addr = "127.0.0.1:0"
		c.API.Authz.BearerToken = "legacy"
		c.API.Authz.Tokens = []TokenConfig{{Name: "ro", Scope: "read", Hash: api.HashToken(readTok)}, {Name: "rw", Scope: "write", Hash: api.HashToken(writeTok)}}
		c.Schema = []string{schema}
	}
	a := startTestAgent(t, func(c *Config) {
		tokens(c)
		c.API.TLS = APITLSConfig{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem")}
	})
	ctx := context.Background()
	connect := func(tok, mode string) (*pgx.Conn, error) {
		return pgx.Connect(ctx, fmt.Sprintf("postgres://patina:%s@%s/patina?sslmode=%s", tok, a.PGAddr(), mode))
	}
	for i, tok := range []string{writeTok, "legacy"} {
		c, err := connect(tok, "require")
		if err != nil {
			t.Fatalf("connect with a write token: %v", err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO t (id, v) VALUES ($1, 'x')", i); err != nil {
			t.Fatalf("write token writes: %v", err)
		}
		c.Close(ctx)
	}
	r, err := connect(readTok, "require")
	if err != nil {
		t.Fatalf("connect with the read token: %v", err)
	}
	defer r.Close(ctx)
	var n int
	if err := r.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("read token reads %d rows, %v", n, err)
	}
	if _, err := r.Exec(ctx, "DELETE FROM t"); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("read token deletes: %v, want 42501", err)
	}
	for _, bad := range []struct{ tok, mode, code string }{{"nope", "require", "28P01"}, {readTok, "disable", "28000"}} {
		if c, err := connect(bad.tok, bad.mode); err == nil {
			c.Close(ctx)
			t.Fatalf("%s with sslmode=%s accepted", bad.tok, bad.mode)
		} else if !strings.Contains(err.Error(), bad.code) {
			t.Fatalf("%s with sslmode=%s: %v, want %s", bad.tok, bad.mode, err, bad.code)
		}
	}
	// Scoped tokens and no certificate anywhere: a usage error naming the fix.
	cfg := DefaultConfig()
	tokens(&cfg)
	if err := NewAgent(cfg, nil).openPG(ctx); err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Fatalf("scoped tokens without TLS: %v", err)
	}
}

// TestPGCluster: psql writes on one node of a real two-process cluster, and the other node
// has the row within seconds (the write took the broadcast path of every local write).
func TestPGCluster(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not found: install Debian's postgresql-client (apt-get install -y postgresql-client) to run this test")
	}
	bin := buildPatina(t)
	ports := &clPorts{t: t}
	n0 := newClNode(t, bin, 0, "pgtest", ports)
	n1 := newClNode(t, bin, 1, "pgtest", ports)
	pgAddr := ports.pick(true, false)
	ports.release()
	n0.extra = []string{"--pg-addr", pgAddr}
	n0.bootstrap, n1.bootstrap = []string{n1.gossip}, []string{n0.gossip}
	c := &clCluster{t: t, bin: bin, nodes: []*clNode{n0, n1}}
	n0.start()
	n1.start()
	c.waitMembers(c.nodes)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host, port, _ := strings.Cut(pgAddr, ":")
	cmd := exec.CommandContext(ctx, psql, "-X", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", "patina", "-d", "patina",
		"-c", "BEGIN; INSERT INTO t (id, v, node) VALUES (1, 'psql', 0); INSERT INTO t (id, v, node) VALUES (2, 'psql', 0); COMMIT;")
	cmd.Env = []string{"HOME=" + t.TempDir()}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	testutil.WaitFor(t, 10*time.Second, "the psql rows on node 1", func() bool {
		_, rows, err := n1.cl.QueryAll(ctx, client.Options{}, client.Stmt("SELECT count(*) FROM t WHERE v = 'psql'"))
		return err == nil && len(rows) == 1 && rows[0][0].Int == 2
	})
}

func writePGSchema(t *testing.T, sql string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "schema.sql")
	if err := os.WriteFile(p, []byte(sql), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
