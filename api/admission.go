package api

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// admission is the bounded queue in front of the data slots (MaxConcurrency): a request that
// finds every slot taken waits for one, in arrival order, for at most QueueTimeout, instead
// of being refused at once, so that a burst a short wait would absorb costs latency, not
// errors. It is refused with 503 (and Retry-After) only when QueueDepth requests already
// wait, when the wait it can expect (requests ahead of it times the recent slot hold time,
// over the slots) would pass QueueTimeout, or when no slot came within QueueTimeout.
//
// Waiting requests hold their body (read before the queue) and a goroutine; QueueDepth bounds
// both. Streams are not queued: they hold a slot for their whole life.
type admission struct {
	slots   chan struct{}
	depth   int64 // most requests waiting; 0 means no queue
	timeout time.Duration
	waiting atomic.Int64

	mu sync.Mutex
	// hold is a moving average of how long a request holds its slot, in seconds, for the
	// wait estimate.
	hold float64

	onWait func(waiting int64)        // queue length gauge
	onDone func(waited time.Duration) // wait time histogram, of admitted requests
}

// holdWeight is the weight of the latest hold time in the moving average.
const holdWeight = 0.05

// acquire takes a slot, waiting in the queue if none is free. release gives it back.
func (a *admission) acquire(ctx context.Context) (release func(), err error) {
	select {
	case a.slots <- struct{}{}:
		return a.held(time.Now()), nil
	default:
	}
	if a.depth <= 0 {
		return nil, fmt.Errorf("%w (%d in flight)", errOverloaded, cap(a.slots))
	}
	n := a.waiting.Add(1)
	defer func() { a.onWait(a.waiting.Add(-1)) }()
	a.onWait(n)
	if n > a.depth {
		return nil, fmt.Errorf("%w (%d in flight, %d waiting: the queue is full)", errOverloaded, cap(a.slots), n-1)
	}
	if est := a.estimate(n); est > a.timeout {
		return nil, fmt.Errorf("%w (%d in flight, %d waiting: the expected wait of %v passes the queue timeout of %v)",
			errOverloaded, cap(a.slots), n-1, est.Round(time.Millisecond), a.timeout)
	}
	start := time.Now()
	t := time.NewTimer(a.timeout)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		now := time.Now()
		a.onDone(now.Sub(start))
		return a.held(now), nil
	case <-t.C:
		return nil, fmt.Errorf("%w (%d in flight: no slot within the queue timeout of %v)", errOverloaded, cap(a.slots), a.timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// held returns the release of a slot taken at start.
func (a *admission) held(start time.Time) func() {
	return func() {
		d := time.Since(start).Seconds()
		<-a.slots
		a.mu.Lock()
		if a.hold == 0 {
			a.hold = d
		} else {
			a.hold += holdWeight * (d - a.hold)
		}
		a.mu.Unlock()
	}
}

// estimate is the wait of the n-th waiting request: the slots free up at about
// cap/hold per second, and n requests go first (itself included).
func (a *admission) estimate(n int64) time.Duration {
	a.mu.Lock()
	h := a.hold
	a.mu.Unlock()
	return time.Duration(float64(n) * h / float64(cap(a.slots)) * float64(time.Second))
}
