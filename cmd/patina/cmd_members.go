package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/spf13/cobra"
)

func init() { register("", newMembersCmd) }

func newMembersCmd(m *Main) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's members as an agent sees them (GET /v1/members)",
		Example: `  patina members
  patina members --output json`,
		Args: noArgs,
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return m.withClient(c, func(c *cobra.Command, cl *client.Client, args []string) error {
		if err := checkOutput(output, "table", "json"); err != nil {
			return err
		}
		ms, err := cl.Members(c.Context())
		if err != nil {
			return err
		}
		if output == "json" {
			return writeJSON(m.Stdout, ms)
		}
		tw := tabwriter.NewWriter(m.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "SITE\tSTATE\tGOSSIP\tQUIC\tAPI\tRTT\t")
		for _, mb := range ms {
			rtt := "-"
			if mb.RTT != nil {
				rtt = time.Duration(*mb.RTT * float64(time.Second)).Round(time.Microsecond).String()
			}
			state := mb.State
			if mb.Self {
				state += " (self)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", mb.SiteID, state, dash(mb.GossipAddr), dash(mb.QUICAddr), dash(mb.APIAddr), rtt)
		}
		return tw.Flush()
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
