package main

import (
	"github.com/spf13/cobra"
)

func init() { register("sync", newSyncStateCmd) }

func newSyncStateCmd(m *Main) *cobra.Command {
	c := &cobra.Command{
		Use:   "state",
		Short: "Print an agent's version vector (GET /v1/sync/state)",
		Long: `Print what an agent holds as JSON: per site the newest version known (heads), the
version ranges below it that it lacks (need) and, for versions held in part, the seq ranges
missing (partial_need). A converged node has empty need and partial_need.`,
		Example: `  patina sync state --api-addr 127.0.0.1:8080`,
		Args:    noArgs,
	}
	f := addClientFlags(c)
	c.RunE = func(c *cobra.Command, args []string) error {
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		st, err := cl.SyncState(c.Context())
		if err != nil {
			return err
		}
		return writeJSON(m.Stdout, st)
	}
	return c
}
