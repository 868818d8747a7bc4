package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

func withBodyTimeout(d time.Duration) nodeOpt {
	return func(c *api.Config, _ *log.Options) { c.BodyReadTimeout = d }
}

// slowSender opens a raw connection that sends the headers of a transaction and one byte of
// its body, then nothing: a client trickling its body.
func slowSender(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[")
	return c
}

// Clients that send their body slowly hold connections, never the data slots: a fast client
// is served while more slow senders than slots wait, and each slow sender gets 408 at the
// body deadline.
func TestSlowBodiesDoNotStarveFastClients(t *testing.T) {
	n := newNode(t, withLimits(4, 4, 1<<20), withBodyTimeout(2*time.Second))
	addr := n.srv.Addr().String()
	var slow []net.Conn
	for range 12 {
		slow = append(slow, slowSender(t, addr))
	}
	// The slow senders' headers are read at once; give the server their requests first.
	start := time.Now()
	for i := range 3 {
		a := n.do(t, "POST", "/v1/transactions", fmt.Sprintf(`["INSERT INTO kv (k, v) VALUES ('fast%d', 1)"]`, i), "Content-Type", "application/json")
		if a.status != http.StatusOK {
			t.Fatalf("fast client %d while slow bodies are pending: %d %s", i, a.status, a.body)
		}
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("fast clients took %v behind slow bodies", el)
	}
	for i, c := range slow {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("slow sender %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("slow sender %d: %d %s, want 408", i, resp.StatusCode, b)
		}
	}
	n.healthy(t)
}

func withTxTimeout(d time.Duration) nodeOpt {
	return func(c *api.Config, _ *log.Options) { c.TxTimeout = d }
}

// A runaway statement in a transaction is interrupted at ?timeout, or at the server's
// TxTimeout when the request gives none: 408, the transaction rolls back, later writes run.
func TestRunawayTransactionTimesOut(t *testing.T) {
	n := newNode(t, withTxTimeout(700*time.Millisecond))
	n.exec(t, stmtf("INSERT INTO kv (k, v) VALUES ('x', 0)"))
	const runaway = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c`
	for _, tc := range []struct{ path, sql string }{
		{"/v1/transactions?timeout=0.3", runaway},
		{"/v1/transactions", runaway},
		{"/v1/transactions?timeout=100", "UPDATE kv SET v = (" + runaway + ") WHERE k = 'x'"},
	} {
		body, _ := json.Marshal([]string{tc.sql})
		start := time.Now()
		a := n.do(t, "POST", tc.path, string(body), "Content-Type", "application/json")
		if a.status != http.StatusRequestTimeout || a.errMsg() == "" {
			t.Fatalf("%s %s: %d %s, want 408 with an error", tc.path, tc.sql[:20], a.status, a.body)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("%s: answered after %v", tc.path, el)
		}
		n.healthy(t)
	}
	if got := n.query(t, "SELECT v FROM kv WHERE k = 'x'"); got[0][0] != "0" {
		t.Fatalf("the interrupted update left v = %s", got[0][0])
	}
}

// On a full disk writes are refused with 507 and a JSON error, reads go on, and health says
// so (503 with disk_full).
func TestDiskFullRefusesWritesKeepsReads(t *testing.T) {
	// The threshold moves after start: opening the view appends the schema changeset.
	n := newNode(t)
	n.store.SetMinFreeBytes(1 << 62)
	a := n.do(t, "POST", "/v1/transactions", `["INSERT INTO kv (k, v) VALUES ('a', 1)"]`, "Content-Type", "application/json")
	if a.status != http.StatusInsufficientStorage || a.errMsg() == "" {
		t.Fatalf("write on a full disk: %d %s, want 507 with an error", a.status, a.body)
	}
	if got := n.query(t, "SELECT count(*) FROM kv"); got[0][0] != "0" {
		t.Fatalf("read on a full disk: %v", got)
	}
	h := n.do(t, "GET", "/v1/health", "")
	if h.status != http.StatusServiceUnavailable || !bytes.Contains(h.body, []byte(`"disk_full":true`)) {
		t.Fatalf("health on a full disk: %d %s", h.status, h.body)
	}
}

// When the log's disk fails (every write and sync of the WAL errs), the write that met it
// and every later one get 500 with a JSON error, reads go on, and health answers 503 with
// log_failed. One writer at pipeline depth 1, so that Pebble's own fatal error (it panics
// when a later commit reaches a failed WAL) is never reached in this process.
func TestLogDiskFailureRefusesWritesKeepsReads(t *testing.T) {
	var failing atomic.Bool
	fs := testutil.FailingWAL(vfs.Default, &failing)
	n := newNode(t, func(_ *api.Config, o *log.Options) { o.FS, o.CommitDepth = fs, 1 })
	n.exec(t, stmtf("INSERT INTO kv (k, v) VALUES ('a', 1)"))
	failing.Store(true)
	for i := range 2 {
		a := n.do(t, "POST", "/v1/transactions", `["INSERT INTO kv (k, v) VALUES ('b', 2)"]`, "Content-Type", "application/json")
		if a.status != http.StatusInternalServerError || a.errMsg() == "" {
			t.Fatalf("write %d on a failed log disk: %d %s, want 500 with an error", i, a.status, a.body)
		}
	}
	if got := n.query(t, "SELECT group_concat(k) FROM kv"); got[0][0] != "'a'" {
		t.Fatalf("read after the failure: %v, want only the acknowledged row", got)
	}
	h := n.do(t, "GET", "/v1/health", "")
	if h.status != http.StatusServiceUnavailable || !bytes.Contains(h.body, []byte(`"log_failed":"log commit failed`)) {
		t.Fatalf("health on a failed log disk: %d %s", h.status, h.body)
	}
}
