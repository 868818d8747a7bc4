package main

import (
	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
)

func init() { register("", newHealthCmd) }

func newHealthCmd(m *Main) *cobra.Command {
	var th client.HealthThresholds
	c := &cobra.Command{
		Use:   "health",
		Short: "Check an agent's health (GET /v1/health): exit 0 when healthy, 1 when not",
		Long: `Check an agent's health: exit 0 when it answers 200, 1 when it is unreachable or a given
threshold is passed (the message says which). For container health checks and scripts; it
reads the same PATINA_API_* variables as the agent (address, token, TLS). Schema conflicts
(a migration that lost to another node's) are shown as "schema_conflicts" but make the agent
unhealthy only with --schema-conflicts: every node reports the same conflicts, so failing on
them by default would take the whole cluster out of a load balancer at once.`,
		Example: `  patina health
  patina health --gaps 0 --max-queue 1000 --p99-lag 5s
  patina health --schema-conflicts 0`,
		Args: noArgs,
	}
	f := addClientFlags(c)
	c.Flags().Int64Var(&th.Gaps, "gaps", -1, "unhealthy above this many missing versions (-1: no limit)")
	c.Flags().Int64Var(&th.MaxQueue, "max-queue", -1, "unhealthy above this many changesets not yet folded (-1: no limit)")
	c.Flags().DurationVar(&th.P99Lag, "p99-lag", -1, "unhealthy above this p99 replication lag, e.g. 5s (-1: no limit)")
	conflicts := c.Flags().Int64("schema-conflicts", -1, "unhealthy above this many schema conflicts (-1: no limit)")
	c.RunE = func(c *cobra.Command, args []string) error {
		if *conflicts >= 0 {
			th.SchemaConflicts = conflicts
		}
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		h, err := cl.Health(c.Context(), &th)
		if err != nil {
			if client.StatusOf(err) != 0 {
				// An answer, but unhealthy: a runtime state, not bad usage.
				return &healthError{err}
			}
			return err
		}
		return writeJSON(m.Stdout, h)
	}
	return c
}

// healthError is an unhealthy answer: exit 1 although the status is 4xx/5xx.
type healthError struct{ err error }

func (e *healthError) Error() string { return "unhealthy: " + e.err.Error() }
