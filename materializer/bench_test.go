package materializer

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/patinadb/patina/log"
)

var benchSchema = []string{"CREATE TABLE kv (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL)"}

// openBenchNode opens a node whose log syncs for real (benchmarks of the durable path).
func openBenchNode(b *testing.B, schema []string, noSync bool) *node {
	b.Helper()
	dir := b.TempDir()
	st, err := log.Open(filepath.Join(dir, "log"), log.Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig(filepath.Join(dir, "views.db"))
	cfg.Schema = schema
	m := New(st, cfg)
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	n := &node{dir: dir, store: st, m: m, cfg: cfg}
	b.Cleanup(n.close)
	return n
}

// BenchmarkLocalTx: single-row local transactions (durable log append + SQLite commit),
// from 1 and 32 concurrent callers.
func BenchmarkLocalTx(b *testing.B) {
	for _, callers := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { benchLocalTx(b, callers, false) })
	}
}

// BenchmarkLocalTxDeadline is BenchmarkLocalTx as the API calls Transact: each transaction
// under its own deadline (api.tx_timeout), so that a runaway statement can be interrupted.
// A bounded INSERT runs unwatched (checkWrite); before, the driver started a goroutine per
// statement to watch the deadline, and this benchmark took 14% more CPU.
func BenchmarkLocalTxDeadline(b *testing.B) {
	b.Run("callers=32", func(b *testing.B) { benchLocalTxCtx(b, 32, false, 5*time.Second) })
}

// BenchmarkLocalTxTraced is BenchmarkLocalTx with tracing on as the agent turns it on: every
// transaction under a sampled span of an SDK provider (spans batched to an exporter that
// drops them) and the commit hand-off through OnCommitContext.
func BenchmarkLocalTxTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	b.Cleanup(func() {
		otel.SetTracerProvider(prev)
		_ = tp.Shutdown(context.Background())
	})
	for _, callers := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { benchLocalTx(b, callers, true) })
	}
}

func benchLocalTx(b *testing.B, callers int, traced bool) { benchLocalTxCtx(b, callers, traced, 0) }

// benchLocalTxCtx is benchLocalTx with a deadline per transaction (0: none).
func benchLocalTxCtx(b *testing.B, callers int, traced bool, deadline time.Duration) {
	n := openBenchNode(b, benchSchema, false)
	if traced {
		// Reopened with the agent's hand-off when tracing is on.
		n.m.Close()
		n.cfg.OnCommitContext = func(context.Context, *log.Changeset) {}
		n.m = New(n.store, n.cfg)
		if err := n.m.Open(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	tracer := otel.Tracer("bench")
	var next atomic.Int64
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if deadline > 0 {
					ctx, cancel = context.WithTimeout(ctx, deadline)
				}
				var span trace.Span
				if traced {
					ctx, span = tracer.Start(ctx, "POST /v1/transactions") // the API's span
				}
				_, err := n.m.Transact(ctx, []Statement{{
					SQL:    "INSERT INTO kv (id, a, b, c) VALUES (?, ?, ?, ?)",
					Params: []log.Value{log.Integer(i), log.Text("value"), log.Integer(i * 7), log.Real(1.5)},
				}})
				cancel()
				if span != nil {
					span.End()
				}
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "tx/s")
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1e3, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1e3, "p99-ms")
}

// BenchmarkLocalTx100Rows: local transactions of 100 single-row inserts each.
func BenchmarkLocalTx100Rows(b *testing.B) {
	n := openBenchNode(b, benchSchema, false)
	stmts := make([]Statement, 100)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		for j := range stmts {
			id := int64(i*100 + j)
			stmts[j] = Statement{SQL: "INSERT INTO kv (id, a, b, c) VALUES (?, ?, ?, ?)",
				Params: []log.Value{log.Integer(id), log.Text("value"), log.Integer(id), log.Real(2.5)}}
		}
		if _, err := n.m.Transact(context.Background(), stmts); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "tx/s")
	b.ReportMetric(float64(b.N*100)/el.Seconds(), "rows/s")
}

var foldSchema = []string{"CREATE TABLE wide (id INTEGER PRIMARY KEY NOT NULL, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9)"}

// remoteChangesets makes count changesets of a remote site, rowsPer rows of 10 columns
// each; every other changeset updates rows of an earlier one (col_version 2), the others
// insert new rows.
func remoteChangesets(count, rowsPer int) []*log.Changeset {
	site := log.SiteID{0xAB, 1}
	out := make([]*log.Changeset, 0, count)
	nextID := int64(0)
	for v := range count {
		cs := &log.Changeset{Site: site, Version: log.Version(v + 1), TS: log.Timestamp(v + 1)}
		update := v%2 == 1
		for r := range rowsPer {
			id := nextID
			cv := uint64(1)
			if update {
				id = int64((v-1)*rowsPer/2 + r) // rows inserted by earlier changesets
				cv = 2
			} else {
				nextID++
			}
			pk := log.MustPackPK(log.Integer(id))
			for c := range 10 {
				var val log.Value
				switch c % 3 {
				case 0:
					val = log.Integer(int64(v*1000 + c))
				case 1:
					val = log.Text(fmt.Sprintf("v%d-%d", v, c))
				default:
					val = log.Real(float64(v) + 0.5)
				}
				cs.Changes = append(cs.Changes, log.Change{Table: "wide", PK: pk, CID: fmt.Sprintf("c%d", c),
					Val: val, ColVersion: cv, CL: 1, Ord: uint64(len(cs.Changes))})
			}
		}
		cs.LastOrd = uint64(len(cs.Changes) - 1)
		cs.Span = log.OrdRange{First: 0, Last: cs.LastOrd}
		out = append(out, cs)
	}
	return out
}

// BenchmarkFold: the remote fold rate in cells/s. The changesets are in the log before the
// view opens, so the timed part is exactly the fold (Open refolds the backlog).
func BenchmarkFold(b *testing.B) {
	const rowsPer = 10
	css := remoteChangesets(max(b.N, 2), rowsPer)
	dir := b.TempDir()
	st, err := log.Open(filepath.Join(dir, "log"), log.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < len(css); i += 512 {
		if _, err := st.Append(context.Background(), css[i:min(i+512, len(css))]...); err != nil {
			b.Fatal(err)
		}
	}
	cfg := DefaultConfig(filepath.Join(dir, "views.db"))
	cfg.Schema = foldSchema
	m := New(st, cfg)
	b.ResetTimer()
	start, cpu := time.Now(), processCPU(b)
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	el, cpu := time.Since(start), processCPU(b)-cpu
	b.StopTimer()
	defer m.Close()
	cells := len(css) * rowsPer * 10
	b.ReportMetric(float64(cells)/el.Seconds(), "cells/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(cells), "cpu-ns/cell")
}

// BenchmarkRebuild: rebuilding a view from a log of remote changesets, in cells/s.
func BenchmarkRebuild(b *testing.B) {
	const rowsPer = 10
	css := remoteChangesets(max(b.N, 2), rowsPer)
	n := openBenchNode(b, foldSchema, true)
	for i := 0; i < len(css); i += 512 {
		if _, err := n.m.Apply(context.Background(), css[i:min(i+512, len(css))]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start, cpu := time.Now(), processCPU(b)
	if err := n.m.Rebuild(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	el, cpu := time.Since(start), processCPU(b)-cpu
	b.StopTimer()
	b.ReportMetric(float64(len(css)*rowsPer*10)/el.Seconds(), "cells/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(css)*rowsPer*10), "cpu-ns/cell")
}

// BenchmarkApply: the whole remote path (durable log append + fold) in cells/s, changesets
// arriving from 4 concurrent callers in batches of 16, as gossip streams hand them over.
func BenchmarkApply(b *testing.B) {
	const rowsPer, callers, batch = 10, 4, 16
	css := remoteChangesets(max(b.N, 2), rowsPer)
	n := openBenchNode(b, foldSchema, false)
	var next atomic.Int64
	lat := make([]time.Duration, (len(css)+batch-1)/batch)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(batch) - batch)
				if i >= len(css) {
					return
				}
				t0 := time.Now()
				if _, err := n.m.Apply(context.Background(), css[i:min(i+batch, len(css))]); err != nil {
					b.Error(err)
					return
				}
				lat[i/batch] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(len(css)*rowsPer*10)/el.Seconds(), "cells/s")
	reportLatency(b, lat) // per Apply call: append, fold, visible
}

// BenchmarkApplyOne: latency of applying one small changeset (one row of 10 columns) at a
// time, as a broadcast delivers it: durable append, fold, visible.
func BenchmarkApplyOne(b *testing.B) {
	css := remoteChangesets(max(b.N, 2), 1)
	n := openBenchNode(b, foldSchema, false)
	lat := make([]time.Duration, len(css))
	b.ResetTimer()
	start := time.Now()
	for i, cs := range css {
		t0 := time.Now()
		if _, err := n.m.Apply(context.Background(), []*log.Changeset{cs}); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(len(css))/el.Seconds(), "changesets/s")
	reportLatency(b, lat)
}

// processCPU is the process's CPU time (user + system) so far: on a shared machine the CPU
// per cell compares between runs where the rates cannot.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLocalTxInsert100: local transactions of one 100-row INSERT each, the statement
// `patina bench write` posts (issue 14's origin side: the capture and the clocks of 100
// new rows per transaction).
func BenchmarkLocalTxInsert100(b *testing.B) {
	n := openBenchNode(b, benchSchema, false)
	q := "INSERT INTO kv (id, a, b, c) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", 100), ", ")
	params := make([]log.Value, 0, 400)
	b.ResetTimer()
	for i := range b.N {
		params = params[:0]
		for j := range 100 {
			id := int64(i*100 + j)
			params = append(params, log.Integer(id), log.Text("value of some length"), log.Integer(id%1000), log.Real(2.5))
		}
		if _, err := n.m.Transact(context.Background(), []Statement{{SQL: q, Params: params}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFoldBatches: receivers' fold of 100-row INSERT changesets (the rows of `patina
// bench write`: an integer key and four columns), keys growing but arriving out of order
// within windows of 16 changesets, applied 4 at a time, with and without the clock filter
// (clock.go), in cpu-ns per row.
func BenchmarkFoldBatches(b *testing.B) {
	schema := []string{"CREATE TABLE bw (id INTEGER NOT NULL PRIMARY KEY, a INTEGER, b REAL, c TEXT, d TEXT)"}
	for _, filter := range []bool{true, false} {
		b.Run(fmt.Sprintf("filter=%v", filter), func(b *testing.B) {
			const rowsPer, window, batch = 100, 16, 4
			count := max(b.N, window)
			css := make([]*log.Changeset, count)
			for v := range count {
				cs := &log.Changeset{Site: log.SiteID{0xAB, 2}, Version: log.Version(v + 1), TS: log.Timestamp(v + 1)}
				for r := range rowsPer {
					id := int64(v*rowsPer + r)
					pk := log.MustPackPK(log.Integer(id))
					for c, val := range []log.Value{log.Integer(id * 7), log.Real(float64(id) / 3), log.Text(fmt.Sprintf("host-%d", id%1000)), log.Text("state-running-since-2026-12-06T07:00:00Z")} {
						cs.Changes = append(cs.Changes, log.Change{Table: "bw", PK: pk, CID: string(rune('a' + c)), Val: val, ColVersion: 1, CL: 1, Ord: uint64(len(cs.Changes))})
					}
				}
				cs.LastOrd = uint64(len(cs.Changes) - 1)
				cs.Span = log.OrdRange{First: 0, Last: cs.LastOrd}
				css[v] = cs
			}
			for i := 0; i < len(css); i += window { // out of order within each window
				w := css[i:min(i+window, len(css))]
				for j := range w {
					k := (j*7 + 3) % len(w)
					w[j], w[k] = w[k], w[j]
				}
			}
			dir := b.TempDir()
			st, err := log.Open(filepath.Join(dir, "log"), log.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			cfg := DefaultConfig(filepath.Join(dir, "views.db"))
			cfg.Schema, cfg.noClockFilter = schema, !filter
			n := &node{dir: dir, store: st, m: New(st, cfg), cfg: cfg}
			if err := n.m.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(n.close)
			b.ResetTimer()
			cpu := processCPU(b)
			for i := 0; i < len(css); i += batch {
				if _, err := n.m.Apply(context.Background(), css[i:min(i+batch, len(css))]); err != nil {
					b.Fatal(err)
				}
			}
			cpu = processCPU(b) - cpu
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(css)*rowsPer), "cpu-ns/row")
			b.ReportMetric(float64(n.m.clockSkips.Load())/float64(len(css)*rowsPer), "skipped/row")
		})
	}
}
