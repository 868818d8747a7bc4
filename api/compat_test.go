package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/log"
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

func TestCorrosionCompat(t *testing.T) {
	level := new(slog.LevelVar)
	n := newNode(t, withToken("s3cret"), func(c *api.Config, _ *log.Options) { c.LogLevel = level })
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
		{name: "transactions empty list", method: "POST", path: "/v1/transactions", body: `[]`, hdr: auth, status: 400, want: execErr("no statements")},
		{name: "transactions without token", method: "POST", path: "/v1/transactions", body: `["SELECT 1"]`, status: 401, want: execErr("<any>")},
		{name: "transactions bad parameters", method: "POST", path: "/v1/transactions", body: `[["SELECT ?", 5]]`, hdr: auth, status: 400, want: execErr("<any>")},
		{name: "transactions bad timeout", method: "POST", path: "/v1/transactions?timeout=-1", body: `["SELECT 1"]`, hdr: auth, status: 400, want: execErr("<any>")},
		{name: "transactions SQL error", method: "POST", path: "/v1/transactions", body: `["INSERT INTO nope VALUES (1)"]`, hdr: auth, status: 400, want: execErr("<any>")},
		// corro-client query(): one Statement; errors parse as ExecResult::Error.
		{name: "query", method: "POST", path: "/v1/queries?timeout=0", body: `["SELECT id, name FROM t WHERE id < ? ORDER BY id", [3]]`, hdr: auth, status: 200,
			raw: []string{`{"columns":["id","name"]}` + "\n" + `{"row":[1,[1,"a"]]}` + "\n" + `{"row":[2,[2,"b"]]}` + "\n" + `{"eoq":{"time":`}},
		{name: "query JSON text", method: "POST", path: "/v1/queries", body: `"SELECT v FROM kv ORDER BY k"`, hdr: auth, status: 200,
			raw: []string{`{"row":[1,["[256]"]]}`, `{"row":[2,["[1, \"x\"]"]]}`, `{"row":[3,["{\"a\": [1, 2]}"]]}`}},
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
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			if c.want != "" {
				var got, want any
				if err := json.Unmarshal(a.body, &got); err != nil {
					t.Fatalf("answer is not JSON: %v: %s", err, a.body)
				}
				if err := json.Unmarshal([]byte(c.want), &want); err != nil {
					t.Fatalf("golden: %v", err)
				}
				if err := match("$", got, want); err != nil {
					t.Errorf("%v\n got  %s\n want %s", err, bytes.TrimSpace(a.body), c.want)
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
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level %v after PUT debug", level.Level())
	}
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

// TestCorrosionCompatStreams: subscriptions and updates as corro-client drives them.
func TestCorrosionCompatStreams(t *testing.T) {
	n := newSubsNode(t)
	n.exec(`INSERT INTO apps VALUES (1, 'web')`)
	// subscribe(): POST with skip_rows=false, headers corro-query-id and corro-query-hash.
	es := n.stream("POST", "/v1/subscriptions?skip_rows=false", `["SELECT id, name FROM apps WHERE id > ?", [0]]`)
	id, hash := es.resp.Header.Get("corro-query-id"), es.resp.Header.Get("corro-query-hash")
	if es.resp.StatusCode != 200 || id == "" || hash == "" {
		t.Fatalf("subscribe: %d, headers %v", es.resp.StatusCode, es.resp.Header)
	}
	expectLines(t, es, `{"columns":["id","name"]}`, `{"row":[1,[1,"web"]]}`, `{"eoq":{"time":*`)
	// The literal form of the same statement is the same subscription.
	lit := n.stream("POST", "/v1/subscriptions", `"SELECT id, name FROM apps WHERE id > 0"`)
	if got := lit.resp.Header.Get("corro-query-id"); got != id {
		t.Errorf("literal form: subscription %s, want %s", got, id)
	}
	lit.close()
	// skip_rows=true: no columns, rows or eoq; the first line is the next change.
	skip := n.stream("POST", "/v1/subscriptions?skip_rows=true", `"SELECT id, name FROM apps WHERE id > 0"`)
	n.exec(`INSERT INTO apps VALUES (2, 'db')`)
	expectLines(t, es, `{"change":["insert",2,[2,"db"],1]}`)
	expectLines(t, skip, `{"change":["insert",2,[2,"db"],1]}`)
	skip.close()
	es.close()
	// subscription(id, from=0) after an eoq of change id 0: the whole result again.
	again := n.stream("GET", "/v1/subscriptions/"+id+"?skip_rows=false&from=0", "")
	expectLines(t, again, `{"columns":["id","name"]}`, `{"row":[1,[1,"web"]]}`, `{"row":[2,[2,"db"]]}`, `{"eoq":{"time":*`)
	again.close()
	// from on a statement without a subscription: 400, as Corrosion answers.
	if a := n.stream("POST", "/v1/subscriptions?from=3", `"SELECT name FROM apps"`); a.resp.StatusCode != 400 {
		t.Errorf("from on a new statement: %d, want 400", a.resp.StatusCode)
	}
	// updates(table): corro-query-id, then notify events.
	up := n.stream("POST", "/v1/updates/apps", "")
	if up.resp.StatusCode != 200 || up.resp.Header.Get("corro-query-id") == "" {
		t.Fatalf("updates: %d, headers %v", up.resp.StatusCode, up.resp.Header)
	}
	n.exec(`UPDATE apps SET name = 'www' WHERE id = 1`)
	expectLines(t, up, `{"notify":["update",[1]]}`)
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
	if len(list.Subscriptions) != 1 || !strings.Contains(fmt.Sprint(list.Subscriptions), "WHERE id > 0") {
		t.Errorf("admin subscriptions = %+v", list.Subscriptions)
	}
}
