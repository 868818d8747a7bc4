package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api"
)

func init() { register("", newTokenCmd) }

func newTokenCmd(m *Main) *cobra.Command {
	var (
		name, scope string
		stdin       bool
	)
	c := &cobra.Command{
		Use:   "token",
		Short: "Make an API token and print the config lines that accept it (stored hashed)",
		Long: `Make a random API token with a scope and print it, followed by the
[[api.authz.tokens]] entry to add to the agent's config: the config keeps only the token's
SHA-256, so the token itself is shown this once. Give it to the client as --token or
PATINA_API_AUTHZ_BEARER_TOKEN.

Scopes: read (queries, subscriptions, updates, tail, members, sync state), write (also
transactions), admin (also migrations, ingest of changesets, admin endpoints, backup).

With --stdin the token is read from the first line of standard input instead of made
(for a token kept in a secret store); it must be bearer syntax (letters, digits, -._~+/).`,
		Example: `  patina token --scope read --name dashboards >> /etc/patina/tokens.toml
  vault read -field=token secret/patina | patina token --stdin --scope admin --name ops`,
		Args: noArgs,
	}
	c.Flags().StringVar(&name, "name", "", "whose token it is (shown in logs)")
	c.Flags().StringVar(&scope, "scope", "", "read, write or admin (required)")
	c.Flags().BoolVar(&stdin, "stdin", false, "hash the token on the first line of stdin instead of making one")
	c.RunE = func(c *cobra.Command, args []string) error {
		sc, err := api.ParseScope(scope)
		if err != nil {
			return usagef("--scope: %v", err)
		}
		var tok string
		if stdin {
			line, err := bufio.NewReader(m.Stdin).ReadString('\n')
			if err != nil && line == "" {
				return usagef("--stdin: no token on standard input")
			}
			tok = strings.TrimRight(line, "\r\n")
			if !api.ValidBearerToken(tok) {
				return usagef("--stdin: the token is not bearer syntax (letters, digits, -._~+/, then optional =)")
			}
		} else if tok, err = api.NewToken(); err != nil {
			return err
		}
		if name == "" {
			name = sc.String()
		}
		if !stdin {
			fmt.Fprintf(m.Stdout, "# token (shown once; give it to the client, keep it secret): %s\n", tok)
		}
		fmt.Fprintf(m.Stdout, "[[api.authz.tokens]]\nname = %q\nscope = %q\nhash = %q\n", name, sc.String(), api.HashToken(tok))
		return nil
	}
	return c
}
