// Package bench holds Patina's workloads: each has a Config and a Run function returning a
// Result, keeps no global state, and is run by `patina bench ...` and by the testing.B
// wrappers in bench/*_test.go. Figures go to bench/RESULTS.md with the command that made
// them.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// HTTPConfig configures the HTTP workload: concurrent clients writing transactions (or
// reading single rows) through the API, or, with Direct, calling the materializer in the same
// process without HTTP, so that the two rates compare.
type HTTPConfig struct {
	// Addr is an agent's API to load (its schema must allow CREATE TABLE bench_http through
	// /v1/migrations). Empty starts a node in this process: a Pebble log and a SQLite view in
	// Dir, served on 127.0.0.1.
	Addr string
	// Dir is the data dir of the in-process node; empty makes a temp dir and removes it.
	Dir string
	// Clients is the number of concurrent clients (goroutines, each with its connections).
	Clients int
	// Rows per write transaction (one INSERT of that many rows).
	Rows int
	// Reads runs point reads (SELECT of one row by primary key) instead of writes, over
	// Preload rows written first.
	Reads   bool
	Preload int
	// Direct calls the materializer in-process instead of the HTTP API (not with Addr).
	Direct bool
	// Duration of the measured run, after Warmup.
	Duration, Warmup time.Duration
	// Seed of the read workload's random keys.
	Seed uint64
	// Token is the API's bearer token, if it wants one.
	Token string
	// ReadConns is the in-process node's read pool size (0: the materializer's default).
	ReadConns int
	// CommitDepth is the in-process node's log commit depth, which the materializer's
	// writer pipeline follows (0: the default, 2; 1: each writer group waits for the
	// previous group's fsync, no overlap).
	CommitDepth int
	// WriterDepth is the in-process node's materializer.Config.WriterDepth (0: 1, no
	// overlap; 2: the writer builds a group while the previous one's fsync runs).
	WriterDepth int
	// Floor serves the writes without a node: an HTTP server in this process answers each
	// one at the next tick of a FloorWait clock, without a database (floor.go). The same
	// clients against it show what the HTTP exchange alone costs.
	Floor     bool
	FloorWait time.Duration
	// Socket makes the clients reach the in-process node (or floor server) through a Unix
	// socket in a temp dir (api.Config.Socket) instead of TCP on 127.0.0.1.
	Socket bool
	// WriteListener opens the in-process node's write listener (api.Config.WriteAddr) and
	// sends the writes there (client.WithWriteAddr); WriteAddr does the same for the agent
	// at Addr, naming its api.write_addr.
	WriteListener bool
	WriteAddr     string
}

// DefaultHTTPConfig is 32 clients writing single-row transactions for 5 s.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{Clients: 32, Rows: 1, Preload: 10_000, Duration: 5 * time.Second, Warmup: time.Second, Seed: 1, FloorWait: time.Millisecond}
}

// Validate checks the config.
func (c *HTTPConfig) Validate() error {
	switch {
	case c.Clients <= 0:
		return fmt.Errorf("clients %d: want > 0", c.Clients)
	case c.Rows <= 0 || c.Rows > 10_000:
		return fmt.Errorf("rows %d: want 1..10000", c.Rows)
	case c.Duration <= 0:
		return fmt.Errorf("duration %v: want > 0", c.Duration)
	case c.Warmup < 0:
		return fmt.Errorf("warmup %v: want >= 0", c.Warmup)
	case c.Direct && c.Addr != "":
		return errors.New("direct runs an in-process node: not with an address")
	case c.Floor && (c.Addr != "" || c.Direct || c.Reads):
		return errors.New("floor serves writes in this process: not with an address, direct or reads")
	case c.Socket && (c.Addr != "" || c.Direct):
		return errors.New("socket serves the in-process node on a Unix socket: not with an address (give it as unix:///path) or direct")
	case c.WriteListener && (c.Addr != "" || c.Direct || c.Socket):
		return errors.New("write listener serves the in-process node's writes: not with an address (give its --write-addr), direct or socket")
	case c.WriteAddr != "" && c.Addr == "":
		return errors.New("write address is the loaded agent's: give its API address too")
	case c.FloorWait < 0:
		return fmt.Errorf("floor wait %v: want >= 0", c.FloorWait)
	case c.Reads && c.Preload <= 0:
		return fmt.Errorf("preload %d: reads need rows to read", c.Preload)
	}
	return nil
}

// HTTPResult is what a run measured.
type HTTPResult struct {
	Mode       string // "http", "http write listener", "direct" or "floor"
	Ops        int    // transactions or reads completed in the measured window
	Rows       int    // rows written or read
	Errors     int
	Elapsed    time.Duration
	OpsPerSec  float64
	RowsPerSec float64
	P50, P99   time.Duration // per operation, as the client saw it
	Max        time.Duration
	// CPU is this process's CPU time (user and system) per operation in the measured
	// window: the clients and, without an address, the node or floor server.
	CPU time.Duration
	// AgentCPU, with an address, is the agent's CPU time per operation in the measured
	// window, from its /metrics (process_cpu_seconds_total, which the kernel counts in 10 ms
	// ticks): what the agent alone spent, apart from the clients. 0 when the agent's metrics
	// could not be read; AgentCPUErr says why.
	AgentCPU    time.Duration
	AgentCPUErr error
}

func (r HTTPResult) String() string {
	s := fmt.Sprintf("%s: %d ops in %v: %.0f ops/s, %.0f rows/s, p50 %v, p99 %v, max %v, %d errors, cpu %.0f us/op",
		r.Mode, r.Ops, r.Elapsed.Round(time.Millisecond), r.OpsPerSec, r.RowsPerSec,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.Errors,
		float64(r.CPU.Nanoseconds())/1e3)
	if r.AgentCPU > 0 {
		s += fmt.Sprintf(", agent cpu %.0f us/op", float64(r.AgentCPU.Nanoseconds())/1e3)
	}
	return s
}

// agentCPU reads an agent's CPU time so far (user and system) from its /metrics.
func agentCPU(ctx context.Context, cl *client.Client) (time.Duration, error) {
	text, err := cl.Metrics(ctx)
	if err != nil {
		return 0, fmt.Errorf("the agent's metrics: %w", err)
	}
	secs, n, err := metricSamples(text, "process_cpu_seconds_total")
	switch {
	case err != nil:
		return 0, fmt.Errorf("the agent's metrics: %w", err)
	case n == 0:
		return 0, errors.New("the agent's metrics have no process_cpu_seconds_total")
	case secs < 0:
		return 0, fmt.Errorf("the agent's metrics: process_cpu_seconds_total %v is not a CPU time", secs)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// benchSchema is the workload's table.
const benchSchema = "CREATE TABLE bench_http (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)"

// RunHTTP runs the workload.
func RunHTTP(ctx context.Context, cfg HTTPConfig) (HTTPResult, error) {
	if err := cfg.Validate(); err != nil {
		return HTTPResult{}, err
	}
	var (
		exec  func(ctx context.Context, sql string, params []log.Value) error
		read  func(ctx context.Context, id int64) error
		close func() error
		// remoteCPU reads the loaded agent's CPU time, when it runs in another process.
		remoteCPU func(ctx context.Context) (time.Duration, error)
	)
	if cfg.Addr != "" {
		cl, err := newClient(cfg.Addr, cfg.WriteAddr, cfg.Token, cfg.Clients)
		if err != nil {
			return HTTPResult{}, err
		}
		if _, err := cl.Migrate(ctx, benchSchema); err != nil {
			return HTTPResult{}, fmt.Errorf("create the bench table: %w", err)
		}
		exec, read = clientOps(cl)
		remoteCPU = func(ctx context.Context) (time.Duration, error) { return agentCPU(ctx, cl) }
		close = func() error { return nil }
	} else if cfg.Floor {
		f, err := openFloor(cfg.FloorWait, cfg.Socket, cfg.WriteListener)
		if err != nil {
			return HTTPResult{}, err
		}
		close = f.close
		cl, err := newClient(f.addr(), "", "", cfg.Clients)
		if err != nil {
			f.close()
			return HTTPResult{}, err
		}
		exec, read = clientOps(cl)
	} else {
		n, err := openNode(ctx, cfg)
		if err != nil {
			return HTTPResult{}, err
		}
		close = n.close
		if cfg.Direct {
			exec, read = directOps(n.mat)
		} else {
			addr, writeAddr := n.srv.Addr().String(), ""
			if cfg.Socket {
				addr = "unix://" + n.srv.SocketPath()
			}
			if cfg.WriteListener {
				writeAddr = n.srv.WriteAddr().String()
			}
			cl, err := newClient(addr, writeAddr, "", cfg.Clients)
			if err != nil {
				n.close()
				return HTTPResult{}, err
			}
			exec, read = clientOps(cl)
		}
	}
	res, err := runLoad(ctx, cfg, exec, read, remoteCPU)
	if cerr := close(); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

// runLoad drives the clients: warmup, then the measured window.
func runLoad(ctx context.Context, cfg HTTPConfig, exec func(context.Context, string, []log.Value) error, read func(context.Context, int64) error,
	remoteCPU func(context.Context) (time.Duration, error)) (HTTPResult, error) {
	res := HTTPResult{Mode: "http"}
	switch {
	case cfg.Direct:
		res.Mode = "direct"
	case cfg.Floor && cfg.WriteListener:
		res.Mode = "floor write listener"
	case cfg.Floor:
		res.Mode = "floor"
	case cfg.WriteListener || cfg.WriteAddr != "":
		res.Mode = "http write listener"
	}
	// Ids are unique across runs on the same table: start above what is there.
	var nextID atomic.Int64
	nextID.Store(time.Now().UnixNano() / 1000 % (1 << 40) * 1000)
	insert := func(ctx context.Context, rows int) error {
		var sb strings.Builder
		sb.WriteString("INSERT INTO bench_http (id, a, b) VALUES ")
		params := make([]log.Value, 0, 3*rows)
		first := nextID.Add(int64(rows)) - int64(rows)
		for i := range rows {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?)")
			id := first + int64(i)
			params = append(params, log.Integer(id), log.Text("value of some length"), log.Integer(id%1000))
		}
		return exec(ctx, sb.String(), params)
	}
	var loaded []int64
	if cfg.Reads {
		const batch = 500
		for done := 0; done < cfg.Preload; done += batch {
			n := min(batch, cfg.Preload-done)
			first := nextID.Load()
			if err := insert(ctx, n); err != nil {
				return res, fmt.Errorf("preload: %w", err)
			}
			for i := range int64(n) {
				loaded = append(loaded, first+i)
			}
		}
	}

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		mu        sync.Mutex
		lats      []time.Duration
		wg        sync.WaitGroup
		firstErr  error
	)
	for w := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			var mine []time.Duration
			errs := 0
			var werr error
			for !stop.Load() && ctx.Err() == nil {
				start := time.Now()
				var err error
				if cfg.Reads {
					err = read(ctx, loaded[rng.IntN(len(loaded))])
				} else {
					err = insert(ctx, cfg.Rows)
				}
				el := time.Since(start)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					errs++
					if werr == nil {
						werr = err
					}
					continue
				}
				mine = append(mine, el)
			}
			mu.Lock()
			lats = append(lats, mine...)
			res.Errors += errs
			if firstErr == nil {
				firstErr = werr
			}
			mu.Unlock()
		}()
	}
	timer := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-ctx.Done():
			return false
		}
	}
	ok := timer(cfg.Warmup)
	var agent0 time.Duration
	if remoteCPU != nil {
		// Read before the window opens: the read is a request of its own.
		agent0, res.AgentCPUErr = remoteCPU(ctx)
	}
	measuring.Store(true)
	start := time.Now()
	cpu0, cpuErr := selfCPU()
	if ok {
		timer(cfg.Duration)
	}
	measuring.Store(false)
	res.Elapsed = time.Since(start)
	cpu1, err := selfCPU()
	var agent1 time.Duration
	if remoteCPU != nil && res.AgentCPUErr == nil {
		agent1, res.AgentCPUErr = remoteCPU(ctx)
	}
	stop.Store(true)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Ops = len(lats)
	if cfg.Reads {
		res.Rows = res.Ops
	} else {
		res.Rows = res.Ops * cfg.Rows
	}
	res.OpsPerSec = float64(res.Ops) / res.Elapsed.Seconds()
	if cpuErr == nil && err == nil && res.Ops > 0 {
		res.CPU = (cpu1 - cpu0) / time.Duration(res.Ops)
	}
	if remoteCPU != nil && res.AgentCPUErr == nil && res.Ops > 0 {
		res.AgentCPU = (agent1 - agent0) / time.Duration(res.Ops)
	}
	res.RowsPerSec = float64(res.Rows) / res.Elapsed.Seconds()
	if len(lats) > 0 {
		slices.Sort(lats)
		res.P50 = lats[len(lats)/2]
		res.P99 = lats[min(len(lats)-1, len(lats)*99/100)]
		res.Max = lats[len(lats)-1]
	}
	if res.Ops == 0 && firstErr != nil {
		return res, fmt.Errorf("every operation failed: %w", firstErr)
	}
	return res, nil
}

func newClient(addr, writeAddr, token string, clients int) (*client.Client, error) {
	// The client's own pool, with room for every client's connection between its requests
	// (a new TCP connection per request would cost more than the request).
	opts := []client.Option{client.WithMaxIdleConns(clients * 2)}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	if writeAddr != "" {
		opts = append(opts, client.WithWriteAddr(writeAddr))
	}
	return client.New(addr, opts...)
}

func clientOps(cl *client.Client) (func(context.Context, string, []log.Value) error, func(context.Context, int64) error) {
	exec := func(ctx context.Context, sql string, params []log.Value) error {
		_, err := cl.Exec(ctx, client.Options{}, client.Statement{SQL: sql, Params: params})
		return err
	}
	read := func(ctx context.Context, id int64) error {
		rows, err := cl.Query(ctx, client.Options{}, client.Statement{SQL: pointRead, Params: []log.Value{log.Integer(id)}})
		if err != nil {
			return err
		}
		return expectOneRow(id, rows)
	}
	return exec, read
}

// pointRead is the read of the point-read workload, the same over HTTP and direct.
const pointRead = "SELECT a, b FROM bench_http WHERE id = ?"

// expectOneRow drains and closes rows (an HTTP stream or a view cursor) and checks that the
// point read found exactly its row.
func expectOneRow(id int64, rows interface {
	Next() bool
	Err() error
	Close() error
}) error {
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("read of id %d: %d rows", id, n)
	}
	return nil
}

func directOps(mat *materializer.Materializer) (func(context.Context, string, []log.Value) error, func(context.Context, int64) error) {
	exec := func(ctx context.Context, sql string, params []log.Value) error {
		_, err := mat.Transact(ctx, []materializer.Statement{{SQL: sql, Params: params}})
		return err
	}
	read := func(ctx context.Context, id int64) error {
		rows, err := mat.Query(ctx, materializer.Statement{SQL: pointRead, Params: []log.Value{log.Integer(id)}})
		if err != nil {
			return err
		}
		return expectOneRow(id, rows)
	}
	return exec, read
}

// node is an in-process node: log, view and API, as the agent wires them (without gossip).
type node struct {
	dir    string
	rmDir  bool
	store  *log.Store
	mat    *materializer.Materializer
	srv    *api.Server
	closed bool
}

func openNode(ctx context.Context, cfg HTTPConfig) (n *node, err error) {
	n = &node{dir: cfg.Dir}
	if n.dir == "" {
		if n.dir, err = os.MkdirTemp("", "patina-bench-http-"); err != nil {
			return nil, err
		}
		n.rmDir = true
	}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	quiet := slog.New(slog.DiscardHandler)
	if n.store, err = log.Open(filepath.Join(n.dir, "log"), log.Options{Logger: quiet, CommitDepth: cfg.CommitDepth}); err != nil {
		return n, err
	}
	mcfg := materializer.DefaultConfig(filepath.Join(n.dir, "views.db"))
	mcfg.Schema = []string{benchSchema}
	mcfg.Logger = quiet
	if cfg.ReadConns > 0 {
		mcfg.ReadConns = cfg.ReadConns
	}
	mcfg.WriterDepth = cfg.WriterDepth
	n.mat = materializer.New(n.store, mcfg)
	if err := n.mat.Open(ctx); err != nil {
		n.mat = nil
		return n, err
	}
	acfg := api.DefaultConfig()
	acfg.Addr = "127.0.0.1:0"
	acfg.View, acfg.Log = n.mat, n.store
	acfg.MaxConcurrency = max(acfg.MaxConcurrency, 2*cfg.Clients)
	acfg.Logger = quiet
	if cfg.Socket {
		acfg.Socket = filepath.Join(n.dir, "api.sock")
	}
	if cfg.WriteListener {
		acfg.WriteAddr = "127.0.0.1:0"
	}
	n.srv = api.New(acfg)
	if err := n.srv.Open(ctx); err != nil {
		n.srv = nil
		return n, err
	}
	return n, nil
}

func (n *node) close() error {
	if n.closed {
		return nil
	}
	n.closed = true
	var errs []error
	if n.srv != nil {
		errs = append(errs, n.srv.Close())
	}
	if n.mat != nil {
		errs = append(errs, n.mat.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.rmDir {
		errs = append(errs, os.RemoveAll(n.dir))
	}
	return errors.Join(errs...)
}
