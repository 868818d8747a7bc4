package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// testSchema is the schema every test node starts with.
const testSchema = `CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, name TEXT, score REAL, data BLOB);
CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v);`

// node is a real single node: a Pebble log and a SQLite view in a temp dir, served by the
// API on 127.0.0.1.
type node struct {
	dir   string
	store *log.Store
	mat   *materializer.Materializer
	srv   *api.Server
	url   string
	cl    *client.Client
	hc    *http.Client // for do; nil is http.DefaultClient
}

type nodeOpt func(*api.Config, *log.Options)

func withToken(tok string) nodeOpt {
	return func(c *api.Config, _ *log.Options) { c.BearerToken = tok }
}
func withLimits(conc, streams int, body int64) nodeOpt {
	return func(c *api.Config, _ *log.Options) {
		c.MaxConcurrency, c.MaxStreams, c.MaxBodyBytes = conc, streams, body
	}
}
func newNode(tb testing.TB, opts ...nodeOpt) *node {
	tb.Helper()
	n := &node{dir: tb.TempDir()}
	acfg := api.DefaultConfig()
	acfg.Addr = "127.0.0.1:0"
	acfg.ShutdownTimeout = 5 * time.Second
	acfg.Registry = prometheus.NewRegistry()
	var lopts log.Options
	for _, o := range opts {
		o(&acfg, &lopts)
	}
	var err error
	if n.store, err = log.Open(filepath.Join(n.dir, "log"), lopts); err != nil {
		tb.Fatalf("open log: %v", err)
	}
	tb.Cleanup(func() { n.store.Close() })
	mcfg := materializer.DefaultConfig(filepath.Join(n.dir, "views.db"))
	mcfg.Schema = []string{testSchema}
	n.mat = materializer.New(n.store, mcfg)
	if err := n.mat.Open(context.Background()); err != nil {
		tb.Fatalf("open materializer: %v", err)
	}
	tb.Cleanup(func() { n.mat.Close() })
	acfg.View, acfg.Log = n.mat, n.store
	n.srv = api.New(acfg)
	if err := n.srv.Open(context.Background()); err != nil {
		tb.Fatalf("open api: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.srv.Close(); err != nil {
			tb.Errorf("close api: %v", err)
		}
	})
	n.url = "http://" + n.srv.Addr().String()
	var copts []client.Option
	if acfg.BearerToken != "" {
		copts = append(copts, client.WithToken(acfg.BearerToken))
	}
	if n.cl, err = client.New(n.url, copts...); err != nil {
		tb.Fatal(err)
	}
	return n
}

// answer is a raw HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
	proto  int // the HTTP major version the answer came in
}

// errMsg is the "error" of a JSON answer ("" when none).
func (a answer) errMsg() string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(a.body, &e)
	return e.Error
}

// do sends a raw request; hdr are header pairs.
func (n *node) do(tb testing.TB, method, path, body string, hdr ...string) answer {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	hc := n.hc
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read: %v", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b, proto: resp.ProtoMajor}
}

// exec runs a transaction through the client and fails the test on error.
func (n *node) exec(tb testing.TB, stmts ...client.Statement) *client.ExecResult {
	tb.Helper()
	res, err := n.cl.Exec(context.Background(), client.Options{}, stmts...)
	if err != nil {
		tb.Fatalf("exec: %v", err)
	}
	return res
}

// query returns a query's rows in quote() form, for easy comparison.
func (n *node) query(tb testing.TB, sql string, params ...any) [][]string {
	tb.Helper()
	_, rows, err := n.cl.QueryAll(context.Background(), client.Options{}, client.Stmt(sql, params...))
	if err != nil {
		tb.Fatalf("query %q: %v", sql, err)
	}
	out := make([][]string, len(rows))
	for i, r := range rows {
		for _, v := range r {
			out[i] = append(out[i], v.Quote())
		}
	}
	return out
}

// healthy checks that the node still serves reads and writes, after a bad request.
func (n *node) healthy(tb testing.TB) {
	tb.Helper()
	if a := n.do(tb, "GET", "/v1/health", ""); a.status != 200 {
		tb.Fatalf("health: %d %s", a.status, a.body)
	}
	n.exec(tb, client.Stmt("INSERT INTO kv (k, v) VALUES ('alive', 1) ON CONFLICT (k) DO UPDATE SET v = v + 1"))
	if got := n.query(tb, "SELECT count(*) FROM kv WHERE k = 'alive'"); len(got) != 1 || got[0][0] != "1" {
		tb.Fatalf("after a bad request the node does not read its write: %v", got)
	}
}

// stmtf is client.Stmt without parameters, for readability.
func stmtf(sql string) client.Statement { return client.Statement{SQL: sql} }
