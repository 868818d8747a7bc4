package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/log"
)

func withTokens(tokens ...api.Token) nodeOpt {
	return func(c *api.Config, _ *log.Options) { c.Tokens = append(c.Tokens, tokens...) }
}

func withGuardPublic() nodeOpt {
	return func(c *api.Config, _ *log.Options) { c.GuardPublic = true }
}

// TestScopedTokens: a read token reads but cannot write (403), a write token writes but
// cannot migrate or ingest (403), an admin token and Corrosion's single bearer_token do
// everything; no token or an unknown one is 401. A refused write leaves the data unchanged.
func TestScopedTokens(t *testing.T) {
	const reader, writer, admin, legacy = "read-tok", "write-tok", "admin-tok", "legacy-tok"
	n := newNode(t, withToken(legacy), withTokens(
		api.Token{Name: "r", Scope: api.ScopeRead, Hash: api.HashToken(reader)},
		api.Token{Name: "w", Scope: api.ScopeWrite, Hash: api.HashToken(writer)},
		api.Token{Name: "a", Scope: api.ScopeAdmin, Hash: api.HashToken(admin)},
	))
	type call struct{ method, path, body string }
	var (
		query   = call{"POST", "/v1/queries", `"SELECT count(*) FROM kv"`}
		stats   = call{"POST", "/v1/table_stats", `{"tables":[]}`}
		tail    = call{"GET", "/v1/changes?since=0", ""}
		members = call{"GET", "/v1/members", ""}
		state   = call{"GET", "/v1/sync/state", ""}
		write   = call{"POST", "/v1/transactions", `["INSERT INTO kv (k, v) VALUES ('x', 1) ON CONFLICT (k) DO UPDATE SET v = v + 1"]`}
		migrate = call{"POST", "/v1/migrations", `["CREATE TABLE m (id INTEGER PRIMARY KEY NOT NULL)"]`}
		ingest  = call{"POST", "/v1/changes", "\n"}
		updates = call{"POST", "/v1/updates/nope", ""}
		health  = call{"GET", "/v1/health", ""}
		metrics = call{"GET", "/metrics", ""}
	)
	ok := func(status int) bool { return status != 401 && status != 403 }
	tests := []struct {
		token string
		c     call
		want  int // 0: allowed (any status but 401 and 403)
	}{
		{"", query, 401}, {"", write, 401}, {"", migrate, 401}, {"", tail, 401}, {"", updates, 401},
		{"nope", query, 401}, {"nope", write, 401},
		{"", health, 0}, {"", metrics, 0},

		{reader, query, 0}, {reader, stats, 0}, {reader, tail, 0}, {reader, members, 0}, {reader, state, 0},
		{reader, updates, 0},
		{reader, write, 403}, {reader, migrate, 403}, {reader, ingest, 403},

		{writer, query, 0}, {writer, write, 0},
		{writer, migrate, 403}, {writer, ingest, 403},

		{admin, write, 0}, {admin, migrate, 0}, {admin, ingest, 0},
		{legacy, write, 0}, {legacy, migrate, 0}, {legacy, ingest, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %s", tt.token, tt.c.method, tt.c.path), func(t *testing.T) {
			var hdr []string
			if tt.token != "" {
				hdr = []string{"Authorization", "Bearer " + tt.token}
			}
			a := n.do(t, tt.c.method, tt.c.path, tt.c.body, hdr...)
			switch {
			case tt.want == 0 && !ok(a.status):
				t.Fatalf("status %d, want the request let through: %s", a.status, a.body)
			case tt.want != 0 && a.status != tt.want:
				t.Fatalf("status %d, want %d: %s", a.status, tt.want, a.body)
			}
			if tt.want != 0 && a.errMsg() == "" {
				t.Errorf("%d without a JSON error: %s", a.status, a.body)
			}
			if tt.want == 403 {
				if h := a.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) {
					t.Errorf("403 WWW-Authenticate = %q, want insufficient_scope", h)
				}
				if !strings.Contains(a.errMsg(), "needs a") {
					t.Errorf("403 does not say which scope is needed: %s", a.errMsg())
				}
			}
		})
	}
	// The reader's refused write changed nothing; the writer's and admins' four did.
	a := n.do(t, "POST", "/v1/queries", `"SELECT v FROM kv WHERE k = 'x'"`, "Authorization", "Bearer "+reader)
	if !strings.Contains(string(a.body), `{"row":[1,[3]]}`) {
		t.Errorf("after 3 allowed writes and 2 refused ones: %s", a.body)
	}
	if m := n.do(t, "GET", "/metrics", ""); !strings.Contains(string(m.body), `patina_http_auth_failures_total{code="403"} 5`) {
		t.Errorf("metrics do not count 5 refusals with 403:\n%s", grepLines(string(m.body), "auth_failures"))
	}
}

// TestGuardPublic: with GuardPublic, health and metrics need a read token too.
func TestGuardPublic(t *testing.T) {
	n := newNode(t, withGuardPublic(), withTokens(api.Token{Name: "r", Scope: api.ScopeRead, Hash: api.HashToken("r")}))
	for _, p := range []string{"/v1/health", "/metrics"} {
		if a := n.do(t, "GET", p, ""); a.status != 401 {
			t.Errorf("%s without a token: %d, want 401", p, a.status)
		}
		if a := n.do(t, "GET", p, "", "Authorization", "Bearer r"); a.status != 200 {
			t.Errorf("%s with a read token: %d %s", p, a.status, a.body)
		}
	}
}

// TestBadTokenHash: a malformed hash or a missing scope is an error naming the token.
func TestBadTokenHash(t *testing.T) {
	err := api.ValidateTokens([]api.Token{{Name: "ops", Scope: api.ScopeRead, Hash: "md5:abc"}})
	if err == nil || !strings.Contains(err.Error(), "ops") {
		t.Fatalf("validate = %v, want an error naming the token", err)
	}
	if err := api.ValidateTokens([]api.Token{{Name: "ops", Hash: api.HashToken("x")}}); err == nil {
		t.Fatal("a token without a scope is valid")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
