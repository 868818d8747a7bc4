package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// TestSchemaEndpoint: GET /v1/schema shows the tables with their columns and versions; a
// migration moves the version and answers with its schema changeset's version; the token
// guards both endpoints.
func TestSchemaEndpoint(t *testing.T) {
	n := newNode(t, withToken("s3cret"))
	auth := []string{"Authorization", "Bearer s3cret"}
	if a := n.do(t, "GET", "/v1/schema", ""); a.status != 401 {
		t.Fatalf("GET /v1/schema without the token: %d %s", a.status, a.body)
	}
	if a := n.do(t, "POST", "/v1/migrations", `["CREATE TABLE x (id INTEGER PRIMARY KEY NOT NULL)"]`); a.status != 401 {
		t.Fatalf("POST /v1/migrations without the token: %d %s", a.status, a.body)
	}
	s, err := n.cl.Schema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Tables) != 2 || s.Tables[1].Name != "t" || strings.Join(s.Tables[1].Columns, ",") != "id,name,score,data" ||
		s.Tables[1].Version != 1 || s.Tables[1].LastChange.Site != n.store.SiteID() || len(s.Conflicts) != 0 {
		t.Fatalf("schema = %+v", s)
	}
	a := n.do(t, "POST", "/v1/migrations", `["CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, name TEXT, score REAL, data BLOB, note TEXT)", "CREATE INDEX t_note ON t (note)"]`, auth...)
	var res struct {
		Applied []string `json:"applied"`
		Version *uint64  `json:"version"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil || a.status != 200 || len(res.Applied) != 2 || res.Version == nil || *res.Version != 2 {
		t.Fatalf("migration: %d %s", a.status, a.body)
	}
	// Nothing new: no schema changeset, no version.
	a = n.do(t, "POST", "/v1/migrations", `["CREATE INDEX t_note ON t (note)"]`, auth...)
	if err := json.Unmarshal(a.body, &res); err != nil || a.status != 200 || len(res.Applied) != 0 || res.Version != nil {
		t.Fatalf("repeated migration: %d %s", a.status, a.body)
	}
	s, err = n.cl.Schema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tb := s.Tables[1]; tb.Version != 3 || strings.Join(tb.Columns, ",") != "id,name,score,data,note" || len(tb.Indexes) != 1 || tb.LastChange.Version != 2 {
		t.Fatalf("schema after the migration = %+v", tb)
	}
	// A destructive change stays refused.
	if a := n.do(t, "POST", "/v1/migrations", `["CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL)"]`, auth...); a.status != 409 || a.errMsg() == "" {
		t.Fatalf("destructive migration: %d %s", a.status, a.body)
	}
}

// TestHealthSchemaConflicts: a schema element that lost the merge shows in GET /v1/health as
// "schema_conflicts" (absent while there is none, so a Corrosion client sees its own shape),
// and makes the node unhealthy only past ?schema_conflicts=N.
func TestHealthSchemaConflicts(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	if a := n.do(t, "GET", "/v1/health?schema_conflicts=0", ""); a.status != 200 || strings.Contains(string(a.body), "schema_conflicts") {
		t.Fatalf("health with no conflict: %d %s", a.status, a.body)
	}
	s, err := n.cl.Schema(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ts log.Timestamp
	for _, tb := range s.Tables {
		if tb.Name == "t" {
			ts = tb.LastChange.TS
		}
	}
	if ts == 0 {
		t.Fatalf("no table t in %+v", s)
	}
	// Another site defines t differently, after this node did: its definition loses.
	other := log.MustParseSiteID("00000000-0000-0000-0000-0000000000dd")
	b, err := json.Marshal(&log.Changeset{Site: other, Version: 1, TS: ts + 1, Kind: log.KindSchema,
		Changes: []log.Change{{Table: "t", PK: log.MustPackPK(log.Text("t")), CID: log.SchemaTable,
			Val: log.Text("CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, other INTEGER)"), CL: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if a := n.do(t, "POST", "/v1/changes", string(b)); a.status != 200 {
		t.Fatalf("ingest a conflicting definition: %d %s", a.status, a.body)
	}
	testutil.WaitFor(t, 10*time.Second, "the conflict in GET /v1/schema", func() bool {
		s, err := n.cl.Schema(ctx)
		return err == nil && len(s.Conflicts) == 1 && s.Conflicts[0].Loser.Site == other
	})

	// Shown, but healthy by default.
	a := n.do(t, "GET", "/v1/health", "")
	if a.status != 200 || !strings.Contains(string(a.body), `"schema_conflicts":1`) || a.header.Get("X-Patina-Unhealthy") != "" {
		t.Fatalf("health with a conflict: %d %q %s", a.status, a.header.Get("X-Patina-Unhealthy"), a.body)
	}
	// Past the threshold: failure_status, with the reason.
	for _, c := range []struct {
		query  string
		status int
	}{
		{"?schema_conflicts=0", 503},
		{"?schema_conflicts=0&failure_status=429", 429},
		{"?schema_conflicts=1", 200},
		{"?schema_conflicts=5&gaps=0", 200},
	} {
		a := n.do(t, "GET", "/v1/health"+c.query, "")
		if a.status != c.status || !strings.Contains(string(a.body), `"schema_conflicts":1`) {
			t.Errorf("health%s: %d %s; want %d", c.query, a.status, a.body, c.status)
		}
		if why := a.header.Get("X-Patina-Unhealthy"); (c.status != 200) != strings.Contains(why, "schema_conflicts 1 > 0") {
			t.Errorf("health%s: X-Patina-Unhealthy %q", c.query, why)
		}
	}
	for _, bad := range []string{"-1", "x", "1.5"} {
		if a := n.do(t, "GET", "/v1/health?schema_conflicts="+bad, ""); a.status != 400 || !strings.Contains(a.errMsg(), "schema_conflicts") {
			t.Errorf("health?schema_conflicts=%s: %d %s; want 400", bad, a.status, a.body)
		}
	}
	// The Go client: the figure, and the threshold only when asked for.
	if h, err := n.cl.Health(ctx, &client.HealthThresholds{Gaps: -1, MaxQueue: -1, P99Lag: -1}); err != nil || h.SchemaConflicts != 1 {
		t.Errorf("client health = %+v, %v", h, err)
	}
	zero := int64(0)
	h, err := n.cl.Health(ctx, &client.HealthThresholds{Gaps: -1, MaxQueue: -1, P99Lag: -1, SchemaConflicts: &zero})
	if client.StatusOf(err) != 503 || h.SchemaConflicts != 1 || !strings.Contains(err.Error(), "schema_conflicts 1 > 0") {
		t.Errorf("client health over the threshold = %+v, %v; want 503", h, err)
	}
	// The node still works: the winner's table takes writes.
	n.healthy(t)
}
