package api_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

const endlessQuery = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) SELECT count(*) FROM c"

// holdSlot runs a query that holds the node's only data slot until the returned stop is
// called (stop waits for it to end).
func holdSlot(t *testing.T, n *node) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.cl.QueryAll(ctx, client.Options{}, client.Stmt(endlessQuery))
	}()
	testutil.WaitFor(t, 10*time.Second, "the endless query in flight", func() bool {
		return metricIs(n, `patina_http_requests_in_flight{route="POST /v1/queries"}`, "1")
	})
	return func() { cancel(); wg.Wait() }
}

func metricIs(n *node, name, value string) bool {
	text, err := n.cl.Metrics(context.Background())
	return err == nil && strings.Contains(text, "\n"+name+" "+value+"\n")
}

func withQueue(depth int, timeout time.Duration) nodeOpt {
	return func(c *api.Config, _ *log.Options) {
		c.MaxConcurrency, c.QueueDepth, c.QueueTimeout = 1, depth, timeout
	}
}

// TestAdmissionQueue: with the only slot taken, a request waits in the queue and is served
// once the slot is free; one more than the queue holds is refused at once with 503 and
// Retry-After.
func TestAdmissionQueue(t *testing.T) {
	n := newNode(t, withQueue(1, time.Minute))
	stop := holdSlot(t, n)
	defer stop()
	waited := make(chan answer, 1)
	go func() { waited <- n.do(t, "POST", "/v1/queries", `"SELECT 1"`) }()
	testutil.WaitFor(t, 10*time.Second, "a request waiting in the queue", func() bool {
		return metricIs(n, "patina_requests_queued", "1")
	})
	start := time.Now()
	full := n.do(t, "POST", "/v1/transactions", `["SELECT 1"]`)
	if full.status != http.StatusServiceUnavailable || !strings.Contains(full.errMsg(), "queue is full") || full.header.Get("Retry-After") == "" {
		t.Errorf("request beyond the queue: %d %s (Retry-After %q); want 503 queue is full", full.status, full.body, full.header.Get("Retry-After"))
	}
	// A transaction's 503 is also Corrosion's ExecResponse, which its clients read.
	if err := matchJSON(full.body, `{"results":[{"error":"<any>"}],"time":"<num>","version":null,"actor_id":"<any>","error":"<any>"}`); err != nil {
		t.Error(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the refusal took %v; want at once", el)
	}
	select {
	case a := <-waited:
		t.Fatalf("the queued request was answered while the slot was taken: %d %s", a.status, a.body)
	default:
	}
	stop()
	if a := <-waited; a.status != http.StatusOK {
		t.Fatalf("queued request: %d %s; want 200 once the slot was free", a.status, a.body)
	}
	if !metricIs(n, "patina_requests_queued", "0") {
		t.Error("queue gauge not back at 0")
	}
	text, _ := n.cl.Metrics(context.Background())
	if !strings.Contains(text, "patina_request_queue_wait_seconds_count 1") {
		t.Error("the queued request's wait was not observed")
	}
}

// TestAdmissionQueueTimeout: a request that gets no slot within the queue timeout is
// answered 503, after about the timeout; without a queue the answer is 503 at once.
func TestAdmissionQueueTimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		depth   int
		timeout time.Duration
		msg     string
	}{
		{"timeout", 8, 300 * time.Millisecond, "no slot within the queue timeout"},
		{"no queue", -1, time.Minute, "in flight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, withQueue(tc.depth, tc.timeout))
			stop := holdSlot(t, n)
			defer stop()
			start := time.Now()
			a := n.do(t, "POST", "/v1/queries", `"SELECT 1"`)
			el := time.Since(start)
			if a.status != http.StatusServiceUnavailable || !strings.Contains(a.errMsg(), tc.msg) || a.header.Get("Retry-After") == "" {
				t.Fatalf("%d %s (Retry-After %q); want 503 %q", a.status, a.body, a.header.Get("Retry-After"), tc.msg)
			}
			if tc.depth > 0 && el < tc.timeout {
				t.Errorf("refused after %v; want after the queue timeout of %v", el, tc.timeout)
			}
			if tc.depth < 0 && el > 5*time.Second {
				t.Errorf("refused after %v; want at once without a queue", el)
			}
		})
	}
}
