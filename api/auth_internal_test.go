package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestBearerParsing: the Authorization header is parsed strictly.
func TestBearerParsing(t *testing.T) {
	tests := []struct {
		name string
		hdr  []string
		want string // "" for an error
	}{
		{"canonical", []string{"Bearer abc"}, "abc"},
		{"scheme in any case", []string{"bearer abc"}, "abc"},
		{"b64token alphabet", []string{"Bearer aZ09-._~+/=="}, "aZ09-._~+/=="},
		{"none", nil, ""},
		{"empty", []string{""}, ""},
		{"two spaces", []string{"Bearer  abc"}, ""},
		{"tab", []string{"Bearer\tabc"}, ""},
		{"trailing space", []string{"Bearer abc "}, ""},
		{"inner space", []string{"Bearer ab c"}, ""},
		{"no token", []string{"Bearer "}, ""},
		{"only padding", []string{"Bearer =="}, ""},
		{"padding inside", []string{"Bearer a=b"}, ""},
		{"other scheme", []string{"Basic abc"}, ""},
		{"no scheme", []string{"abc"}, ""},
		{"two headers", []string{"Bearer abc", "Bearer abc"}, ""},
		{"non-ASCII", []string{"Bearer abcé"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.hdr {
				h.Add("Authorization", v)
			}
			got, err := bearerToken(h)
			if tt.want == "" {
				if err == nil || !errors.Is(err, errUnauthorized) {
					t.Fatalf("bearerToken(%q) = %q, %v; want a 401 error", tt.hdr, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("bearerToken(%q) = %q, %v; want %q", tt.hdr, got, err, tt.want)
			}
		})
	}
}

// FuzzBearerToken: the parser never panics, and what it accepts is exactly the header after
// "Bearer " with no whitespace in it.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x", "Bearer a=b", "Basic x", "Bearer ", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Authorization": {v}}
		tok, err := bearerToken(h)
		if err != nil {
			return
		}
		if !strings.EqualFold(v[:7], "Bearer ") || v[7:] != tok || strings.ContainsAny(tok, " \t\r\n") || tok == "" {
			t.Fatalf("accepted %q as token %q", v, tok)
		}
	})
}

// TestEveryRouteGuarded: with a token configured, every route of the table but the public
// ones refuses a request without one, so a route added later cannot be open by mistake.
func TestEveryRouteGuarded(t *testing.T) {
	s := New(Config{BearerToken: "x", View: nil})
	public := map[string]bool{"/v1/health": true, "/metrics": true, "/ui": true, "/ui/": true}
	if len(s.methods) < 10 {
		t.Fatalf("only %d paths in the route table", len(s.methods))
	}
	for path, methods := range s.methods {
		if public[path] {
			continue
		}
		for _, m := range methods {
			p := strings.NewReplacer("{id}", "x", "{table}", "t", "{name}", "n").Replace(path)
			r, _ := http.NewRequest(m, p, nil)
			w := &recorder{h: http.Header{}}
			s.handler.ServeHTTP(w, r)
			if w.code != http.StatusUnauthorized {
				t.Errorf("%s %s without a token: %d, want 401", m, path, w.code)
			}
		}
	}
}

type recorder struct {
	h    http.Header
	code int
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(c int) {
	if r.code == 0 {
		r.code = c
	}
}

// BenchmarkAuthorize measures the token check of one request (header parse, SHA-256, a
// constant-time compare against every configured hash) with 1, 10 and 100 tokens configured,
// against the open API (no tokens: the guard is skipped) as the baseline.
func BenchmarkAuthorize(b *testing.B) {
	tok, err := NewToken()
	if err != nil {
		b.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://x/v1/queries", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	b.Run("tokens=0", func(b *testing.B) {
		a := newAuthority(&Config{})
		for b.Loop() {
			if a.enabled() {
				b.Fatal("an authority without tokens is enabled")
			}
		}
	})
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			cfg := &Config{}
			for i := range n - 1 {
				other, err := NewToken()
				if err != nil {
					b.Fatal(err)
				}
				cfg.Tokens = append(cfg.Tokens, Token{Name: fmt.Sprint("t", i), Scope: ScopeRead, Hash: HashToken(other)})
			}
			// The matching token last: every hash is compared anyway.
			cfg.Tokens = append(cfg.Tokens, Token{Name: "mine", Scope: ScopeWrite, Hash: HashToken(tok)})
			a := newAuthority(cfg)
			for b.Loop() {
				if _, err := a.authorize(req.Header, ScopeRead); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTokenChecker: the checker another door uses knows the same tokens and scopes, the
// bearer token as admin, and refuses anything else.
func TestTokenChecker(t *testing.T) {
	read, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewTokenChecker(&Config{BearerToken: "legacy", Tokens: []Token{{Name: "r", Scope: ScopeRead, Hash: HashToken(read)}}})
	if err != nil {
		t.Fatal(err)
	}
	for tok, want := range map[string]Scope{read: ScopeRead, "legacy": ScopeAdmin} {
		if got, err := c.Check(tok); err != nil || got.Scope != want {
			t.Fatalf("Check(%q) = %v, %v; want %v", tok, got.Scope, err, want)
		}
	}
	for _, tok := range []string{"", "legacy ", read + "x", "sha256:" + read} {
		if _, err := c.Check(tok); !errors.Is(err, ErrUnknownToken) {
			t.Fatalf("Check(%q): %v, want ErrUnknownToken", tok, err)
		}
	}
	if _, err := NewTokenChecker(&Config{Tokens: []Token{{Name: "bad", Scope: ScopeRead, Hash: "md5:x"}}}); err == nil {
		t.Fatal("a malformed hash was accepted")
	}
}
