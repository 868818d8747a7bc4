package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func init() { register("", newAgentCmd) }

func newAgentCmd(m *Main) *cobra.Command {
	c := &cobra.Command{
		Use:   "agent [-c patina.toml] [flags]",
		Short: "Run a node",
		Long: `Run a node: its log, its SQLite view, gossip with the other nodes and the HTTP API.

Without a config it runs one node on built-in defaults: data in ./patina-data, API on
127.0.0.1:8080, gossip on 127.0.0.1:8787, QUIC on 127.0.0.1:8788, no bootstrap.

Every config key has a flag and a PATINA_<KEY> environment variable; flags win over the
environment, the environment over the file (-c). GET /v1/health answers 200 as soon as the
API serves. SIGTERM or SIGINT leave the cluster and close everything (nothing acknowledged is
lost); a second signal exits at once. SIGHUP re-reads the testing-only [gossip.fault] section
of the config file.`,
		Example: `  patina agent
  patina agent --data-dir /var/lib/patina --schema schema/ --api-addr 0.0.0.0:8080 \
    --gossip-addr 10.0.0.5:8787 --quic-addr 10.0.0.5:8788 --bootstrap 10.0.0.4:8787
  PATINA_LOG_FORMAT=json patina agent -c /etc/patina.toml`,
		Args: noArgs,
	}
	cf := addConfigFlags(c, true)
	c.RunE = func(c *cobra.Command, args []string) error {
		cfg, err := cf.load(c, m.Getenv)
		if err != nil {
			return err
		}
		if err := cfg.Validate(); err != nil {
			return err
		}
		logger, level, err := newLogger(m.Stderr, cfg.LogLevel, cfg.LogFormat)
		if err != nil {
			return err
		}
		logConfigNotes(logger, cfg.notes)
		return m.runAgent(c.Context(), cfg, cf.path, logger, level)
	}
	return c
}

func (m *Main) runAgent(ctx context.Context, cfg Config, configPath string, logger *slog.Logger, level *slog.LevelVar) error {
	a := NewAgent(cfg, logger)
	a.level = level
	if err := a.Open(ctx); err != nil {
		return err
	}
	if m.onAgentReady != nil {
		m.onAgentReady(a)
	}
	notifyReady(a.logger)
	wdCtx, stopWatchdog := context.WithCancel(context.Background())
	wdDone := make(chan struct{})
	go func() { defer close(wdDone); runWatchdog(wdCtx, a, a.logger) }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-hup:
			a.reloadFaults(configPath)
		case <-ctx.Done():
		}
	}
	a.logger.Info("shutting down", "cause", context.Cause(ctx))
	notifyStopping(a.logger)
	stopWatchdog()
	<-wdDone
	if err := a.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	a.logger.Info("stopped")
	return nil
}

// reloadFaults re-reads [gossip.fault] from the config file (testing only).
func (a *Agent) reloadFaults(path string) {
	if path == "" {
		a.logger.Warn("SIGHUP: no config file to re-read")
		return
	}
	var cfg Config
	if err := loadFile(path, &cfg); err != nil {
		a.logger.Error("SIGHUP: re-read config", "err", err)
		return
	}
	if err := a.SetFaults(cfg.Gossip.Fault); err != nil {
		a.logger.Error("SIGHUP: set faults", "err", err)
		return
	}
	a.logger.Warn("SIGHUP: fault rules replaced (testing only)", "enabled", cfg.Gossip.Fault.Enabled, "rules", len(cfg.Gossip.Fault.Rules))
}
