package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/template"
)

// The [[template]] entries of the agent's config (source, dest, command) are rendered by the
// agent itself, through its own API, as "patina template" would; see package template.

// openTemplates starts the config's templates once the API listens; Close stops them.
func (a *Agent) openTemplates() error {
	if len(a.cfg.Templates) == 0 {
		return nil
	}
	cl, err := a.selfClient()
	if err != nil {
		return err
	}
	r := template.New(template.Config{Client: cl, Templates: a.cfg.Templates, Registerer: a.reg, Logger: a.logger})
	if err := r.Validate(); err != nil {
		return usagef("[[template]]: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	a.stopTemplates = func() { cancel(); <-done }
	return nil
}

// The agent's own client of its API, which its [[template]] entries render through, passes
// the same guards as any client's: tokens, TLS and mutual TLS.

// selfAuth decides the token the agent's own client sends. With scoped tokens configured
// and no bearer_token, the config gives the agent no token it can send (they are stored
// hashed), so it adds a read token of its own to the API's tokens for this run (made fresh at
// every start, held in memory only). Without templates, or without tokens, nothing is added:
// a token added to an open API would close it to everyone else.
func (a *Agent) selfAuth(acfg *api.Config) error {
	a.selfToken = acfg.BearerToken
	if len(a.cfg.Templates) == 0 || a.selfToken != "" || len(acfg.Tokens) == 0 {
		return nil
	}
	tok, err := api.NewToken()
	if err != nil {
		return err
	}
	acfg.Tokens = append(slices.Clip(acfg.Tokens), api.Token{Name: "agent-templates", Scope: api.ScopeRead, Hash: api.HashToken(tok)})
	a.selfToken = tok
	return nil
}

// selfClient returns the agent's client of its own API: through the Unix socket when there
// is one (nothing to verify), else at its TCP address, over TLS when the API serves it. That
// TLS trusts exactly the certificate the agent serves (the one it loaded, not the files read
// again), compared byte for byte (the API may
// listen on 0.0.0.0, which no certificate names, and its CA need not be configured), and
// presents the same certificate where the API asks for a client's (mutual TLS: it must then
// allow client authentication, as patina tls server's do).
func (a *Agent) selfClient() (*client.Client, error) {
	var opts []client.Option
	if a.selfToken != "" {
		opts = append(opts, client.WithToken(a.selfToken))
	}
	if p := a.srv.SocketPath(); p != "" {
		return client.New("unix://"+p, opts...)
	}
	if a.apiCert != nil {
		opts = append(opts, client.WithTLS(ownTLS(*a.apiCert)))
	}
	return client.New(a.APIAddr(), opts...)
}

// ownTLS is a client's TLS config that accepts only a server presenting cert, and presents
// cert itself.
func ownTLS(cert tls.Certificate) *tls.Config {
	own := cert.Certificate[0]
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// The chain check is replaced by the exact comparison below, not skipped.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 && bytes.Equal(raw[0], own) {
				return nil
			}
			return errors.New("the API presented a certificate that is not the agent's own")
		},
	}
}
