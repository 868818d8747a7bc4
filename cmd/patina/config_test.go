package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "patina.toml")
	os.WriteFile(file, []byte(`
data_dir = "/from/file"
api_addr = "127.0.0.1:1111"
bootstrap = ["10.0.0.1:8787", "10.0.0.2:8787"]
log_level = "warn"

[api.authz]
bearer_token = "file-token"

[gossip]
sync_interval = "250ms"

[db]
fold_delay = "3ms"
checkpoint_interval = "1s"

[gossip.fault]
enabled = true

[[gossip.fault.rules]]
peers = ["10.0.0.9:8787"]
drop = 0.5
delay = "3ms"
`), 0o644)

	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{"defaults", nil, nil, func(t *testing.T, c Config) {
			want := DefaultConfig()
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got %+v, want the defaults %+v", c, want)
			}
			if c.DataDir != "./patina-data" || c.APIAddr != "127.0.0.1:8080" || c.GossipAddr != "127.0.0.1:8787" || c.QUICAddr != "127.0.0.1:8788" {
				t.Errorf("defaults differ from docs/DESIGN.md section 8: %+v", c)
			}
		}},
		{"file", []string{"-c", file}, nil, func(t *testing.T, c Config) {
			if c.DataDir != "/from/file" || c.APIAddr != "127.0.0.1:1111" || c.LogLevel != "warn" ||
				c.API.Authz.BearerToken != "file-token" || c.Gossip.SyncInterval != 250*time.Millisecond || c.DB.FoldDelay != 3*time.Millisecond || c.DB.CheckpointInterval != time.Second ||
				!reflect.DeepEqual(c.Bootstrap, []string{"10.0.0.1:8787", "10.0.0.2:8787"}) {
				t.Errorf("file not applied: %+v", c)
			}
			if !c.Gossip.Fault.Enabled || len(c.Gossip.Fault.Rules) != 1 || c.Gossip.Fault.Rules[0].Delay != 3*time.Millisecond || c.Gossip.Fault.Rules[0].Drop != 0.5 {
				t.Errorf("fault section not applied: %+v", c.Gossip.Fault)
			}
			if c.GossipAddr != "127.0.0.1:8787" {
				t.Errorf("a key the file lacks lost its default: %q", c.GossipAddr)
			}
		}},
		{"env over file", []string{"-c", file}, map[string]string{
			"PATINA_DATA_DIR": "/from/env", "PATINA_BOOTSTRAP": "a:1, b:2", "PATINA_API_AUTHZ_BEARER_TOKEN": "env-token",
			"PATINA_GOSSIP_SYNC_INTERVAL": "2s", "PATINA_API_MAX_CONCURRENCY": "7", "PATINA_DB_FOLD_DELAY": "1ms",
		}, func(t *testing.T, c Config) {
			if c.DataDir != "/from/env" || c.API.Authz.BearerToken != "env-token" || c.Gossip.SyncInterval != 2*time.Second || c.DB.FoldDelay != time.Millisecond ||
				!reflect.DeepEqual(c.Bootstrap, []string{"a:1", "b:2"}) || c.API.MaxConcurrency != 7 {
				t.Errorf("env not applied over the file: %+v", c)
			}
			if c.APIAddr != "127.0.0.1:1111" {
				t.Errorf("a file key without env lost: %q", c.APIAddr)
			}
		}},
		{"flags over env", []string{"-c", file, "--data-dir", "/from/flag", "--bootstrap", "x:1", "--bootstrap", "y:2", "--schema", "a.sql", "--schema", "dir", "--db-fold-delay", "5ms"},
			map[string]string{"PATINA_DATA_DIR": "/from/env", "PATINA_BOOTSTRAP": "a:1", "PATINA_DB_FOLD_DELAY": "1ms"}, func(t *testing.T, c Config) {
				if c.DataDir != "/from/flag" || c.DB.FoldDelay != 5*time.Millisecond || !reflect.DeepEqual(c.Bootstrap, []string{"x:1", "y:2"}) || !reflect.DeepEqual(c.Schema, []string{"a.sql", "dir"}) {
					t.Errorf("flags not applied over env: %+v", c)
				}
			}},
		{"tracing by env and flag", []string{"--tracing-sample-ratio", "0.25"},
			map[string]string{"PATINA_TRACING_OTLP_ENDPOINT": "http://collector:4318/v1/traces", "PATINA_TRACING_SAMPLE_RATIO": "0.5"}, func(t *testing.T, c Config) {
				if c.Tracing.OTLPEndpoint != "http://collector:4318/v1/traces" || c.Tracing.SampleRatio != 0.25 {
					t.Errorf("tracing options not applied: %+v", c.Tracing)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Config
			c := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true}
			cf := addConfigFlags(c, true)
			c.RunE = func(c *cobra.Command, args []string) error {
				var err error
				got, err = cf.load(c, func(k string) string { return tt.env[k] })
				return err
			}
			c.SetArgs(tt.args)
			if err := c.Execute(); err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
}

// TestUsageErrors runs the program in-process on bad command lines and configs: each is exit
// code 2 with one line that says what is wrong.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "typo.toml")
	os.WriteFile(badKey, []byte("dta_dir = \"x\"\n"), 0o644)
	badTOML := filepath.Join(dir, "bad.toml")
	os.WriteFile(badTOML, []byte("data_dir = \n"), 0o644)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, nil, "unknown command"},
		{"unknown flag", []string{"agent", "--nope"}, nil, "unknown flag"},
		{"stray argument", []string{"agent", "extra"}, nil, "no arguments"},
		{"unknown config key", []string{"agent", "-c", badKey}, nil, "unknown keys dta_dir"},
		{"bad TOML", []string{"agent", "-c", badTOML}, nil, "bad.toml"},
		{"missing config", []string{"agent", "-c", filepath.Join(dir, "none.toml")}, nil, "no such file"},
		{"bad env", []string{"agent"}, map[string]string{"PATINA_API_MAX_CONCURRENCY": "many"}, "PATINA_API_MAX_CONCURRENCY"},
		{"bad site id", []string{"agent", "--site-id", "not-a-uuid", "--data-dir", dir}, nil, "site_id"},
		{"bad log format", []string{"agent", "--log-format", "xml", "--data-dir", dir}, nil, "log_format"},
		{"bad log retention", []string{"agent", "--log-retention", "a while", "--data-dir", dir}, nil, "log.retention"},
		{"negative fold delay", []string{"agent", "--data-dir", dir, "--db-fold-delay", "-1ms"}, nil, "db.fold_delay"},
		{"negative checkpoint interval", []string{"agent", "--data-dir", dir, "--db-checkpoint-interval", "-1s"}, nil, "db.checkpoint_interval"},
		{"tiny log memtable", []string{"agent", "--data-dir", dir, "--db-log-memtable-bytes", "4096"}, nil, "db.log_memtable_bytes"},
		{"log memtable beyond the free-space margin", []string{"agent", "--data-dir", dir, "--db-log-memtable-bytes", "33554432"}, nil, "db.min_free_bytes of at least 83886080"},
		{"tiny log table cache", []string{"agent", "--data-dir", dir, "--db-log-max-open-files", "10"}, nil, "db.log_max_open_files 10: want 0"},
		{"log table cache past the open-file limit", []string{"agent", "--data-dir", dir, "--db-log-max-open-files", "2000000000"}, nil, "is more than this process may open"},
		{"negative scrub interval", []string{"agent", "--log-scrub-interval", "-1h", "--data-dir", dir}, nil, "log.scrub_interval"},
		{"negative log retention", []string{"agent", "--data-dir", dir}, map[string]string{"PATINA_LOG_RETENTION": "-1h"}, "log.retention"},
		{"bad tracing sample ratio", []string{"agent", "--data-dir", dir, "--tracing-sample-ratio", "1.5"}, nil, "tracing.sample_ratio"},
		{"tracing sample ratio not a number", []string{"agent", "--data-dir", dir}, map[string]string{"PATINA_TRACING_SAMPLE_RATIO": "half"}, "PATINA_TRACING_SAMPLE_RATIO"},
		{"exec without statements", []string{"exec"}, nil, "at least one statement"},
		{"query with two statements", []string{"query", "SELECT 1", "SELECT 2"}, nil, "want 1 argument"},
		{"bad output", []string{"query", "SELECT 1", "--output", "xml"}, nil, "--output"},
		{"bad JSON statement", []string{"exec", `["INSERT", `}, nil, "statement"},
		{"group without subcommand", []string{"sync"}, nil, "subcommand"},
		{"rebuild of a non-data dir", []string{"rebuild", "--data-dir", dir}, nil, "not a Patina data dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return tt.env[k] }}
			err := m.Run(context.Background(), tt.args)
			if code := exitCode(err); code != 2 {
				t.Fatalf("exit code %d (err %v), want 2", code, err)
			}
			if line := oneLine(err.Error()); !strings.Contains(line, tt.want) {
				t.Errorf("error %q does not say %q", line, tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"agent", "--help"}, {"help", "exec"}, {"tls", "server", "--help"}} {
		var out bytes.Buffer
		m := &Main{Stdout: &out, Stderr: &out}
		if err := m.Run(context.Background(), args); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "Usage:") {
			t.Errorf("%v: no usage in %q", args, out.String())
		}
	}
	var out bytes.Buffer
	(&Main{Stdout: &out, Stderr: &out}).Run(context.Background(), []string{"agent", "--help"})
	for _, flag := range []string{"--data-dir", "--site-id", "--cluster-id", "--schema", "--api-addr", "--gossip-addr", "--quic-addr", "--advertise-addr", "--bootstrap", "--log-level", "--log-format", "PATINA_DATA_DIR"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("agent --help lacks %s", flag)
		}
	}
}

// TestLogRetention: the retention is a duration or forever, from every source.
func TestLogRetention(t *testing.T) {
	for raw, want := range map[string]struct {
		d       time.Duration
		forever bool
	}{"0s": {0, false}, "90m": {90 * time.Minute, false}, "forever": {0, true}, "Forever": {0, true}, DefaultLogRetention: {time.Hour, false}} {
		c := LogConfig{Retention: raw}
		d, forever, err := c.retention()
		if err != nil || d != want.d || forever != want.forever {
			t.Errorf("%q: %v %v %v", raw, d, forever, err)
		}
	}
	if DefaultConfig().Log.Retention != DefaultLogRetention {
		t.Fatalf("default retention %q", DefaultConfig().Log.Retention)
	}
}
