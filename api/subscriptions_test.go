package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
	"github.com/patinadb/patina/materializer/subs"
)

// subsNode is a real node for the subscription tests: log, view, a persistent subscription
// engine in the data dir, and the API on 127.0.0.1. reopen restarts it on the same dir.
type subsNode struct {
	tb    testing.TB
	dir   string
	store *log.Store
	mat   *materializer.Materializer
	eng   *subs.Engine
	srv   *api.Server
	url   string
	site  log.SiteID
	hc    *http.Client // for stream; nil is http.DefaultClient
}

const subsSchema = `CREATE TABLE apps (id INTEGER PRIMARY KEY NOT NULL, name TEXT);
CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app_id INTEGER, addr TEXT, state TEXT);`

func newSubsNode(tb testing.TB) *subsNode {
	tb.Helper()
	n := &subsNode{tb: tb, dir: tb.TempDir()}
	n.open()
	tb.Cleanup(n.close)
	return n
}

func (n *subsNode) open() {
	n.openWith(true)
}

// openWith opens the node; without an engine the API runs its own in-memory one.
func (n *subsNode) openWith(engine bool) {
	tb := n.tb
	tb.Helper()
	var err error
	if n.store, err = log.Open(filepath.Join(n.dir, "log"), log.Options{SiteID: n.site}); err != nil {
		tb.Fatalf("open log: %v", err)
	}
	n.site = n.store.SiteID()
	mcfg := materializer.DefaultConfig(filepath.Join(n.dir, "views.db"))
	mcfg.Schema = []string{subsSchema}
	n.mat = materializer.New(n.store, mcfg)
	if err := n.mat.Open(context.Background()); err != nil {
		tb.Fatalf("open materializer: %v", err)
	}
	reg := prometheus.NewRegistry()
	n.eng = subs.New(n.mat, subs.Config{Dir: filepath.Join(n.dir, "subscriptions"), RetainChanges: 5, Registerer: reg})
	if err := n.eng.Open(context.Background()); err != nil {
		tb.Fatalf("open subscriptions: %v", err)
	}
	acfg := api.DefaultConfig()
	acfg.Addr = "127.0.0.1:0"
	acfg.ShutdownTimeout = 5 * time.Second
	acfg.Registry = reg
	acfg.View, acfg.Log = n.mat, n.store
	if engine {
		acfg.Subscriptions = n.eng
	}
	n.srv = api.New(acfg)
	if err := n.srv.Open(context.Background()); err != nil {
		tb.Fatalf("open api: %v", err)
	}
	n.url = "http://" + n.srv.Addr().String()
}

func (n *subsNode) close() {
	if n.srv == nil {
		return
	}
	for _, c := range []func() error{n.srv.Close, n.eng.Close, n.mat.Close, n.store.Close} {
		if err := c(); err != nil {
			n.tb.Errorf("close: %v", err)
		}
	}
	n.srv = nil
}

// exec writes through the API and returns the fold position after it.
func (n *subsNode) exec(sqls ...string) {
	n.tb.Helper()
	b, _ := json.Marshal(sqls)
	resp, err := http.Post(n.url+"/v1/transactions", "application/json", strings.NewReader(string(b)))
	if err != nil {
		n.tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		n.tb.Fatalf("exec %q: %d %s", sqls, resp.StatusCode, body)
	}
}

// eventStream is an open subscription answer read line by line.
type eventStream struct {
	resp   *http.Response
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

func (n *subsNode) stream(method, path, body string) *eventStream {
	n.tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, rd)
	if err != nil {
		n.tb.Fatal(err)
	}
	hc := n.hc
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		n.tb.Fatalf("%s %s: %v", method, path, err)
	}
	es := &eventStream{resp: resp, sc: bufio.NewScanner(resp.Body), cancel: cancel}
	n.tb.Cleanup(es.close)
	return es
}

func (es *eventStream) close() { es.cancel(); es.resp.Body.Close() }

// next reads one line, failing after a deadline rather than hanging.
func (es *eventStream) next(tb testing.TB) string {
	tb.Helper()
	got := make(chan string, 1)
	go func() {
		if es.sc.Scan() {
			got <- es.sc.Text()
		} else {
			got <- fmt.Sprintf("<end: %v>", es.sc.Err())
		}
	}()
	select {
	case l := <-got:
		return l
	case <-time.After(10 * time.Second):
		es.close()
		<-got
		tb.Fatalf("no event within 10s")
		return ""
	}
}

func expectLines(tb testing.TB, es *eventStream, want ...string) {
	tb.Helper()
	for i, w := range want {
		got := es.next(tb)
		if strings.HasSuffix(w, "*") {
			if !strings.HasPrefix(got, strings.TrimSuffix(w, "*")) {
				tb.Fatalf("line %d: got %s, want %s", i, got, w)
			}
			continue
		}
		if got != w {
			tb.Fatalf("line %d: got %s, want %s", i, got, w)
		}
	}
}

const proxyQuery = `SELECT m.id, m.addr, a.name FROM machines m JOIN apps a ON a.id = m.app_id WHERE m.state = 'started' ORDER BY m.id`

func TestSubscriptionHTTP(t *testing.T) {
	n := newSubsNode(t)
	n.exec(`INSERT INTO apps VALUES (1, 'web')`, `INSERT INTO machines VALUES ('m1', 1, '10.0.0.1', 'started')`)
	body, _ := json.Marshal(proxyQuery)
	es := n.stream("POST", "/v1/subscriptions", string(body))
	if es.resp.StatusCode != 200 {
		t.Fatalf("status %d", es.resp.StatusCode)
	}
	id, hash := es.resp.Header.Get("corro-query-id"), es.resp.Header.Get("corro-query-hash")
	if id == "" || hash == "" {
		t.Fatalf("headers %v: want corro-query-id and corro-query-hash", es.resp.Header)
	}
	expectLines(t, es,
		`{"columns":["id","addr","name"]}`,
		`{"row":[1,["m1","10.0.0.1","web"]]}`,
		`{"eoq":{"time":*`,
	)
	// One write at a time, each one's events read before the next: the engine may fold
	// commit notices that arrive together into one evaluation (subs' invariant: a result is
	// exact for a state at least as new as the batch), and then m2 would be inserted already
	// as www, with no update of its own.
	n.exec(`INSERT INTO machines VALUES ('m2', 1, '10.0.0.2', 'started')`)
	expectLines(t, es, `{"change":["insert",2,["m2","10.0.0.2","web"],1]}`)
	n.exec(`UPDATE apps SET name = 'www' WHERE id = 1`)
	expectLines(t, es,
		`{"change":["update",1,["m1","10.0.0.1","www"],2]}`,
		`{"change":["update",2,["m2","10.0.0.2","www"],3]}`,
	)
	n.exec(`UPDATE machines SET state = 'stopped' WHERE id = 'm1'`)
	expectLines(t, es, `{"change":["delete",1,["m1","10.0.0.1","www"],4]}`)
	// The engine's metrics are on /metrics. The events counter moves just after an event is
	// written to the stream, so the client may read the fourth event first: wait for it.
	wants := []string{"patina_subscriptions 1", `patina_subscription_clients{kind="subscriptions"} 1`, "patina_subscription_events_total 4"}
	var mb []byte
	err := testutil.Poll(10*time.Second, func() bool {
		mresp, err := http.Get(n.url + "/metrics")
		if err != nil {
			return false
		}
		mb, _ = io.ReadAll(mresp.Body)
		mresp.Body.Close()
		for _, want := range wants {
			if !strings.Contains(string(mb), want) {
				return false
			}
		}
		return true
	})
	if err != nil {
		for _, want := range wants {
			if !strings.Contains(string(mb), want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	}
	es.close()

	// Resume by id after the disconnect: exactly the changes after 2.
	n.exec(`DELETE FROM machines WHERE id = 'm2'`)
	re := n.stream("GET", "/v1/subscriptions/"+id+"?from=2", "")
	expectLines(t, re,
		`{"change":["update",2,["m2","10.0.0.2","www"],3]}`,
		`{"change":["delete",1,["m1","10.0.0.1","www"],4]}`,
		`{"change":["delete",2,["m2","10.0.0.2","www"],5]}`,
	)
	re.close()

	// Restart: the subscription is still there and resumes.
	n.close()
	n.open()
	n.exec(`INSERT INTO machines VALUES ('m3', 1, '10.0.0.3', 'started')`)
	re = n.stream("GET", "/v1/subscriptions/"+id+"?from=5", "")
	expectLines(t, re, `{"change":["insert",3,["m3","10.0.0.3","www"],6]}`)
	re.close()

	// from=0: the current result again, then the changes (Corrosion's answer; corro-client
	// reconnects so after an eoq of change id 0).
	full := n.stream("GET", "/v1/subscriptions/"+id+"?from=0", "")
	expectLines(t, full,
		`{"columns":["id","addr","name"]}`,
		`{"row":[3,["m3","10.0.0.3","www"]]}`,
		`{"eoq":{"time":*`,
	)
	full.close()

	// Not reached yet: an explicit error event, never a silent gap.
	ahead := n.stream("GET", "/v1/subscriptions/"+id+"?from=99", "")
	if l := ahead.next(t); !strings.HasPrefix(l, `{"error":"`) || !strings.Contains(l, "not reached") {
		t.Errorf("from=99: got %s, want an error event", l)
	}
	if l := ahead.next(t); !strings.HasPrefix(l, "<end") {
		t.Errorf("after the error event: %s, want the end", l)
	}
}

func TestSubscriptionHTTPErrors(t *testing.T) {
	n := newSubsNode(t)
	cases := []struct {
		name, method, path, body string
		status                   int
	}{
		{"not select", "POST", "/v1/subscriptions", `"DELETE FROM apps"`, 400},
		{"two statements", "POST", "/v1/subscriptions", `"SELECT 1; SELECT 2"`, 400},
		{"syntax", "POST", "/v1/subscriptions", `"SELECT FROM WHERE"`, 400},
		{"unknown table", "POST", "/v1/subscriptions", `"SELECT * FROM nope"`, 400},
		{"bad json", "POST", "/v1/subscriptions", `{`, 400},
		{"bad from", "POST", "/v1/subscriptions?from=x", `"SELECT 1"`, 400},
		{"bad skip_rows", "POST", "/v1/subscriptions?skip_rows=maybe", `"SELECT 1"`, 400},
		{"unknown id", "GET", "/v1/subscriptions/00000000-0000-4000-8000-000000000000", ``, 404},
		{"updates unknown table", "POST", "/v1/updates/nope", ``, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rd io.Reader
			if c.body != "" {
				rd = strings.NewReader(c.body)
			}
			req, _ := http.NewRequest(c.method, n.url+c.path, rd)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var e struct {
				Error string `json:"error"`
			}
			if resp.StatusCode != c.status || json.Unmarshal(b, &e) != nil || e.Error == "" {
				t.Errorf("got %d %s, want %d with an error", resp.StatusCode, b, c.status)
			}
		})
	}
}

func TestUpdatesHTTP(t *testing.T) {
	n := newSubsNode(t)
	es := n.stream("POST", "/v1/updates/machines", "")
	if es.resp.StatusCode != 200 {
		t.Fatalf("status %d", es.resp.StatusCode)
	}
	n.exec(`INSERT INTO machines VALUES ('m1', 1, 'a', 'started')`, `INSERT INTO apps VALUES (1, 'web')`)
	n.exec(`DELETE FROM machines WHERE id = 'm1'`)
	expectLines(t, es, `{"notify":["update",["m1"]]}`, `{"notify":["delete",["m1"]]}`)
}

// BenchmarkSubscriptionHTTP: time from a write's answer (POST /v1/transactions) to the change
// event read from a subscription's HTTP stream, with 1 and 1,000 live subscriptions of the
// fly-proxy kind (one row per machine joined to its app, one subscription per app), each
// read by its own client.
func BenchmarkSubscriptionHTTP(b *testing.B) {
	for _, nsubs := range []int{1, 1000} {
		b.Run(fmt.Sprint("subs=", nsubs), func(b *testing.B) {
			n := newSubsNode(b)
			stmts := []string{}
			for a := range nsubs {
				stmts = append(stmts, fmt.Sprintf(`INSERT INTO apps VALUES (%d, 'app-%d')`, a, a))
				for k := range 3 {
					stmts = append(stmts, fmt.Sprintf(`INSERT INTO machines VALUES ('m-%d-%d', %d, '10.0.0.1', 'started')`, a, k, a))
				}
			}
			n.exec(stmts...)
			events := make([]chan string, nsubs)
			for a := range nsubs {
				body, _ := json.Marshal([]any{`SELECT m.id, m.addr, a.name FROM machines m JOIN apps a ON a.id = m.app_id WHERE m.app_id = ?`, []int{a}})
				es := n.stream("POST", "/v1/subscriptions?skip_rows=true", string(body))
				if es.resp.StatusCode != 200 {
					b.Fatalf("subscribe: %d", es.resp.StatusCode)
				}
				// skip_rows: no current result; the 200 answer means the subscription is live.
				ch := make(chan string, 16)
				events[a] = ch
				go func() {
					for es.sc.Scan() {
						ch <- es.sc.Text()
					}
					close(ch)
				}()
			}
			// The event often arrives before the write's own answer: both follow the commit.
			// So two figures: from the answer (ack), and from sending the write (sent).
			lat := make([]time.Duration, 0, b.N)
			full := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				a := i * 7919 % nsubs
				sent := time.Now()
				n.exec(fmt.Sprintf(`UPDATE machines SET addr = '10.1.%d' WHERE id = 'm-%d-%d'`, i, a, i%3))
				acked := time.Now()
				select {
				case l, ok := <-events[a]:
					if !ok || !strings.HasPrefix(l, `{"change":["update"`) {
						b.Fatalf("event %q", l)
					}
				case <-time.After(10 * time.Second):
					b.Fatal("no event within 10s")
				}
				now := time.Now()
				lat = append(lat, now.Sub(acked))
				full = append(full, now.Sub(sent))
			}
			b.StopTimer()
			q := func(d []time.Duration, p float64) float64 {
				slices.Sort(d)
				return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
			}
			b.ReportMetric(q(lat, 0.5), "ack-p50-ms")
			b.ReportMetric(q(lat, 0.99), "ack-p99-ms")
			b.ReportMetric(q(full, 0.5), "sent-p50-ms")
			b.ReportMetric(q(full, 0.99), "sent-p99-ms")
		})
	}
}

// TestSubscriptionOwnEngine: a server given no engine serves subscriptions with its own.
func TestSubscriptionOwnEngine(t *testing.T) {
	n := &subsNode{tb: t, dir: t.TempDir()}
	n.openWith(false)
	t.Cleanup(n.close)
	n.exec(`INSERT INTO apps VALUES (1, 'web')`)
	es := n.stream("POST", "/v1/subscriptions", `"SELECT name FROM apps"`)
	expectLines(t, es, `{"columns":["name"]}`, `{"row":[1,["web"]]}`, `{"eoq":*`)
	n.exec(`UPDATE apps SET name = 'www' WHERE id = 1`)
	expectLines(t, es, `{"change":["update",1,["www"],1]}`)
}
