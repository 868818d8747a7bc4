package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

func TestTransactionStatementForms(t *testing.T) {
	n := newNode(t)
	tests := []struct {
		name string
		body string
		want [][]string // SELECT id, name, score, data FROM t WHERE id = <id>
		id   int
	}{
		{"plain string", `["INSERT INTO t (id, name) VALUES (1, 'a')"]`, [][]string{{"1", "'a'", "NULL", "NULL"}}, 1},
		{"positional", `[["INSERT INTO t (id, name, score) VALUES (?, ?, ?)", [2, "b", 1.5]]]`, [][]string{{"2", "'b'", "1.5", "NULL"}}, 2},
		{"named", `[["INSERT INTO t (id, name, data) VALUES (:id, :n, :d)", {"id": 3, "n": "c", "d": [1, 2]}]]`, [][]string{{"3", "'c'", "NULL", "X'0102'"}}, 3},
		{"object", `[{"query": "INSERT INTO t (id, score) VALUES (?, ?)", "params": [4, 2.0]}]`, [][]string{{"4", "NULL", "2.0", "NULL"}}, 4},
		{"object named", `[{"query": "INSERT INTO t (id, name) VALUES (:id, :n)", "named_params": {"id": 5, "n": "e"}}]`, [][]string{{"5", "'e'", "NULL", "NULL"}}, 5},
		{"bool binds as integer", `[["INSERT INTO t (id, data) VALUES (?, ?)", [6, true]]]`, [][]string{{"6", "NULL", "NULL", "1"}}, 6},
	}
	// Version 1 is the schema changeset the node's schema file appended at start.
	lastVersion := uint64(1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := n.do(t, "POST", "/v1/transactions", tt.body)
			if a.status != 200 {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			var res struct {
				Results []struct {
					RowsAffected *int64  `json:"rows_affected"`
					Time         float64 `json:"time"`
				} `json:"results"`
				Time    float64 `json:"time"`
				Version *uint64 `json:"version"`
				ActorID string  `json:"actor_id"`
			}
			if err := json.Unmarshal(a.body, &res); err != nil {
				t.Fatalf("answer %s: %v", a.body, err)
			}
			if len(res.Results) != 1 || res.Results[0].RowsAffected == nil || *res.Results[0].RowsAffected != 1 {
				t.Errorf("results = %s, want one with rows_affected 1", a.body)
			}
			if res.Version == nil || *res.Version != lastVersion+1 {
				t.Errorf("version = %v, want %d", res.Version, lastVersion+1)
			} else {
				lastVersion = *res.Version
			}
			if res.ActorID != n.store.SiteID().String() {
				t.Errorf("actor_id = %q, want %q", res.ActorID, n.store.SiteID())
			}
			got := n.query(t, "SELECT id, name, score, data FROM t WHERE id = ?", tt.id)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("row = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTransactionAllOrNothing(t *testing.T) {
	n := newNode(t)
	a := n.do(t, "POST", "/v1/transactions", `["INSERT INTO t (id) VALUES (1)", "INSERT INTO nope (id) VALUES (2)"]`)
	if a.status != 400 {
		t.Fatalf("status %d, want 400: %s", a.status, a.body)
	}
	var res struct {
		Results []struct {
			Error string `json:"error"`
		} `json:"results"`
		Version *uint64 `json:"version"`
	}
	json.Unmarshal(a.body, &res)
	if len(res.Results) != 1 || !strings.Contains(res.Results[0].Error, "statement 1") || res.Version != nil {
		t.Errorf("answer = %s, want the failing statement's error and no version", a.body)
	}
	if got := n.query(t, "SELECT count(*) FROM t"); got[0][0] != "0" {
		t.Errorf("rows after a failed transaction = %v, want 0", got)
	}
	if got := n.store.LastSeq(); got != 1 { // the schema changeset of the node's start
		t.Errorf("log last seq = %d after a failed transaction, want 1", got)
	}
}

func TestQueryStream(t *testing.T) {
	n := newNode(t)
	n.exec(t, client.Stmt("INSERT INTO kv (k, v) VALUES ('int', 1), ('real', 1.0), ('text', '1'), ('blob', X'01'), ('null', NULL)"))
	a := n.do(t, "POST", "/v1/queries", `"SELECT k, v FROM kv ORDER BY k"`)
	if a.status != 200 || a.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, type %q: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	want := []string{
		`{"columns":["k","v"]}`,
		`{"row":[1,["blob",[1]]]}`,
		`{"row":[2,["int",1]]}`,
		`{"row":[3,["null",null]]}`,
		`{"row":[4,["real",1.0]]}`,
		`{"row":[5,["text","1"]]}`,
	}
	lines := strings.Split(strings.TrimSpace(string(a.body)), "\n")
	if len(lines) != len(want)+1 {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want)+1, a.body)
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d = %s, want %s", i, lines[i], w)
		}
	}
	if !strings.HasPrefix(lines[len(want)], `{"eoq":{"time":`) {
		t.Errorf("last line = %s, want eoq", lines[len(want)])
	}
}

// TestQueryClientGoesAway reads the first rows of a result of ten million rows and hangs
// up: rows are flushed as they are found (the first arrive at once), and the agent stops the
// query when its writes fail, then serves on.
func TestQueryClientGoesAway(t *testing.T) {
	n := newNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := n.cl.Query(ctx, client.Options{}, client.Stmt(
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) SELECT x, 'some padding text' FROM c"))
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 3; i++ {
		if !rows.Next() {
			t.Fatalf("row %d: %v", i, rows.Err())
		}
		if got := rows.Values()[0]; !got.Equal(log.Integer(i)) {
			t.Errorf("row %d = %v", i, got)
		}
	}
	rows.Close()
	// The query's slot comes back once the agent noticed: in-flight requests drop to zero.
	testutil.WaitFor(t, 20*time.Second, "the abandoned query to stop", func() bool {
		text, err := n.cl.Metrics(context.Background())
		return err == nil && strings.Contains(text, `patina_queries_total{result="error"} 1`)
	})
	n.healthy(t)
}

func TestTableStatsHealthMigrations(t *testing.T) {
	n := newNode(t)
	n.exec(t, client.Stmt("INSERT INTO t (id) VALUES (1), (2), (3)"), client.Stmt("INSERT INTO kv (k) VALUES ('a')"))

	total, invalid, err := n.cl.TableStats(context.Background(), "t", "kv", "nope")
	if err != nil || total != 4 || !reflect.DeepEqual(invalid, []string{"nope"}) {
		t.Errorf("table stats = %d, %v, %v; want 4, [nope]", total, invalid, err)
	}
	if a := n.do(t, "POST", "/v1/table_stats", ``); a.status != 200 || !strings.Contains(string(a.body), `"total_row_count":4`) {
		t.Errorf("table stats of every table (no body): %d %s", a.status, a.body)
	}
	if total, _, err := n.cl.TableStats(context.Background()); err != nil || total != 4 {
		t.Errorf("client table stats of every table = %d, %v", total, err)
	}

	h, err := n.cl.Health(context.Background(), &client.HealthThresholds{Gaps: 0, MaxQueue: 0, P99Lag: -1})
	if err != nil || h.Members != 1 || h.Gaps != 0 || h.QueueSize != 0 {
		t.Errorf("health = %+v, %v", h, err)
	}
	// Version 3 of a foreign site without 1 and 2: two versions missing. Ingest refuses to
	// open a gap unless told to (issue 12: a forged far-future version).
	foreign := log.MustParseSiteID("00000000-0000-0000-0000-0000000000bb")
	gapped, err := json.Marshal(&log.Changeset{Site: foreign, Version: 3,
		Changes: []log.Change{{Table: "kv", PK: log.MustPackPK(log.Text("f")), CID: "v", Val: log.Integer(3), ColVersion: 1, CL: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if a := n.do(t, "POST", "/v1/changes", string(gapped)); a.status != 409 || !strings.Contains(string(a.body), "versions 1..2 missing") {
		t.Fatalf("gap-opening ingest: %d %s", a.status, a.body)
	}
	if a := n.do(t, "POST", "/v1/changes?allow_gaps=true", string(gapped)); a.status != 200 {
		t.Fatalf("ingest with allow_gaps: %d %s", a.status, a.body)
	}
	h, err = n.cl.Health(context.Background(), &client.HealthThresholds{Gaps: 1, MaxQueue: -1, P99Lag: -1})
	if client.StatusOf(err) != 503 || h.Gaps != 2 || !strings.Contains(err.Error(), "gaps 2 > 1") {
		t.Errorf("health with gaps 2 over a threshold of 1 = %+v, %v; want 503", h, err)
	}
	if h, err := n.cl.Health(context.Background(), &client.HealthThresholds{Gaps: 2, MaxQueue: -1, P99Lag: -1}); err != nil || h.Gaps != 2 {
		t.Errorf("health with gaps 2 at a threshold of 2 = %+v, %v; want 200", h, err)
	}
	if a := n.do(t, "GET", "/v1/health?gaps=x", ""); a.status != 400 {
		t.Errorf("health with a bad threshold: %d %s", a.status, a.body)
	}

	applied, err := n.cl.Migrate(context.Background(), "CREATE TABLE m (id INTEGER PRIMARY KEY NOT NULL, x TEXT)", "CREATE INDEX m_x ON m (x)")
	if err != nil || len(applied) != 2 {
		t.Fatalf("migrate = %v, %v; want 2 applied", applied, err)
	}
	applied, err = n.cl.Migrate(context.Background(), "CREATE TABLE m (id INTEGER PRIMARY KEY NOT NULL, x TEXT)")
	if err != nil || len(applied) != 0 {
		t.Errorf("migrate again = %v, %v; want nothing applied", applied, err)
	}
	n.exec(t, client.Stmt("INSERT INTO m (id, x) VALUES (1, 'y')"))
	if got := n.query(t, "SELECT x FROM m"); !reflect.DeepEqual(got, [][]string{{"'y'"}}) {
		t.Errorf("new table = %v", got)
	}
	// New columns come by re-applying CREATE TABLE with them (materializer's rule).
	if _, err := n.cl.Migrate(context.Background(), "CREATE TABLE m (id INTEGER PRIMARY KEY NOT NULL, x TEXT, z INTEGER DEFAULT 7)"); err != nil {
		t.Errorf("add a defaulted column: %v", err)
	}
	if got := n.query(t, "SELECT x, z FROM m"); !reflect.DeepEqual(got, [][]string{{"'y'", "7"}}) {
		t.Errorf("after adding a column = %v", got)
	}
}

func TestSyncStateMembersMetrics(t *testing.T) {
	n := newNode(t)
	for i := range 3 {
		n.exec(t, client.Stmt("INSERT INTO t (id) VALUES (?)", i))
	}
	st, err := n.cl.SyncState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	self := n.store.SiteID()
	// Version and seq 1 are the schema changeset of the node's start.
	if st.ActorID != self || st.Heads[self] != 4 || len(st.Need[self]) != 0 || st.LastSeq != 4 {
		t.Errorf("sync state = %+v; want head 4 for %v, no need, last seq 4", st, self)
	}
	ms, err := n.cl.Members(context.Background())
	if err != nil || len(ms) != 1 || ms[0].SiteID != self || !ms[0].Self || ms[0].State != "alive" {
		t.Errorf("members = %+v, %v; want this node alone", ms, err)
	}
	text, err := n.cl.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`patina_transactions_total{result="ok"} 3`,
		"patina_log_last_seq 4",
		"patina_fold_queue 0",
		`patina_http_requests_total{code="200",route="POST /v1/transactions"} 3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestChangesStreamAndIngest moves changes from one node to another through GET and POST
// /v1/changes, in both wire forms.
func TestChangesStreamAndIngest(t *testing.T) {
	for _, form := range []string{"ndjson", "msgpack"} {
		t.Run(form, func(t *testing.T) {
			a, b := newNode(t), newNode(t)
			a.exec(t, client.Stmt("INSERT INTO t (id, name, score, data) VALUES (1, 'x', 0.5, X'FF')"))
			a.exec(t, client.Stmt("INSERT INTO kv (k, v) VALUES ('a', 1)"), client.Stmt("UPDATE t SET name = 'y' WHERE id = 1"))
			a.exec(t, client.Stmt("DELETE FROM kv WHERE k = 'a'"))

			var css []*log.Changeset
			for cs, err := range a.cl.Changes(context.Background(), client.ChangesOptions{JSON: form == "ndjson"}) {
				if err != nil {
					t.Fatal(err)
				}
				css = append(css, cs)
			}
			// The first is the schema changeset of a's start.
			if len(css) != 4 || css[0].Kind != log.KindSchema {
				t.Fatalf("got %d changesets, want 4, the schema first", len(css))
			}
			for i, cs := range css {
				if cs.Seq != log.Seq(i+1) || cs.Site != a.store.SiteID() || cs.Version != log.Version(i+1) {
					t.Errorf("changeset %d: seq %d site %v version %d", i, cs.Seq, cs.Site, cs.Version)
				}
			}
			post := b.cl.PostChanges
			if form == "ndjson" {
				post = b.cl.PostChangesJSON
			}
			res, err := post(context.Background(), css...)
			if err != nil || res.Changesets != 4 || res.New != 4 {
				t.Fatalf("ingest = %+v, %v; want 4 new", res, err)
			}
			// Answered after the fold: a read right after sees the changes.
			want := [][]string{{"1", "'y'", "0.5", "X'FF'"}}
			if got := b.query(t, "SELECT id, name, score, data FROM t"); !reflect.DeepEqual(got, want) {
				t.Errorf("t on b = %v, want %v", got, want)
			}
			if got := b.query(t, "SELECT count(*) FROM kv"); got[0][0] != "0" {
				t.Errorf("kv on b = %v, want empty (deleted)", got)
			}
			// Idempotent: the same changesets again are no news and change nothing.
			res, err = post(context.Background(), css...)
			if err != nil || res.New != 0 {
				t.Errorf("ingest again = %+v, %v; want 0 new", res, err)
			}
			if got := b.store.LastSeq(); got != 5 { // its own schema changeset and a's four
				t.Errorf("b's log last seq = %d, want 5", got)
			}
			// Resume after seq 3: only the fourth.
			var rest []log.Seq
			for cs, err := range a.cl.Changes(context.Background(), client.ChangesOptions{Since: 3, JSON: form == "ndjson"}) {
				if err != nil {
					t.Fatal(err)
				}
				rest = append(rest, cs.Seq)
			}
			if !reflect.DeepEqual(rest, []log.Seq{4}) {
				t.Errorf("since=3 gave seqs %v, want [4]", rest)
			}
			// An empty body (a piped stream with nothing new) is zero changesets, not an error.
			if res, err := post(context.Background()); err != nil || res.Changesets != 0 || res.New != 0 {
				t.Errorf("empty ingest = %+v, %v; want 0 and no error", res, err)
			}
		})
	}
}

func TestChangesFollow(t *testing.T) {
	n := newNode(t)
	n.exec(t, client.Stmt("INSERT INTO t (id) VALUES (1)"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan *log.Changeset, 16)
	done := make(chan error, 1)
	go func() {
		for cs, err := range n.cl.Changes(ctx, client.ChangesOptions{Follow: true}) {
			if err != nil {
				done <- err
				return
			}
			got <- cs
		}
		done <- nil
	}()
	first := <-got
	if first.Seq != 1 {
		t.Fatalf("first changeset seq %d, want 1", first.Seq)
	}
	for i := 2; i <= 4; i++ {
		n.exec(t, client.Stmt("INSERT INTO t (id) VALUES (?)", i))
		select {
		case cs := <-got:
			if cs.Seq != log.Seq(i) {
				t.Fatalf("followed changeset seq %d, want %d", cs.Seq, i)
			}
		case err := <-done:
			t.Fatalf("follow ended: %v", err)
		case <-ctx.Done():
			t.Fatal("a new changeset did not reach the follower")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended with %v after the client cancelled", err)
	}
	// The stream slot is given back once the follower is gone.
	testutil.WaitFor(t, 10*time.Second, "the stream gauge back at 0", func() bool {
		text, err := n.cl.Metrics(context.Background())
		return err == nil && strings.Contains(text, "patina_streams_open 0")
	})
}

// TestLoadShedding fills the only data slot with a long query; the next request is shed
// with 503, and served again once the slot is free.
func TestLoadShedding(t *testing.T) {
	n := newNode(t, withLimits(1, 1, 1<<20))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Runs until cancelled: a count over a practically endless recursion. It may itself be
		// shed while a probe below holds the slot: then it tries again.
		for ctx.Err() == nil {
			_, _, err := n.cl.QueryAll(ctx, client.Options{}, client.Stmt(
				"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) SELECT count(*) FROM c"))
			if client.StatusOf(err) != http.StatusServiceUnavailable {
				return
			}
		}
	}()
	var shed answer
	testutil.WaitFor(t, 10*time.Second, "a request shed with 503", func() bool {
		shed = n.do(t, "POST", "/v1/queries", `"SELECT 1"`)
		return shed.status == http.StatusServiceUnavailable
	})
	if shed.errMsg() == "" || shed.header.Get("Retry-After") == "" {
		t.Errorf("shed answer: %s (Retry-After %q)", shed.body, shed.header.Get("Retry-After"))
	}
	// Health and metrics are never shed.
	if a := n.do(t, "GET", "/v1/health", ""); a.status != 200 {
		t.Errorf("health while overloaded: %d", a.status)
	}
	cancel()
	wg.Wait()
	testutil.WaitFor(t, 10*time.Second, "the slot given back", func() bool {
		return n.do(t, "POST", "/v1/queries", `"SELECT 1"`).status == 200
	})
	// The stream limit: one follower holds the only stream slot.
	fctx, fcancel := context.WithCancel(context.Background())
	defer fcancel()
	req, _ := http.NewRequestWithContext(fctx, "GET", n.url+"/v1/changes?follow=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("follow: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if a := n.do(t, "GET", "/v1/changes?follow=true", ""); a.status != 503 {
		t.Errorf("second follower: %d %s, want 503", a.status, a.body)
	}
}

func TestQueryTimeout(t *testing.T) {
	n := newNode(t)
	start := time.Now()
	_, _, err := n.cl.QueryAll(context.Background(), client.Options{Timeout: 100 * time.Millisecond}, client.Stmt(
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) SELECT count(*) FROM c"))
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusRequestTimeout || !strings.Contains(e.Message, "timeout") {
		t.Fatalf("err = %v, want 408 with a timeout message", err)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("a 100 ms timeout took %v to answer", el)
	}
	n.healthy(t)
}

func TestBearerToken(t *testing.T) {
	n := newNode(t, withToken("s3cret"))
	tests := []struct {
		path, auth string
		want       int
	}{
		{"/v1/sync/state", "", 401},
		{"/v1/sync/state", "Bearer nope", 401},
		{"/v1/sync/state", "s3cret", 401},
		{"/v1/sync/state", "Bearer s3cret", 200},
		{"/v1/members", "", 401},
		{"/v1/health", "", 200},
		{"/metrics", "", 200},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %q", tt.path, tt.auth), func(t *testing.T) {
			a := n.do(t, "GET", tt.path, "", "Authorization", tt.auth)
			if a.status != tt.want {
				t.Fatalf("status %d, want %d: %s", a.status, tt.want, a.body)
			}
			if tt.want == 401 && (a.errMsg() == "" || a.header.Get("WWW-Authenticate") == "") {
				t.Errorf("401 without an error or WWW-Authenticate: %s", a.body)
			}
		})
	}
	if a := n.do(t, "POST", "/v1/transactions", `["INSERT INTO t (id) VALUES (1)"]`); a.status != 401 {
		t.Errorf("write without a token: %d", a.status)
	}
	n.healthy(t)
}

// TestClientReusesConnections: every kind of call leaves its connection reusable, so a busy
// client does not pay a TCP handshake (and the agent a new goroutine) per request.
func TestClientReusesConnections(t *testing.T) {
	n := newNode(t)
	var dials atomic.Int64
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	cl, err := client.New(n.url, client.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 20 {
		if _, err := cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO t (id) VALUES (?)", i)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cl.QueryAll(ctx, client.Options{}, client.Stmt("SELECT id FROM t WHERE id = ?", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Health(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cl.TableStats(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := dials.Load(); got != 1 {
		t.Errorf("80 sequential calls opened %d connections, want 1", got)
	}
}

// panickyView is the real view whose Query panics, to stand for a bug.
type panickyView struct{ *materializer.Materializer }

func (panickyView) Query(context.Context, materializer.Statement) (materializer.Rows, error) {
	panic("a bug")
}

// TestHandlerPanic: a bug in a handler is a JSON 500, logged, and the server stays up.
func TestHandlerPanic(t *testing.T) {
	n := newNode(t)
	acfg := api.DefaultConfig()
	acfg.Addr = "127.0.0.1:0"
	acfg.View, acfg.Log = panickyView{n.mat}, n.store
	acfg.Logger = slog.New(slog.DiscardHandler)
	srv := api.New(acfg)
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p := &node{url: "http://" + srv.Addr().String(), store: n.store, mat: n.mat}
	p.cl, _ = client.New(p.url)
	for range 2 {
		a := p.do(t, "POST", "/v1/queries", `"SELECT 1"`)
		if a.status != 500 || !strings.Contains(a.errMsg(), "panic: a bug") {
			t.Fatalf("status %d %s, want a JSON 500", a.status, a.body)
		}
	}
	p.exec(t, client.Stmt("INSERT INTO t (id) VALUES (1)"))
}

// TestCloseWithSilentConnection: a client that connected but never sent a request (a
// pre-connecting pool, a TCP health check) must not hold a graceful stop. net/http's Shutdown
// waits 5 s for such a connection; the server closes it at once, so Close returns long before
// that (ShutdownTimeout is 5 s here, so an unbounded wait shows as an error, not a hang).
func TestCloseWithSilentConnection(t *testing.T) {
	n := newNode(t)
	conn, err := net.Dial("tcp", n.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n.healthy(t) // the server has accepted connections since the silent one
	start := time.Now()
	if err := n.srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("close took %v with one silent connection open", d)
	}
	// The silent connection was closed by the server.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent connection is still open")
	}
}
