package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
)

// startTracedAgent starts an in-process agent with gossip on ephemeral loopback ports,
// tracing into tp.
func startTracedAgent(tb testing.TB, tp *sdktrace.TracerProvider, schema string, bootstrap ...string) *testAgent {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = tb.TempDir()
	cfg.APIAddr, cfg.GossipAddr, cfg.QUICAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ClusterID, cfg.LogLevel, cfg.Schema, cfg.Bootstrap = "traced", "warn", []string{schema}, bootstrap
	a := NewAgent(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.tracer = tp
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

// TestTracing: on a real two-node in-process cluster (QUIC, memberlist, Pebble, SQLite) a
// write posted with a traceparent header is one trace from the HTTP request on node A
// through the transaction, its log append, the broadcast, node B's receive, log append and
// fold; B's receive span is the child of A's broadcast span (the trace context crossed the
// wire in the changeset's frame).
func TestTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	schema := writePGSchema(t, "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);")
	a := startTracedAgent(t, tp, schema)
	b := startTracedAgent(t, tp, schema, a.cluster.(gossipNode).g.GossipAddr())
	testutil.WaitFor(t, 30*time.Second, "the two nodes to see each other", func() bool {
		return len(a.cluster.(gossipNode).g.Members()) == 2 && len(b.cluster.(gossipNode).g.Members()) == 2
	})

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest(http.MethodPost, "http://"+a.APIAddr()+"/v1/transactions",
		strings.NewReader(`["INSERT INTO t (id, v) VALUES (1, 'traced')"]`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("write: %s", resp.Status)
	}
	bcl := b.client(t)
	testutil.WaitFor(t, 30*time.Second, "node B to hold the row", func() bool {
		_, rows, err := bcl.QueryAll(context.Background(), client.Options{}, client.Stmt("SELECT v FROM t WHERE id = 1"))
		return err == nil && len(rows) == 1
	})
	// B's spans end when its Apply returns, just after the row is visible; its receive span,
	// their parent, ends after them.
	byName := map[string]sdktrace.ReadOnlySpan{}
	testutil.WaitFor(t, 10*time.Second, "node B's apply and receive spans", func() bool {
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID().String() == traceID {
				byName[s.Name()] = s
			}
		}
		_, apply := byName["materializer.apply"]
		_, receive := byName["gossip.receive"]
		return apply && receive
	})
	for _, name := range []string{"POST /v1/transactions", "materializer.transact", "materializer.commit", "log.append",
		"gossip.broadcast", "gossip.receive", "materializer.apply", "materializer.fold"} {
		if _, ok := byName[name]; !ok {
			var got []string
			for n := range byName {
				got = append(got, n)
			}
			t.Fatalf("no %q span in the write's trace; got %v", name, got)
		}
	}
	parentOf := func(name string) trace.SpanID { return byName[name].Parent().SpanID() }
	idOf := func(name string) trace.SpanID { return byName[name].SpanContext().SpanID() }
	for child, parent := range map[string]string{
		"materializer.transact": "POST /v1/transactions",
		"materializer.commit":   "materializer.transact",
		"gossip.broadcast":      "materializer.commit",
		"gossip.receive":        "gossip.broadcast",
		"materializer.apply":    "gossip.receive",
		"materializer.fold":     "materializer.apply",
	} {
		if parentOf(child) != idOf(parent) {
			t.Errorf("%s's parent is %v, want %s (%v)", child, parentOf(child), parent, idOf(parent))
		}
	}
	if !byName["gossip.receive"].Parent().IsRemote() {
		t.Error("gossip.receive's parent is not remote: the context did not cross the wire")
	}
	if byName["POST /v1/transactions"].Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("the HTTP span's parent is %v, want the traceparent header's", byName["POST /v1/transactions"].Parent().SpanID())
	}
}
