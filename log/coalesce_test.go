package log

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCoalescerLosesNoRequest: every request is followed by a run that starts after it, even
// a request that comes while the goroutine is ending. Each round makes one request and waits
// for a run that saw it, so the next request lands while the goroutine of the last one is
// finishing: the window where a request with two atomics was lost.
func TestCoalescerLosesNoRequest(t *testing.T) {
	var c coalescer
	var asked, seen atomic.Int64 // requests made; the highest request a run saw at its start
	var inRun sync.Mutex         // runs never overlap
	fn := func() bool {
		if !inRun.TryLock() {
			t.Error("two runs at once")
			return false
		}
		defer inRun.Unlock()
		seen.Store(asked.Load())
		return true
	}
	for i := range 100000 {
		n := asked.Add(1)
		c.request(fn)
		deadline := time.Now().Add(10 * time.Second)
		for seen.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("request %d of round %d not served in 10 s (last seen %d): lost", n, i, seen.Load())
			}
			runtime.Gosched()
		}
	}
}

// TestCoalescerStopsOnFailure: a run that fails ends the goroutine, even with a request
// made during that run; the next request starts it again.
func TestCoalescerStopsOnFailure(t *testing.T) {
	var c coalescer
	started := make(chan struct{})
	results := make(chan bool)
	fn := func() bool {
		started <- struct{}{}
		return <-results
	}
	c.request(fn)
	<-started
	c.request(fn) // during the failing run
	results <- false
	// The goroutine ends without serving the second request.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		running := c.running
		c.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the goroutine still runs 10 s after a failed run")
		}
		runtime.Gosched()
	}
	c.request(fn)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("a request after a failure started no run")
	}
	results <- true
}
