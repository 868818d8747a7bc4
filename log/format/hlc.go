package format

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading: nanoseconds since the Unix epoch, where the
// clock never goes backwards and never repeats (a reading that would is bumped by one
// nanosecond, which plays the role of the logical counter). It orders events across nodes
// well enough for latency figures and diagnostics; merging never uses it.
type Timestamp uint64

// Time returns the wall-clock part of t.
func (t Timestamp) Time() time.Time { return time.Unix(0, int64(t)).UTC() }

// String is RFC 3339 with nanoseconds, which reads back exactly. A reading beyond the
// int64 nanoseconds time.Time can hold (after 2262) is written as its integer, so that every
// Timestamp a decoder accepts also survives the JSON form.
func (t Timestamp) String() string {
	if t > math.MaxInt64 {
		return strconv.FormatUint(uint64(t), 10)
	}
	return t.Time().Format(time.RFC3339Nano)
}

// MarshalText implements encoding.TextMarshaler.
func (t Timestamp) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText accepts the RFC 3339 form or a plain integer of nanoseconds.
func (t *Timestamp) UnmarshalText(b []byte) error {
	if n, err := strconv.ParseUint(string(b), 10, 64); err == nil && strconv.FormatUint(n, 10) == string(b) {
		*t = Timestamp(n)
		return nil
	}
	tm, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return invalidf("timestamp %q: %v", truncate(string(b), 40), err)
	}
	// UnixNano is undefined outside int64 nanoseconds: refuse rather than wrap.
	if tm.Before(time.Unix(0, 0)) || tm.After(time.Unix(0, math.MaxInt64)) {
		return invalidf("timestamp %q outside 1970..2262", b)
	}
	*t = Timestamp(tm.UnixNano())
	return nil
}

// MaxClockDrift is how far ahead of the local wall clock a remote timestamp may be before
// Update ignores it, so that one node with a wrong clock cannot drag every clock forward.
const MaxClockDrift = 5 * time.Second

// HLC is a hybrid logical clock. It is safe for concurrent use.
type HLC struct {
	mu   sync.Mutex
	last Timestamp
	now  func() time.Time
}

// NewHLC returns a clock on the system wall clock.
func NewHLC() *HLC { return &HLC{now: time.Now} }

// Now returns a timestamp greater than every one this clock returned or saw before.
func (c *HLC) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.wall()
	if now <= c.last {
		now = c.last + 1
	}
	c.last = now
	return now
}

// Update merges a remote timestamp, so that later local readings order after it. Readings
// more than MaxClockDrift ahead of the local wall clock are ignored and reported.
func (c *HLC) Update(remote Timestamp) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall := c.wall(); remote > wall+Timestamp(MaxClockDrift) {
		return fmt.Errorf("hlc: remote clock %v is %v ahead", remote, time.Duration(remote-wall))
	}
	if remote > c.last {
		c.last = remote
	}
	return nil
}

func (c *HLC) wall() Timestamp {
	if c.now == nil {
		c.now = time.Now
	}
	return Timestamp(c.now().UnixNano())
}
