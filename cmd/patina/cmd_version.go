package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Stamped at build time, for builds outside a module-aware checkout (release scripts,
// distribution packages):
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234" ./cmd/patina
//
// When empty, versionInfo reads what the Go toolchain recorded (debug.ReadBuildInfo): the
// module version ("(devel)" for a plain go build in the repository, the tag for go install
// ...@v1.2.3) and the VCS revision, time and dirty flag of the checkout it was built from.
var version, commit string

func init() { register("", newVersionCmd) }

func newVersionCmd(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version of this binary",
		Long:  "Print the module version and the commit this binary was built from (also: patina --version).",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			fmt.Fprintln(m.Stdout, versionLine())
			return nil
		},
	}
}

// versionLine is the one line `patina version` and `patina --version` print, e.g.
// "patina v1.2.3 (commit 0123abcd, 2026-12-06T07:00:00Z) go1.24.0 linux/amd64".
func versionLine() string {
	v, rev, when, dirty := versionInfo()
	var meta []string
	if rev != "" {
		c := "commit " + rev
		if dirty {
			c += "+dirty"
		}
		meta = append(meta, c)
	}
	if when != "" {
		meta = append(meta, when)
	}
	line := "patina " + v
	if len(meta) > 0 {
		line += " (" + strings.Join(meta, ", ") + ")"
	}
	return line + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

// versionInfo returns the module version and commit: the -ldflags stamps when given, else
// the build info the toolchain embedded.
func versionInfo() (ver, rev, when string, dirty bool) {
	ver, rev = version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if ver == "" {
			ver = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.time":
				if commit == "" {
					when = s.Value
				}
			case "vcs.modified":
				dirty = commit == "" && s.Value == "true"
			}
		}
	}
	if ver == "" {
		ver = "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return ver, rev, when, dirty
}
