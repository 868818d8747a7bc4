package main

import (
	"context"

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
	var opts []client.Option
	if a.cfg.API.Authz.BearerToken != "" {
		opts = append(opts, client.WithToken(a.cfg.API.Authz.BearerToken))
	}
	cl, err := client.New(a.APIAddr(), opts...)
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
