package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
)

// APITLSConfig is the [api.tls] section. The agent serves HTTPS with cert_file and key_file,
// and with ca_file also requires client certificates signed by that CA (mutual TLS). Client
// commands read the same keys the other way round: ca_file is the CA the agent's certificate
// must chain to, cert_file and key_file the client certificate to present; so the agent's own
// config file works for the CLI on the same host.
type APITLSConfig struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	CAFile   string `toml:"ca_file"`
}

func (c APITLSConfig) enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" }

// validate checks that the pair is given whole.
func (c APITLSConfig) validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return usagef("api.tls: cert_file and key_file go together")
	}
	return nil
}

// serverTLS builds the agent's HTTPS config; nil when api.tls has no certificate.
func (c APITLSConfig) serverTLS() (*tls.Config, error) {
	if c.CertFile == "" {
		if c.CAFile != "" {
			return nil, usagef("api.tls.ca_file without cert_file and key_file: the API would still be plain HTTP")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, usagef("api.tls: %v", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.CAFile != "" {
		pool, err := readCAPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// clientTLS builds a client command's TLS config; nil when api.tls is empty (plain HTTP,
// unless the address says https, then the system's roots).
func (c APITLSConfig) clientTLS() (*tls.Config, error) {
	if !c.enabled() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := readCAPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, usagef("api.tls: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func readCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("api.tls.ca_file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, usagef("api.tls.ca_file %s: no PEM certificate", path)
	}
	return pool, nil
}

// securityWarnings lists what makes this agent unsafe off a private loopback: a non-loopback
// API (or write listener) without TLS or without tokens, non-loopback gossip without mutual TLS or without the
// memberlist key. The agent logs each at WARN at start, loudly, but still starts: a lab or a
// container network may be trusted, and refusing would only push people to bind 0.0.0.0
// with the checks off.
func securityWarnings(c *Config) []string {
	var out []string
	type door struct{ what, addr, can string }
	apiDoors := []door{{"the HTTP API", c.APIAddr, "read, write and migrate"}}
	if c.API.WriteAddr != "" {
		apiDoors = append(apiDoors, door{"the API's write listener (api.write_addr)", c.API.WriteAddr, "write"})
	}
	for _, d := range apiDoors {
		if isLoopbackBind(d.addr) {
			continue
		}
		if c.API.TLS.CertFile == "" {
			out = append(out, fmt.Sprintf("INSECURE: %s listens on %s, beyond loopback, without TLS: tokens and data cross the network in clear text (set api.tls.cert_file and key_file)", d.what, d.addr))
		}
		if c.API.Authz.BearerToken == "" && len(c.API.Authz.Tokens) == 0 {
			out = append(out, fmt.Sprintf("INSECURE: %s listens on %s, beyond loopback, without any token: anyone who reaches it can %s (add [[api.authz.tokens]], see patina token)", d.what, d.addr, d.can))
		}
	}
	// An empty address is a node without gossip (in-process tests).
	gossipOpen := (c.GossipAddr != "" && !isLoopbackBind(c.GossipAddr)) || (c.QUICAddr != "" && !isLoopbackBind(c.QUICAddr))
	if gossipOpen {
		if c.Gossip.TLS.CAFile == "" {
			out = append(out, fmt.Sprintf("INSECURE: gossip listens on %s and %s, beyond loopback, without mutual TLS: any host can join and send changesets (set gossip.tls.ca_file, cert_file, key_file; see patina tls)", c.GossipAddr, c.QUICAddr))
		}
		if c.Gossip.SecretKey == "" {
			out = append(out, fmt.Sprintf("INSECURE: memberlist on %s, beyond loopback, without gossip.secret_key: membership traffic is in clear text and unauthenticated", c.GossipAddr))
		}
	}
	return out
}

// isLoopbackBind reports whether a listen address binds only loopback. An empty host
// (":8080"), 0.0.0.0, :: and names other than localhost bind beyond it.
func isLoopbackBind(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
