package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
)

func init() { register("", newExecCmd) }

func newExecCmd(m *Main) *cobra.Command {
	var (
		params  []string
		timeout time.Duration
		asJSON  bool
	)
	c := &cobra.Command{
		Use:   "exec SQL [SQL...]",
		Short: "Run write statements as one transaction (POST /v1/transactions)",
		Long: `Run statements as one transaction on an agent: all or nothing. Each argument is one
statement: SQL text, or a JSON statement form such as '["INSERT INTO t VALUES (?, ?)", [1, "a"]]'.
--param binds values (JSON: 1, 1.5, "text", null, [1,2] for a blob; anything else is text)
to the ? of a single plain-SQL statement. Prints rows affected per statement and the
transaction's version.`,
		Example: `  patina exec "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)"
  patina exec "INSERT INTO t (id, name) VALUES (?, ?)" --param 1 --param '"alice"'
  patina exec '["UPDATE t SET name = ? WHERE id = ?", ["bob", 1]]' "DELETE FROM t WHERE id = 2"`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("exec: want at least one statement (usage: %s)", c.UseLine())
			}
			return nil
		},
	}
	f := addClientFlags(c)
	c.Flags().StringArrayVarP(&params, "param", "p", nil, "positional parameter of a single statement; repeatable")
	c.Flags().DurationVar(&timeout, "timeout", 0, "stop the transaction after this long (0: no limit)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's answer as JSON")
	c.RunE = func(c *cobra.Command, args []string) error {
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		stmts := make([]client.Statement, len(args))
		for i, a := range args {
			if stmts[i], err = parseStatementArg(a); err != nil {
				return err
			}
		}
		if len(params) > 0 {
			if len(stmts) != 1 || stmts[0].Params != nil || stmts[0].Named != nil {
				return usagef("--param binds the parameters of one plain-SQL statement")
			}
			for _, p := range params {
				stmts[0].Params = append(stmts[0].Params, parseParam(p))
			}
		}
		res, err := cl.Exec(c.Context(), client.Options{Timeout: timeout}, stmts...)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(m.Stdout, res)
		}
		for i, r := range res.Results {
			fmt.Fprintf(m.Stdout, "statement %d: %d row(s) affected in %.3f ms\n", i, r.RowsAffected, r.Time*1e3)
		}
		if res.Version == 0 {
			fmt.Fprintf(m.Stdout, "no change (no version)\n")
		} else {
			fmt.Fprintf(m.Stdout, "version %d of site %s\n", res.Version, res.ActorID)
		}
		return nil
	}
	return c
}
