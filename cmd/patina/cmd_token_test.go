package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTokenCommand: patina token prints a token and the config entry that accepts it with
// its scope; an agent configured with the entries lets a read token query but not write
// (403, exit 2), a write token write but not migrate.
func TestTokenCommand(t *testing.T) {
	tokRe := regexp.MustCompile(`(?m)^# token .*: ([A-Za-z0-9_-]{43})$`)
	var conf strings.Builder
	toks := map[string]string{}
	for _, scope := range []string{"read", "write"} {
		out := cli(t, "token", "--scope", scope, "--name", "ci-"+scope)
		m := tokRe.FindStringSubmatch(out)
		if m == nil || !strings.Contains(out, `scope = "`+scope+`"`) || !strings.Contains(out, `hash = "sha256:`) {
			t.Fatalf("token --scope %s printed:\n%s", scope, out)
		}
		if strings.Count(out, m[1]) != 1 {
			t.Errorf("the token appears in the config lines, not only hashed:\n%s", out)
		}
		toks[scope] = m[1]
		conf.WriteString(out)
	}
	// A token kept elsewhere, hashed from stdin: its line has no token.
	var out bytes.Buffer
	m := &Main{Stdin: strings.NewReader("ops-secret-1\n"), Stdout: &out, Stderr: &out}
	if err := m.Run(context.Background(), []string{"token", "--stdin", "--scope", "admin", "--name", "ops"}); err != nil || strings.Contains(out.String(), "ops-secret-1") {
		t.Fatalf("token --stdin: %v\n%s", err, out.String())
	}
	conf.WriteString(out.String())
	if _, err := cliErr(t, "token", "--scope", "root"); exitCode(err) != 2 {
		t.Errorf("a bad scope: %v, want exit 2", err)
	}
	m = &Main{Stdin: strings.NewReader("two words\n"), Stdout: &out, Stderr: &out}
	if err := m.Run(context.Background(), []string{"token", "--stdin", "--scope", "read"}); exitCode(err) != 2 {
		t.Errorf("a token with a space: %v, want exit 2", err)
	}

	cfgFile := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(cfgFile, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startTestAgent(t, func(c *Config) {
		if err := loadFile(cfgFile, c); err != nil {
			t.Fatal(err)
		}
	})
	addr := a.APIAddr()
	schema := filepath.Join(t.TempDir(), "kv.sql")
	os.WriteFile(schema, []byte("CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v);\n"), 0o600)
	cli(t, "migrate", "--api-addr", addr, "--token", "ops-secret-1", schema)
	cli(t, "exec", "--api-addr", addr, "--token", toks["write"], "INSERT INTO kv VALUES ('a', 1)")
	if out := cli(t, "query", "--api-addr", addr, "--token", toks["read"], "SELECT v FROM kv"); !strings.Contains(out, "1") {
		t.Errorf("read token query: %q", out)
	}
	if _, err := cliErr(t, "exec", "--api-addr", addr, "--token", toks["read"], "INSERT INTO kv VALUES ('b', 2)"); exitCode(err) != 2 || !strings.Contains(err.Error(), "403") {
		t.Errorf("read token writes: %v, want exit 2 and 403", err)
	}
	if _, err := cliErr(t, "migrate", "--api-addr", addr, "--token", toks["write"], schema); exitCode(err) != 2 || !strings.Contains(err.Error(), "403") {
		t.Errorf("write token migrates: %v, want exit 2 and 403", err)
	}
	if _, err := cliErr(t, "query", "--api-addr", addr, "SELECT 1"); exitCode(err) != 2 || !strings.Contains(err.Error(), "401") {
		t.Errorf("no token: %v, want exit 2 and 401", err)
	}

	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[[api.authz.tokens]]\nname = \"x\"\nscope = \"read\"\nhash = \"sha256:12\"\n"), 0o600)
	var c Config
	if err := loadFile(bad, &c); err != nil {
		t.Fatal(err)
	}
	if err := func() error { _, err := c.API.apiTokens(); return err }(); exitCode(err) != 2 || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("a bad hash: %v, want exit 2", err)
	}
}
