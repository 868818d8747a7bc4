package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/patinadb/patina/api/client"
	"github.com/spf13/cobra"
)

func init() { register("", newSchemaCmd) }

func newSchemaCmd(m *Main) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "schema",
		Short: "Show the cluster's schema as an agent holds it (GET /v1/schema)",
		Long: `Show every table of the replicated schema with its columns, indexes and version (the
number of schema changes that shaped it; the same on every node that has them all), and the
schema changes that lost a conflict, with the change that won. Exit code 1 when there are
conflicts, so scripts notice them.`,
		Example: `  patina schema
  patina schema --output json`,
		Args: noArgs,
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return m.withClient(c, func(c *cobra.Command, cl *client.Client, args []string) error {
		if err := checkOutput(output, "table", "json"); err != nil {
			return err
		}
		s, err := cl.Schema(c.Context())
		if err != nil {
			return err
		}
		if output == "json" {
			if err := writeJSON(m.Stdout, s); err != nil {
				return err
			}
		} else {
			tw := tabwriter.NewWriter(m.Stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "TABLE\tVERSION\tCOLUMNS\tINDEXES\tLAST CHANGE\t")
			for _, t := range s.Tables {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%v/%d\t\n", t.Name, t.Version, strings.Join(t.Columns, ", "), len(t.Indexes), t.LastChange.Site, t.LastChange.Version)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, k := range s.Conflicts {
				won := "refused on its own"
				if k.Winner != nil {
					won = fmt.Sprintf("%v/%d won", k.Winner.Site, k.Winner.Version)
				}
				fmt.Fprintf(m.Stdout, "conflict: %s %s.%s from %v/%d lost (%s): %s\n", k.Kind, k.Table, k.Name, k.Loser.Site, k.Loser.Version, won, k.Reason)
			}
		}
		if len(s.Conflicts) > 0 {
			return fmt.Errorf("%d schema conflict(s)", len(s.Conflicts))
		}
		return nil
	})
}
