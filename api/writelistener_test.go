package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

func withWriteListener() nodeOpt {
	return func(c *api.Config, _ *log.Options) { c.WriteAddr = "127.0.0.1:0" }
}

// writeURL is the node's write listener.
func (n *node) writeURL(tb testing.TB) string {
	tb.Helper()
	a := n.srv.WriteAddr()
	if a == nil {
		tb.Fatal("the node has no write listener")
	}
	return "http://" + a.String()
}

// doAt is do against another base URL of the node (its write listener).
func (n *node) doAt(tb testing.TB, base, method, path, body string, hdr ...string) answer {
	tb.Helper()
	m := *n
	m.url = base
	return m.do(tb, method, path, body, hdr...)
}

// normalAnswer is an answer as two doors of the same node must both give it: the status,
// the headers that carry meaning, and the JSON body with what varies between two requests
// (times, versions) blanked.
type normalAnswer struct {
	Status  int
	Headers map[string]string
	Body    any
}

func normalize(tb testing.TB, a answer) normalAnswer {
	tb.Helper()
	out := normalAnswer{Status: a.status, Headers: map[string]string{}}
	for _, h := range []string{"Content-Type", "WWW-Authenticate", "Retry-After", "Allow"} {
		if v := a.header.Get(h); v != "" {
			out.Headers[h] = v
		}
	}
	if err := json.Unmarshal(a.body, &out.Body); err != nil {
		tb.Fatalf("answer %d is not JSON: %q", a.status, a.body)
	}
	var blank func(v any) any
	blank = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "time" || k == "version" {
					if e != nil {
						x[k] = "<" + k + ">"
					}
					continue
				}
				x[k] = blank(e)
			}
		case []any:
			for i := range x {
				x[i] = blank(x[i])
			}
		}
		return v
	}
	out.Body = blank(out.Body)
	return out
}

// TestWriteListenerAnswersAsTheAPI: every answer of POST /v1/transactions, its successes and
// each of its guards' refusals, is the same through the write listener as through the API's
// address: status, headers, and the ExecResponse body Corrosion's clients read. Both doors
// count in the same metric series.
func TestWriteListenerAnswersAsTheAPI(t *testing.T) {
	const reader, writer = "read-tok", "write-tok"
	n := newNode(t, withWriteListener(), withLimits(64, 64, 1024), withTokens(
		api.Token{Name: "r", Scope: api.ScopeRead, Hash: api.HashToken(reader)},
		api.Token{Name: "w", Scope: api.ScopeWrite, Hash: api.HashToken(writer)},
	), func(c *api.Config, _ *log.Options) { c.EndpointName = "edge-1" })
	auth := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	w := auth(writer)
	tests := []struct {
		name         string
		method, path string
		body         func(door int) string // door 0: the API's address, 1: the write listener
		hdr          []string
		want         int
	}{
		{"one insert", "POST", "/v1/transactions", func(d int) string {
			return fmt.Sprintf(`["INSERT INTO kv (k, v) VALUES ('k%d', 1)"]`, d)
		}, w, 200},
		{"two statements, params", "POST", "/v1/transactions", func(d int) string {
			return fmt.Sprintf(`[["INSERT INTO kv (k, v) VALUES (?, ?)", ["p%d", 2]], {"query": "UPDATE kv SET v = v + 1 WHERE k = :k", "named_params": {"k": "p%d"}}]`, d, d)
		}, w, 200},
		{"a write that changes nothing", "POST", "/v1/transactions", nil, w, 200},
		{"timeout parameter", "POST", "/v1/transactions?timeout=5", nil, w, 200},
		{"bad timeout", "POST", "/v1/transactions?timeout=soon", nil, w, 400},
		{"statement error", "POST", "/v1/transactions", func(int) string { return `["INSERT INTO nope VALUES (1)"]` }, w, 400},
		{"constraint", "POST", "/v1/transactions", func(int) string {
			return `["INSERT INTO kv (k, v) VALUES ('dup', 1)", "INSERT INTO kv (k, v) VALUES ('dup', 2)"]`
		}, w, 400},
		{"a query is not a write", "POST", "/v1/transactions", func(int) string { return `["SELECT 1"]` }, w, 200},
		{"bad JSON", "POST", "/v1/transactions", func(int) string { return `[` }, w, 400},
		{"not a list", "POST", "/v1/transactions", func(int) string { return `{"a": 1}` }, w, 400},
		{"empty body", "POST", "/v1/transactions", func(int) string { return "" }, w, 400},
		{"no token", "POST", "/v1/transactions", nil, nil, 401},
		{"unknown token", "POST", "/v1/transactions", nil, auth("nope"), 401},
		{"not a bearer", "POST", "/v1/transactions", nil, []string{"Authorization", "Basic dTpw"}, 401},
		{"read token", "POST", "/v1/transactions", nil, auth(reader), 403},
		{"too large", "POST", "/v1/transactions", func(int) string {
			return `["SELECT '` + strings.Repeat("x", 2000) + `'"]`
		}, w, 413},
		{"misdirected", "POST", "/v1/transactions", nil, append([]string{"X-Corrosion-Requested-Endpoint-Name", "edge-2"}, w...), 421},
		{"named endpoint", "POST", "/v1/transactions", nil, append([]string{"X-Corrosion-Requested-Endpoint-Name", "edge-1"}, w...), 200},
		{"GET", "GET", "/v1/transactions", nil, w, 405},
		{"PUT", "PUT", "/v1/transactions", nil, w, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [2]normalAnswer
			for door, base := range []string{n.url, n.writeURL(t)} {
				body := `["UPDATE kv SET v = v WHERE k = 'nothing'"]`
				if tt.body != nil {
					body = tt.body(door)
				}
				if tt.method == "GET" {
					body = ""
				}
				a := n.doAt(t, base, tt.method, tt.path, body, tt.hdr...)
				if a.status != tt.want {
					t.Fatalf("door %d: %d %s; want %d", door, a.status, a.body, tt.want)
				}
				got[door] = normalize(t, a)
			}
			if !reflect.DeepEqual(got[0], got[1]) {
				t.Errorf("the doors answer differently:\n API:   %+v\n write: %+v", got[0], got[1])
			}
		})
	}
	// What both doors wrote is there, once each.
	rows := n.do(t, "POST", "/v1/queries", `"SELECT group_concat(k || '=' || v) FROM (SELECT k, v FROM kv WHERE k IN ('k0', 'k1', 'p0', 'p1', 'dup') ORDER BY k)"`, auth(reader)...)
	if !strings.Contains(string(rows.body), `"k0=1,k1=1,p0=3,p1=3"`) {
		t.Errorf("rows written through both doors: %s", rows.body)
	}
	// Every door's POST /v1/transactions counts in the same series: the 20 cases' requests
	// (but the two 405s, which no route counts) twice.
	text := string(n.do(t, "GET", "/metrics", "").body)
	if !strings.Contains(text, `patina_http_request_duration_seconds_count{route="POST /v1/transactions"} 36`) {
		t.Errorf("metrics do not count 36 writes:\n%s", grepLines(text, `route="POST /v1/transactions"`))
	}
	// Another path on the write listener is a 404 that says where the API is.
	a := n.doAt(t, n.writeURL(t), "POST", "/v1/queries", `"SELECT 1"`, w...)
	if a.status != http.StatusNotFound || !strings.Contains(a.errMsg(), "write listener") {
		t.Errorf("a query on the write listener: %d %s; want 404 naming the write listener", a.status, a.body)
	}
	// The view closed under the server: 503 with Retry-After at both doors.
	n.mat.Close()
	var got [2]normalAnswer
	for door, base := range []string{n.url, n.writeURL(t)} {
		a := n.doAt(t, base, "POST", "/v1/transactions", `["INSERT INTO kv (k, v) VALUES ('late', 1)"]`, w...)
		if a.status != http.StatusServiceUnavailable {
			t.Fatalf("door %d with the view closed: %d %s; want 503", door, a.status, a.body)
		}
		got[door] = normalize(t, a)
	}
	if !reflect.DeepEqual(got[0], got[1]) || got[1].Headers["Retry-After"] == "" {
		t.Errorf("503 differs or has no Retry-After:\n API:   %+v\n write: %+v", got[0], got[1])
	}
}

// TestWriteListenerClient: a client given the write listener (WithWriteAddr) sends Exec
// there and nothing else: with its API address unreachable, writes still succeed and reads
// fail.
func TestWriteListenerClient(t *testing.T) {
	n := newNode(t, withWriteListener())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()
	cl, err := client.New(dead, client.WithWriteAddr(n.srv.WriteAddr().String()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.Exec(context.Background(), client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES ('w', 7)"))
	if err != nil || len(res.Results) != 1 || res.Results[0].RowsAffected != 1 {
		t.Fatalf("exec through the write listener: %+v, %v", res, err)
	}
	if _, _, err := cl.QueryAll(context.Background(), client.Options{}, client.Stmt("SELECT 1")); err == nil {
		t.Fatal("a query reached a closed port: the client sent it to the write listener")
	}
	if got := n.query(t, "SELECT v FROM kv WHERE k = 'w'"); fmt.Sprint(got) != "[[7]]" {
		t.Fatalf("the write is not in the view: %v", got)
	}
	// A statement error comes back as the client's *Error, as from the API's address.
	_, err = cl.Exec(context.Background(), client.Options{}, client.Stmt("INSERT INTO nope VALUES (1)"))
	if client.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("statement error through the write listener: %v", err)
	}
	if _, err := client.New(n.url, client.WithWriteAddr("unix:///tmp/x.sock")); err == nil {
		t.Error("a unix:// write address was accepted")
	}
}

// TestWriteListenerSlowBody: a client that sends its body slower than BodyReadTimeout is
// answered 408 in JSON and its connection closed, and the write listener goes on serving.
func TestWriteListenerSlowBody(t *testing.T) {
	n := newNode(t, withWriteListener(), func(c *api.Config, _ *log.Options) { c.BodyReadTimeout = 300 * time.Millisecond })
	status, msg, closed := rawExchange(t, n.srv.WriteAddr().String(), "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[\"SEL")
	if status != http.StatusRequestTimeout || !strings.Contains(msg, "took longer") {
		t.Fatalf("slow body: %d %q; want 408 in JSON", status, msg)
	}
	if !closed {
		t.Error("the connection of a slow body stays open")
	}

	if !metricIs(n, "patina_request_body_timeouts_total", "1") {
		t.Error("the slow body is not counted")
	}
	a := n.doAt(t, n.writeURL(t), "POST", "/v1/transactions", `["INSERT INTO kv (k, v) VALUES ('after', 1)"]`)
	if a.status != http.StatusOK {
		t.Fatalf("after a slow body: %d %s", a.status, a.body)
	}
	// A connection that sends nothing is closed after the timeout without an answer, which
	// its client could take for the answer to a request it sends at that moment.
	silent, err := net.Dial("tcp", n.srv.WriteAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(20 * time.Second))
	var buf [64]byte
	if k, err := silent.Read(buf[:]); k != 0 || err == nil {
		t.Fatalf("a silent connection got %q (%v); want it closed without a byte", buf[:k], err)
	}
	if !metricIs(n, "patina_request_body_timeouts_total", "1") {
		t.Error("a silent connection counted as a slow body")
	}
}

// TestWriteListenerConnections: patina_write_listener_connections counts a client's
// connection while it is open and no more once it is closed.
func TestWriteListenerConnections(t *testing.T) {
	n := newNode(t, withWriteListener())
	if !metricIs(n, "patina_write_listener_connections", "0") {
		t.Fatal("connections before any client: want 0")
	}
	c, err := net.Dial("tcp", n.srv.WriteAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.WaitFor(t, 10*time.Second, "the connection counted", func() bool {
		return metricIs(n, "patina_write_listener_connections", "1")
	})
	c.Close()
	testutil.WaitFor(t, 10*time.Second, "the closed connection uncounted", func() bool {
		return metricIs(n, "patina_write_listener_connections", "0")
	})
}

// TestWriteListenerClose: Close does not wait for a client's idle keep-alive connection to
// the write listener, and the listener refuses connections once closed.
func TestWriteListenerClose(t *testing.T) {
	n := newNode(t, withWriteListener())
	addr := n.srv.WriteAddr().String()
	cl, err := client.New(n.url, client.WithWriteAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := cl.Exec(context.Background(), client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES (?, 1)", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := n.srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// The test's ShutdownTimeout is 5 s: an idle connection must not hold Close that long.
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("close took %v with an idle keep-alive connection", el)
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
		t.Error("the write listener accepts connections after Close")
	}
}

// panicView is the node's view with a Transact that panics: the bug a recover must catch.
type panicView struct{ *materializer.Materializer }

func (panicView) Transact(context.Context, []materializer.Statement) (materializer.TxResult, error) {
	panic("injected")
}

// TestWriteListenerPanic: a panic under the write listener (fasthttp recovers none) is a
// logged 500 with a JSON error; the process and the listener live on.
func TestWriteListenerPanic(t *testing.T) {
	n := newNode(t)
	cfg := api.DefaultConfig()
	cfg.Addr, cfg.WriteAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.View, cfg.Log = panicView{n.mat}, n.store
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv := api.New(cfg)
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for range 2 {
		a := n.doAt(t, "http://"+srv.WriteAddr().String(), "POST", "/v1/transactions", `["INSERT INTO kv (k, v) VALUES ('p', 1)"]`)
		if a.status != http.StatusInternalServerError || !strings.Contains(a.errMsg(), "panic: injected") {
			t.Fatalf("a panic: %d %s; want 500 with the panic in JSON", a.status, a.body)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "the 500s counted", func() bool {
		a := n.doAt(t, "http://"+srv.Addr().String(), "GET", "/metrics", "")
		return strings.Contains(string(a.body), `patina_http_requests_total{code="500",route="POST /v1/transactions"} 2`)
	})
}

// TestWriteListenerMalformed: what is not HTTP/1.1 (garbage, HTTP/2's preface, headers past
// the read buffer) gets a 4xx in JSON and a closed connection, never a crash, and the
// listener goes on serving.
func TestWriteListenerMalformed(t *testing.T) {
	n := newNode(t, withWriteListener())
	for name, tc := range map[string]struct {
		raw  string
		want int
	}{
		"garbage":         {"\x00\x01GARBAGE\r\n\r\n", http.StatusBadRequest},
		"bad content len": {"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", http.StatusBadRequest},
		"huge headers":    {"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			status, msg, closed := rawExchange(t, n.srv.WriteAddr().String(), tc.raw)
			if status != tc.want || msg == "" {
				t.Fatalf("%d %q; want %d with a JSON error", status, msg, tc.want)
			}
			if !closed {
				t.Error("the connection stays open after a malformed request")
			}
		})
	}
	a := n.doAt(t, n.writeURL(t), "POST", "/v1/transactions", `["INSERT INTO kv (k, v) VALUES ('after', 1)"]`)
	if a.status != http.StatusOK {
		t.Fatalf("after malformed requests: %d %s", a.status, a.body)
	}
}

// rawExchange sends raw bytes on a new connection to addr and reads one answer: its status,
// its JSON "error", and whether the server closes the connection after it.
func rawExchange(t *testing.T, addr, raw string) (status int, msg string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to %.40q: %v", raw, err)
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("answer %d to %.40q is not JSON: %v", resp.StatusCode, raw, err)
	}
	return resp.StatusCode, body.Error, resp.Close
}
