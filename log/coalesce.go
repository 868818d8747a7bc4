package log

import "sync"

// coalescer runs a function in one goroutine at a time for any number of requests (the log's
// self-repair, repairSoon): a request made while a run is on its way makes the goroutine run
// once more after it, and no request is lost, because the goroutine's look for a new request
// and its end happen under one lock with the request's look for a running goroutine. (With
// two atomics, a request that came after the goroutine's last look but before it cleared
// "running" saw a goroutine still running, left, and was never served.)
type coalescer struct {
	mu      sync.Mutex
	running bool // a goroutine is running fn, or about to look for a request
	again   bool // a request came since the goroutine last looked
}

// request asks for a run of fn after this call: it starts the goroutine unless one is
// running, which then runs once more (its own fn: every caller passes the same work). fn returning false (a failure) ends the goroutine
// even if requests came meanwhile; the next request starts it again.
func (c *coalescer) request(fn func() bool) {
	c.mu.Lock()
	c.again = true
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start {
		go c.loop(fn)
	}
}

func (c *coalescer) loop(fn func() bool) {
	for c.next() {
		if !fn() {
			c.mu.Lock()
			c.running = false
			c.mu.Unlock()
			return
		}
	}
}

// next takes the pending request, or ends the goroutine (running false) when there is none.
func (c *coalescer) next() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.again {
		c.running = false
		return false
	}
	c.again = false
	return true
}
