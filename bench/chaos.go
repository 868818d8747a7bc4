package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// The chaos workload (issue 12): real agent processes under faults while every node takes
// writes, then the invariants a replicated log must keep. Faults, one at a time, each healed
// before the next (the seed fixes their order and targets):
//
//   - kill -9 of an agent, restarted at the next step;
//   - SIGTERM restart;
//   - loss and delay (30% dropped, 50 ms ± 20 ms) on one agent's gossip to every peer,
//     through the [gossip.fault] hook re-read on SIGHUP;
//   - a partition: one agent blocks all its gossip traffic, both ways;
//   - a damaged log file: an agent is stopped, 64 bytes of its largest Pebble table file
//     are overwritten (where the log still opens: the keys read at start are not
//     repairable), it restarts, and an online backup reads its whole log, which meets the
//     damage: the agent repairs itself and takes the dropped versions back from peers;
//   - disk full (root only: node 0's data dir is then on a tmpfs): the tmpfs shrinks to
//     what it holds plus half of db.min_free_bytes, writes on that node are refused (507,
//     not acknowledged) until it grows back. Without root the kind is left out, and the
//     run says so;
//   - through the kernel's network stack, as root (chaos_netns.go: every agent in a network
//     namespace of its own, its gossip on a veth link to a bridge, its API on another):
//     link down (the node's gossip link set down: a partition while its API takes writes),
//     netem loss and delay (30%, 50 ms ± 20 ms, both ways, when the kernel has sch_netem)
//     and a slow link (a token bucket at 1 Mbit/s both ways, dropping what waits over
//     100 ms). Without root or namespaces, or without the qdisc, the kind is left out, and
//     the run says so.
//
// Invariants checked once the faults end: every acknowledged write is present on every node
// (each write inserts a row with a unique id; rows of a small hot table are overwritten
// concurrently on purpose and only compared across nodes, being legitimately superseded),
// identical dumps and heads on every node, 0 gaps, no damage left (health's corruption empty,
// nothing dropped by a repair still missing), and no panic in any agent's output.

const chaosSchema = `CREATE TABLE chaos (id INTEGER PRIMARY KEY NOT NULL, node INTEGER, val TEXT);
CREATE TABLE hot (k INTEGER PRIMARY KEY NOT NULL, node INTEGER, val INTEGER);
`

// ChaosKinds are the fault kinds; the last four need root (and the kernel's support).
var ChaosKinds = []string{"kill -9", "sigterm restart", "loss and delay", "partition", "damaged log file",
	"link down", "netem loss and delay", "slow link", "disk full"}

// ChaosConfig configures RunChaos.
type ChaosConfig struct {
	Binary   string        // the patina binary to spawn
	Nodes    int           // agents
	Duration time.Duration // time under faults
	Step     time.Duration // time between faults (each heals the previous one)
	Seed     uint64
	// Kinds, when set, are the faults in the order they come (cycling, each at least once
	// even past Duration), instead of the seed's random draw; the seed still picks the
	// nodes. Short runs use it to meet every kind. A kind the machine cannot make is
	// left out (the result says why).
	Kinds []string
	// StepWrites, when set, ends a step early, once every node the fault leaves able to
	// write has acknowledged this many writes since the fault began (Step still bounds
	// it): a short run then spends its time on faults met by writes, not on waiting.
	StepWrites int
	// Converge bounds the wait for convergence once the faults end.
	Converge time.Duration
	Dir      string // data dirs (default: a temp dir, removed after)
	// NoNetns runs the agents on 127.0.0.1 even as root (no network namespaces: the
	// kernel-network kinds are left out).
	NoNetns bool
	Logf    func(format string, args ...any)
}

// DefaultChaosConfig is `patina bench chaos` without flags.
func DefaultChaosConfig() ChaosConfig {
	return ChaosConfig{Nodes: 3, Duration: time.Minute, Step: 3 * time.Second, Seed: 1, Converge: 2 * time.Minute}
}

// Validate checks the configuration.
func (c *ChaosConfig) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("chaos: no binary")
	case c.Nodes < 2 || c.Nodes > 9:
		return fmt.Errorf("chaos: --nodes %d: want 2 to 9", c.Nodes)
	case c.Duration <= 0:
		return fmt.Errorf("chaos: --duration %v: want > 0", c.Duration)
	case c.Step < 500*time.Millisecond:
		return fmt.Errorf("chaos: --step %v: want at least 500ms", c.Step)
	case c.Converge <= 0:
		return fmt.Errorf("chaos: --converge %v: want > 0", c.Converge)
	}
	for _, k := range c.Kinds {
		if !slices.Contains(ChaosKinds, k) {
			return fmt.Errorf("chaos: fault kind %q: want one of %s", k, strings.Join(ChaosKinds, ", "))
		}
	}
	return nil
}

// ChaosResult is what a chaos run measured.
type ChaosResult struct {
	Acknowledged int            // writes acknowledged (HTTP 200)
	Failed       int            // writes refused or unanswered (not acknowledged: no promise)
	Lost         int            // acknowledged writes missing on some node after healing
	Faults       map[string]int // faults injected, by kind
	Converge     time.Duration  // from the end of the faults to identical dumps, heads, gaps 0
	Rows, Hot    int            // rows of each table after convergence
	Panics       []string       // agents whose output shows a panic
	Repairs      int            // damaged-file faults the node repaired (seen in its metrics)
	DiskFullSeen int            // disk-full faults the node's health reported
	Skipped      []string       // fault kinds left out, and why
	Netns        bool           // the agents ran in network namespaces
}

func (r ChaosResult) String() string {
	kinds := make([]string, 0, len(r.Faults))
	for k, n := range r.Faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	out := fmt.Sprintf("acknowledged %d, failed %d (unacknowledged), lost %d; faults: %s; converged %.2fs after the faults ended (%d rows, %d hot rows); log repairs %d; disk full reported %d; panics: %d",
		r.Acknowledged, r.Failed, r.Lost, strings.Join(kinds, ", "), r.Converge.Seconds(), r.Rows, r.Hot, r.Repairs, r.DiskFullSeen, len(r.Panics))
	if r.Netns {
		out += "; agents in network namespaces"
	}
	if len(r.Skipped) > 0 {
		out += "; left out: " + strings.Join(r.Skipped, "; ")
	}
	return out
}

// Err is nil when every invariant held.
func (r ChaosResult) Err() error {
	var errs []error
	if r.Lost > 0 {
		errs = append(errs, fmt.Errorf("%d acknowledged writes lost", r.Lost))
	}
	if len(r.Panics) > 0 {
		errs = append(errs, fmt.Errorf("panics in %s", strings.Join(r.Panics, ", ")))
	}
	if r.Acknowledged == 0 {
		errs = append(errs, errors.New("no write was acknowledged"))
	}
	return errors.Join(errs...)
}

// RunChaos runs the chaos workload; an error means the run could not be made or the
// cluster did not converge (invariant failures are in the result: see ChaosResult.Err).
func RunChaos(ctx context.Context, cfg ChaosConfig) (res ChaosResult, err error) {
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	logf := quiet(cfg.Logf)
	dir, schema, cleanup, err := workdir(cfg.Dir, "patina-bench-chaos-", chaosSchema)
	if err != nil {
		return res, err
	}
	defer cleanup()
	cfgPath := func(i int) string { return filepath.Join(dir, fmt.Sprintf("node%d.toml", i)) }
	for i := range cfg.Nodes {
		if err := os.WriteFile(cfgPath(i), []byte("[gossip.fault]\nenabled = true\n"), 0o600); err != nil {
			return res, err
		}
	}
	// The kinds this run can make, and why the others are left out.
	skip := map[string]string{}
	leaveOut := func(why string, kinds ...string) {
		for _, k := range kinds {
			skip[k] = why
			res.Skipped = append(res.Skipped, k+": "+why)
		}
		logf("bench chaos: %s left out: %s", strings.Join(kinds, ", "), why)
	}
	// Node 0's data on a small tmpfs, for the disk-full fault (root only).
	tmpfs, why := mountChaosTmpfs(filepath.Join(dir, "tmpfs"))
	if tmpfs == "" {
		leaveOut(why, "disk full")
	} else {
		defer unmountChaosTmpfs(tmpfs)
	}
	// Each agent in a network namespace (root only); removed after the agents stop (the
	// deferred kill runs first).
	var netns *chaosNet
	if cfg.NoNetns {
		leaveOut("--netns=false", "link down", "netem loss and delay", "slow link")
	} else if netns, why = setupChaosNet(cfg.Nodes); netns == nil {
		leaveOut(why, "link down", "netem loss and delay", "slow link")
	} else {
		defer netns.close()
		res.Netns = true
		if !netns.netem {
			leaveOut(netns.noNetem, "netem loss and delay")
		}
		if !netns.tbf {
			leaveOut(netns.noSlow, "slow link")
		}
	}
	leftOut := func(k string) bool { return skip[k] != "" }
	kinds := slices.DeleteFunc(slices.Clone(ChaosKinds), leftOut)
	order := slices.DeleteFunc(slices.Clone(cfg.Kinds), leftOut)
	agents, kill, err := startAgents(ctx, cfg.Binary, dir, schema, cfg.Nodes, 2, func(i int, a *benchAgent) {
		a.extra = []string{"--config", cfgPath(i), "--gossip-sync-interval", "1s"}
		if i == 0 && tmpfs != "" {
			a.dir = filepath.Join(tmpfs, "node0")
		}
		if netns != nil {
			a.api, a.gossip, a.quic = netns.apiAddr(i), netns.gossipAddr(i), netns.quicAddr(i)
			a.command = func(bin string, args ...string) *exec.Cmd { return netns.command(i, bin, args...) }
		}
	})
	defer kill()
	if err != nil {
		return res, err
	}
	logf("bench chaos: %d agents up in %s (seed %d)", len(agents), dir, cfg.Seed)
	setFaults := func(i int, rule string) error {
		body := "[gossip.fault]\nenabled = true\n"
		if rule != "" {
			var peers []string
			for j, o := range agents {
				if j != i {
					peers = append(peers, fmt.Sprintf("%q", o.gossip), fmt.Sprintf("%q", o.quic))
				}
			}
			body += fmt.Sprintf("[[gossip.fault.rules]]\npeers = [%s]\n%s\n", strings.Join(peers, ", "), rule)
		}
		if err := os.WriteFile(cfgPath(i), []byte(body), 0o600); err != nil {
			return err
		}
		if agents[i].running() {
			return agents[i].cmd.Process.Signal(syscall.SIGHUP)
		}
		return nil
	}

	// Writers: one per node, each write a transaction of a unique row and an upsert of a
	// hot row that every node overwrites.
	var (
		mu     sync.Mutex
		acked  = map[int64]string{}
		failed atomic.Int64
		byNode = make([]atomic.Int64, len(agents)) // acknowledged, per node
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters()
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
			for n := int64(1); ; n++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				id := int64(i)<<40 | n
				val := fmt.Sprintf("n%d-%d", i, n)
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := a.client().Exec(wctx, client.Options{},
					client.Stmt("INSERT INTO chaos (id, node, val) VALUES (?, ?, ?)", id, i, val),
					client.Stmt("INSERT INTO hot (k, node, val) VALUES (?, ?, ?) ON CONFLICT(k) DO UPDATE SET node = excluded.node, val = excluded.val", rng.IntN(8), i, n))
				cancel()
				if err != nil {
					failed.Add(1)
					select { // a node that is down: do not spin
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					continue
				}
				mu.Lock()
				acked[id] = val
				mu.Unlock()
				byNode[i].Add(1)
			}
		}()
	}

	// Faults.
	res.Faults = map[string]int{}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc4a05))
	var heal func() error
	step := 0
	end := time.Now().Add(cfg.Duration)
	// With Kinds set, every kind comes at least once, however slow the steps were.
	for (time.Now().Before(end) || step < len(order)) && ctx.Err() == nil {
		if heal != nil {
			if err := heal(); err != nil {
				stopWriters()
				return res, err
			}
			heal = nil
		}
		i := rng.IntN(len(agents))
		kind := kinds[rng.IntN(len(kinds))]
		if len(order) > 0 {
			kind = order[step%len(order)]
		}
		step++
		if kind == "disk full" {
			i = 0 // the node on the tmpfs
		}
		a := agents[i]
		switch kind {
		case "kill -9":
			a.kill()
			heal = func() error { return a.start(ctx) }
			res.Faults[kind]++
		case "sigterm restart":
			if err := a.stop(); err != nil {
				logf("bench chaos: node %d: %v", i, err)
			}
			if err := a.start(ctx); err != nil {
				stopWriters()
				return res, fmt.Errorf("restart node %d: %w", i, err)
			}
			res.Faults[kind]++
		case "loss and delay":
			if err := setFaults(i, "drop = 0.3\ndelay = \"50ms\"\njitter = \"20ms\""); err != nil {
				return res, err
			}
			heal = func() error { return setFaults(i, "") }
			res.Faults[kind]++
		case "partition":
			if err := setFaults(i, "block = true"); err != nil {
				return res, err
			}
			heal = func() error { return setFaults(i, "") }
			res.Faults[kind]++
		case "damaged log file":
			if err := a.stop(); err != nil {
				logf("bench chaos: node %d: %v", i, err)
			}
			damaged, err := damageLog(filepath.Join(a.dir, "log"), rng)
			if errors.Is(err, errNoDamage) {
				logf("bench chaos: node %d: no log damage made: %v", i, err)
				err = nil
			}
			if err != nil {
				stopWriters()
				return res, fmt.Errorf("damage node %d's log: %w", i, err)
			}
			if err := a.start(ctx); err != nil {
				stopWriters()
				return res, fmt.Errorf("restart node %d with a damaged log: %w", i, err)
			}
			if damaged {
				// A reader of the whole log meets the damage (as a peer's catch-up would),
				// and the node repairs itself; counted here, as a restart resets its metrics.
				readBackup(ctx, a.client())
				res.Faults[kind]++
				if waitRepair(ctx, a.client(), 10*time.Second) {
					res.Repairs++
				} else {
					logf("bench chaos: node %d: the backup did not meet the damage (keys it does not read)", i)
				}
			}
		case "link down":
			if err := netns.linkDown(i, true); err != nil {
				stopWriters()
				return res, err
			}
			heal = func() error { return netns.linkDown(i, false) }
			res.Faults[kind]++
		case "netem loss and delay", "slow link":
			q := []string{"netem", "loss", "30%", "delay", "50ms", "20ms"}
			if kind == "slow link" {
				q = []string{"tbf", "rate", "1mbit", "burst", "32kbit", "latency", "100ms"}
			}
			if err := netns.qdisc(i, q...); err != nil {
				stopWriters()
				return res, err
			}
			heal = func() error { return netns.qdisc(i) }
			res.Faults[kind]++
		case "disk full":
			if err := shrinkDisk(tmpfs, chaosMinFree/2); err != nil {
				stopWriters()
				return res, fmt.Errorf("fill node 0's disk: %w", err)
			}
			heal = func() error { return growDisk(tmpfs) }
			// Met by the node's writes: its health says so (counted; the wait is longer
			// than a step only when the node is slow to write, on a loaded machine).
			if waitDiskFull(ctx, a.client(), max(cfg.Step, 10*time.Second)) {
				res.DiskFullSeen++
			}
			res.Faults[kind]++
		}
		logf("bench chaos: %s on node %d", kind, i)
		waitStep(ctx, cfg, byNode, i, kind)
	}
	if heal != nil {
		if err := heal(); err != nil {
			stopWriters()
			return res, err
		}
	}
	faultsEnd := time.Now()
	stopWriters()
	res.Acknowledged, res.Failed = len(acked), int(failed.Load())
	logf("bench chaos: faults over; %d writes acknowledged, %d failed; waiting for convergence", res.Acknowledged, res.Failed)

	// Convergence: identical heads and data everywhere, 0 gaps. The time is taken with a
	// summary of the data (counts and sums, the hot rows), as whole dumps of a long run's
	// rows take seconds each and would be counted as convergence time; the whole dumps are
	// then compared once (and polled again, the time with them, if they differ).
	var last string
	converged := func(full bool) (bool, error) {
		var data0, heads0 string
		for j, a := range agents {
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			h, err := a.client().Health(qctx, nil)
			if err != nil || h.Gaps != 0 || h.Corruption != "" || h.DiskFull {
				cancel()
				last = fmt.Sprintf("node %d: health %+v, %v", j, h, err)
				return false, nil
			}
			st, err := a.client().SyncState(qctx)
			if err != nil {
				cancel()
				last = fmt.Sprintf("node %d: sync state: %v", j, err)
				return false, nil
			}
			heads := fmt.Sprint(sortedHeads(st.Heads))
			d, err := chaosSummary(qctx, a.client())
			if full && err == nil {
				d, err = chaosDump(qctx, a.client())
			}
			cancel()
			if err != nil {
				last = fmt.Sprintf("node %d: data: %v", j, err)
				return false, nil
			}
			if j == 0 {
				data0, heads0 = d, heads
			} else if d != data0 || heads != heads0 {
				last = fmt.Sprintf("node %d differs from node 0 (heads %s vs %s)", j, heads, heads0)
				return false, nil
			}
		}
		return true, nil
	}
	err = poll(ctx, cfg.Converge, 100*time.Millisecond, func() (bool, error) { return converged(false) })
	if err == nil {
		res.Converge = time.Since(faultsEnd)
		if ok, _ := converged(true); !ok {
			err = poll(ctx, cfg.Converge, 100*time.Millisecond, func() (bool, error) { return converged(true) })
			res.Converge = time.Since(faultsEnd)
		}
	}
	if err != nil {
		// What the agents said of damage and repairs tells why a node stayed unhealthy.
		var said strings.Builder
		for j, a := range agents {
			for _, l := range a.lines("corrupt", "repair") {
				fmt.Fprintf(&said, "\n  node %d: %s", j, l)
			}
		}
		return res, fmt.Errorf("no convergence within %v after the faults: %s (%w)%s", cfg.Converge, last, err, said.String())
	}

	// Every acknowledged write, on every node.
	for j, a := range agents {
		_, rows, err := a.client().QueryAll(ctx, client.Options{}, client.Stmt("SELECT id, val FROM chaos"))
		if err != nil {
			return res, fmt.Errorf("node %d: read rows: %w", j, err)
		}
		have := make(map[int64]string, len(rows))
		for _, r := range rows {
			have[r[0].Int] = r[1].Text
		}
		lost := 0
		for id, val := range acked {
			if have[id] != val {
				lost++
			}
		}
		res.Lost = max(res.Lost, lost)
		if j == 0 {
			res.Rows = len(rows)
			if _, hot, err := a.client().QueryAll(ctx, client.Options{}, client.Stmt("SELECT k FROM hot")); err == nil {
				res.Hot = len(hot)
			}
		}
	}
	for j, a := range agents {
		if a.panicked.Load() {
			res.Panics = append(res.Panics, fmt.Sprintf("node %d", j))
		}
	}
	return res, nil
}

// waitStep lets fault kind on node i last cfg.Step, or, with cfg.StepWrites, until every
// node it leaves able to write has acknowledged that many writes since it began.
func waitStep(ctx context.Context, cfg ChaosConfig, byNode []atomic.Int64, i int, kind string) {
	base := make([]int64, len(byNode))
	for j := range byNode {
		base[j] = byNode[j].Load()
	}
	_ = poll(ctx, cfg.Step, 20*time.Millisecond, func() (bool, error) {
		if cfg.StepWrites <= 0 {
			return false, nil
		}
		for j := range byNode {
			down := j == i && (kind == "kill -9" || kind == "disk full") // cannot acknowledge
			if !down && byNode[j].Load()-base[j] < int64(cfg.StepWrites) {
				return false, nil
			}
		}
		return true, nil
	})
}

func sortedHeads(h map[log.SiteID]log.Version) []string {
	out := make([]string, 0, len(h))
	for s, v := range h {
		out = append(out, fmt.Sprintf("%v=%d", s, v))
	}
	slices.Sort(out)
	return out
}

// chaosSummary is a node's data in brief: the unique rows' count and sums, the hot rows.
func chaosSummary(ctx context.Context, cl *client.Client) (string, error) {
	return chaosRows(ctx, cl, "SELECT count(*), total(id), total(node), total(length(val)) FROM chaos", "SELECT k, node, val FROM hot ORDER BY k")
}

// chaosDump is a node's whole data, in a comparable form.
func chaosDump(ctx context.Context, cl *client.Client) (string, error) {
	return chaosRows(ctx, cl, "SELECT id, node, val FROM chaos ORDER BY id", "SELECT k, node, val FROM hot ORDER BY k")
}

// chaosRows runs queries on a node and returns their rows, one line each.
func chaosRows(ctx context.Context, cl *client.Client, queries ...string) (string, error) {
	var b strings.Builder
	for _, q := range queries {
		_, rows, err := cl.QueryAll(ctx, client.Options{}, client.Stmt(q))
		if err != nil {
			return "", err
		}
		for _, r := range rows {
			fmt.Fprintln(&b, r)
		}
	}
	return b.String(), nil
}
