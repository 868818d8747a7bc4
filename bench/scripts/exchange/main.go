// Command exchange measures what one single-row write's HTTP exchange costs on each end,
// with net/http or with fasthttp as the server and Patina's Go client or fasthttp's as the
// client (issue 14, round 10, bench/RESULTS.md). It is a module of its own so that fasthttp
// never becomes a dependency of Patina: it answers a what-if, it is not a part.
//
// The server answers POST /v1/transactions as `patina bench http --floor` does (what a
// one-statement transaction answers, every waiting request at the next tick of a 1 ms clock,
// as a group commit would); --clients goroutines write in a closed loop. It prints exchanges
// a second and this process's CPU (user + system) per exchange.
//
//	cd bench/scripts/exchange && go run . --server nethttp --client patina
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
	"github.com/valyala/fasthttp"
)

// answer is a one-statement transaction's answer as the API writes it (bench/floor.go).
var answer = []byte(`{"results":[{"rows_affected":1,"time":0.000021}],"time":0.000021,"version":1,"actor_id":"00000000000000000000000000000000"}`)

// cpuProfile is --cpuprofile.
var cpuProfile string

const insert = "INSERT INTO bench_http (id, a, b) VALUES (?, ?, ?)"

// clock closes its channel at every tick, answering every request waiting for it at once.
type clock struct {
	mu   sync.Mutex
	tick chan struct{}
}

func (c *clock) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tick
}

func (c *clock) run(period time.Duration) {
	t := time.NewTicker(period)
	for range t.C {
		c.mu.Lock()
		close(c.tick)
		c.tick = make(chan struct{})
		c.mu.Unlock()
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	server := flag.String("server", "nethttp", "nethttp or fasthttp")
	clientKind := flag.String("client", "patina", "patina (api/client, its direct transport) or fasthttp")
	clients := flag.Int("clients", 32, "concurrent clients")
	duration := flag.Duration("duration", 5*time.Second, "measured time, after a 1 s warm-up")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the measured time to this file")
	flag.Parse()
	cpuProfile = *profile
	if err := run(*server, *clientKind, *clients, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "exchange:", err)
		os.Exit(1)
	}
}

func run(server, clientKind string, clients int, duration time.Duration) error {
	clk := &clock{tick: make(chan struct{})}
	go clk.run(time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	switch server {
	case "nethttp":
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil || !bytes.HasPrefix(body, []byte("[")) {
				http.Error(w, `{"error":"want a JSON array"}`, http.StatusBadRequest)
				return
			}
			<-clk.next()
			h := w.Header()
			h["Content-Type"] = []string{"application/json"}
			h["Content-Length"] = []string{strconv.Itoa(len(answer))}
			w.Write(answer)
		})}
		go srv.Serve(ln)
	case "fasthttp":
		srv := &fasthttp.Server{ReadTimeout: 10 * time.Second, Handler: func(ctx *fasthttp.RequestCtx) {
			if !bytes.HasPrefix(ctx.PostBody(), []byte("[")) {
				ctx.Error(`{"error":"want a JSON array"}`, http.StatusBadRequest)
				return
			}
			<-clk.next()
			ctx.SetContentType("application/json")
			ctx.SetBody(answer)
		}}
		go srv.Serve(ln)
	default:
		return fmt.Errorf("--server %q: want nethttp or fasthttp", server)
	}
	addr := ln.Addr().String()
	var exec func(ctx context.Context, id int64) error
	switch clientKind {
	case "patina":
		cl, err := client.New("http://"+addr, client.WithMaxIdleConns(2*clients))
		if err != nil {
			return err
		}
		exec = func(ctx context.Context, id int64) error {
			_, err := cl.Exec(ctx, client.Options{}, client.Statement{SQL: insert,
				Params: []log.Value{log.Integer(id), log.Text("value of some length"), log.Integer(id % 1000)}})
			return err
		}
	case "fasthttp":
		hc := &fasthttp.HostClient{Addr: addr, MaxConns: 2 * clients}
		url := "http://" + addr + "/v1/transactions"
		exec = func(_ context.Context, id int64) error {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			req.Header.SetMethod(http.MethodPost)
			req.Header.SetContentType("application/json")
			b := req.Body()[:0]
			b = append(b, `[["`+insert+`", [`...)
			b = strconv.AppendInt(b, id, 10)
			b = append(b, `, "value of some length", `...)
			b = strconv.AppendInt(b, id%1000, 10)
			b = append(b, "]]]"...)
			req.SetBody(b)
			if err := hc.Do(req, resp); err != nil {
				return err
			}
			if resp.StatusCode() != http.StatusOK {
				return fmt.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
			}
			return nil
		}
	default:
		return fmt.Errorf("--client %q: want patina or fasthttp", clientKind)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ops atomic.Int64
	var measuring atomic.Bool
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := int64(i) << 40; ctx.Err() == nil; id++ {
				if err := exec(ctx, id); err != nil {
					if ctx.Err() == nil {
						errs <- err
						cancel()
					}
					return
				}
				if measuring.Load() {
					ops.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second) // warm-up: connections made, pools filled
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	c0, t0 := cpuTime(), time.Now()
	measuring.Store(true)
	select {
	case <-time.After(duration):
	case <-ctx.Done():
	}
	measuring.Store(false)
	if cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	c1, elapsed, n := cpuTime(), time.Since(t0), ops.Load()
	cancel()
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	if n == 0 {
		return fmt.Errorf("no exchange completed")
	}
	fmt.Printf("server %s, client %s: %.0f exchanges/s, cpu %.1f us per exchange, %.2f cores\n",
		server, clientKind, float64(n)/elapsed.Seconds(), float64((c1-c0).Nanoseconds())/1e3/float64(n),
		float64(c1-c0)/float64(elapsed))
	return nil
}
