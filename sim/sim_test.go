package sim

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/gossip"
)

// TestHundredNodes runs 100 nodes in 10 regions with packet loss, a crash and a partition:
// every write must reach every node, the logs must end equal, and a second run with the
// same config must measure exactly the same (wall and CPU time aside).
func TestHundredNodes(t *testing.T) {
	cfg := Config{Nodes: 100, Regions: 10, Seed: 7, Rate: 15, Duration: 3 * time.Second, Idle: time.Second,
		Loss: 0.05, Crash: 0.01, Partition: true}
	a, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *a)
	if a.Writes == 0 || a.Crashes != 1 || !a.Partition {
		t.Fatalf("run without writes or faults: %+v", *a)
	}
	if a.Delivered != 1 || !a.Converged {
		t.Fatalf("delivered %v, converged %v; want every write everywhere and equal logs", a.Delivered, a.Converged)
	}
	if a.P50Ms <= 0 || a.P99Ms < a.P50Ms || a.MaxMs < a.P99Ms || a.MsgsPerWrite <= 0 {
		t.Fatalf("implausible figures: %+v", *a)
	}
	b, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.WallS, a.CPUS, b.WallS, b.CPUS = 0, 0, 0, 0
	if *a != *b {
		t.Fatalf("same seed, different runs:\n%+v\n%+v", *a, *b)
	}
}

func TestRTTTable(t *testing.T) {
	tbl, err := loadRTT(MaxRegions)
	if err != nil {
		t.Fatal(err)
	}
	if len(tbl.names) != 40 {
		t.Fatalf("%d regions, want 40", len(tbl.names))
	}
	for i := range tbl.names {
		if tbl.rtt[i][i] != intraRegionRTT {
			t.Fatalf("%s to itself: %v", tbl.names[i], tbl.rtt[i][i])
		}
		for j := range tbl.names {
			if tbl.rtt[i][j] != tbl.rtt[j][i] || (i != j && tbl.rtt[i][j] < 2*time.Millisecond) {
				t.Fatalf("%s-%s: %v / %v", tbl.names[i], tbl.names[j], tbl.rtt[i][j], tbl.rtt[j][i])
			}
		}
	}
	// Spot checks against the published table (mean of both directions).
	idx := map[string]int{}
	for i, n := range tbl.names {
		idx[n] = i
	}
	for _, c := range []struct {
		a, b string
		want time.Duration
	}{
		{"East US", "West Europe", 82500 * time.Microsecond},             // 83 and 82
		{"Japan East", "Japan West", 10 * time.Millisecond},              // 10 and 10
		{"Australia East", "South Africa North", 378 * time.Millisecond}, // 378 and 378
	} {
		if got := tbl.rtt[idx[c.a]][idx[c.b]]; got != c.want {
			t.Errorf("%s-%s = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	if _, err := loadRTT(41); err == nil {
		t.Fatal("41 regions accepted")
	}
	if _, err := parseAzureRTT("|Source|A|B|\n|A||x|\n"); err == nil || !strings.Contains(err.Error(), "bad cell") {
		t.Fatalf("bad cell: %v", err)
	}
}

func TestNetworkModel(t *testing.T) {
	tbl, err := loadRTT(2)
	if err != nil {
		t.Fatal(err)
	}
	l := &loop{}
	n := newNetwork(l, rand.New(rand.NewPCG(1, 2)), tbl, NetConfig{Bandwidth: 8e6, PerMessage: time.Millisecond, PerByte: time.Microsecond})
	// Propagation is half the round trip; 1,000 bytes at 8 Mbit/s take 1 ms to serialize.
	oneWay := tbl.rtt[0][1] / 2
	if got := n.transit(0, 1, 0, 1, 1000); got != oneWay+time.Millisecond {
		t.Fatalf("first message arrives at %v, want %v", got, oneWay+time.Millisecond)
	}
	// The link serializes: a second message sent at once queues behind the first.
	if got := n.transit(0, 1, 0, 1, 1000); got != oneWay+2*time.Millisecond {
		t.Fatalf("second message arrives at %v, want %v", got, oneWay+2*time.Millisecond)
	}
	// Another link is independent; within a region the round trip is 1 ms.
	if got := n.transit(2, 3, 0, 0, 1000); got != intraRegionRTT/2+time.Millisecond {
		t.Fatalf("intra-region message at %v", got)
	}
	if got := n.processing(500); got != time.Millisecond+500*time.Microsecond {
		t.Fatalf("processing %v", got)
	}
	if n.msgs != 3 || n.bytes != 3000 {
		t.Fatalf("counted %d messages, %d bytes", n.msgs, n.bytes)
	}
	// Loss delays (QUIC retransmits), in stream order, and never loses.
	n.cfg.Loss = 0.5
	var last time.Duration
	delayed := 0
	for i := range 200 {
		at := n.transit(4, 5, 0, 1, 100)
		if at < last {
			t.Fatalf("message %d arrives at %v, before the previous one at %v", i, at, last)
		}
		if at-last > tbl.rtt[0][1] {
			delayed++
		}
		last = at
	}
	if delayed == 0 {
		t.Fatal("half the packets lost and no message delayed by a retransmission")
	}
}

func TestLoopOrderAndStop(t *testing.T) {
	l := &loop{}
	var got []int
	l.after(2*time.Second, func() { got = append(got, 2) })
	e := l.after(time.Second, func() { got = append(got, 99) })
	l.after(time.Second, func() { got = append(got, 1) })
	l.after(2*time.Second, func() { got = append(got, 3) }) // same time: scheduling order
	c := clock{l}
	tm := c.AfterFunc(1500*time.Millisecond, func() { got = append(got, 98) })
	if !l.stop(e) || !tm.Stop() || tm.Stop() {
		t.Fatal("stop")
	}
	l.runUntil(10*time.Second, nil)
	if want := []int{1, 2, 3}; len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("ran %v, want %v", got, want)
	}
	if c.Now() != epoch.Add(10*time.Second) {
		t.Fatalf("now %v", c.Now())
	}
}

// FuzzParseAzureRTT: the table's parser returns a table or an error, never panics, and
// every cell it returns is a positive round trip.
func FuzzParseAzureRTT(f *testing.F) {
	f.Add(azureRTT)
	f.Add("|Source|A|B|\n|A||3|\n|B|4||\n")
	f.Add("# comment\n|Source|A|\n|A|x|\n")
	f.Add("|A|1|\n")
	f.Add("|Source|A|\n|A|NaN|\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseAzureRTT(s)
		if err != nil {
			return
		}
		for k, ms := range m {
			if !(ms > 0 && ms < 10_000) {
				t.Fatalf("%v: %v", k, ms)
			}
		}
	})
}

// TestRunRefuses: configurations the simulator cannot honour are refused before anything
// runs, never run as something else (a partition of one region used to cut nothing).
func TestRunRefuses(t *testing.T) {
	for _, cfg := range []Config{
		{Nodes: 1, Rate: 1, Duration: time.Second},
		{Nodes: 10, Regions: 11, Rate: 1, Duration: time.Second},
		{Nodes: 10, Regions: 1, Rate: 1, Duration: time.Second, Partition: true},
		{Nodes: 10, Rate: 1, Duration: time.Second, Loss: 1},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%+v: ran", cfg)
		}
	}
}

// TestRunCancel: a run whose context ends (patina bench sim's first SIGINT or SIGTERM)
// returns promptly with an error wrapping ctx.Err(), from another goroutine's cancel in the
// middle of the writes and from a context ended before the run. The run would otherwise
// take an hour of virtual time (minutes of wall time).
func TestRunCancel(t *testing.T) {
	cfg := Config{Nodes: 10, Regions: 2, Seed: 1, Rate: 20, Duration: time.Hour, Idle: time.Second}
	started := make(chan struct{})
	var once bool
	cfg.Progress = func(float64) {
		if !once {
			once = true
			close(started)
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	type result struct {
		res *Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := Run(ctx, cfg)
		done <- result{res, err}
	}()
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("run ended before its first second of writes: %+v, %v", r.res, r.err)
	}
	stopped := time.Now()
	cancel(errors.New("test stop"))
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("run still going a minute after its context was cancelled")
	}
	t.Logf("returned %v after the cancel: %v", time.Since(stopped), r.err)
	if r.res != nil || !errors.Is(r.err, context.Canceled) || !strings.Contains(r.err.Error(), "test stop") ||
		!strings.Contains(r.err.Error(), "interrupted at") {
		t.Fatalf("got %+v, %v; want no result and an interrupted error wrapping context.Canceled with its cause", r.res, r.err)
	}

	ended, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if res, err := Run(ended, cfg); res != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("ended context: %+v, %v", res, err)
	}
}

// TestIdleMembershipFlat: the membership model's idle traffic per node is the same at 100,
// 300 and 1,000 nodes (gossip.PushPullEvery's schedule, which production's push-pull loop
// follows), and it follows gossip's PushPullInterval: halve it and the push-pull share
// doubles.
func TestIdleMembershipFlat(t *testing.T) {
	cfg := gossip.DefaultConfig()
	m := &membershipModel{cfg: cfg}
	at100 := m.idleBytesPerNodeS(100)
	for _, n := range []int{32, 300, 1000, 5000} {
		if got := m.idleBytesPerNodeS(n); math.Abs(got-at100) > 0.01 {
			t.Errorf("%d nodes: %.1f B/node/s, %d nodes: %.1f; want the same", n, got, 100, at100)
		}
	}
	probes := m.idleBytesPerNodeS(2) - 2*2*200/cfg.PushPullInterval.Seconds()
	cfg.PushPullInterval /= 2
	fast := (&membershipModel{cfg: cfg}).idleBytesPerNodeS(1000)
	if got, want := fast-probes, 2*(at100-probes); math.Abs(got-want) > 0.01 {
		t.Errorf("push-pull share with half the interval: %.1f B/node/s, want %.1f", got, want)
	}
	t.Logf("idle membership: %.0f B/node/s at any n (%.0f of it probes)", at100, probes)
}
