package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// The chaos workload's network faults through the kernel (chaos.go), as root: every agent
// runs in a network namespace of its own, with two links to the host:
//
//   - mgmt0, on a bridge the host has an address on: the agent's HTTP API, which the
//     workload's writers and checks use, so a node cut from its peers still takes writes;
//   - data0, on a second bridge without a host address: the agent's memberlist and QUIC
//     addresses, the only path between agents.
//
// The faults act on data0's two ends: its host end set down (a partition: the node's
// gossip reaches no peer and no peer reaches it, while its API answers), netem loss and
// delay (when the kernel has sch_netem), a slow link (a token bucket, tbf, at 1 Mbit/s,
// dropping what waits over 100 ms). Each node gets its own addresses (10.222.X.10+i for
// the API, 10.223.X.10+i for gossip), so the ports inside a namespace are fixed.
//
// Every name starts with "ptc<pid>" (interface names are at most 15 bytes): close removes
// this run's, and sweepChaosNets removes what a run that died (kill -9, a test binary
// timing out) left, recognised by a pid that no longer runs.

// chaosNetPrefix starts every namespace and link name of the chaos workload.
const chaosNetPrefix = "ptc"

// The ports each agent binds inside its namespace, on its own addresses.
const (
	chaosNetAPIPort    = 8080
	chaosNetGossipPort = 7946
	chaosNetQUICPort   = 7947
)

// chaosNet is one run's namespaces and links.
type chaosNet struct {
	prefix string // ptc<pid>
	x      int    // the third byte of both subnets
	n      int
	// netem and tbf: whether the kernel has the qdisc (probed at setup); why, if not.
	netem, tbf       bool
	noNetem, noSlow  string
	created          []string // namespaces made, for close
	bridges, hostEnd []string // links made in the host namespace, for close
}

// ip runs the ip command (or tc, with name "tc") and returns its error with its output.
func chaosIP(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setupChaosNet makes namespaces and links for n agents, or says why it cannot (not
// root, no ip command, namespaces refused): the caller then runs without them.
func setupChaosNet(n int) (*chaosNet, string) {
	if os.Geteuid() != 0 {
		return nil, "network namespaces need root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, "no ip command (iproute2)"
	}
	sweepChaosNets()
	pid := os.Getpid()
	c := &chaosNet{prefix: fmt.Sprintf("%s%d", chaosNetPrefix, pid), n: n}
	// A subnet no address of the host is in (two runs at once: their pids differ).
	c.x = -1
	addrs, _ := exec.Command("ip", "-o", "-4", "addr").Output()
	for k := range 256 {
		x := (pid + k) % 256
		if !strings.Contains(string(addrs), fmt.Sprintf(" 10.222.%d.", x)) {
			c.x = x
			break
		}
	}
	if c.x < 0 {
		return nil, "no free 10.222.X.0/24 subnet"
	}
	if err := c.setup(); err != nil {
		c.close()
		return nil, fmt.Sprintf("network namespaces refused: %v", err)
	}
	return c, ""
}

func (c *chaosNet) ns(i int) string       { return fmt.Sprintf("%sn%d", c.prefix, i) }
func (c *chaosNet) dataHost(i int) string { return fmt.Sprintf("%sd%d", c.prefix, i) }

// apiAddr and gossipAddr, quicAddr are agent i's addresses.
func (c *chaosNet) apiAddr(i int) string {
	return fmt.Sprintf("10.222.%d.%d:%d", c.x, 10+i, chaosNetAPIPort)
}
func (c *chaosNet) gossipAddr(i int) string {
	return fmt.Sprintf("10.223.%d.%d:%d", c.x, 10+i, chaosNetGossipPort)
}
func (c *chaosNet) quicAddr(i int) string {
	return fmt.Sprintf("10.223.%d.%d:%d", c.x, 10+i, chaosNetQUICPort)
}

func (c *chaosNet) setup() error {
	mgmt, data := c.prefix+"m", c.prefix+"d"
	for _, br := range []string{mgmt, data} {
		if err := chaosIP("ip", "link", "add", br, "type", "bridge"); err != nil {
			return err
		}
		c.bridges = append(c.bridges, br)
		if err := chaosIP("ip", "link", "set", br, "up"); err != nil {
			return err
		}
	}
	if err := chaosIP("ip", "addr", "add", fmt.Sprintf("10.222.%d.1/24", c.x), "dev", mgmt); err != nil {
		return err
	}
	for i := range c.n {
		ns := c.ns(i)
		if err := chaosIP("ip", "netns", "add", ns); err != nil {
			return err
		}
		c.created = append(c.created, ns)
		cmds := [][]string{{"-n", ns, "link", "set", "lo", "up"}}
		for _, l := range []struct {
			host, inner, bridge string
			subnet              int
		}{{fmt.Sprintf("%sm%d", c.prefix, i), "mgmt0", mgmt, 222}, {c.dataHost(i), "data0", data, 223}} {
			c.hostEnd = append(c.hostEnd, l.host)
			cmds = append(cmds,
				[]string{"link", "add", l.host, "type", "veth", "peer", "name", l.inner, "netns", ns},
				[]string{"link", "set", l.host, "master", l.bridge, "up"},
				[]string{"-n", ns, "addr", "add", fmt.Sprintf("10.%d.%d.%d/24", l.subnet, c.x, 10+i), "dev", l.inner},
				[]string{"-n", ns, "link", "set", l.inner, "up"})
		}
		for _, args := range cmds {
			if err := chaosIP("ip", args...); err != nil {
				return err
			}
		}
	}
	// Which qdiscs the kernel has (sch_netem is often a module a container cannot load).
	if _, err := exec.LookPath("tc"); err != nil {
		c.noNetem, c.noSlow = "no tc command (iproute2)", "no tc command (iproute2)"
		return nil
	}
	probe := func(q ...string) string {
		out, err := exec.Command("ip", append([]string{"netns", "exec", c.ns(0), "tc", "qdisc", "add", "dev", "lo", "root"}, q...)...).CombinedOutput()
		if err != nil {
			return fmt.Sprintf("tc qdisc add ... %s refused (%s)", q[0], strings.TrimSpace(string(out)))
		}
		_ = chaosIP("ip", "netns", "exec", c.ns(0), "tc", "qdisc", "del", "dev", "lo", "root")
		return ""
	}
	c.noNetem = probe("netem", "delay", "1ms")
	c.noSlow = probe("tbf", "rate", "1mbit", "burst", "32kbit", "latency", "100ms")
	c.netem, c.tbf = c.noNetem == "", c.noSlow == ""
	return nil
}

// command is bin args... run inside agent i's namespace (ip netns exec execs it: the
// process's pid is the agent's, for signals and kill -9).
func (c *chaosNet) command(i int, bin string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", c.ns(i), bin}, args...)...)
}

// linkDown cuts agent i's gossip link (up heals it).
func (c *chaosNet) linkDown(i int, down bool) error {
	state := "up"
	if down {
		state = "down"
	}
	return chaosIP("ip", "link", "set", c.dataHost(i), state)
}

// qdisc puts a queueing discipline on both ends of agent i's gossip link (each end shapes
// what it sends: the agent's sending and its receiving), or removes it when q is empty.
func (c *chaosNet) qdisc(i int, q ...string) error {
	var errs []error
	for _, end := range []struct {
		prefix []string
		dev    string
	}{{nil, c.dataHost(i)}, {[]string{"netns", "exec", c.ns(i), "tc"}, "data0"}} {
		args := append(end.prefix, "qdisc")
		if len(q) == 0 {
			args = append(args, "del", "dev", end.dev, "root")
		} else {
			args = append(append(args, "replace", "dev", end.dev, "root"), q...)
		}
		name := "tc"
		if end.prefix != nil {
			name = "ip"
		}
		errs = append(errs, chaosIP(name, args...))
	}
	return errors.Join(errs...)
}

// close removes this run's namespaces and links; the agents must be stopped first.
func (c *chaosNet) close() {
	for _, ns := range c.created {
		_ = chaosIP("ip", "netns", "del", ns)
	}
	// Deleting a namespace deletes its veth pairs; a pair whose namespace was never made
	// is removed from its host end.
	for _, l := range c.hostEnd {
		if linkExists(l) {
			_ = chaosIP("ip", "link", "del", l)
		}
	}
	for _, br := range c.bridges {
		_ = chaosIP("ip", "link", "del", br)
	}
	c.created, c.hostEnd, c.bridges = nil, nil, nil
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", name).Run() == nil
}

// chaosNetName matches the names this file makes: the prefix, the pid, the kind.
var chaosNetName = regexp.MustCompile(`^` + chaosNetPrefix + `(\d+)[nmd]\d*$`)

// sweepChaosNets removes the namespaces and links of chaos runs whose process is gone
// (and, with own, this process's too: a test's cleanup after a failure).
func sweepChaosNets(own ...bool) {
	self := os.Getpid()
	stale := func(name string) bool {
		m := chaosNetName.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil {
			return false
		}
		if pid == self {
			return len(own) > 0 && own[0]
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && stale(f[0]) {
				_ = chaosIP("ip", "netns", "del", f[0])
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			// "7: ptc123d0@if2: <...>": the name, without the peer's index.
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if stale(name) && linkExists(name) { // a veth goes with its peer's namespace
				_ = chaosIP("ip", "link", "del", name)
			}
		}
	}
}

// chaosNetLeftovers lists the namespaces and links of this file's names that exist now
// (tests check a run leaves none).
func chaosNetLeftovers(pid int) []string {
	var out []string
	prefix := fmt.Sprintf("%s%d", chaosNetPrefix, pid)
	mine := func(name string) bool {
		m := chaosNetName.FindStringSubmatch(name)
		return m != nil && m[1] == strconv.Itoa(pid) && strings.HasPrefix(name, prefix)
	}
	if b, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 && mine(f[0]) {
				out = append(out, "netns "+f[0])
			}
		}
	}
	if b, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 {
				name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
				if mine(name) {
					out = append(out, "link "+name)
				}
			}
		}
	}
	return out
}
