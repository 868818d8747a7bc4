package materializer

import (
	"context"
	"sync"

	"github.com/patinadb/patina/log"
)

// notifier fans commit notices out to listeners without ever blocking the writer: a
// listener whose buffer is full misses the notice and its next one carries Lagged.
type notifier struct {
	mu        sync.Mutex
	listeners map[*listener]struct{}
	closed    bool
}

type listener struct {
	ch     chan Notice
	lagged bool
}

// Notify registers a listener for commit notices. A listener whose buffer is full misses
// notices (a later notice has Lagged set) rather than blocking the writer. cancel
// unregisters it and closes the channel; the channel is also closed by Close.
func (m *Materializer) Notify(buf int) (ch <-chan Notice, cancel func()) {
	if buf < 1 {
		buf = 1
	}
	l := &listener{ch: make(chan Notice, buf)}
	n := &m.notify
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		close(l.ch)
		return l.ch, func() {}
	}
	if n.listeners == nil {
		n.listeners = map[*listener]struct{}{}
	}
	n.listeners[l] = struct{}{}
	n.mu.Unlock()
	var once sync.Once
	return l.ch, func() {
		once.Do(func() {
			n.mu.Lock()
			if _, ok := n.listeners[l]; ok {
				delete(n.listeners, l)
				close(l.ch)
			}
			n.mu.Unlock()
		})
	}
}

func (n *notifier) publish(nt Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for l := range n.listeners {
		out := nt
		out.Lagged = l.lagged
		select {
		case l.ch <- out:
			l.lagged = false
		default:
			l.lagged = true
		}
	}
}

func (n *notifier) closeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for l := range n.listeners {
		close(l.ch)
		delete(n.listeners, l)
	}
}

// commitQueue hands committed local changesets to Config.OnCommit from its own goroutine,
// in commit order; the writer only appends to a slice.
type commitQueue struct {
	fn func([]*log.Changeset)
	mu sync.Mutex
	q  [][]*log.Changeset
	// ctxs and fnCtx: OnCommitContext's queue, one trace context per changeset.
	ctxs  [][]context.Context
	fnCtx func(context.Context, *log.Changeset)
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
}

func newCommitQueue(fn func([]*log.Changeset), fnCtx func(context.Context, *log.Changeset)) *commitQueue {
	if fnCtx != nil {
		fn = func([]*log.Changeset) {} // the loop calls fnCtx
	}
	c := &commitQueue{fn: fn, fnCtx: fnCtx, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if fn == nil {
		close(c.done)
		return c
	}
	go c.loop()
	return c
}

// push queues css; ctxs (nil, or one per changeset) carry their trace spans.
func (c *commitQueue) push(css []*log.Changeset, ctxs []context.Context) {
	if c == nil || c.fn == nil {
		return
	}
	c.mu.Lock()
	c.q = append(c.q, css)
	c.ctxs = append(c.ctxs, ctxs)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *commitQueue) loop() {
	defer close(c.done)
	for {
		c.mu.Lock()
		q, ctxs := c.q, c.ctxs
		c.q, c.ctxs = nil, nil
		c.mu.Unlock()
		for i, css := range q {
			if c.fnCtx == nil {
				c.fn(css)
				continue
			}
			for j, cs := range css {
				ctx := context.Background()
				if ctxs[i] != nil {
					ctx = ctxs[i][j]
				}
				c.fnCtx(ctx, cs)
			}
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-c.wake:
		case <-c.quit:
			// Deliver what was committed before Close.
			c.mu.Lock()
			q := c.q
			c.q = nil
			c.mu.Unlock()
			for _, css := range q {
				c.fn(css)
			}
			return
		}
	}
}

func (c *commitQueue) close() {
	if c.fn != nil {
		select {
		case <-c.quit:
		default:
			close(c.quit)
		}
	}
	<-c.done
}
