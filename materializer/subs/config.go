package subs

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures an Engine.
type Config struct {
	// Dir holds the engine's own database (subs.db); normally <data>/subscriptions. Empty
	// keeps subscriptions in memory only (tests).
	Dir string
	// IdleTimeout: a subscription without clients for this long is dropped.
	IdleTimeout time.Duration
	// RetainChanges is how many recent changes per subscription are kept for resuming.
	RetainChanges int
	// ClientBuffer is how many events a client may fall behind before it is disconnected.
	// The queue grows only while the client is behind, so a large limit costs nothing for
	// clients that keep up; it must hold the events of the largest transaction expected,
	// which reach the queue at once.
	ClientBuffer int
	// NotifyBuffer is the engine's buffer of commit notices.
	NotifyBuffer int
	// Memory bounds (issue 12, item 6). Encoded events are shared: one encoding of a change
	// goes to every client, and a large row's encoding is kept on the row and shared by
	// every client that attaches, so memory does not grow with the number of subscribers.
	// MaxEventBytes caps one encoded event (a row or a change): a larger one is never sent;
	// the clients get ErrEventTooLarge instead. ClientBufferBytes caps the bytes of events a
	// client may fall behind by (with ClientBuffer, the count) before it is disconnected.
	// RetainBytes caps the bytes of retained changes a subscription keeps in memory for
	// resuming (with RetainChanges, the count). 0 takes the default.
	MaxEventBytes     int
	ClientBufferBytes int64
	RetainBytes       int64
	// Registerer receives the engine's metrics; nil registers none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// DefaultConfig returns the defaults for dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:           dir,
		IdleTimeout:   10 * time.Minute,
		RetainChanges: 10000,
		ClientBuffer:  65536,
		NotifyBuffer:  8192,

		MaxEventBytes:     DefaultMaxEventBytes,
		ClientBufferBytes: DefaultClientBufferBytes,
		RetainBytes:       DefaultRetainBytes,
	}
}

// Validate checks the config.
func (c *Config) Validate() error {
	switch {
	case c.IdleTimeout <= 0:
		return fmt.Errorf("subs config: idle timeout %v, want > 0", c.IdleTimeout)
	case c.RetainChanges <= 0:
		return fmt.Errorf("subs config: retain changes %d, want > 0", c.RetainChanges)
	case c.ClientBuffer <= 0:
		return fmt.Errorf("subs config: client buffer %d, want > 0", c.ClientBuffer)
	case c.NotifyBuffer <= 0:
		return fmt.Errorf("subs config: notify buffer %d, want > 0", c.NotifyBuffer)
	case c.MaxEventBytes < 0 || c.ClientBufferBytes < 0 || c.RetainBytes < 0:
		return fmt.Errorf("subs config: negative memory bound")
	}
	return nil
}
