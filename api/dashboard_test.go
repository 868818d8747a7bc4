package api_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
)

// TestDashboard: GET /ui is a self-contained page served without a token (it holds no data,
// loads nothing from elsewhere); GET /v1/dashboard needs a read token and reports the node's
// figures, moving after a write. (The page itself is tested in Chromium by cmd/patina's
// TestDashboardChromium.)
func TestDashboard(t *testing.T) {
	n := newNode(t, withTokens(api.Token{Name: "r", Scope: api.ScopeRead, Hash: api.HashToken("r")}),
		withToken("admin"))
	page := n.do(t, "GET", "/ui", "")
	if page.status != 200 || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui: %d %s", page.status, page.header.Get("Content-Type"))
	}
	if !strings.Contains(page.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("no restrictive CSP: %q", page.header.Get("Content-Security-Policy"))
	}
	// No CDN: nothing in the page points to another origin.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindString(string(page.body)); m != "" {
		t.Errorf("the page loads from elsewhere: %s", m)
	}
	if !strings.Contains(string(page.body), `name="viewport"`) {
		t.Error("the page has no viewport meta tag (unreadable on a phone)")
	}
	if a := n.do(t, "GET", "/v1/dashboard", ""); a.status != 401 {
		t.Errorf("dashboard data without a token: %d", a.status)
	}

	get := func() map[string]json.RawMessage {
		t.Helper()
		a := n.do(t, "GET", "/v1/dashboard", "", "Authorization", "Bearer r")
		if a.status != 200 {
			t.Fatalf("dashboard: %d %s", a.status, a.body)
		}
		var d map[string]json.RawMessage
		if err := json.Unmarshal(a.body, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := get()
	for _, k := range []string{"site_id", "time", "uptime", "members", "sites", "log", "fold", "lag", "subscriptions", "writes"} {
		if _, ok := d[k]; !ok {
			t.Errorf("dashboard lacks %q: %v", k, d)
		}
	}
	var members []struct {
		State string `json:"state"`
		Self  bool   `json:"self"`
	}
	json.Unmarshal(d["members"], &members)
	if len(members) != 1 || !members[0].Self || members[0].State != "alive" {
		t.Errorf("members = %+v, want this node alive", members)
	}

	cl, _ := client.New(n.url, client.WithToken("admin"))
	n.cl = cl
	n.exec(t, client.Stmt("INSERT INTO kv (k, v) VALUES ('a', 1)"))
	n.exec(t, client.Stmt("INSERT INTO kv (k, v) VALUES ('b', 2)"))
	d = get()
	var writes struct {
		Transactions float64 `json:"transactions"`
		Versions     uint64  `json:"versions"`
	}
	var lg struct {
		Versions uint64 `json:"versions"`
		Bytes    uint64 `json:"bytes"`
	}
	var sites []struct {
		Head, Held, Gaps uint64
		Self             bool
	}
	json.Unmarshal(d["writes"], &writes)
	json.Unmarshal(d["log"], &lg)
	json.Unmarshal(d["sites"], &sites)
	// Two writes and the schema changeset the node appended at start.
	if writes.Transactions != 2 || writes.Versions != 3 || lg.Versions != 3 || lg.Bytes == 0 {
		t.Errorf("after 2 writes: writes %+v, log %+v", writes, lg)
	}
	if len(sites) != 1 || sites[0].Head != 3 || sites[0].Held != 3 || sites[0].Gaps != 0 || !sites[0].Self {
		t.Errorf("sites = %+v", sites)
	}
}
