package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needChaosNet sets up namespaces for n agents, or skips the test saying why (not root,
// no ip command, namespaces refused); the namespaces are removed at cleanup, and a
// failed test leaves none behind either.
func needChaosNet(t *testing.T, n int) *chaosNet {
	t.Helper()
	c, why := setupChaosNet(n)
	if c == nil {
		t.Skipf("network-namespace faults need root and iproute2: %s", why)
	}
	t.Cleanup(func() {
		c.close()
		sweepChaosNets(true)
	})
	return c
}

// inNetns runs f on a thread moved into namespace ns; sockets f opens stay in ns (the
// thread is dropped after, never returned to the runtime in another namespace).
func inNetns(ns string, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		fd, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		f()
		errc <- nil
	}()
	return <-errc
}

// TestChaosNetns checks the namespaces the chaos workload runs agents in: the gossip
// link joins agents, the API link joins each agent to this process,
// link down cuts the gossip link both ways and up heals it, and nothing is left after,
// not even by a run whose process died (the sweep).
func TestChaosNetns(t *testing.T) {
	c := needChaosNet(t, 2)
	// A listener on each agent's gossip and API address, inside its namespace.
	for i := range 2 {
		for _, addr := range []string{c.gossipAddr(i), c.apiAddr(i)} {
			var ln net.Listener
			var lerr error
			if err := inNetns(c.ns(i), func() { ln, lerr = net.Listen("tcp", addr) }); err != nil {
				t.Fatal(err)
			}
			if lerr != nil {
				t.Fatal(lerr)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					conn.Close()
				}
			}()
		}
	}
	// A dial that must fail gives up sooner than one that must succeed.
	timeout := time.Second
	dial := func(from int, addr string) error {
		var derr error
		do := func() {
			var conn net.Conn
			if conn, derr = net.DialTimeout("tcp", addr, timeout); derr == nil {
				conn.Close()
			}
		}
		if from < 0 {
			do() // this process, in the host's namespace
			return derr
		}
		if err := inNetns(c.ns(from), do); err != nil {
			return err
		}
		return derr
	}
	for i := range 2 {
		if err := dial(-1, c.apiAddr(i)); err != nil {
			t.Fatalf("host to agent %d's API: %v", i, err)
		}
		if err := dial(1-i, c.gossipAddr(i)); err != nil {
			t.Fatalf("agent %d to agent %d's gossip: %v", 1-i, i, err)
		}
	}
	if err := c.linkDown(0, true); err != nil {
		t.Fatal(err)
	}
	timeout = 300 * time.Millisecond
	if err := dial(1, c.gossipAddr(0)); err == nil {
		t.Fatal("agent 1 reaches agent 0's gossip with its link down")
	}
	if err := dial(0, c.gossipAddr(1)); err == nil {
		t.Fatal("agent 0 reaches agent 1's gossip with its link down")
	}
	timeout = time.Second
	if err := dial(-1, c.apiAddr(0)); err != nil {
		t.Fatalf("agent 0's API with its gossip link down: %v", err)
	}
	if err := c.linkDown(0, false); err != nil {
		t.Fatal(err)
	}
	// The bridge port and the neighbour entries take a moment to come back.
	start := time.Now()
	var err error
	for err = dial(1, c.gossipAddr(0)); err != nil && time.Since(start) < 20*time.Second; err = dial(1, c.gossipAddr(0)) {
	}
	if err != nil {
		t.Fatalf("agent 1 to agent 0's gossip after the link came back: %v", err)
	}
	t.Logf("gossip link back %v after link up", time.Since(start).Round(time.Millisecond))
	if c.tbf {
		if err := c.qdisc(0, "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "100ms"); err != nil {
			t.Fatal(err)
		}
		if err := dial(1, c.gossipAddr(0)); err != nil {
			t.Fatalf("through a slow link: %v", err)
		}
		if err := c.qdisc(0); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("slow link not checked: %s", c.noSlow)
	}

	c.close()
	if left := chaosNetLeftovers(os.Getpid()); len(left) > 0 {
		t.Fatalf("left after close: %v", left)
	}

	// What a run that died left behind: a bridge named for a pid that no longer runs.
	dead := 0
	for pid := 4_000_000; pid > 1; pid-- {
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			dead = pid
			break
		}
	}
	name := fmt.Sprintf("%s%dd", chaosNetPrefix, dead)
	if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
	sweepChaosNets()
	if left := chaosNetLeftovers(dead); len(left) > 0 {
		t.Fatalf("a dead run's links left after the sweep: %v", left)
	}
}
