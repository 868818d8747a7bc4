package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
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
