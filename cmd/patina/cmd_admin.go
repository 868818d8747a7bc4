package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// patina admin: Corrosion's admin commands over the API's admin endpoints (admin scope).
func init() {
	register("admin", newAdminSubsCmd)
	register("admin", newAdminLogLevelCmd)
	groupShort["admin"] = "Inspect and steer a running agent (subscriptions, log level)"
}

func newAdminSubsCmd(m *Main) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "subscriptions [ID]",
		Short: "List the agent's live subscriptions, or describe one (GET /v1/admin/subscriptions)",
		Args:  rangeArgs(0, 1),
	}
	f := addClientFlags(c)
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := checkOutput(output, "table", "json"); err != nil {
			return err
		}
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		if len(args) == 1 {
			s, err := cl.AdminSubscription(c.Context(), args[0])
			if err != nil {
				return err
			}
			return writeJSON(m.Stdout, s)
		}
		subs, err := cl.AdminSubscriptions(c.Context())
		if err != nil {
			return err
		}
		if output == "json" {
			return writeJSON(m.Stdout, subs)
		}
		tw := tabwriter.NewWriter(m.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tMODE\tCLIENTS\tCHANGE\tROWS\tSQL\t")
		for _, s := range subs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t\n", s.ID, s.Mode, s.Clients, s.ChangeID, s.Rows, s.SQL)
		}
		return tw.Flush()
	}
	return c
}

func newAdminLogLevelCmd(m *Main) *cobra.Command {
	c := &cobra.Command{
		Use:     "log-level [debug|info|warn|error]",
		Short:   "Print the agent's log level, or change it at run time (/v1/admin/log_level)",
		Example: "  patina admin log-level debug",
		Args:    rangeArgs(0, 1),
	}
	f := addClientFlags(c)
	c.RunE = func(c *cobra.Command, args []string) error {
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		set := ""
		if len(args) == 1 {
			set = args[0]
		}
		level, err := cl.LogLevel(c.Context(), set)
		if err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, level)
		return nil
	}
	return c
}
