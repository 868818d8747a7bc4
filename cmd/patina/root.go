package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// registration is one command to add to the tree: parent is "" for a top-level command or
// the name of the top-level command it belongs under.
type registration struct {
	parent string
	make   func(*Main) *cobra.Command
}

var registry []registration

// register adds a command to the tree. Call it from an init func of the command's own file
// (see doc.go); parent "" is the root.
func register(parent string, mk func(*Main) *cobra.Command) {
	registry = append(registry, registration{parent: parent, make: mk})
}

// groupShort describes the parents that no file registers as a command of their own.
var groupShort = map[string]string{
	"bench": "Run benchmark workloads",
	"sync":  "Inspect replication state",
	"log":   "Work on a stopped node's log",
	"tls":   "Make certificates for the gossip transport",
}

func (m *Main) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "patina",
		Short: "Patina: a replicated SQLite state store for fleets",
		Long: `Patina gives every node of a fleet a local, queryable, near-real-time copy of shared
state in SQLite, replicated with fast eventual consistency.

Run a node with "patina agent". Talk to a running node with the client commands: exec,
query, subscribe, tail, migrate, schema, members, sync state, health, admin, backup (online),
replay (the view at a point in time); keep files rendered from its data with template. Work
on a stopped node's data dir with rebuild, log inspect, backup --data-dir, replay --data-dir
and restore. Make certificates (gossip and API) with
tls and API tokens with token; load a node with bench; print this binary's version with version (or
--version).

Client commands reach --api-addr (default 127.0.0.1:8080) with --token; -c patina.toml
gives both. The design, API contract and invariants are in docs/DESIGN.md.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input.`,
		Version:           versionLine(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%s: %w (see patina %s --help)", c.CommandPath(), err, strings.TrimPrefix(c.CommandPath(), "patina "))}
	})

	parents := map[string]*cobra.Command{}
	for _, r := range registry {
		if r.parent == "" {
			c := r.make(m)
			root.AddCommand(c)
			parents[c.Name()] = c
		}
	}
	for _, r := range registry {
		if r.parent == "" {
			continue
		}
		p, ok := parents[r.parent]
		if !ok {
			p = &cobra.Command{Use: r.parent, Short: groupShort[r.parent], Args: noArgs}
			p.RunE = func(c *cobra.Command, args []string) error {
				return usagef("%s: want a subcommand (see patina %s --help)", c.CommandPath(), r.parent)
			}
			root.AddCommand(p)
			parents[r.parent] = p
		}
		p.AddCommand(r.make(m))
	}
	// Unknown commands are bad usage (exit 2); cobra reports them as plain errors.
	root.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q (see patina help)", args[0])
		}
		return nil
	}
	root.RunE = func(c *cobra.Command, args []string) error { return c.Help() }
	return root
}

// noArgs refuses positional arguments as bad usage.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", c.CommandPath(), args)
	}
	return nil
}

// exactArgs wants n positional arguments.
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s: want %d argument(s), got %d (usage: %s)", c.CommandPath(), n, len(args), c.UseLine())
		}
		return nil
	}
}

// rangeArgs wants between lo and hi positional arguments.
func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("%s: want %d to %d arguments, got %d (usage: %s)", c.CommandPath(), lo, hi, len(args), c.UseLine())
		}
		return nil
	}
}
