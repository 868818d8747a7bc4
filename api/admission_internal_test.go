package api

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAdmissionEstimate: when the slots have been held for about a second each, a request
// that would queue behind them is refused at once if its expected wait passes the timeout,
// and queues (then times out here) when it does not.
func TestAdmissionEstimate(t *testing.T) {
	a := &admission{slots: make(chan struct{}, 2), depth: 100, timeout: 50 * time.Millisecond,
		onWait: func(int64) {}, onDone: func(time.Duration) {}}
	r1, err := a.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r2, err := a.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r1()
	defer r2()
	// No history yet: the request waits for the timeout.
	start := time.Now()
	if _, err := a.acquire(context.Background()); !errors.Is(err, errOverloaded) || !strings.Contains(err.Error(), "no slot within") {
		t.Fatalf("err %v; want a queue timeout", err)
	}
	if time.Since(start) < a.timeout {
		t.Fatal("refused before the timeout")
	}
	a.mu.Lock()
	a.hold = 1 // seconds: 2 slots free up about every half second, far past 50 ms
	a.mu.Unlock()
	start = time.Now()
	if _, err := a.acquire(context.Background()); !errors.Is(err, errOverloaded) || !strings.Contains(err.Error(), "expected wait") {
		t.Fatalf("err %v; want a refusal on the expected wait", err)
	}
	if el := time.Since(start); el >= a.timeout {
		t.Fatalf("refused after %v; want at once", el)
	}
	// A client that goes away while waiting gets its context's error, not a 503.
	a.mu.Lock()
	a.hold = 0
	a.mu.Unlock()
	a.timeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := a.acquire(ctx); done <- err }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v; want context.Canceled", err)
	}
	if a.waiting.Load() != 0 {
		t.Fatalf("%d still counted as waiting", a.waiting.Load())
	}
}
