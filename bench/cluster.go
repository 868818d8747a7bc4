package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// ClusterConfig configures the cluster workload: it spawns Nodes `patina agent` processes
// on 127.0.0.1 and measures replication latency, the time from a write's acknowledgement
// on one node to its visibility on every other node; or, with CatchUp set, the catch-up
// rate of a restarted node that missed CatchUp changes.
type ClusterConfig struct {
	// Binary is the patina executable to spawn (`patina bench cluster` passes itself).
	Binary string
	// Nodes is how many agents to start.
	Nodes int
	// Rate is the write transactions per second, over all nodes (round robin); each
	// writes one row.
	Rate int
	// Duration is the measured time; Warmup runs first, unmeasured.
	Duration time.Duration
	Warmup   time.Duration
	// Clients is the concurrent HTTP writers per node.
	Clients int
	// CatchUp, when positive, runs the catch-up workload instead: the last node is stopped,
	// about CatchUp changes are written elsewhere, and the node is restarted.
	CatchUp int
	// Dir holds the agents' data; empty means a temp dir, removed after.
	Dir string
	// Seed seeds the row values.
	Seed uint64
	// Compression, when set, is every agent's gossip.compression ("zstd" or "none").
	Compression string
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

// DefaultClusterConfig is 3 nodes at 1,000 writes/s for 10 s.
func DefaultClusterConfig() ClusterConfig {
	return ClusterConfig{Nodes: 3, Rate: 1000, Duration: 10 * time.Second, Warmup: time.Second, Clients: 16, Seed: 1}
}

// Validate reports the first problem of c.
func (c *ClusterConfig) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("bench cluster: no patina binary")
	case c.Nodes < 2:
		return fmt.Errorf("bench cluster: %d nodes; want at least 2", c.Nodes)
	case c.CatchUp <= 0 && (c.Rate <= 0 || c.Duration <= 0):
		return errors.New("bench cluster: rate and duration must be positive")
	case c.Clients <= 0:
		return errors.New("bench cluster: clients must be positive")
	case c.Warmup < 0:
		return errors.New("bench cluster: negative warmup")
	}
	return nil
}

// ClusterResult is what the cluster workload measured.
type ClusterResult struct {
	Nodes int
	Rate  int
	// Writes acknowledged in the measured time; Lost of them were not visible on every
	// other node 10 s after the last write.
	Writes, Lost int
	// Replication latency: acknowledgement on the writing node to visibility on the last
	// of the other nodes (per write), and to visibility on each other node (per pair).
	P50, P99, Max          time.Duration
	PairP50, PairP99       time.Duration
	AckP50, AckP99, AckMax time.Duration // the write requests themselves
	Achieved               float64       // writes/s actually acknowledged
	// LagP99 is the highest p99 replication lag the nodes report in /v1/health: from the
	// origin's commit timestamp to the end of the fold here (gossip, log append and fold,
	// without the HTTP ack and the update stream).
	LagP99 time.Duration

	// Catch-up workload.
	CatchUpChanges  int           // changes the restarted node lacked
	CatchUpVersions int           // transactions it lacked
	CatchUpReady    time.Duration // process start to its API answering
	CatchUpTime     time.Duration // API answering to every missed row visible
	CatchUpRate     float64       // changes/s over CatchUpTime

	// GossipBytes is patina_gossip_bytes_sent_total summed over the agents at the end
	// (broadcast and sync frames as sent); ZstdPlain and ZstdWire are the bytes of the
	// frames sent compressed, before and after (patina_gossip_zstd_*_bytes_total, sent).
	GossipBytes, ZstdPlain, ZstdWire float64
}

// wire is the result's line about gossip bytes.
func (r ClusterResult) wire() string {
	return fmt.Sprintf("gossip bytes sent: %.0f (of which %.0f went zstd-compressed as %.0f: %.0f saved)",
		r.GossipBytes, r.ZstdPlain, r.ZstdWire, r.ZstdPlain-r.ZstdWire)
}

func (r ClusterResult) String() string {
	if r.CatchUpChanges > 0 {
		return fmt.Sprintf("catch-up: %d changes (%d transactions) in %v after the API answered (%v to start): %.0f changes/s\n%s",
			r.CatchUpChanges, r.CatchUpVersions, r.CatchUpTime.Round(time.Millisecond), r.CatchUpReady.Round(time.Millisecond), r.CatchUpRate, r.wire())
	}
	return fmt.Sprintf("%d nodes, %d writes/s asked, %.0f achieved, %d writes (%d lost)\n"+
		"replication ack -> visible on all others: p50 %v p99 %v max %v\n"+
		"replication ack -> visible per node:      p50 %v p99 %v\n"+
		"write ack latency:                        p50 %v p99 %v max %v\n"+
		"nodes' own p99 replication lag (commit to folded, /v1/health): %v\n%s",
		r.Nodes, r.Rate, r.Achieved, r.Writes, r.Lost, ms(r.P50), ms(r.P99), ms(r.Max), ms(r.PairP50), ms(r.PairP99),
		ms(r.AckP50), ms(r.AckP99), ms(r.AckMax), ms(r.LagP99), r.wire())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }

const clusterSchema = "CREATE TABLE bench (id INTEGER NOT NULL PRIMARY KEY, node INTEGER, v TEXT);\n"

// RunCluster runs the workload. It starts and stops its own agents.
func RunCluster(ctx context.Context, cfg ClusterConfig) (res ClusterResult, err error) {
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	logf := quiet(cfg.Logf)
	dir, schema, cleanup, err := workdir(cfg.Dir, "patina-bench-cluster-", clusterSchema)
	if err != nil {
		return res, err
	}
	defer cleanup()
	var setup func(int, *benchAgent)
	if cfg.Compression != "" {
		setup = func(_ int, a *benchAgent) { a.env = append(a.env, "PATINA_GOSSIP_COMPRESSION="+cfg.Compression) }
	}
	agents, kill, err := startAgents(ctx, cfg.Binary, dir, schema, cfg.Nodes, cfg.Clients, setup)
	defer kill()
	if err != nil {
		return res, err
	}
	logf("bench cluster: %d agents up in %s", len(agents), dir)
	if cfg.CatchUp > 0 {
		res, err = runCatchUp(ctx, cfg, agents, logf)
	} else {
		res, err = runLatency(ctx, cfg, agents, logf)
	}
	if err != nil {
		return res, err
	}
	for i, a := range agents {
		for _, m := range []struct {
			name string
			dst  *float64
		}{
			{"patina_gossip_bytes_sent_total", &res.GossipBytes},
			{`patina_gossip_zstd_plain_bytes_total{direction="sent"`, &res.ZstdPlain},
			{`patina_gossip_zstd_wire_bytes_total{direction="sent"`, &res.ZstdWire},
		} {
			v, err := metricSum(ctx, a.cl, m.name)
			if err != nil {
				return res, fmt.Errorf("node %d metrics: %w", i, err)
			}
			*m.dst += v
		}
	}
	return res, nil
}

// seen records when each row id became visible on each node.
type seen struct {
	mu sync.Mutex
	at []map[int64]time.Time // per node
}

// follow reads node i's update stream of table bench and records arrival times.
func (s *seen) follow(ctx context.Context, a *benchAgent, i int, ready func()) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.api+"/v1/updates/bench", nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("updates stream: HTTP %d", resp.StatusCode)
	}
	ready()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var ev struct {
			Notify []json.RawMessage `json:"notify"`
		}
		if json.Unmarshal(line, &ev) != nil || len(ev.Notify) != 2 {
			continue
		}
		var pk []int64
		if json.Unmarshal(ev.Notify[1], &pk) != nil || len(pk) != 1 {
			continue
		}
		s.mu.Lock()
		if _, ok := s.at[i][pk[0]]; !ok {
			s.at[i][pk[0]] = now
		}
		s.mu.Unlock()
	}
}

type write struct {
	id   int64
	node int
	ack  time.Time
	took time.Duration
}

func runLatency(ctx context.Context, cfg ClusterConfig, agents []*benchAgent, logf func(string, ...any)) (ClusterResult, error) {
	res := ClusterResult{Nodes: len(agents), Rate: cfg.Rate}
	sctx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	s := &seen{at: make([]map[int64]time.Time, len(agents))}
	var ready sync.WaitGroup
	streamErr := make(chan error, len(agents))
	for i, a := range agents {
		s.at[i] = map[int64]time.Time{}
		ready.Add(1)
		go func() {
			var once sync.Once
			err := s.follow(sctx, a, i, func() { once.Do(ready.Done) })
			once.Do(ready.Done)
			if err != nil {
				streamErr <- fmt.Errorf("node %d updates stream: %w", i, err)
			}
		}()
	}
	ready.Wait()

	rng := rand.New(rand.NewPCG(cfg.Seed, 0))
	payload := make([]byte, 32)
	for i := range payload {
		payload[i] = byte('a' + rng.IntN(26))
	}
	value := string(payload)

	// Open loop: write i is due at start + i/rate whatever the earlier ones took, so a slow
	// node shows as latency, not as a lower rate.
	type job struct {
		id       int64
		node     int
		measured bool
	}
	jobs := make([]chan job, len(agents))
	var mu sync.Mutex
	var writes []write
	var wg sync.WaitGroup
	var failed error
	for n, a := range agents {
		jobs[n] = make(chan job, 4096)
		for range cfg.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs[n] {
					t0 := time.Now()
					_, err := a.cl.Exec(ctx, client.Options{}, client.Stmt("INSERT INTO bench (id, node, v) VALUES (?, ?, ?)", j.id, n, value))
					t1 := time.Now()
					mu.Lock()
					if err != nil && failed == nil {
						failed = fmt.Errorf("write on node %d: %w", n, err)
					}
					if err == nil && j.measured {
						writes = append(writes, write{id: j.id, node: n, ack: t1, took: t1.Sub(t0)})
					}
					mu.Unlock()
				}
			}()
		}
	}
	total := int((cfg.Warmup + cfg.Duration).Seconds() * float64(cfg.Rate))
	warm := int(cfg.Warmup.Seconds() * float64(cfg.Rate))
	interval := time.Second / time.Duration(cfg.Rate)
	start := time.Now()
	var measuredStart time.Time
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d) // the open loop's schedule, not synchronization
		}
		if i == warm {
			measuredStart = time.Now()
		}
		if ctx.Err() != nil {
			break
		}
		jobs[i%len(agents)] <- job{id: int64(i + 1), node: i % len(agents), measured: i >= warm}
	}
	for _, c := range jobs {
		close(c)
	}
	wg.Wait()
	elapsed := time.Since(measuredStart)
	if failed != nil {
		return res, failed
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	logf("bench cluster: %d writes sent; waiting for them to be visible everywhere", len(writes))

	// Wait (bounded) until every write is visible on every other node.
	missing := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, w := range writes {
			for i := range agents {
				if i == w.node {
					continue
				}
				if _, ok := s.at[i][w.id]; !ok {
					n++
					break
				}
			}
		}
		return n
	}
	// Stragglers get 10 s; what is still missing then counts as not delivered.
	err := poll(ctx, 10*time.Second, 10*time.Millisecond, func() (bool, error) {
		select {
		case err := <-streamErr:
			return false, err
		default:
			return missing() == 0, nil
		}
	})
	if err != nil && !errors.Is(err, errPollTimeout) {
		return res, err
	}
	stopStreams()
	for _, a := range agents {
		if h, err := a.cl.Health(ctx, nil); err == nil {
			res.LagP99 = max(res.LagP99, time.Duration(h.P99Lag*float64(time.Second)))
		}
	}

	s.mu.Lock()
	var all, pairs, acks []time.Duration
	for _, w := range writes {
		acks = append(acks, w.took)
		var worst time.Duration
		complete := true
		for i := range agents {
			if i == w.node {
				continue
			}
			at, ok := s.at[i][w.id]
			if !ok {
				complete = false
				continue
			}
			d := max(at.Sub(w.ack), 0) // visible before the ack reached the client: 0
			pairs = append(pairs, d)
			worst = max(worst, d)
		}
		if complete {
			all = append(all, worst)
		} else {
			res.Lost++
		}
	}
	s.mu.Unlock()
	res.Writes = len(writes)
	res.Achieved = float64(len(writes)) / elapsed.Seconds()
	res.P50, res.P99, res.Max = quantile(all, 0.50), quantile(all, 0.99), quantile(all, 1)
	res.PairP50, res.PairP99 = quantile(pairs, 0.50), quantile(pairs, 0.99)
	res.AckP50, res.AckP99, res.AckMax = quantile(acks, 0.50), quantile(acks, 0.99), quantile(acks, 1)
	return res, nil
}

// quantile sorts ds in place and returns its q-quantile (nearest rank); 0 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// catchUpRows is the rows per transaction of the catch-up workload.
const catchUpRows = 100

func runCatchUp(ctx context.Context, cfg ClusterConfig, agents []*benchAgent, logf func(string, ...any)) (ClusterResult, error) {
	res := ClusterResult{Nodes: len(agents)}
	src, victim := agents[0], agents[len(agents)-1]
	if err := victim.stop(); err != nil {
		return res, fmt.Errorf("stop the catch-up node: %w", err)
	}
	var first, last log.Version
	var stmt strings.Builder
	stmt.WriteString("INSERT INTO bench (id, node, v) VALUES ")
	for r := range catchUpRows {
		if r > 0 {
			stmt.WriteString(", ")
		}
		stmt.WriteString("(?, 0, ?)")
	}
	sqlText := stmt.String()
	id := int64(0)
	params := func() []any {
		ps := make([]any, 0, 2*catchUpRows)
		for range catchUpRows {
			id++
			ps = append(ps, id, fmt.Sprintf("row-%d", id))
		}
		return ps
	}
	// One transaction first, to learn how many changes one makes (the materializer
	// decides: a sentinel or not, one per written column).
	r0, err := src.cl.Exec(ctx, client.Options{}, client.Stmt(sqlText, params()...))
	if err != nil {
		return res, fmt.Errorf("catch-up writes: %w", err)
	}
	perTx, err := countChanges(ctx, src, r0.Version, r0.Version)
	if err != nil || perTx == 0 {
		return res, fmt.Errorf("count the changes of one transaction: %d, %v", perTx, err)
	}
	first, last = r0.Version, r0.Version
	txs := (cfg.CatchUp+perTx-1)/perTx - 1
	logf("bench cluster: writing %d more transactions of %d rows (%d changes each) while node %d is down", txs, catchUpRows, perTx, len(agents)-1)
	// A few writers in parallel: the figure is the restarted node's, not the writer's.
	type batch struct{ params []any }
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	work := make(chan batch, 16)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				r, err := src.cl.Exec(ctx, client.Options{}, client.Stmt(sqlText, b.params...))
				mu.Lock()
				if err != nil && failed == nil {
					failed = err
				}
				if err == nil {
					if first == 0 || r.Version < first {
						first = r.Version
					}
					last = max(last, r.Version)
				}
				mu.Unlock()
			}
		}()
	}
	for range txs {
		work <- batch{params()}
	}
	close(work)
	wg.Wait()
	if failed != nil {
		return res, fmt.Errorf("catch-up writes: %w", failed)
	}
	// Count the changes the victim lacks from the source's own changeset stream.
	changes, err := countChanges(ctx, src, first, last)
	if err != nil {
		return res, err
	}
	res.CatchUpChanges, res.CatchUpVersions = changes, int(last-first+1)
	wantRows := id
	logf("bench cluster: %d changes in versions %d..%d written; restarting node %d", changes, first, last, len(agents)-1)

	if err := victim.start(ctx); err != nil {
		return res, fmt.Errorf("restart: %w", err)
	}
	res.CatchUpReady = victim.readyAt.Sub(victim.startedAt)
	var n int64
	err = poll(ctx, 5*time.Minute, 2*time.Millisecond, func() (bool, error) {
		var err error
		n, _, err = victim.cl.TableStats(ctx, "bench")
		return err == nil && n >= wantRows, nil
	})
	if errors.Is(err, errPollTimeout) {
		return res, fmt.Errorf("the restarted node has %d of %d rows after 5 minutes", n, wantRows)
	}
	if err != nil {
		return res, err
	}
	res.CatchUpTime = time.Since(victim.readyAt)
	res.CatchUpRate = float64(changes) / res.CatchUpTime.Seconds()
	return res, nil
}

// countChanges sums the changes of the source's own versions first..last from its
// changeset stream.
func countChanges(ctx context.Context, a *benchAgent, first, last log.Version) (int, error) {
	n := 0
	for cs, err := range a.cl.Changes(ctx, client.ChangesOptions{}) {
		if err != nil {
			return 0, fmt.Errorf("changes stream: %w", err)
		}
		if cs.Site == a.site && cs.Version >= first && cs.Version <= last {
			n += len(cs.Changes)
		}
	}
	return n, nil
}
