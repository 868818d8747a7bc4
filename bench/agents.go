package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// workdir returns dir, or a new temporary directory (removed by cleanup) when dir is empty,
// with the workload's schema written in it; the multi-node workloads all start this way.
func workdir(dir, prefix, schemaSQL string) (string, string, func(), error) {
	cleanup := func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", prefix)
		if err != nil {
			return "", "", cleanup, err
		}
		dir, cleanup = d, func() { os.RemoveAll(d) }
	}
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(schemaSQL), 0o600); err != nil {
		cleanup()
		return "", "", func() {}, err
	}
	return dir, schema, cleanup, nil
}

// quiet is logf, or a logger that drops everything when there is none.
func quiet(logf func(string, ...any)) func(string, ...any) {
	if logf == nil {
		return func(string, ...any) {}
	}
	return logf
}

// benchAgent is one spawned agent: a real process of the built binary. Every multi-node
// workload (cluster, chaos, write, schema) runs its agents through this file.
type benchAgent struct {
	bin, dir, schema   string
	api, gossip, quic  string
	bootstrap          []string
	cmd                *exec.Cmd
	done               chan struct{}
	out                *bytes.Buffer
	outMu              sync.Mutex
	cl                 *client.Client
	http               *http.Client
	site               log.SiteID
	startedAt, readyAt time.Time
	exitErr            error
	stopOnce           sync.Once
	clients            int
	// env is added to the agent's environment (PATINA_CPUPROFILE and friends).
	env []string
	// command, when set, makes the agent's process instead of exec.Command (the chaos
	// workload runs agents inside network namespaces this way).
	command func(bin string, args ...string) *exec.Cmd
	// extra are more agent flags; clp is cl for goroutines that run across restarts;
	// panicked is set when the agent's output shows a panic (chaos.go).
	extra    []string
	clp      atomic.Pointer[client.Client]
	panicked atomic.Bool
}

// client is the agent's API client, safe to call while the agent restarts.
func (a *benchAgent) client() *client.Client { return a.clp.Load() }

// running reports whether the agent process is up.
func (a *benchAgent) running() bool {
	if a.cmd == nil || a.done == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// startAgents starts n agents of bin, in dir/node<i>, on schema, each bootstrapping from all
// the others, and waits until they list each other as members. setup (nil for none) adjusts
// agent i before it starts. kill stops them all; it is safe to call after an error too.
func startAgents(ctx context.Context, bin, dir, schema string, n, clients int, setup func(i int, a *benchAgent)) ([]*benchAgent, func(), error) {
	agents := make([]*benchAgent, 0, n)
	kill := func() {
		for _, a := range agents {
			a.kill()
		}
	}
	ports := &portPicker{}
	for i := range n {
		a, err := newBenchAgent(bin, filepath.Join(dir, fmt.Sprintf("node%d", i)), schema, clients, ports)
		if err != nil {
			ports.release()
			return nil, kill, err
		}
		if setup != nil {
			setup(i, a)
		}
		agents = append(agents, a)
	}
	ports.release()
	for _, a := range agents {
		for _, o := range agents {
			if o != a {
				a.bootstrap = append(a.bootstrap, o.gossip)
			}
		}
	}
	for i, a := range agents {
		if err := a.start(ctx); err != nil {
			return nil, kill, fmt.Errorf("start node %d: %w", i, err)
		}
	}
	if n > 1 {
		if err := waitMembers(ctx, agents); err != nil {
			return nil, kill, err
		}
	}
	return agents, kill, nil
}

func newBenchAgent(bin, dir, schema string, clients int, ports *portPicker) (*benchAgent, error) {
	a := &benchAgent{bin: bin, dir: dir, schema: schema, out: &bytes.Buffer{}, site: log.NewSiteID(), clients: clients}
	var err error
	if a.api, err = ports.pick(true, false); err != nil {
		return nil, err
	}
	if a.gossip, err = ports.pick(true, true); err != nil {
		return nil, err
	}
	if a.quic, err = ports.pick(false, true); err != nil {
		return nil, err
	}
	a.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + 8, MaxConnsPerHost: clients + 8}}
	return a, nil
}

// portPicker hands out free 127.0.0.1 ports and holds them until release, so that the
// agents of one run never get the same port (memberlist needs TCP and UDP on one port).
type portPicker struct{ held []io.Closer }

func (p *portPicker) pick(tcp, udp bool) (string, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		if !tcp {
			// Only the number was wanted: hold it over UDP instead.
			ln.Close()
		} else {
			p.held = append(p.held, ln)
		}
		if udp {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				continue // UDP side taken: try another port
			}
			p.held = append(p.held, pc)
		}
		return addr, nil
	}
	return "", errors.New("no free port pair")
}

func (p *portPicker) release() {
	for _, c := range p.held {
		c.Close()
	}
	p.held = nil
}

func (a *benchAgent) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("panic:")) || bytes.Contains(p, []byte("fatal error:")) {
		a.panicked.Store(true)
	}
	a.outMu.Lock()
	defer a.outMu.Unlock()
	if a.out.Len() > 1<<20 {
		a.out.Reset() // keep the tail for error messages, not the whole run
	}
	return a.out.Write(p)
}

func (a *benchAgent) output() string {
	a.outMu.Lock()
	defer a.outMu.Unlock()
	s := a.out.String()
	if len(s) > 2048 {
		s = s[len(s)-2048:]
	}
	return s
}

// lines returns the lines of the agent's kept output (Write keeps up to 1 MiB) that contain any of
// words, the last 20 of them.
func (a *benchAgent) lines(words ...string) []string {
	a.outMu.Lock()
	defer a.outMu.Unlock()
	var out []string
	for _, l := range strings.Split(a.out.String(), "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return out[max(len(out)-20, 0):]
}

func (a *benchAgent) start(ctx context.Context) error {
	args := []string{"agent", "--data-dir", a.dir, "--site-id", a.site.String(), "--cluster-id", "bench",
		"--schema", a.schema, "--api-addr", a.api, "--gossip-addr", a.gossip, "--quic-addr", a.quic, "--log-level", "warn"}
	for _, b := range a.bootstrap {
		args = append(args, "--bootstrap", b)
	}
	args = append(args, a.extra...)
	if a.command != nil {
		a.cmd = a.command(a.bin, args...)
	} else {
		a.cmd = exec.Command(a.bin, args...)
	}
	a.cmd.Stdout, a.cmd.Stderr = a, a
	// The agents die with the workload: a bench killed (or its output pipe closed) must not
	// leave agents running, inside network namespaces or not. (Go keeps its threads, so
	// the signal comes when the process goes, not when a thread ends.)
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if len(a.env) > 0 {
		a.cmd.Env = append(os.Environ(), a.env...)
	}
	a.startedAt = time.Now()
	if err := a.cmd.Start(); err != nil {
		return err
	}
	a.done = make(chan struct{})
	a.stopOnce = sync.Once{}
	cmd, done := a.cmd, a.done
	go func() { a.exitErr = cmd.Wait(); close(done) }()
	cl, err := client.New(a.api, client.WithHTTPClient(a.http))
	if err != nil {
		return err
	}
	a.cl = cl
	a.clp.Store(cl)
	var herr error
	err = poll(ctx, 60*time.Second, 5*time.Millisecond, func() (bool, error) {
		select {
		case <-done:
			return false, fmt.Errorf("agent exited: %v\n%s", a.exitErr, a.output())
		default:
		}
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		_, herr = cl.Health(hctx, nil)
		cancel()
		return herr == nil, nil
	})
	if errors.Is(err, errPollTimeout) {
		return fmt.Errorf("agent not healthy after 60s: %v\n%s", herr, a.output())
	}
	if err == nil {
		a.readyAt = time.Now()
	}
	return err
}

// stop sends SIGTERM (graceful) and waits.
func (a *benchAgent) stop() error {
	if a.cmd == nil || a.done == nil {
		return nil
	}
	select {
	case <-a.done:
		return nil
	default:
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-a.done:
		return nil
	case <-time.After(60 * time.Second):
		a.kill()
		return errors.New("agent did not stop within 60s")
	}
}

func (a *benchAgent) kill() {
	if a.cmd == nil || a.done == nil {
		return
	}
	a.stopOnce.Do(func() {
		_ = a.cmd.Process.Kill()
		<-a.done
	})
}

func waitMembers(ctx context.Context, agents []*benchAgent) error {
	err := poll(ctx, 60*time.Second, 10*time.Millisecond, func() (bool, error) {
		for _, a := range agents {
			ms, err := a.cl.Members(ctx)
			alive := 0
			for _, m := range ms {
				if m.State == "alive" {
					alive++
				}
			}
			if err != nil || alive != len(agents) {
				return false, nil
			}
		}
		return true, nil
	})
	if errors.Is(err, errPollTimeout) {
		return errors.New("agents did not see each other within 60s")
	}
	return err
}

// errPollTimeout is poll's answer when cond never held before the timeout.
var errPollTimeout = errors.New("timed out")

// poll calls cond every interval until it reports done or an error, ctx ends, or timeout
// passes (errPollTimeout). The workloads wait on other processes (agents starting, joining,
// catching up) that have no event to wait on but their HTTP answers.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := cond()
		if done || err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errPollTimeout
		}
		time.Sleep(interval) // polling interval, not synchronization: cond decides
	}
}
