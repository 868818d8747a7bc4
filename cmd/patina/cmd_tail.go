package main

import (
	"bufio"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

func init() { register("", newTailCmd) }

func newTailCmd(m *Main) *cobra.Command {
	var (
		since  uint64
		follow bool
		output string
	)
	c := &cobra.Command{
		Use:   "tail",
		Short: "Follow the changeset stream (GET /v1/changes)",
		Long: `Print an agent's changesets in its arrival order, from after --since (a local seq; 0
is the start), and keep following new ones until interrupted (--follow=false stops at the
end of the log). --output json prints each changeset in the API's JSON form, one per line
("seq" is where to resume from); --output summary prints one short line per changeset.`,
		Example: `  patina tail
  patina tail --since 1200 --follow=false --output summary`,
		Args: noArgs,
	}
	f := addClientFlags(c)
	c.Flags().Uint64Var(&since, "since", 0, "resume after this local seq")
	c.Flags().BoolVarP(&follow, "follow", "f", true, "keep streaming new changesets")
	c.Flags().StringVarP(&output, "output", "o", "json", "json or summary")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := checkOutput(output, "json", "summary"); err != nil {
			return err
		}
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(m.Stdout)
		defer bw.Flush()
		for cs, err := range cl.Changes(c.Context(), client.ChangesOptions{Since: log.Seq(since), Follow: follow}) {
			if err != nil {
				return err
			}
			if output == "summary" {
				fmt.Fprintf(bw, "seq %d site %s version %d: %d change(s)\n", cs.Seq, cs.Site, cs.Version, len(cs.Changes))
			} else {
				b, err := json.Marshal(cs)
				if err != nil {
					return err
				}
				bw.Write(append(b, '\n'))
			}
			// A follower prints each changeset as it lands.
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		return nil
	}
	return c
}
