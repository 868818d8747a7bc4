package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// TestBackup: GET /v1/backup streams every changeset of the log up to its end as of the
// request, with the site and the end seq in headers and a trailer; it needs an admin token.
func TestBackup(t *testing.T) {
	n := newNode(t, withTokens(
		api.Token{Name: "r", Scope: api.ScopeRead, Hash: api.HashToken("read-tok")},
		api.Token{Name: "a", Scope: api.ScopeAdmin, Hash: api.HashToken("admin-tok")},
	))
	ctx := context.Background()
	admin, err := client.New(n.url, client.WithToken("admin-tok"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := admin.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES (?, ?)", fmt.Sprint("k", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := admin.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the request started are not in this backup.
	if _, err := admin.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO kv (k, v) VALUES ('late', 1)")); err != nil {
		t.Fatal(err)
	}
	var got []*log.Changeset
	for b.Next() {
		got = append(got, b.Changeset())
	}
	b.Close()
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	// 300 writes and the schema changeset the node appended at start (version 1).
	if len(got) != 301 || b.SiteID != n.store.SiteID() || b.LastSeq != got[len(got)-1].Seq || b.Versions != 301 {
		t.Fatalf("backup: %d changesets, site %v, last seq %d (headers) vs %d, versions %d", len(got), b.SiteID, b.LastSeq, got[len(got)-1].Seq, b.Versions)
	}
	for i, cs := range got {
		if cs.Version != log.Version(i+1) || cs.Site != n.store.SiteID() {
			t.Fatalf("changeset %d: %v", i, cs)
		}
	}
	// Scope: a read token is refused with 403, no token with 401.
	reader, _ := client.New(n.url, client.WithToken("read-tok"))
	if _, err := reader.Backup(ctx); client.StatusOf(err) != http.StatusForbidden {
		t.Fatalf("backup with a read token: %v", err)
	}
	anon, _ := client.New(n.url)
	if _, err := anon.Backup(ctx); client.StatusOf(err) != http.StatusUnauthorized {
		t.Fatalf("backup without a token: %v", err)
	}
}
