package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// The compatibility suite: requests exactly as Corrosion's clients (corro-client, and
// programs written against corro-api-types) send them, and the answers they parse, per
// endpoint. Golden bodies are JSON where a string "<any>" matches any value and "<num>" any
// number; every other value, key and array length must be equal. raw lists substrings the
// body must contain as sent (a real printed as 0.0, not 0).

type golden struct {
	name         string
	method, path string
	body         string
	hdr          []string
	status       int
	want         string   // golden JSON ("" = not checked)
	raw          []string // substrings of the raw body
	header       map[string]string
}

// corroClients are the two ways Corrosion's clients reach an agent: corro-client's reqwest
// client speaks HTTP/2 over plain TCP by prior knowledge (h2c, http2_prior_knowledge), curl
// and most other programs HTTP/1.1. Every golden pair is checked over both.
var corroClients = []struct {
	name  string
	proto int
	new   func(t *testing.T) *http.Client
}{
	{"HTTP/1.1", 1, func(*testing.T) *http.Client { return &http.Client{Transport: corroHeaders{http.DefaultTransport}} }},
	{"h2c", 2, func(t *testing.T) *http.Client { return &http.Client{Transport: corroHeaders{h2cClient(t).Transport}} }},
}

// h2cClient speaks only HTTP/2 without TLS, by prior knowledge, as corro-client does.
func h2cClient(t *testing.T) *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// corroHeaders adds the headers corro-client sends with every request: accept, and
// content-type on every POST (updates() sends it without a body).
type corroHeaders struct{ rt http.RoundTripper }

func (c corroHeaders) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Accept", "application/json")
	if r.Method == http.MethodPost {
		r.Header.Set("Content-Type", "application/json")
	}
	return c.rt.RoundTrip(r)
}

// uuidRE is what corro-client parses corro-query-id into (a Uuid): a client that cannot parse
// it fails with ExpectedQueryId.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestCorrosionCompat(t *testing.T) {
	for _, cc := range corroClients {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			level := new(slog.LevelVar)
			n := newNode(t, withToken("s3cret"), func(c *api.Config, _ *log.Options) { c.LogLevel = level })
			n.hc = cc.new(t)
			runCompat(t, n, cc.proto)
			if level.Level() != slog.LevelDebug {
				t.Errorf("log level %v after PUT debug", level.Level())
			}
		})
	}
}

func runCompat(t *testing.T, n *node, proto int) {
	auth := []string{"Authorization", "Bearer s3cret"}
	exec := `{"results":[{"rows_affected":"<num>","time":"<num>"}],"time":"<num>","version":"<num>","actor_id":"<any>"}`
	execErr := func(msg string) string {
		return `{"results":[{"error":"` + msg + `"}],"time":"<num>","version":null,"actor_id":"<any>","error":"` + msg + `"}`
	}
	cases := []golden{
		// corro-client execute(): Vec<Statement> of every form, ?timeout as whole seconds.
		{name: "transactions simple", method: "POST", path: "/v1/transactions", body: `["INSERT INTO t (id, name) VALUES (1, 'a')"]`, hdr: auth, status: 200, want: exec},
		{name: "transactions with params", method: "POST", path: "/v1/transactions?timeout=5", body: `[["INSERT INTO t (id, name) VALUES (?, ?)", [2, "b"]]]`, hdr: auth, status: 200, want: exec},
		{name: "transactions named", method: "POST", path: "/v1/transactions", body: `[["INSERT INTO t (id, name) VALUES (:id, :name)", {":id": 3, "name": "c"}]]`, hdr: auth, status: 200, want: exec},
		{name: "transactions verbose, params win over named_params", method: "POST", path: "/v1/transactions",
			body: `[{"query": "INSERT INTO t (id, name) VALUES (?, ?)", "params": [4, "d"], "named_params": {"x": 1}}]`, hdr: auth, status: 200, want: exec},
		{name: "transactions JSON parameters bind as text", method: "POST", path: "/v1/transactions?timeout=0",
			body: `[["INSERT INTO kv (k, v) VALUES (?, ?), (?, ?), (?, ?)", ["obj", {"a": [1, 2]}, "mixed", [1, "x"], "big", [256]]]]`, hdr: auth, status: 200, want: exec},
		// SqliteParam tries Integer, then Real: a number past i64 binds as a real.
		{name: "transactions integer past 64 bits binds as a real", method: "POST", path: "/v1/transactions",
			body: `[["INSERT INTO kv (k, v) VALUES (?, ?)", ["u64", 18446744073709551615]]]`, hdr: auth, status: 200, want: exec},
		// A statement that writes nothing affects no rows (not the count of an earlier one).
		{name: "transactions SELECT affects no rows", method: "POST", path: "/v1/transactions", body: `["SELECT 1"]`, hdr: auth, status: 200,
			want: `{"results":[{"rows_affected":0,"time":"<num>"}],"time":"<num>","version":null,"actor_id":"<any>"}`},
		// ExecResponse's f64 time prints as a real, 0.0 included.
		{name: "transactions empty list", method: "POST", path: "/v1/transactions", body: `[]`, hdr: auth, status: 400, want: execErr("no statements"), raw: []string{`"time":0.0,`}},
		{name: "transactions without token", method: "POST", path: "/v1/transactions", body: `["SELECT 1"]`, status: 401, want: execErr("<any>")},
		{name: "transactions bad parameters", method: "POST", path: "/v1/transactions", body: `[["SELECT ?", 5]]`, hdr: auth, status: 400, want: execErr("<any>")},
		{name: "transactions bad timeout", method: "POST", path: "/v1/transactions?timeout=-1", body: `["SELECT 1"]`, hdr: auth, status: 400, want: execErr("<any>")},
		{name: "transactions timeout", method: "POST", path: "/v1/transactions?timeout=0.05", hdr: auth, status: 408, want: execErr("<any>"),
			body: `["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) SELECT count(*) FROM c"]`},
		{name: "transactions SQL error", method: "POST", path: "/v1/transactions", body: `["INSERT INTO nope VALUES (1)"]`, hdr: auth, status: 400, want: execErr("<any>")},
		// corro-client query(): one Statement; errors parse as ExecResult::Error.
		{name: "query", method: "POST", path: "/v1/queries?timeout=0", body: `["SELECT id, name FROM t WHERE id < ? ORDER BY id", [3]]`, hdr: auth, status: 200,
			raw: []string{`{"columns":["id","name"]}` + "\n" + `{"row":[1,[1,"a"]]}` + "\n" + `{"row":[2,[2,"b"]]}` + "\n" + `{"eoq":{"time":`}},
		{name: "query JSON text", method: "POST", path: "/v1/queries", body: `"SELECT v FROM kv ORDER BY k"`, hdr: auth, status: 200,
			raw: []string{`{"row":[1,["[256]"]]}`, `{"row":[2,["[1, \"x\"]"]]}`, `{"row":[3,["{\"a\": [1, 2]}"]]}`, `{"row":[4,[1.8446744073709552e+19]]}`}},
		{name: "query error", method: "POST", path: "/v1/queries", body: `"SELECT * FROM nope"`, hdr: auth, status: 400, want: `{"error":"<any>"}`},
		{name: "query strict keys", method: "POST", path: "/v1/queries", body: `{"quErY": "000000000"}0`, hdr: auth, status: 400, want: `{"error":"<any>"}`},
		// TableStatRequest / TableStatResponse.
		{name: "table_stats", method: "POST", path: "/v1/table_stats", body: `{"tables":["t","nope"]}`, hdr: auth, status: 200, want: `{"total_row_count":4,"invalid_tables":["nope"]}`},
		{name: "table_stats empty list", method: "POST", path: "/v1/table_stats", body: `{"tables":[]}`, hdr: auth, status: 200, want: `{"total_row_count":0,"invalid_tables":[]}`},
		{name: "table_stats no tables key", method: "POST", path: "/v1/table_stats", body: `{}`, hdr: auth, status: 400, want: `{"error":"<any>"}`},
		// HealthQuery / HealthResponse: one key, healthy or not.
		{name: "health", method: "GET", path: "/v1/health", status: 200, want: `{"response":{"gaps":0,"members":1,"p99_lag":"<num>","queue_size":0}}`, raw: []string{`"p99_lag":0.0`}},
		{name: "health unhealthy", method: "GET", path: "/v1/health?gaps=-1", status: 503, want: `{"response":{"gaps":0,"members":1,"p99_lag":"<num>","queue_size":0}}`,
			header: map[string]string{"X-Patina-Unhealthy": "gaps 0 > -1"}},
		{name: "health failure_status", method: "GET", path: "/v1/health?gaps=-1&failure_status=500", status: 500, want: `{"response":{"gaps":0,"members":1,"p99_lag":"<num>","queue_size":0}}`},
		{name: "health thresholds met", method: "GET", path: "/v1/health?gaps=0&max_queue=0&p99_lag=1&queue_size=0", status: 200, want: `{"response":{"gaps":0,"members":1,"p99_lag":"<num>","queue_size":0}}`},
		// Patina's admin endpoints, behind the token.
		{name: "admin log level", method: "PUT", path: "/v1/admin/log_level", body: `{"level":"debug"}`, hdr: auth, status: 200, want: `{"level":"debug"}`},
		{name: "admin log level bad", method: "PUT", path: "/v1/admin/log_level", body: `{"level":"loud"}`, hdr: auth, status: 400, want: `{"error":"<any>"}`},
		{name: "admin without token", method: "GET", path: "/v1/admin/subscriptions", status: 401, want: `{"error":"<any>"}`},
		{name: "admin subscriptions", method: "GET", path: "/v1/admin/subscriptions", hdr: auth, status: 200, want: `{"subscriptions":[]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := append([]string{"Content-Type", "application/json"}, c.hdr...)
			a := n.do(t, c.method, c.path, c.body, hdr...)
			if a.proto != proto {
				t.Fatalf("answered over HTTP/%d, want HTTP/%d", a.proto, proto)
			}
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			if c.want != "" {
				if err := matchJSON(a.body, c.want); err != nil {
					t.Error(err)
				}
			}
			for _, r := range c.raw {
				if !bytes.Contains(a.body, []byte(r)) {
					t.Errorf("body lacks %s:\n%s", r, a.body)
				}
			}
			for k, v := range c.header {
				if got := a.header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// matchJSON decodes body and matches it against the golden JSON want (see match).
func matchJSON(body []byte, want string) error {
	var got, w any
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("answer is not JSON: %v: %s", err, body)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return fmt.Errorf("golden: %v", err)
	}
	if err := match("$", got, w); err != nil {
		return fmt.Errorf("%v\n got  %s\n want %s", err, bytes.TrimSpace(body), want)
	}
	return nil
}

// match compares a decoded JSON answer with a golden value.
func match(path string, got, want any) error {
	switch w := want.(type) {
	case string:
		switch w {
		case "<any>":
			return nil
		case "<num>":
			if _, ok := got.(float64); !ok {
				return fmt.Errorf("%s: %v is not a number", path, got)
			}
			return nil
		}
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want an object with keys %v", path, got, keys(w))
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s: no key %q", path, k)
			}
			if err := match(path+"."+k, gv, wv); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %d elements", path, got, len(w))
		}
		for i := range w {
			if err := match(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("%s: got %v, want %v", path, got, want)
	}
	return nil
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCorrosionCompatStreams: subscriptions and updates as corro-client drives them, each
// event matched against the golden shape corro-api-types' QueryEvent and NotifyEvent parse.
func TestCorrosionCompatStreams(t *testing.T) {
	for _, cc := range corroClients {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			n := newSubsNode(t)
			n.hc = cc.new(t)
			runCompatStreams(t, n, cc.proto)
		})
	}
}

func runCompatStreams(t *testing.T, n *subsNode, proto int) {
	n.exec(`INSERT INTO apps VALUES (1, 'web')`)
	open := func(method, path, body string, status int) *eventStream {
		t.Helper()
		es := n.stream(method, path, body)
		if es.resp.ProtoMajor != proto || es.resp.StatusCode != status {
			t.Fatalf("%s %s: HTTP/%d %d, want HTTP/%d %d", method, path, es.resp.ProtoMajor, es.resp.StatusCode, proto, status)
		}
		return es
	}
	// subscribe(): POST with skip_rows=false; corro-query-id must parse as a UUID, and
	// corro-query-hash comes with it. A new subscription's eoq carries change id 0.
	es := open("POST", "/v1/subscriptions?skip_rows=false", `["SELECT id, name FROM apps WHERE id > ?", [0]]`, 200)
	id, hash := es.resp.Header.Get("corro-query-id"), es.resp.Header.Get("corro-query-hash")
	if !uuidRE.MatchString(id) || hash == "" {
		t.Fatalf("subscribe: headers %v", es.resp.Header)
	}
	expectEvents(t, es, `{"columns":["id","name"]}`, `{"row":[1,[1,"web"]]}`, `{"eoq":{"time":"<num>","change_id":0}}`)
	// The literal form of the same statement is the same subscription.
	lit := open("POST", "/v1/subscriptions", `"SELECT id, name FROM apps WHERE id > 0"`, 200)
	if got, gotHash := lit.resp.Header.Get("corro-query-id"), lit.resp.Header.Get("corro-query-hash"); got != id || gotHash != hash {
		t.Errorf("literal form: subscription %s (hash %s), want %s (hash %s)", got, gotHash, id, hash)
	}
	lit.close()
	// skip_rows=true: no columns, rows or eoq; the first line is the next change.
	skip := open("POST", "/v1/subscriptions?skip_rows=true", `"SELECT id, name FROM apps WHERE id > 0"`, 200)
	// The same for a statement that has no subscription yet.
	fresh := open("POST", "/v1/subscriptions?skip_rows=true", `"SELECT name FROM apps"`, 200)
	n.exec(`INSERT INTO apps VALUES (2, 'db')`)
	expectEvents(t, fresh, `{"change":["insert",2,["db"],1]}`)
	fresh.close()
	n.exec(`UPDATE apps SET name = 'www' WHERE id = 1`)
	// Change ids follow the eoq's one by one: corro-client fails with MissedChange otherwise.
	expectEvents(t, es, `{"change":["insert",2,[2,"db"],1]}`, `{"change":["update",1,[1,"www"],2]}`)
	expectEvents(t, skip, `{"change":["insert",2,[2,"db"],1]}`)
	skip.close()
	es.close()
	// corro-client reconnects with GET /v1/subscriptions/{id}?from=<last change id>, no
	// skip_rows. After an eoq of change id 0 that is from=0: the whole result again, with
	// the latest change id in its eoq.
	again := open("GET", "/v1/subscriptions/"+id+"?from=0", "", 200)
	if got := again.resp.Header.Get("corro-query-hash"); got != hash {
		t.Errorf("resume: corro-query-hash %q, want %q", got, hash)
	}
	expectEvents(t, again, `{"columns":["id","name"]}`, `{"row":[1,[1,"www"]]}`, `{"row":[2,[2,"db"]]}`, `{"eoq":{"time":"<num>","change_id":2}}`)
	again.close()
	// from=N: the changes after N only.
	resume := open("GET", "/v1/subscriptions/"+id+"?from=1", "", 200)
	expectEvents(t, resume, `{"change":["update",1,[1,"www"],2]}`)
	resume.close()
	// from on a statement without a subscription: 400, as Corrosion answers, with
	// QueryEvent::Error's shape; an unknown id: 404, the same shape.
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/subscriptions?from=3", `"SELECT id FROM apps"`, 400},
		{"GET", "/v1/subscriptions/00000000-0000-4000-8000-000000000000", "", 404},
	} {
		a := open(c.method, c.path, c.body, c.status)
		expectEvents(t, a, `{"error":"<any>"}`)
		a.close()
	}
	// updates(table): corro-query-id (a UUID), then NotifyEvent::Notify per changed row.
	up := open("POST", "/v1/updates/apps", "", 200)
	if !uuidRE.MatchString(up.resp.Header.Get("corro-query-id")) {
		t.Fatalf("updates: headers %v", up.resp.Header)
	}
	n.exec(`UPDATE apps SET name = 'web' WHERE id = 1`)
	n.exec(`DELETE FROM apps WHERE id = 2`)
	expectEvents(t, up, `{"notify":["update",[1]]}`, `{"notify":["delete",[2]]}`)
	up.close()
	// The admin endpoint lists the subscription with its folded statement.
	resp, err := http.Get(n.url + "/v1/admin/subscriptions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Subscriptions []struct{ ID, SQL string } `json:"subscriptions"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	if len(list.Subscriptions) != 2 || !strings.Contains(fmt.Sprint(list.Subscriptions), "WHERE id > 0") {
		t.Errorf("admin subscriptions = %+v", list.Subscriptions)
	}
}

// expectEvents reads one NDJSON line per golden and matches it (see match).
func expectEvents(t *testing.T, es *eventStream, want ...string) {
	t.Helper()
	for i, w := range want {
		if err := matchJSON([]byte(es.next(t)), w); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
}

// TestH2CSlowBody: over HTTP/2 a body slower than api.body_timeout gets 408 in the
// ExecResponse shape, and only its stream ends: the connection, which corro-client shares
// between all its requests, goes on serving.
func TestH2CSlowBody(t *testing.T) {
	n := newNode(t, withBodyTimeout(200*time.Millisecond))
	n.hc = h2cClient(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte(`["INSERT INTO kv (k, v) VALUES ('slow', 1)"`)) // and never the closing ]
	req, err := http.NewRequest("POST", n.url+"/v1/transactions", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow body: HTTP/%d %d %s, want HTTP/2 408", resp.ProtoMajor, resp.StatusCode, body)
	}
	if err := matchJSON(body, `{"results":[{"error":"<any>"}],"time":"<num>","version":null,"actor_id":"<any>","error":"<any>"}`); err != nil {
		t.Error(err)
	}
	var conns atomic.Int32
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			conns.Add(1)
		}
	}}
	req, _ = http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", n.url+"/v1/queries", strings.NewReader(`"SELECT 1"`))
	resp, err = n.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || conns.Load() != 0 {
		t.Fatalf("after the slow body: %d, %d new connections; want 200 on the same connection", resp.StatusCode, conns.Load())
	}
}

// deadlineView records the time each query's context has left (-1: no deadline).
type deadlineView struct {
	api.View
	left chan time.Duration
}

func (v deadlineView) Query(ctx context.Context, st materializer.Statement) (materializer.Rows, error) {
	left := time.Duration(-1)
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	v.left <- left
	return v.View.Query(ctx, st)
}

// TestQueryTimeouts: a query without ?timeout is bounded at 60 s, as Corrosion's reads are;
// timeout=0 is no limit; timeout=N is N seconds (corro-client sends whole seconds).
func TestQueryTimeouts(t *testing.T) {
	n := newNode(t)
	dv := deadlineView{View: n.mat, left: make(chan time.Duration, 1)}
	cfg := api.DefaultConfig()
	cfg.Addr, cfg.Registry, cfg.View, cfg.Log = "127.0.0.1:0", prometheus.NewRegistry(), dv, n.store
	srv := api.New(cfg)
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	n.url = "http://" + srv.Addr().String()
	for q, want := range map[string]time.Duration{"": 60 * time.Second, "?timeout=0": -1, "?timeout=5": 5 * time.Second} {
		if a := n.do(t, "POST", "/v1/queries"+q, `"SELECT 1"`); a.status != 200 {
			t.Fatalf("%q: %d %s", q, a.status, a.body)
		}
		got := <-dv.left
		if want < 0 && got >= 0 || want >= 0 && (got > want || got < want-10*time.Second) {
			t.Errorf("POST /v1/queries%s: %v left, want %v", q, got, want)
		}
	}
}
