package main

import (
	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
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
	return m.withClient(c, printJSON(m, (*client.Client).SyncState))
}
