package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// clientFlags are the flags every client command has: -c, --api-addr and the token.
type clientFlags struct {
	cf *configFlags
}

func addClientFlags(c *cobra.Command) *clientFlags {
	return &clientFlags{cf: addConfigFlags(c, false)}
}

// clientRun is the body of a command that talks to one agent, run with its client made.
type clientRun func(c *cobra.Command, cl *client.Client, args []string) error

// withClient gives c the client flags and a RunE that makes the client the flags, env and
// config file name, then calls run: the skeleton every client command shares.
func (m *Main) withClient(c *cobra.Command, run clientRun) *cobra.Command {
	f := addClientFlags(c)
	c.RunE = func(c *cobra.Command, args []string) error {
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		return run(c, cl, args)
	}
	return c
}

// printJSON is a clientRun that prints what get (a client method expression) answers as
// indented JSON.
func printJSON[T any](m *Main, get func(*client.Client, context.Context) (T, error)) clientRun {
	return func(c *cobra.Command, cl *client.Client, _ []string) error {
		v, err := get(cl, c.Context())
		if err != nil {
			return err
		}
		return writeJSON(m.Stdout, v)
	}
}

// client returns an API client for the agent the flags, env and config file name.
func (m *Main) client(c *cobra.Command, f *clientFlags) (*client.Client, error) {
	cfg, err := f.cf.load(c, m.Getenv)
	if err != nil {
		return nil, err
	}
	var opts []client.Option
	if cfg.API.Authz.BearerToken != "" {
		opts = append(opts, client.WithToken(cfg.API.Authz.BearerToken))
	}
	tc, err := cfg.API.TLS.clientTLS()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, client.WithTLS(tc))
	}
	if cfg.API.WriteAddr != "" {
		opts = append(opts, client.WithWriteAddr(cfg.API.WriteAddr))
	}
	cl, err := client.New(cfg.APIAddr, opts...)
	if err != nil {
		return nil, &usageError{err}
	}
	return cl, nil
}

// parseStatementArg reads one statement given on the command line: plain SQL, or one of the
// API's JSON forms (["SQL", params] or {"query": ...}) when it starts with [ or {.
func parseStatementArg(arg string) (client.Statement, error) {
	t := strings.TrimSpace(arg)
	if t == "" {
		return client.Statement{}, usagef("empty statement")
	}
	switch t[0] {
	case '[':
		var parts []json.RawMessage
		if err := json.Unmarshal([]byte(t), &parts); err != nil || len(parts) < 1 || len(parts) > 2 {
			return client.Statement{}, usagef(`statement %s: want ["SQL", [params]] or ["SQL", {named}]`, truncate(t, 40))
		}
		var st client.Statement
		if err := json.Unmarshal(parts[0], &st.SQL); err != nil {
			return st, usagef("statement %s: the first element must be the SQL string", truncate(t, 40))
		}
		if len(parts) == 2 {
			p := strings.TrimSpace(string(parts[1]))
			var err error
			if strings.HasPrefix(p, "{") {
				err = json.Unmarshal(parts[1], &st.Named)
			} else {
				err = json.Unmarshal(parts[1], &st.Params)
			}
			if err != nil {
				return st, usagef("statement %s: params: %v", truncate(t, 40), err)
			}
		}
		return st, nil
	case '{':
		var obj struct {
			Query  string               `json:"query"`
			Params []log.Value          `json:"params"`
			Named  map[string]log.Value `json:"named_params"`
		}
		if err := json.Unmarshal([]byte(t), &obj); err != nil {
			return client.Statement{}, usagef("statement %s: %v", truncate(t, 40), err)
		}
		return client.Statement{SQL: obj.Query, Params: obj.Params, Named: obj.Named}, nil
	}
	return client.Statement{SQL: arg}, nil
}

// parseParam reads a --param value: a JSON value (1, 1.5, "text", [1,2] for a blob, null,
// true) or, when it is not JSON, the text itself.
func parseParam(raw string) log.Value {
	v, err := log.ParseJSONValue([]byte(raw))
	if err != nil {
		return log.Text(raw)
	}
	return v
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// checkOutput validates an --output value.
func checkOutput(out string, allowed ...string) error {
	for _, a := range allowed {
		if out == a {
			return nil
		}
	}
	return usagef("--output %q: want %s", out, strings.Join(allowed, " or "))
}
