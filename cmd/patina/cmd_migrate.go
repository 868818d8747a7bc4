package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { register("", newMigrateCmd) }

func newMigrateCmd(m *Main) *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate FILE|DIR...",
		Short: "Apply schema files to an agent (POST /v1/migrations)",
		Long: `Apply schema files (CREATE TABLE / CREATE INDEX statements; a folder means its *.sql
files in name order) to a running agent. Allowed: new tables, new nullable or defaulted
columns, new indexes. Refused with the reason: UNIQUE constraints besides the primary key,
AUTOINCREMENT, checked foreign keys, dropping or renaming tables and columns. Statements
that change nothing (a table that already exists as declared) are skipped. What the files add
is appended to the agent's log as a schema changeset and reaches every node of the cluster
(see patina schema).`,
		Example: `  patina migrate schema/
  patina migrate schema/001_apps.sql schema/002_machines.sql`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("migrate: want at least one schema file or folder (usage: %s)", c.UseLine())
			}
			return nil
		},
	}
	f := addClientFlags(c)
	c.RunE = func(c *cobra.Command, args []string) error {
		stmts, err := readSchema(args)
		if err != nil {
			return err
		}
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		applied, err := cl.Migrate(c.Context(), stmts...)
		if err != nil {
			return err
		}
		for _, s := range applied {
			fmt.Fprintf(m.Stdout, "applied: %s\n", oneLine(s))
		}
		fmt.Fprintf(m.Stdout, "%d statement(s) changed the schema\n", len(applied))
		return nil
	}
	return c
}
