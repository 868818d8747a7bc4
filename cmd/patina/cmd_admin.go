package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
)

// patina admin: Corrosion's admin commands over the API's admin endpoints (admin scope).
func init() {
	register("admin", newAdminSubsCmd)
	register("admin", newAdminLogLevelCmd)
	register("admin", newAdminRejoinCmd)
	register("admin", newAdminGapsCmd)
	register("admin", newAdminReconcileCmd)
	groupShort["admin"] = "Inspect and steer a running agent (subscriptions, log level, rejoin, sync gaps)"
}

func newAdminRejoinCmd(m *Main) *cobra.Command {
	c := &cobra.Command{
		Use:   "rejoin",
		Short: "Make the agent rejoin the cluster now (POST /v1/admin/cluster/rejoin)",
		Long: `Make the agent announce itself with a fresh incarnation (members that hold it suspect or
dead take it back) and join its bootstrap addresses and every member it knows that has not
left, then run a sync round. Corrosion's "corrosion cluster rejoin". Prints what it did as
JSON; exits 1 when no address answered.`,
		Args: noArgs,
	}
	return m.withClient(c, printJSON(m, (*client.Client).Rejoin))
}

func newAdminGapsCmd(m *Main) *cobra.Command {
	c := &cobra.Command{
		Use:   "gaps",
		Short: "Print the versions the agent lacks per site (GET /v1/admin/sync/gaps)",
		Long: `Print, per site, how many versions the agent lacks up to the newest version of that site
known anywhere in the cluster (its own vector and its peers' announcements), and the total
that /v1/health's gaps threshold is about. "patina sync state" shows the exact ranges.`,
		Args: noArgs,
	}
	return m.withClient(c, printJSON(m, (*client.Client).SyncGaps))
}

func newAdminReconcileCmd(m *Main) *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "reconcile-gaps",
		Short: "Make the agent fill its sync gaps now (POST /v1/admin/sync/reconcile)",
		Long: `Make the agent sync with every alive peer now, pass after pass, until it lacks nothing,
a pass brings nothing (what is still missing is held by no reachable peer), or --timeout
passes. Corrosion's "corrosion sync reconcile-gaps". Prints the gaps before and after per
site as JSON; exits 1 when some remain.`,
		Args: noArgs,
	}
	c.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "give up after this long")
	return m.withClient(c, func(c *cobra.Command, cl *client.Client, args []string) error {
		rep, err := cl.ReconcileGaps(c.Context(), client.Options{Timeout: timeout})
		if err != nil {
			return err
		}
		if err := writeJSON(m.Stdout, rep); err != nil {
			return err
		}
		if !rep.Complete {
			return fmt.Errorf("gaps remain after reconcile: no reachable peer holds them")
		}
		return nil
	})
}

func newAdminSubsCmd(m *Main) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "subscriptions [ID]",
		Short: "List the agent's live subscriptions, or describe one (GET /v1/admin/subscriptions)",
		Args:  rangeArgs(0, 1),
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return m.withClient(c, func(c *cobra.Command, cl *client.Client, args []string) error {
		if err := checkOutput(output, "table", "json"); err != nil {
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
	})
}

func newAdminLogLevelCmd(m *Main) *cobra.Command {
	c := &cobra.Command{
		Use:     "log-level [debug|info|warn|error]",
		Short:   "Print the agent's log level, or change it at run time (/v1/admin/log_level)",
		Example: "  patina admin log-level debug",
		Args:    rangeArgs(0, 1),
	}
	return m.withClient(c, func(c *cobra.Command, cl *client.Client, args []string) error {
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
	})
}
