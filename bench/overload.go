package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// OverloadConfig configures the overload workload (issue 14): an open-loop load of single-row
// writes on one agent, once with the admission queue off (every request finding no free
// slot refused at once, as before the queue) and once with it on, in the same run, counting
// the 503 refusals of each.
type OverloadConfig struct {
	// Binary is the patina executable to spawn.
	Binary string
	// Rate is the writes per second, open loop: write i is sent at start + i/Rate whatever
	// the earlier ones took, each on its own connection slot (no client-side limit).
	Rate int
	// Duration is how long writes are sent.
	Duration time.Duration
	// MaxConcurrency is the agent's api.max_concurrency (0: its default, 256).
	MaxConcurrency int
	// QueueTimeout is the agent's api.queue_timeout in the pass with the queue (0: its
	// default, 2 s).
	QueueTimeout time.Duration
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

// DefaultOverloadConfig is the load: 1,000 writes/s for 10 s.
func DefaultOverloadConfig() OverloadConfig {
	return OverloadConfig{Rate: 1000, Duration: 10 * time.Second}
}

// Validate reports the first problem of c.
func (c *OverloadConfig) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("bench overload: no patina binary")
	case c.Rate <= 0 || c.Rate > 100_000:
		return fmt.Errorf("bench overload: rate %d; want 1..100000", c.Rate)
	case c.Duration <= 0:
		return errors.New("bench overload: duration must be positive")
	case c.MaxConcurrency < 0:
		return errors.New("bench overload: negative max concurrency")
	}
	return nil
}

// OverloadRun is one pass of the load.
type OverloadRun struct {
	Queue            bool
	Sent, OK, Shed   int // Shed: 503 answers
	Other            int // any other failure
	P50, P99, Max    time.Duration
	MostInFlight     int
	FirstOtherFailed string
}

// OverloadResult is both passes.
type OverloadResult struct {
	Rate           int
	MaxConcurrency int
	NoQueue, Queue OverloadRun
}

func (r OverloadRun) String() string {
	name := "admission queue off (503 at once)"
	if r.Queue {
		name = "admission queue on (defaults)   "
	}
	s := fmt.Sprintf("%s: %d sent, %d ok, %d refused with 503, %d other failures; ok latency p50 %s p99 %s max %s; at most %d in flight",
		name, r.Sent, r.OK, r.Shed, r.Other, ms(r.P50), ms(r.P99), ms(r.Max), r.MostInFlight)
	if r.FirstOtherFailed != "" {
		s += "\n  first other failure: " + r.FirstOtherFailed
	}
	return s
}

func (r OverloadResult) String() string {
	mc := "256 (default)"
	if r.MaxConcurrency > 0 {
		mc = fmt.Sprint(r.MaxConcurrency)
	}
	return fmt.Sprintf("open loop %d writes/s, api.max_concurrency %s\n%s\n%s", r.Rate, mc, r.NoQueue, r.Queue)
}

// RunOverload runs the two passes, each on a fresh agent.
func RunOverload(ctx context.Context, cfg OverloadConfig) (res OverloadResult, err error) {
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	res.Rate, res.MaxConcurrency = cfg.Rate, cfg.MaxConcurrency
	logf := quiet(cfg.Logf)
	dir, err := os.MkdirTemp("", "patina-bench-overload-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(writeSchema), 0o644); err != nil {
		return res, err
	}
	for i, queue := range []bool{false, true} {
		logf("bench overload: pass %d, queue %v, %d writes/s for %v", i+1, queue, cfg.Rate, cfg.Duration)
		run, err := overloadPass(ctx, cfg, filepath.Join(dir, fmt.Sprintf("node%d", i)), schema, queue)
		if err != nil {
			return res, err
		}
		if queue {
			res.Queue = run
		} else {
			res.NoQueue = run
		}
	}
	return res, nil
}

func overloadPass(ctx context.Context, cfg OverloadConfig, dir, schema string, queue bool) (run OverloadRun, err error) {
	run.Queue = queue
	total := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	ports := &portPicker{}
	// Connections are not limited on the client side: the agent's limit is what is measured.
	a, err := newBenchAgent(cfg.Binary, dir, schema, total, ports)
	ports.release()
	if err != nil {
		return run, err
	}
	if !queue {
		a.env = append(a.env, "PATINA_API_QUEUE_DEPTH=-1")
	}
	if queue && cfg.QueueTimeout > 0 {
		a.env = append(a.env, "PATINA_API_QUEUE_TIMEOUT="+cfg.QueueTimeout.String())
	}
	if cfg.MaxConcurrency > 0 {
		a.env = append(a.env, fmt.Sprintf("PATINA_API_MAX_CONCURRENCY=%d", cfg.MaxConcurrency))
	}
	defer a.kill()
	if err := a.start(ctx); err != nil {
		return run, err
	}
	var (
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
		inFlight int
	)
	interval := time.Second / time.Duration(cfg.Rate)
	start := time.Now()
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d) // the open loop's schedule, not synchronization
		}
		if ctx.Err() != nil {
			break
		}
		run.Sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			inFlight++
			run.MostInFlight = max(run.MostInFlight, inFlight)
			mu.Unlock()
			body := fmt.Sprintf(`[["INSERT INTO bench_write (id, a, c) VALUES (?, ?, ?)", [%d, %d, "overload"]]]`, i, i)
			t0 := time.Now()
			status, msg, err := postStatus(ctx, a, body)
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			inFlight--
			switch {
			case err == nil && status == http.StatusOK:
				run.OK++
				lat = append(lat, took)
			case err == nil && status == http.StatusServiceUnavailable:
				run.Shed++
			default:
				run.Other++
				if run.FirstOtherFailed == "" {
					run.FirstOtherFailed = fmt.Sprintf("HTTP %d %s %v", status, msg, err)
				}
			}
		}()
	}
	wg.Wait()
	run.P50, run.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
	for _, d := range lat {
		run.Max = max(run.Max, d)
	}
	if err := a.stop(); err != nil {
		return run, err
	}
	return run, ctx.Err()
}

func postStatus(ctx context.Context, a *benchAgent, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.api+"/v1/transactions", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(msg)), nil
}
