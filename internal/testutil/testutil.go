package testutil

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it returns true, and fails the test when
// timeout passes first. Use it instead of time.Sleep to wait for something to happen; what
// describes the condition in the failure message.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if err := Poll(timeout, cond); err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
}

// Poll is WaitFor for code that has no testing.TB (goroutines, helpers returning errors).
func Poll(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not true after %v", timeout)
		}
		time.Sleep(wait) // polling interval, not synchronization: cond decides
		if wait < 50*time.Millisecond {
			wait *= 2
		}
	}
}

// FreeAddr returns a 127.0.0.1 TCP address that was free a moment ago, for processes that
// must be given an address on their command line. Prefer listening on 127.0.0.1:0 in-process.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// FreeUDPAddr is FreeAddr for UDP (QUIC and memberlist's UDP side).
func FreeUDPAddr(tb testing.TB) string {
	tb.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen udp: %v", err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}
