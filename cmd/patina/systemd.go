package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// systemd integration for a unit with Type=notify and WatchdogSec= (deploy/patina.service).
// Outside systemd (no NOTIFY_SOCKET) every call is a no-op.

// notifyReady tells systemd the agent serves (READY=1), after Open: units ordered after
// patina.service start only once its API answers.
func notifyReady(logger *slog.Logger) {
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		logger.Warn("sd_notify READY", "err", err)
	}
}

// notifyStopping tells systemd the agent is shutting down on purpose (STOPPING=1), so that a
// long graceful stop is not taken for a hang.
func notifyStopping(logger *slog.Logger) {
	if _, err := daemon.SdNotify(false, daemon.SdNotifyStopping); err != nil {
		logger.Warn("sd_notify STOPPING", "err", err)
	}
}

// runWatchdog pings systemd's watchdog (WATCHDOG=1) at half the unit's WatchdogSec while the
// agent is healthy, until ctx ends; without a watchdog configured it returns at once. Healthy
// means the API's own handler answers GET /v1/health within the interval: that request goes
// through the router, the guards and the log and view figures, so a wedged process stops
// pinging and systemd restarts it, while a merely busy one (shedding load) still answers.
func runWatchdog(ctx context.Context, a *Agent, logger *slog.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		logger.Warn("systemd watchdog", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	period := interval / 2
	logger.Info("systemd watchdog on", "interval", interval)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if a.selfCheck(ctx, period) {
			if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
				logger.Warn("sd_notify WATCHDOG", "err", err)
			}
		} else {
			logger.Error("health self-check failed: not pinging the systemd watchdog")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// selfCheck runs GET /v1/health through the API's handler in process, within timeout.
func (a *Agent) selfCheck(ctx context.Context, timeout time.Duration) bool {
	if a.srv == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/health", nil)
		rec := httptest.NewRecorder()
		a.srv.Handler().ServeHTTP(rec, req)
		done <- rec.Code
	}()
	select {
	case code := <-done:
		// With api.authz.guard_public the check holds no token (the config keeps only
		// hashes): a 401 still proves the process accepts and routes requests.
		return code == http.StatusOK || (a.cfg.API.Authz.GuardPublic && code == http.StatusUnauthorized)
	case <-ctx.Done():
		return false
	}
}
