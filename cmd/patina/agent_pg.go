package main

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/pg"
)

// PGConfig is the [pg] section: the PostgreSQL protocol server, off unless addr is set.
type PGConfig struct {
	Addr string `toml:"addr"`
	TLS  struct {
		CertFile string `toml:"cert_file"`
		KeyFile  string `toml:"key_file"`
	} `toml:"tls"`
}

// pgOptions are the agent's options of this room; config.go lists them with the others.
var pgOptions = []option{
	{key: "pg.addr", usage: "PostgreSQL protocol address, e.g. 127.0.0.1:5432 (empty: off); password: an API token (scoped tokens need TLS)",
		field: func(c *Config) any { return &c.PG.Addr }, agentOnly: true},
	{key: "pg.tls.cert_file", usage: "certificate (PEM) offered to PostgreSQL clients that ask for TLS (default: api.tls.cert_file)",
		field: func(c *Config) any { return &c.PG.TLS.CertFile }, agentOnly: true},
	{key: "pg.tls.key_file", usage: "private key (PEM) of pg.tls.cert_file",
		field: func(c *Config) any { return &c.PG.TLS.KeyFile }, agentOnly: true},
}

// openPG starts the PostgreSQL protocol server when pg.addr is set. It reads and writes the
// materializer directly: writes take the same Transact path as POST /v1/transactions, so
// they are broadcast by the materializer's OnCommit like any local write.
//
// Authentication: with scoped tokens ([[api.authz.tokens]]) a client's password is a token
// (or bearer_token, as admin) checked by the API's own checker; read may only SELECT, write
// and admin may write. Since tokens are kept hashed the password comes in cleartext, so this
// needs TLS on the port: pg.tls, or else api.tls's certificate. With bearer_token alone, it
// is the SCRAM password as before.
func (a *Agent) openPG(ctx context.Context) error {
	c := a.cfg.PG
	if c.Addr == "" {
		if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
			return usagef("pg.tls: set pg.addr too")
		}
		return nil
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return usagef("pg.tls: set both cert_file and key_file")
	}
	certFile, keyFile := c.TLS.CertFile, c.TLS.KeyFile
	if certFile == "" {
		// The API's certificate names the same host: reuse it (not its client CA: psql and
		// drivers rarely present certificates).
		certFile, keyFile = a.cfg.API.TLS.CertFile, a.cfg.API.TLS.KeyFile
	}
	var tc *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return usagef("pg.tls: %v", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	pcfg := pg.Config{
		Addr:       c.Addr,
		View:       a.mat,
		Password:   a.cfg.API.Authz.BearerToken,
		TLS:        tc,
		Registerer: a.reg,
		Logger:     a.logger,
	}
	if len(a.cfg.API.Authz.Tokens) > 0 {
		if tc == nil {
			return usagef("pg.addr with scoped tokens needs TLS (tokens are checked as cleartext passwords): set pg.tls.cert_file and key_file, or api.tls")
		}
		acfg := api.Config{BearerToken: a.cfg.API.Authz.BearerToken}
		var err error
		if acfg.Tokens, err = a.cfg.API.apiTokens(); err != nil {
			return err
		}
		checker, err := api.NewTokenChecker(&acfg)
		if err != nil {
			return usagef("api.authz.tokens: %v", err)
		}
		pcfg.Password = ""
		pcfg.Authenticate = func(password string) (pg.Access, error) {
			t, err := checker.Check(password)
			if err != nil {
				return 0, err
			}
			if t.Scope >= api.ScopeWrite {
				return pg.AccessWrite, nil
			}
			return pg.AccessRead, nil
		}
	}
	srv := pg.New(pcfg)
	if err := srv.Open(ctx); err != nil {
		return fmt.Errorf("pg.addr %s: %w", c.Addr, err)
	}
	a.pg = srv
	return nil
}

// PGAddr is the address the PostgreSQL server listens on; empty when it is off.
func (a *Agent) PGAddr() string {
	if a.pg == nil || a.pg.Addr() == nil {
		return ""
	}
	return a.pg.Addr().String()
}
