package bench

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the plain-SQLite baseline
)

// WriteConfig configures the write-path workload (issue 14): batched writes replicated over a
// real cluster, the rebuild of one node's view from its log, and the same run's plain-SQLite
// baseline on the same disk, so that every figure is printed as a ratio to a baseline that
// saw the same machine load.
type WriteConfig struct {
	// Binary is the patina executable to spawn (`patina bench write` passes itself).
	Binary string
	// Nodes is how many agents to start.
	Nodes int
	// Clients is the number of concurrent HTTP writers, spread round robin over the nodes.
	Clients int
	// Rows is the rows per transaction (one INSERT of Rows rows of 5 columns).
	Rows int
	// Duration is how long the clients write; the baseline runs as long.
	Duration time.Duration
	// SingleClients, when positive, adds the single-row phase after the batches: that many
	// HTTP clients, spread over the nodes, post one single-row INSERT per transaction for
	// Duration (the 32 clients), beside a baseline of single-row transactions of
	// plain SQLite in the same run.
	SingleClients int
	// Rebuild, when set, stops the last node after replication and rebuilds its view with
	// `patina rebuild`.
	Rebuild bool
	// ProfileDir, when set, receives a CPU and an allocation profile of every agent
	// (node<i>.cpu.pprof, node<i>.allocs.pprof) and of the rebuild.
	ProfileDir string
	// Dir holds the agents' data and the baseline's file; empty means a temp dir, removed
	// after.
	Dir string
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

// DefaultWriteConfig is the shape: 3 nodes, 8 clients, 100-row transactions, 10 s,
// then 32 clients of single-row transactions.
func DefaultWriteConfig() WriteConfig {
	return WriteConfig{Nodes: 3, Clients: 8, Rows: 100, Duration: 10 * time.Second, SingleClients: 32, Rebuild: true}
}

// Validate reports the first problem of c.
func (c *WriteConfig) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("bench write: no patina binary")
	case c.Nodes < 1:
		return fmt.Errorf("bench write: %d nodes; want at least 1", c.Nodes)
	case c.Clients <= 0:
		return errors.New("bench write: clients must be positive")
	case c.SingleClients < 0:
		return errors.New("bench write: single-row clients must be 0 (no single-row phase) or more")
	case c.Rows <= 0 || c.Rows > 5000:
		return fmt.Errorf("bench write: rows %d; want 1..5000", c.Rows)
	case c.Duration <= 0:
		return errors.New("bench write: duration must be positive")
	}
	return nil
}

// WriteResult is what the write workload measured.
type WriteResult struct {
	Nodes, Clients, RowsPerTx int

	// Baseline: one connection of modernc SQLite, WAL, synchronous=FULL, transactions of
	// RowsPerTx single-row INSERTs through one prepared statement, same rows, same disk.
	BaselineRows    int
	BaselineRowsSec float64
	// BaselineCPUPerRow is this process's CPU (user + system) per baseline row: on a shared
	// machine the CPU figures compare where the rates cannot.
	BaselineCPUPerRow time.Duration

	// Replication: rows acknowledged by the nodes during Duration, and the time from the
	// first write to the last node holding every one of them.
	Rows           int
	AckRowsSec     float64
	ReplicatedTime time.Duration
	ReplicatedSec  float64 // rows/s replicated to every node
	TxP50, TxP99   time.Duration
	// CPU of all agents together (user + system) from the first write to full replication,
	// per replicated row.
	CPUPerRow time.Duration
	CPUTotal  time.Duration

	// Single-row phase (SingleClients > 0): transactions of one row acknowledged by the
	// nodes, their rate, latency and the agents' CPU per transaction (until every node holds
	// them); beside plain SQLite's single-row transactions (WAL, synchronous=FULL, one
	// connection) in the same run.
	SingleClients          int
	SingleTx               int
	SingleTxSec            float64
	SingleP50, SingleP99   time.Duration
	SingleCPUPerTx         time.Duration
	BaselineSingleTxSec    float64
	BaselineSingleCPUPerTx time.Duration

	// Rebuild of the last node's view from its log.
	RebuildCells   int
	RebuildTime    time.Duration // the whole command, process start and log open included
	RebuildCellSec float64
	// RebuildFoldSec is the command's own figure: cells over the time of the rebuild call
	// (open, fold, sync, swap), without process start and log open.
	RebuildFoldSec float64
	// RebuildCPUPerCell is the rebuild process's CPU (user + system) per cell.
	RebuildCPUPerCell time.Duration
}

// baselineCells is the cells of one baseline row: the issue counts every column.
const baselineCells = 5

func (r WriteResult) String() string {
	var b strings.Builder
	base := r.BaselineRowsSec
	fmt.Fprintf(&b, "baseline (modernc SQLite, WAL, synchronous=FULL, %d-row transactions, same disk): %.0f rows/s = %.0f cells/s\n",
		r.RowsPerTx, base, base*baselineCells)
	fmt.Fprintf(&b, "%d nodes, %d clients, %d-row transactions: %d rows acknowledged, %.0f rows/s acked (tx p50 %s, p99 %s)\n",
		r.Nodes, r.Clients, r.RowsPerTx, r.Rows, r.AckRowsSec, ms(r.TxP50), ms(r.TxP99))
	fmt.Fprintf(&b, "replicated to every node: %.0f rows/s in %v = %.3fx baseline (target >= 0.2x)\n",
		r.ReplicatedSec, r.ReplicatedTime.Round(time.Millisecond), ratio(r.ReplicatedSec, base))
	fmt.Fprintf(&b, "CPU of the %d agents: %v in all, %.1f us per replicated row = %.1fx the baseline's %.1f us per row",
		r.Nodes, r.CPUTotal.Round(time.Millisecond), float64(r.CPUPerRow)/1e3,
		ratio(float64(r.CPUPerRow), float64(r.BaselineCPUPerRow)), float64(r.BaselineCPUPerRow)/1e3)
	if r.SingleClients > 0 {
		fmt.Fprintf(&b, "\nsingle-row writes, %d clients: %d transactions, %.0f tx/s (p50 %s, p99 %s) = %.3fx the baseline's %.0f single-row tx/s, %.4fx its 100-row rows/s; agents' CPU %.1f us per tx (baseline %.1f us)",
			r.SingleClients, r.SingleTx, r.SingleTxSec, ms(r.SingleP50), ms(r.SingleP99),
			ratio(r.SingleTxSec, r.BaselineSingleTxSec), r.BaselineSingleTxSec, ratio(r.SingleTxSec, base),
			float64(r.SingleCPUPerTx)/1e3, float64(r.BaselineSingleCPUPerTx)/1e3)
	}
	if r.RebuildCells > 0 {
		fmt.Fprintf(&b, "\nrebuild: %d cells in %v = %.0f cells/s = %.3fx baseline cells/s (target >= 0.25x); the rebuild call alone %.0f cells/s = %.3fx",
			r.RebuildCells, r.RebuildTime.Round(time.Millisecond), r.RebuildCellSec, ratio(r.RebuildCellSec, base*baselineCells),
			r.RebuildFoldSec, ratio(r.RebuildFoldSec, base*baselineCells))
		fmt.Fprintf(&b, "\nrebuild CPU: %.2f us per cell = %.1fx the baseline's %.2f us per cell",
			float64(r.RebuildCPUPerCell)/1e3, ratio(float64(r.RebuildCPUPerCell), float64(r.BaselineCPUPerRow)/baselineCells),
			float64(r.BaselineCPUPerRow)/1e3/baselineCells)
	}
	return b.String()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

const writeSchema = "CREATE TABLE bench_write (id INTEGER NOT NULL PRIMARY KEY, a INTEGER, b REAL, c TEXT, d TEXT);\n"

// writeRow is row id's values after the key: the same for the baseline and the cluster.
func writeRow(id int64) (int64, float64, string, string) {
	return id * 7, float64(id) / 3, "host-" + strconv.FormatInt(id%1000, 10), "state-running-since-2026-12-06T07:00:00Z"
}

// RunWrite runs the workload. It starts and stops its own agents.
func RunWrite(ctx context.Context, cfg WriteConfig) (res WriteResult, err error) {
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	res.Nodes, res.Clients, res.RowsPerTx = cfg.Nodes, cfg.Clients, cfg.Rows
	logf := quiet(cfg.Logf)
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "patina-bench-write-"); err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return res, err
		}
	}

	// The baseline first, then the cluster: both see the machine of the same minute.
	logf("bench write: baseline for %v", cfg.Duration)
	cpuStart, err := selfCPU()
	if err != nil {
		return res, err
	}
	if res.BaselineRows, err = runBaseline(ctx, filepath.Join(dir, "baseline.db"), cfg.Rows, cfg.Duration); err != nil {
		return res, fmt.Errorf("baseline: %w", err)
	}
	cpuEnd, err := selfCPU()
	if err != nil {
		return res, err
	}
	if res.BaselineRows > 0 {
		res.BaselineCPUPerRow = (cpuEnd - cpuStart) / time.Duration(res.BaselineRows)
	}
	res.BaselineRowsSec = float64(res.BaselineRows) / cfg.Duration.Seconds()
	if cfg.SingleClients > 0 {
		logf("bench write: single-row baseline for %v", cfg.Duration)
		c0, err := selfCPU()
		if err != nil {
			return res, err
		}
		n, err := runBaseline(ctx, filepath.Join(dir, "baseline1.db"), 1, cfg.Duration)
		if err != nil {
			return res, fmt.Errorf("single-row baseline: %w", err)
		}
		c1, err := selfCPU()
		if err != nil {
			return res, err
		}
		res.BaselineSingleTxSec = float64(n) / cfg.Duration.Seconds()
		if n > 0 {
			res.BaselineSingleCPUPerTx = (c1 - c0) / time.Duration(n)
		}
	}

	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(writeSchema), 0o644); err != nil {
		return res, err
	}
	var setup func(int, *benchAgent)
	if cfg.ProfileDir != "" {
		setup = func(i int, a *benchAgent) {
			a.env = []string{
				"PATINA_CPUPROFILE=" + filepath.Join(cfg.ProfileDir, fmt.Sprintf("node%d.cpu.pprof", i)),
				"PATINA_MEMPROFILE=" + filepath.Join(cfg.ProfileDir, fmt.Sprintf("node%d.allocs.pprof", i)),
			}
		}
	}
	agents, kill, err := startAgents(ctx, cfg.Binary, dir, schema, cfg.Nodes, max(cfg.Clients, cfg.SingleClients), setup)
	defer kill()
	if err != nil {
		return res, err
	}
	logf("bench write: %d agents up in %s; writing for %v", len(agents), dir, cfg.Duration)

	cpu0, err := agentsCPU(agents)
	if err != nil {
		return res, err
	}
	var next atomic.Int64
	started := time.Now()
	lat, err := drive(ctx, agents, cfg.Clients, cfg.Rows, cfg.Duration, &next)
	if err != nil {
		return res, err
	}
	ackedAt := time.Since(started)
	res.Rows = len(lat) * cfg.Rows
	res.AckRowsSec = float64(res.Rows) / ackedAt.Seconds()
	res.TxP50, res.TxP99 = quantile(lat, 0.50), quantile(lat, 0.99)
	logf("bench write: %d rows acknowledged; waiting for every node to hold them", res.Rows)
	if err := waitRows(ctx, agents, int64(res.Rows)); err != nil {
		return res, err
	}
	res.ReplicatedTime = time.Since(started)
	res.ReplicatedSec = float64(res.Rows) / res.ReplicatedTime.Seconds()
	cpu1, err := agentsCPU(agents)
	if err != nil {
		return res, err
	}
	res.CPUTotal = cpu1 - cpu0
	if res.Rows > 0 {
		res.CPUPerRow = res.CPUTotal / time.Duration(res.Rows)
	}

	if cfg.SingleClients > 0 {
		logf("bench write: single-row transactions, %d clients, for %v", cfg.SingleClients, cfg.Duration)
		res.SingleClients = cfg.SingleClients
		started := time.Now()
		lat, err := drive(ctx, agents, cfg.SingleClients, 1, cfg.Duration, &next)
		if err != nil {
			return res, err
		}
		res.SingleTx = len(lat)
		res.SingleTxSec = float64(res.SingleTx) / time.Since(started).Seconds()
		res.SingleP50, res.SingleP99 = quantile(lat, 0.50), quantile(lat, 0.99)
		if err := waitRows(ctx, agents, int64(res.Rows+res.SingleTx)); err != nil {
			return res, err
		}
		cpu2, err := agentsCPU(agents)
		if err != nil {
			return res, err
		}
		if res.SingleTx > 0 {
			res.SingleCPUPerTx = (cpu2 - cpu1) / time.Duration(res.SingleTx)
		}
	}

	for i, a := range agents {
		if err := a.stop(); err != nil {
			return res, fmt.Errorf("stop node %d: %w", i, err)
		}
	}
	if !cfg.Rebuild {
		return res, nil
	}
	victim := agents[len(agents)-1]
	logf("bench write: rebuilding node %d's view", len(agents)-1)
	cmd := exec.CommandContext(ctx, cfg.Binary, "rebuild", "--quiet", "--data-dir", victim.dir, "--schema", schema)
	if cfg.ProfileDir != "" {
		cmd.Env = append(os.Environ(),
			"PATINA_CPUPROFILE="+filepath.Join(cfg.ProfileDir, "rebuild.cpu.pprof"),
			"PATINA_MEMPROFILE="+filepath.Join(cfg.ProfileDir, "rebuild.allocs.pprof"))
	}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	res.RebuildTime = time.Since(t0)
	if err != nil {
		return res, fmt.Errorf("rebuild: %v\n%s", err, out)
	}
	m := rebuiltRE.FindSubmatch(out)
	if m == nil {
		return res, fmt.Errorf("rebuild: unexpected output %q", out)
	}
	res.RebuildCells, _ = strconv.Atoi(string(m[1]))
	res.RebuildFoldSec, _ = strconv.ParseFloat(string(m[2]), 64)
	if ps := cmd.ProcessState; ps != nil && res.RebuildCells > 0 {
		res.RebuildCPUPerCell = (ps.UserTime() + ps.SystemTime()) / time.Duration(res.RebuildCells)
	}
	// The whole command, process start and log open included: what an operator waits for.
	res.RebuildCellSec = float64(res.RebuildCells) / res.RebuildTime.Seconds()
	return res, nil
}

// drive runs clients HTTP writers, spread round robin over the agents, each posting
// transactions of one rows-row INSERT (ids from next) for d; it returns every acknowledged
// transaction's latency, or the first failure.
func drive(ctx context.Context, agents []*benchAgent, clients, rows int, d time.Duration, next *atomic.Int64) ([]time.Duration, error) {
	var (
		mu     sync.Mutex
		lat    []time.Duration
		failed error
		wg     sync.WaitGroup
		stopAt = time.Now().Add(d)
	)
	for c := range clients {
		a := agents[c%len(agents)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body bytes.Buffer
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				first := next.Add(int64(rows)) - int64(rows)
				body.Reset()
				batchBody(&body, first, rows)
				t0 := time.Now()
				err := postTx(ctx, a, body.Bytes())
				took := time.Since(t0)
				mu.Lock()
				if err != nil {
					if failed == nil {
						failed = err
					}
					mu.Unlock()
					return
				}
				lat = append(lat, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, failed
}

// waitRowsEvery is how often waitRows asks. Each probe is a count(*) over the whole table on
// the agent, which also drops the read connection's page cache, and the agents' CPU is part
// of the figure: at 5 ms the probes were 0.34 s of the first agent's 4.21 s of CPU samples
// in a 10 s run (bench write --profile-dir, 22:05 UTC 2026-12-06). 20 ms bounds the
// overshoot of the replicated time at 20 ms (0.2% of a 10 s run).
const waitRowsEvery = 20 * time.Millisecond

// waitRows waits until every agent's bench_write table holds at least rows rows.
func waitRows(ctx context.Context, agents []*benchAgent, rows int64) error {
	for i, a := range agents {
		var n int64
		err := poll(ctx, 10*time.Minute, waitRowsEvery, func() (bool, error) {
			var err error
			n, _, err = a.cl.TableStats(ctx, "bench_write")
			return err == nil && n >= rows, nil
		})
		if errors.Is(err, errPollTimeout) {
			return fmt.Errorf("node %d holds %d of %d rows after 10 minutes", i, n, rows)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var rebuiltRE = regexp.MustCompile(`changesets, (\d+) cells in \S+ \((\d+) cells/s\)`)

// batchBody writes the JSON of one transaction: a single INSERT of rows rows from id first.
func batchBody(b *bytes.Buffer, first int64, rows int) {
	b.WriteString(`[["INSERT INTO bench_write (id, a, b, c, d) VALUES `)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?, ?, ?, ?, ?)")
	}
	b.WriteString(`", [`)
	for i := range rows {
		id := first + int64(i)
		a, r, c, d := writeRow(id)
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, `%d,%d,%s,%q,%q`, id, a, strconv.FormatFloat(r, 'g', -1, 64), c, d)
	}
	b.WriteString("]]]")
}

func postTx(ctx context.Context, a *benchAgent, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.api+"/v1/transactions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /v1/transactions: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// runBaseline inserts rows for d in transactions of rows single-row INSERTs (one statement
// prepared once, as a SQLite program would) and returns the rows committed.
func runBaseline(ctx context.Context, path string, rows int, d time.Duration) (int, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	defer os.Remove(path)
	defer os.Remove(path + "-wal")
	defer os.Remove(path + "-shm")
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, strings.TrimSuffix(writeSchema, ";\n")); err != nil {
		return 0, err
	}
	ins, err := db.PrepareContext(ctx, "INSERT INTO bench_write (id, a, b, c, d) VALUES (?, ?, ?, ?, ?)")
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	n := 0
	stopAt := time.Now().Add(d)
	for time.Now().Before(stopAt) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return n, err
		}
		st := tx.StmtContext(ctx, ins)
		for i := range rows {
			id := int64(n + i)
			a, r, c, dd := writeRow(id)
			if _, err := st.ExecContext(ctx, id, a, r, c, dd); err != nil {
				tx.Rollback()
				return n, err
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			return n, err
		}
		n += rows
	}
	return n, nil
}

// agentsCPU sums the user and system CPU time of the agents' processes (Linux /proc).
func agentsCPU(agents []*benchAgent) (time.Duration, error) {
	var total time.Duration
	for _, a := range agents {
		if a.cmd == nil || a.cmd.Process == nil {
			continue
		}
		d, err := procCPU(a.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// procCPU reads utime + stime of a process from /proc/<pid>/stat, in clock ticks of 10 ms
// (USER_HZ is 100 on every Linux architecture Go supports but alpha and ia64).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("agent CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces; fields count from after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("agent CPU time: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("agent CPU time: short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("agent CPU time: malformed /proc stat")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// selfCPU is this process's CPU time (user + system) so far.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
