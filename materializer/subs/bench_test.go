package subs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

const flySchema = `CREATE TABLE apps (id INTEGER PRIMARY KEY NOT NULL, name TEXT);
CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app_id INTEGER, addr TEXT, state TEXT)`

// flyQuery is what a proxy subscribes to per app: one row per machine, joined to its app.
const flyQuery = `SELECT m.id, m.addr, m.state, a.name FROM machines m JOIN apps a ON a.id = m.app_id WHERE m.app_id = ?`

const machinesPerApp = 3

// flyNode is a real node with apps and their machines.
func flyNode(b *testing.B, apps int) *realNode {
	n := newRealNode(b, flySchema)
	var stmts []materializer.Statement
	for a := range apps {
		stmts = append(stmts, materializer.Statement{SQL: `INSERT INTO apps VALUES (?, ?)`, Params: []log.Value{log.Integer(int64(a)), log.Text(fmt.Sprint("app-", a))}})
		for k := range machinesPerApp {
			stmts = append(stmts, materializer.Statement{SQL: `INSERT INTO machines VALUES (?, ?, ?, 'started')`,
				Params: []log.Value{log.Text(fmt.Sprintf("m-%d-%d", a, k)), log.Integer(int64(a)), log.Text("10.0.0.1")}})
		}
	}
	if _, err := n.mat.Transact(context.Background(), stmts); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkEventLatency: time from a write's acknowledgement (Transact returns) to the
// change event in a client of the subscription it affects, with 1 and 1,000 live
// subscriptions of the fly-proxy kind, each with a reading client.
func BenchmarkEventLatency(b *testing.B) {
	for _, nsubs := range []int{1, 1000} {
		b.Run(fmt.Sprint("subs=", nsubs), func(b *testing.B) {
			n := flyNode(b, nsubs)
			e := openEngine(b, n.mat, Config{Dir: b.TempDir()})
			streams := make([]*Stream, nsubs)
			for a := range nsubs {
				streams[a] = subscribe(b, e, flyQuery, Options{SkipRows: true}, log.Integer(int64(a)))
				if _, err := streams[a].Next(context.Background()); err != nil { // columns
					b.Fatal(err)
				}
				if _, err := streams[a].Next(context.Background()); err != nil { // eoq
					b.Fatal(err)
				}
			}
			r := rand.New(rand.NewPCG(1, 2))
			lat := make([]time.Duration, 0, b.N)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				a := r.IntN(nsubs)
				st := materializer.Statement{SQL: `UPDATE machines SET addr = ? WHERE id = ?`,
					Params: []log.Value{log.Text(fmt.Sprint("10.1.", i)), log.Text(fmt.Sprintf("m-%d-%d", a, r.IntN(machinesPerApp)))}}
				if _, err := n.mat.Transact(ctx, []materializer.Statement{st}); err != nil {
					b.Fatal(err)
				}
				acked := time.Now()
				if _, err := streams[a].Next(ctx); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(acked))
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}

// BenchmarkEventThroughput: change events one subscription delivers to one client per
// second, from transactions of 500 row updates each. Every transaction updates rows no other
// one touches: the engine diffs result states, so two updates of a row that land in one
// batch of commits rightly make one event, which would make the count unpredictable.
func BenchmarkEventThroughput(b *testing.B) {
	const perTx = 500
	rows := b.N * perTx
	n := newRealNode(b, flySchema)
	ctx := context.Background()
	if _, err := n.mat.Transact(ctx, []materializer.Statement{{SQL: `INSERT INTO apps VALUES (1, 'app')`}}); err != nil {
		b.Fatal(err)
	}
	for lo := 0; lo < rows; lo += 5000 {
		// A recursive CTE makes the rows in SQLite rather than in 5,000 statements.
		if _, err := n.mat.Transact(ctx, []materializer.Statement{{
			SQL:    `INSERT INTO machines (id, app_id, addr, state) WITH RECURSIVE k(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?) SELECT 'm-' || i, 1, '10.0.0.1', 'started' FROM k`,
			Params: []log.Value{log.Integer(int64(lo)), log.Integer(int64(min(lo+5000, rows)))}}}); err != nil {
			b.Fatal(err)
		}
	}
	e := openEngine(b, n.mat, Config{Dir: b.TempDir()})
	st := subscribe(b, e, `SELECT m.id, m.addr, a.name FROM machines m JOIN apps a ON a.id = m.app_id`, Options{SkipRows: true})
	for range 2 {
		if _, err := st.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var readErr error
	events := 0
	b.ResetTimer()
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for events < rows {
			if _, err := st.Next(ctx); err != nil {
				readErr = err
				return
			}
			events++
		}
	}()
	for i := range b.N {
		if _, err := n.mat.Transact(ctx, []materializer.Statement{{
			SQL:    `UPDATE machines SET addr = '10.2.0.1' WHERE id IN (WITH RECURSIVE k(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?) SELECT 'm-' || i FROM k)`,
			Params: []log.Value{log.Integer(int64(i * perTx)), log.Integer(int64((i + 1) * perTx))}}}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	if readErr != nil {
		b.Fatal(readErr)
	}
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
}
