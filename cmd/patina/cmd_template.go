package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/template"
)

func init() { register("", newTemplateCmd) }

func newTemplateCmd(m *Main) *cobra.Command {
	var once bool
	c := &cobra.Command{
		Use:   "template SRC:DEST[:COMMAND] ...",
		Short: "Render files from the node's data and re-render them when it changes",
		Long: `Render each Go text/template SRC into DEST, then keep DEST current: every query the
template ran is subscribed to, and a change to any result re-renders it (debounced). DEST is
written atomically (temp file + rename, its mode kept) and only when its content changed;
then COMMAND runs with sh -c (e.g. reload a proxy). A render that fails keeps the last good
DEST and logs the error; the next change tries again.

Functions: query "SQL" args... (rows: maps of column to value), queryRow (the first row, or an
empty map), queryValue (one column of the first row, or nil), toJSON, toJSONPretty, parseJSON.

The agent runs the same for its [[template]] config entries.`,
		Example: `  patina template haproxy.cfg.tmpl:/etc/haproxy/haproxy.cfg:"systemctl reload haproxy"
  # haproxy.cfg.tmpl:
  # backend web
  # {{- range query "SELECT name, addr FROM machines WHERE app = ? AND healthy" "web" }}
  #   server {{ .name }} {{ .addr }} check
  # {{- end }}`,
	}
	f := addClientFlags(c)
	c.Flags().BoolVar(&once, "once", false, "render once and exit (exit 1 if a render failed)")
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usagef("template: want at least one SRC:DEST[:COMMAND] (usage: %s)", c.UseLine())
		}
		var specs []template.Spec
		for _, a := range args {
			sp, err := template.ParseSpec(a)
			if err != nil {
				return usagef("%v", err)
			}
			specs = append(specs, sp)
		}
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		cfg, _ := f.cf.load(c, m.Getenv)
		level, _ := parseLevel(cfg.LogLevel)
		r := template.New(template.Config{Client: cl, Templates: specs,
			Logger: slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level}))})
		if err := r.Validate(); err != nil {
			return usagef("%v", err)
		}
		if once {
			return r.Once(c.Context())
		}
		if err := r.Run(c.Context()); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("template: %w", err)
		}
		return nil
	}
	return c
}
