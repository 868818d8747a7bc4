package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

func kvChangeset(t *testing.T, site log.SiteID, v log.Version, val string) string {
	t.Helper()
	b, err := json.Marshal(&log.Changeset{Site: site, Version: v,
		Changes: []log.Change{{Table: "kv", PK: log.MustPackPK(log.Text(fmt.Sprintf("k%d", v))), CID: "v", Val: log.Text(val), ColVersion: 1, CL: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Forged changesets through POST /v1/changes (issue 12, item 4). On main, a changeset in the
// node's own site with version 1000 was kept (gaps 997 everywhere, the next write became
// 1001), and one a real node later wrote itself left nodes different with equal vectors.
func TestIngestRefusesForgedChangesets(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	for i := range 3 {
		if _, err := n.cl.Exec(ctx, client.Options{}, client.Statement{SQL: fmt.Sprintf("INSERT INTO kv (k, v) VALUES ('own%d', 1)", i)}); err != nil {
			t.Fatal(err)
		}
	}
	own := n.store.SiteID()
	next := n.store.NextLocalVersion()

	// The node's own site, far ahead and at its very next version: 403, nothing stored.
	for _, v := range []log.Version{1000, next} {
		a := n.do(t, "POST", "/v1/changes?allow_gaps=true", kvChangeset(t, own, v, "forged"))
		if a.status != 403 || !strings.Contains(a.errMsg(), "own site that it did not write") {
			t.Fatalf("own-site version %d: %d %s", v, a.status, a.body)
		}
	}
	if n.store.Contains(own, 1000) || n.store.Contains(own, next) {
		t.Fatal("a forged own-site version was stored")
	}
	res, err := n.cl.Exec(ctx, client.Options{}, client.Statement{SQL: "INSERT INTO kv (k, v) VALUES ('after', 1)"})
	if err != nil || res.Version != next {
		t.Fatalf("next local write: version %v, %v; want %d", res, err, next)
	}

	// Another site: a body that would open a gap is refused (409) unless allowed.
	other := log.MustParseSiteID("00000000-0000-0000-0000-0000000000cc")
	if a := n.do(t, "POST", "/v1/changes", kvChangeset(t, other, 1000, "far")); a.status != 409 || !strings.Contains(a.errMsg(), "versions 1..999 missing") {
		t.Fatalf("far-future version of another site: %d %s", a.status, a.body)
	}
	// In order it is fine, and a body may fill its own gaps.
	if a := n.do(t, "POST", "/v1/changes", kvChangeset(t, other, 2, "b")+"\n"+kvChangeset(t, other, 1, "a")); a.status != 200 {
		t.Fatalf("in-order ingest: %d %s", a.status, a.body)
	}
	// The same (site, version) with other content: 409, the held copy stays.
	if a := n.do(t, "POST", "/v1/changes", kvChangeset(t, other, 2, "changed")); a.status != 409 || !strings.Contains(a.errMsg(), "different content") {
		t.Fatalf("collision: %d %s", a.status, a.body)
	}
	_, rows, err := n.cl.QueryAll(ctx, client.Options{}, client.Statement{SQL: "SELECT v FROM kv WHERE k = 'k2'"})
	if err != nil || len(rows) != 1 || rows[0][0].Text != "b" {
		t.Fatalf("held copy: %v %v", rows, err)
	}
	// The same content again is an idempotent duplicate.
	if a := n.do(t, "POST", "/v1/changes", kvChangeset(t, other, 2, "b")); a.status != 200 {
		t.Fatalf("duplicate: %d %s", a.status, a.body)
	}

	h, err := n.cl.Health(ctx, nil)
	if err != nil || h.Gaps != 0 {
		t.Fatalf("health = %+v, %v", h, err)
	}
	a := n.do(t, "GET", "/v1/health", "")
	if !strings.Contains(string(a.body), `"forged":2`) || !strings.Contains(string(a.body), `"collisions":1`) {
		t.Fatalf("health does not show the refusals: %s", a.body)
	}
}
