package main

import (
	"context"
	"crypto/tls"
	"fmt"

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
	{key: "pg.addr", usage: "PostgreSQL protocol address, e.g. 127.0.0.1:5432 (empty: off); password: the API token",
		field: func(c *Config) any { return &c.PG.Addr }, agentOnly: true},
	{key: "pg.tls.cert_file", usage: "certificate (PEM) offered to PostgreSQL clients that ask for TLS",
		field: func(c *Config) any { return &c.PG.TLS.CertFile }, agentOnly: true},
	{key: "pg.tls.key_file", usage: "private key (PEM) of pg.tls.cert_file",
		field: func(c *Config) any { return &c.PG.TLS.KeyFile }, agentOnly: true},
}

// openPG starts the PostgreSQL protocol server when pg.addr is set. It reads and writes the
// materializer directly: writes take the same Transact path as POST /v1/transactions, so
// they are broadcast by the materializer's OnCommit like any local write.
func (a *Agent) openPG(ctx context.Context) error {
	c := a.cfg.PG
	if c.Addr == "" {
		if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
			return usagef("pg.tls: set pg.addr too")
		}
		return nil
	}
	var tc *tls.Config
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return usagef("pg.tls: set both cert_file and key_file")
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return usagef("pg.tls: %v", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	srv := pg.New(pg.Config{
		Addr:       c.Addr,
		View:       a.mat,
		Password:   a.cfg.API.Authz.BearerToken,
		TLS:        tc,
		Registerer: a.reg,
		Logger:     a.logger,
	})
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
