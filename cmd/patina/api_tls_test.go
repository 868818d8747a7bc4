package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestAPITLS: the agent serves HTTPS with certificates made by patina tls; with api.tls.ca_file
// it requires a client certificate of that CA. Client commands reach it with the same keys,
// and are refused without the CA (unknown authority), without a client certificate, and over
// plain HTTP.
func TestAPITLS(t *testing.T) {
	certs := makeTestCerts(t)
	ca := certs.CA
	srvCert, srvKey := certs.ServerCert, certs.ServerKey
	cliCert, cliKey := certs.ClientCert, certs.ClientKey

	t.Run("server TLS", func(t *testing.T) {
		a := startTestAgent(t, func(c *Config) {
			c.API.TLS = APITLSConfig{CertFile: srvCert, KeyFile: srvKey}
			c.API.Authz.BearerToken = "tok"
		})
		addr := a.APIAddr()
		if out := cli(t, "query", "--api-addr", addr, "--token", "tok", "--api-tls-ca-file", ca, "SELECT 41 + 1"); !strings.Contains(out, "42") {
			t.Errorf("query over https: %q", out)
		}
		if out := cli(t, "query", "--api-addr", "https://"+addr, "--token", "tok", "--api-tls-ca-file", ca, "-o", "json", "SELECT 1 AS one"); !strings.Contains(out, `"one":1`) {
			t.Errorf("query over an https:// address: %q", out)
		}
		if _, err := cliErr(t, "query", "--api-addr", "https://"+addr, "--token", "tok", "SELECT 1"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("without the CA: %v, want a certificate error", err)
		}
		if _, err := cliErr(t, "query", "--api-addr", addr, "--token", "tok", "SELECT 1"); err == nil {
			t.Error("plain HTTP to an HTTPS API succeeded")
		}
		// patina subscribe goes through the same client (its own request, the client's TLS).
		var out bytes.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		m := &Main{Stdout: &cancelOnWrite{w: &out, cancel: cancel}, Stderr: &bytes.Buffer{}}
		if err := m.Run(ctx, []string{"subscribe", "--api-addr", addr, "--token", "tok", "--api-tls-ca-file", ca, "SELECT 7 AS x"}); err != nil {
			t.Errorf("subscribe over https: %v", err)
		}
		if !strings.Contains(out.String(), "columns") {
			t.Errorf("subscribe over https printed %q", out.String())
		}
	})

	t.Run("mutual TLS", func(t *testing.T) {
		a := startTestAgent(t, func(c *Config) {
			c.API.TLS = APITLSConfig{CertFile: srvCert, KeyFile: srvKey, CAFile: ca}
		})
		addr := a.APIAddr()
		if out := cli(t, "query", "--api-addr", addr, "--api-tls-ca-file", ca, "--api-tls-cert-file", cliCert, "--api-tls-key-file", cliKey, "SELECT 41 + 1"); !strings.Contains(out, "42") {
			t.Errorf("query with a client certificate: %q", out)
		}
		if _, err := cliErr(t, "query", "--api-addr", addr, "--api-tls-ca-file", ca, "SELECT 1"); err == nil {
			t.Error("a client without a certificate was served")
		}
	})

	if _, err := cliErr(t, "agent", "--data-dir", t.TempDir(), "--api-addr", "127.0.0.1:0", "--api-tls-cert-file", srvCert); exitCode(err) != 2 || !strings.Contains(err.Error(), "key_file") {
		t.Errorf("a certificate without its key: %v, want exit 2", err)
	}
}

// cancelOnWrite cancels a context at the first write: a subscription stream printed its
// first event.
type cancelOnWrite struct {
	w      *bytes.Buffer
	cancel context.CancelFunc
}

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.cancel()
	return n, err
}

// TestSecurityWarnings: binds beyond loopback without TLS and tokens (API) or mutual TLS and
// the memberlist key (gossip) are named; loopback binds and secured ones are not.
func TestSecurityWarnings(t *testing.T) {
	secure := func(c *Config) {
		c.API.TLS = APITLSConfig{CertFile: "c", KeyFile: "k"}
		c.API.Authz.Tokens = []TokenConfig{{Name: "x", Scope: "read", Hash: "sha256:00"}}
		c.Gossip.TLS.CAFile, c.Gossip.SecretKey = "ca", "key"
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"defaults on loopback", func(c *Config) {}, nil},
		{"localhost", func(c *Config) { c.APIAddr = "localhost:8080" }, nil},
		{"api on all interfaces", func(c *Config) { c.APIAddr = "0.0.0.0:8080" }, []string{"without TLS", "without any token"}},
		{"api on an empty host", func(c *Config) { c.APIAddr = ":8080" }, []string{"without TLS", "without any token"}},
		{"api with TLS, no token", func(c *Config) {
			c.APIAddr = "10.0.0.5:8080"
			c.API.TLS = APITLSConfig{CertFile: "c", KeyFile: "k"}
		}, []string{"without any token"}},
		{"write listener on all interfaces", func(c *Config) { c.API.WriteAddr = "0.0.0.0:8081" }, []string{"write listener (api.write_addr) listens on 0.0.0.0:8081, beyond loopback, without TLS", "write listener (api.write_addr) listens on 0.0.0.0:8081, beyond loopback, without any token"}},
		{"write listener on loopback", func(c *Config) { c.API.WriteAddr = "127.0.0.1:8081" }, nil},
		{"gossip beyond loopback", func(c *Config) { c.GossipAddr = "10.0.0.5:8787" }, []string{"without mutual TLS", "without gossip.secret_key"}},
		{"all secured", func(c *Config) {
			c.APIAddr, c.GossipAddr, c.QUICAddr = "0.0.0.0:8080", "[::]:8787", "10.0.0.5:8788"
			c.API.WriteAddr = "0.0.0.0:8081"
			secure(c)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			got := securityWarnings(&c)
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d naming %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) || !strings.HasPrefix(got[i], "INSECURE") {
					t.Errorf("warning %d = %q, want INSECURE ... %q", i, got[i], w)
				}
			}
		})
	}
}
