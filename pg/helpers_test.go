package pg_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
	"github.com/patinadb/patina/pg"
)

const testSchema = `CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, name TEXT, score REAL, data BLOB, flag BOOLEAN);
CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v);
CREATE INDEX t_name ON t (name);`

// node is a real node without gossip: a Pebble log and a SQLite view in a temp dir, served
// over the PostgreSQL protocol on 127.0.0.1.
type node struct {
	store *log.Store
	mat   *materializer.Materializer
	srv   *pg.Server
	addr  string
	reg   *prometheus.Registry
	// sslmode is the url's: disable unless a test sets it.
	sslmode string
}

type nodeOpt func(*pg.Config)

func withPassword(p string) nodeOpt { return func(c *pg.Config) { c.Password = p } }

func newNode(tb testing.TB, opts ...nodeOpt) *node {
	tb.Helper()
	dir := tb.TempDir()
	n := &node{reg: prometheus.NewRegistry(), sslmode: "disable"}
	var err error
	if n.store, err = log.Open(filepath.Join(dir, "log"), log.Options{}); err != nil {
		tb.Fatalf("open log: %v", err)
	}
	tb.Cleanup(func() { n.store.Close() })
	mcfg := materializer.DefaultConfig(filepath.Join(dir, "views.db"))
	mcfg.Schema = []string{testSchema}
	n.mat = materializer.New(n.store, mcfg)
	if err := n.mat.Open(context.Background()); err != nil {
		tb.Fatalf("open materializer: %v", err)
	}
	tb.Cleanup(func() { n.mat.Close() })
	cfg := pg.Config{Addr: "127.0.0.1:0", View: n.mat, Registerer: n.reg}
	for _, o := range opts {
		o(&cfg)
	}
	n.srv = pg.New(cfg)
	if err := n.srv.Open(context.Background()); err != nil {
		tb.Fatalf("open pg: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.srv.Close(); err != nil {
			tb.Errorf("close pg: %v", err)
		}
	})
	n.addr = n.srv.Addr().String()
	return n
}

// url is a connection URL for the node, without TLS (see sslmode).
func (n *node) url(password string) string {
	host, port, _ := strings.Cut(n.addr, ":")
	if password != "" {
		return fmt.Sprintf("postgres://patina:%s@%s:%s/patina?sslmode=%s", password, host, port, n.sslmode)
	}
	return fmt.Sprintf("postgres://patina@%s:%s/patina?sslmode=%s", host, port, n.sslmode)
}

func (n *node) connect(tb testing.TB, password string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.url(password))
	if err != nil {
		tb.Fatalf("pgx connect: %v", err)
	}
	tb.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// need returns the path of a program a test drives, or skips the test with the package that
// provides it (installed by .ci/run).
func need(tb testing.TB, prog, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		tb.Skipf("%s not found: install Debian's %s (apt-get install -y %s) to run this test", prog, pkg, pkg)
	}
	return p
}

// psql runs psql with args against the node and returns its output; a failure fails the test.
func (n *node) psql(tb testing.TB, password, stdin string, args ...string) string {
	tb.Helper()
	out, err := n.psqlErr(tb, password, stdin, args...)
	if err != nil {
		tb.Fatalf("psql %q: %v\n%s", args, err, out)
	}
	return out
}

func (n *node) psqlErr(tb testing.TB, password, stdin string, args ...string) (string, error) {
	tb.Helper()
	bin := need(tb, "psql", "postgresql-client")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-X", "-v", "ON_ERROR_STOP=1", n.url(password)}, args...)...)
	cmd.Env = []string{"PGCONNECT_TIMEOUT=10", "HOME=" + tb.TempDir(), "PGTZ=UTC"}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
