package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/patinadb/patina/materializer/subs"
)

// SubscriptionsConfig is the [subscriptions] section: the subscription engine's tuning.
// Zero values take subs.DefaultConfig's.
type SubscriptionsConfig struct {
	IdleTimeout   time.Duration `toml:"idle_timeout"`
	RetainChanges int           `toml:"retain_changes"`
	ClientBuffer  int           `toml:"client_buffer"`
	// Memory bounds, whatever the size of the rows (issue 12): see subs.Config.
	MaxEventBytes     int   `toml:"max_event_bytes"`
	ClientBufferBytes int64 `toml:"client_buffer_bytes"`
	RetainBytes       int64 `toml:"retain_bytes"`
}

// subsOptions are the agent's options of this room; config.go lists them with the others.
var subsOptions = []option{
	{key: "subscriptions.idle_timeout", usage: fmt.Sprintf("drop a subscription without clients after this long (0: %v)", subs.DefaultConfig("").IdleTimeout),
		field: func(c *Config) any { return &c.Subscriptions.IdleTimeout }, agentOnly: true},
	{key: "subscriptions.retain_changes", usage: fmt.Sprintf("change events kept per subscription for resuming with ?from (0: %d)", subs.DefaultConfig("").RetainChanges),
		field: func(c *Config) any { return &c.Subscriptions.RetainChanges }, agentOnly: true},
	{key: "subscriptions.client_buffer", usage: fmt.Sprintf("events a subscriber may fall behind before it is disconnected (0: %d)", subs.DefaultConfig("").ClientBuffer),
		field: func(c *Config) any { return &c.Subscriptions.ClientBuffer }, agentOnly: true},
	{key: "subscriptions.max_event_bytes", usage: fmt.Sprintf("largest encoded event (row or change) sent to subscribers; a larger one ends their streams with an error (0: %d)", subs.DefaultConfig("").MaxEventBytes),
		field: func(c *Config) any { return &c.Subscriptions.MaxEventBytes }, agentOnly: true},
	{key: "subscriptions.client_buffer_bytes", usage: fmt.Sprintf("bytes of events a subscriber may fall behind before it is disconnected (0: %d)", subs.DefaultConfig("").ClientBufferBytes),
		field: func(c *Config) any { return &c.Subscriptions.ClientBufferBytes }, agentOnly: true},
	{key: "subscriptions.retain_bytes", usage: fmt.Sprintf("bytes of change events kept in memory per subscription for resuming (0: %d)", subs.DefaultConfig("").RetainBytes),
		field: func(c *Config) any { return &c.Subscriptions.RetainBytes }, agentOnly: true},
}

// openSubscriptions opens the subscription engine over the open view; its subscriptions live
// in <data>/subscriptions and survive restarts.
func (a *Agent) openSubscriptions(ctx context.Context) error {
	sc := a.cfg.Subscriptions
	if sc.IdleTimeout < 0 || sc.RetainChanges < 0 || sc.ClientBuffer < 0 || sc.MaxEventBytes < 0 || sc.ClientBufferBytes < 0 || sc.RetainBytes < 0 {
		return usagef("subscriptions: idle_timeout, retain_changes, client_buffer and the byte bounds must not be negative")
	}
	e := subs.New(a.mat, subs.Config{
		Dir:           filepath.Join(a.cfg.DataDir, "subscriptions"),
		IdleTimeout:   sc.IdleTimeout,
		RetainChanges: sc.RetainChanges,
		ClientBuffer:  sc.ClientBuffer,
		MaxEventBytes: sc.MaxEventBytes, ClientBufferBytes: sc.ClientBufferBytes, RetainBytes: sc.RetainBytes,
		Registerer: a.reg,
		Logger:     a.logger,
	})
	if err := e.Open(ctx); err != nil {
		return fmt.Errorf("open subscriptions: %w", err)
	}
	a.subs = e
	return nil
}
