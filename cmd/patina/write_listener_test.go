package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patinadb/patina/internal/testutil"
)

// TestAgentWriteListener: with api.write_addr the agent serves writes on a second address,
// behind the same token and the same TLS (client certificates included) as its API; patina
// exec given --api-write-addr sends its transaction there (it succeeds with the API's
// address dead).
func TestAgentWriteListener(t *testing.T) {
	schema := filepath.Join(t.TempDir(), "kv.sql")
	if err := os.WriteFile(schema, []byte("CREATE TABLE kv (k TEXT PRIMARY KEY NOT NULL, v INTEGER);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("token", func(t *testing.T) {
		a := startTestAgent(t, func(c *Config) {
			c.API.WriteAddr = "127.0.0.1:0"
			c.API.Authz.BearerToken = "tok"
		})
		if a.WriteAddr() == "" {
			t.Fatal("no write listener")
		}
		cli(t, "migrate", "--api-addr", a.APIAddr(), "--token", "tok", schema)
		if out := cli(t, "exec", "--api-addr", testutil.FreeAddr(t), "--api-write-addr", a.WriteAddr(), "--token", "tok", "INSERT INTO kv VALUES ('a', 1)"); !strings.Contains(out, "1 row") {
			t.Errorf("exec through the write listener: %q", out)
		}
		if _, err := cliErr(t, "exec", "--api-addr", testutil.FreeAddr(t), "--api-write-addr", a.WriteAddr(), "INSERT INTO kv VALUES ('b', 1)"); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("exec without the token: %v, want 401", err)
		}
		if out := cli(t, "query", "--api-addr", a.APIAddr(), "--token", "tok", "SELECT group_concat(k) AS ks FROM kv"); !strings.Contains(out, "\na\n") {
			t.Errorf("after one write allowed and one refused: %q", out)
		}
	})
	t.Run("mutual TLS", func(t *testing.T) {
		certs := makeTestCerts(t)
		a := startTestAgent(t, func(c *Config) {
			c.API.WriteAddr = "127.0.0.1:0"
			c.API.TLS = APITLSConfig{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, CAFile: certs.CA}
		})
		keys := []string{"--api-tls-ca-file", certs.CA, "--api-tls-cert-file", certs.ClientCert, "--api-tls-key-file", certs.ClientKey}
		cli(t, append([]string{"migrate", "--api-addr", a.APIAddr(), schema}, keys...)...)
		if out := cli(t, append([]string{"exec", "--api-addr", testutil.FreeAddr(t), "--api-write-addr", a.WriteAddr(), "INSERT INTO kv VALUES ('a', 1)"}, keys...)...); !strings.Contains(out, "1 row") {
			t.Errorf("exec through the write listener over mutual TLS: %q", out)
		}
		if _, err := cliErr(t, "exec", "--api-addr", testutil.FreeAddr(t), "--api-write-addr", a.WriteAddr(), "--api-tls-ca-file", certs.CA, "INSERT INTO kv VALUES ('b', 1)"); err == nil {
			t.Error("the write listener served a client without a certificate")
		}
		if _, err := cliErr(t, "exec", "--api-addr", testutil.FreeAddr(t), "--api-write-addr", "http://"+a.WriteAddr(), "INSERT INTO kv VALUES ('c', 1)"); err == nil {
			t.Error("the write listener served plain HTTP while the API is HTTPS")
		}
		if out := cli(t, append([]string{"query", "--api-addr", a.APIAddr(), "SELECT group_concat(k) AS ks FROM kv"}, keys...)...); !strings.Contains(out, "\na\n") {
			t.Errorf("after one write allowed and two refused: %q", out)
		}
	})
}
