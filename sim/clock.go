package sim

import (
	"container/heap"
	"math/rand/v2"
	"time"

	"github.com/patinadb/patina/gossip"
)

// epoch is the virtual clock's zero: a fixed instant, so that timestamps written into the
// logs are the same in every run.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// event is one scheduled call. Events run in (at, seq) order: the same order in every run.
type event struct {
	at  time.Duration
	seq uint64
	f   func()
	idx int // in the heap; -1 once run or stopped
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *eventHeap) Push(x any) {
	e := x.(*event)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

// loop is the simulator's single thread of control: a virtual clock and the queue of
// everything that is to happen. Nothing runs concurrently with an event, so a run depends
// on its seed alone.
type loop struct {
	now    time.Duration
	seq    uint64
	q      eventHeap
	events uint64 // run so far
	// done, when set, ends runUntil early once it is closed (the run's context ended): it
	// is checked every ctxEvery events, so a cancelled run stops within milliseconds
	// without a channel poll per event.
	done <-chan struct{}
}

const ctxEvery = 1024

// at schedules f at virtual time t (not before now).
func (l *loop) at(t time.Duration, f func()) *event {
	t = max(t, l.now)
	l.seq++
	e := &event{at: t, seq: l.seq, f: f}
	heap.Push(&l.q, e)
	return e
}

// after schedules f d from now.
func (l *loop) after(d time.Duration, f func()) *event { return l.at(l.now+d, f) }

// stop unschedules e; it reports whether e had not run yet.
func (l *loop) stop(e *event) bool {
	if e.idx < 0 {
		return false
	}
	heap.Remove(&l.q, e.idx)
	return true
}

// runUntil runs every event due up to t, then sets the clock to t. stop, checked between
// events, ends it early, and so does done once closed (then the clock stays where it was:
// the caller checks its context).
func (l *loop) runUntil(t time.Duration, stop func() bool) {
	for len(l.q) > 0 && l.q[0].at <= t {
		e := heap.Pop(&l.q).(*event)
		l.now = e.at
		l.events++
		e.f()
		if stop != nil && stop() {
			return
		}
		if l.done != nil && l.events%ctxEvery == 0 {
			select {
			case <-l.done:
				return
			default:
			}
		}
	}
	l.now = max(l.now, t)
}

// clock is a node's gossip.Clock on the loop.
type clock struct{ l *loop }

var _ gossip.Clock = clock{}

func (c clock) Now() time.Time { return epoch.Add(c.l.now) }

func (c clock) AfterFunc(d time.Duration, f func()) gossip.Timer {
	return timer{c.l, c.l.after(max(d, 0), f)}
}

type timer struct {
	l *loop
	e *event
}

func (t timer) Stop() bool { return t.l.stop(t.e) }

// newRand returns a seeded source for one purpose (stream) of a run with the given seed:
// separate streams keep, say, the network's draws from shifting the protocol's.
func newRand(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream*0x9e3779b97f4a7c15+1))
}
