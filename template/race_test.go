package template

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	itestutil "github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// testNode is a real node: a Pebble log and a SQLite view in a temp dir behind the HTTP API;
// handler is its API, for a test server that steps in front of it.
type testNode struct {
	mat     *materializer.Materializer
	handler http.Handler
}

func newTestNode(t *testing.T, schema string) *testNode {
	t.Helper()
	dir := t.TempDir()
	st, err := log.Open(filepath.Join(dir, "log"), log.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mcfg := materializer.DefaultConfig(filepath.Join(dir, "views.db"))
	mcfg.Schema = []string{schema}
	mat := materializer.New(st, mcfg)
	if err := mat.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mat.Close() })
	acfg := api.DefaultConfig()
	acfg.Addr, acfg.ShutdownTimeout, acfg.Registry = "127.0.0.1:0", 5*time.Second, prometheus.NewRegistry()
	acfg.View, acfg.Log = mat, st
	srv := api.New(acfg)
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close api: %v", err)
		}
	})
	return &testNode{mat: mat, handler: srv.Handler()}
}

func (n *testNode) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := n.mat.Transact(context.Background(), []materializer.Statement{{SQL: sql}}); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestChangeBetweenRenderAndSubscribe: a write committed after the render read its query
// but before the query's subscription opened (the test server commits it on the way of the
// subscription request) still reaches DEST. The subscription's first result holds the row
// and no change event ever comes for it, so only comparing that first result with what the
// render read catches it; before, the runner subscribed with skip_rows and DEST kept the
// old rows until some unrelated change. The second query, untouched, must compare equal
// across every value type (no spurious re-render).
func TestChangeBetweenRenderAndSubscribe(t *testing.T) {
	n := newTestNode(t, `CREATE TABLE svc (id INTEGER PRIMARY KEY NOT NULL, name TEXT);
CREATE TABLE kinds (id INTEGER PRIMARY KEY NOT NULL, i INTEGER, r REAL, s TEXT, b BLOB, z TEXT);`)
	n.exec(t, "INSERT INTO svc (id, name) VALUES (1, 'first')")
	n.exec(t, `INSERT INTO kinds (id, i, r, s, b, z) VALUES (1, -7, 2.0, 'é "q"', X'00FF', NULL), (2, 9007199254740993, 0.1, '', X'', 'x')`)

	var raced atomic.Bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/subscriptions" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if strings.Contains(string(body), "FROM svc") && raced.CompareAndSwap(false, true) {
				// After the render read svc, before its subscription exists.
				n.exec(t, "INSERT INTO svc (id, name) VALUES (2, 'late')")
			}
		}
		n.handler.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	cl, err := client.New(ts.URL)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	src, dest := filepath.Join(dir, "in.tmpl"), filepath.Join(dir, "out")
	tmplText := `{{range query "SELECT name FROM svc ORDER BY id"}}svc {{.name}}
{{end}}{{range query "SELECT i, r, s, b, z FROM kinds"}}kind {{.i}} {{.r}} {{.s}} {{.z}}
{{end}}`
	if err := os.WriteFile(src, []byte(tmplText), 0o600); err != nil {
		t.Fatal(err)
	}
	r := New(Config{Client: cl, Templates: []Spec{{Source: src, Dest: dest}}, Debounce: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	itestutil.WaitFor(t, 20*time.Second, "DEST to hold the row written between render and subscribe", func() bool {
		b, _ := os.ReadFile(dest)
		return strings.Contains(string(b), "svc late")
	})
	if !raced.Load() {
		t.Fatal("the write never ran between the render and the subscription")
	}
	itestutil.WaitFor(t, 20*time.Second, "both subscriptions' first results compared", func() bool {
		return counterValue(r.metrics.opens) >= 2
	})
	if got := counterValue(r.metrics.stale); got != 1 {
		t.Errorf("%v subscriptions opened stale, want 1 (svc only: kinds did not change)", got)
	}
	if got := counterValue(r.metrics.changes); got != 0 {
		t.Errorf("%v change events: the write was expected in svc's first result, not as a change", got)
	}

	// Later changes still come as events.
	n.exec(t, "UPDATE kinds SET s = 'after' WHERE id = 2")
	itestutil.WaitFor(t, 20*time.Second, "DEST to follow a later change", func() bool {
		b, _ := os.ReadFile(dest)
		return strings.Contains(string(b), " after x\n")
	})
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
