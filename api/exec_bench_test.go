package api_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// instantView answers every transaction at once, so that a benchmark measures the HTTP path
// alone (server and client), not the writer.
type instantView struct {
	*materializer.Materializer
	version atomic.Uint64
}

func (v *instantView) Transact(_ context.Context, stmts []materializer.Statement) (materializer.TxResult, error) {
	res := materializer.TxResult{Results: make([]materializer.StmtResult, len(stmts)), Time: 187 * time.Microsecond}
	for i := range res.Results {
		res.Results[i] = materializer.StmtResult{RowsAffected: 1, Time: 31 * time.Microsecond}
	}
	res.Version = log.Version(v.version.Add(1))
	return res, nil
}

// BenchmarkExecHTTP is the CPU a single-row write costs on the HTTP path, the server's and
// the Go client's together, with a view that answers at once (go test ./api -run '^$' -bench
// ExecHTTP -cpu 32 gives 32 concurrent clients as `patina bench http` runs). cpu-us/op is
// the process's user+system time per transaction.
func BenchmarkExecHTTP(b *testing.B) {
	dir := b.TempDir()
	store, err := log.Open(filepath.Join(dir, "log"), log.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	mcfg := materializer.DefaultConfig(filepath.Join(dir, "views.db"))
	mcfg.Schema = []string{testSchema}
	mat := materializer.New(store, mcfg)
	if err := mat.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer mat.Close()
	acfg := api.DefaultConfig()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	counted := &countingListener{Listener: ln}
	acfg.Listener = counted
	acfg.Registry = prometheus.NewRegistry()
	acfg.View, acfg.Log = &instantView{Materializer: mat}, store
	srv := api.New(acfg)
	if err := srv.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	// net/http: the client on a net/http Transport (as with WithHTTPClient); direct: the
	// client's own pool (directTransport).
	for _, mode := range []string{"net-http", "direct"} {
		b.Run(mode, func(b *testing.B) {
			opt := client.WithMaxIdleConns(256)
			if mode == "net-http" {
				tr := http.DefaultTransport.(*http.Transport).Clone()
				tr.MaxIdleConnsPerHost = 256
				defer tr.CloseIdleConnections()
				opt = client.WithHTTPClient(&http.Client{Transport: tr})
			}
			cl, err := client.New(srv.Addr().String(), opt)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.HTTPClient().CloseIdleConnections()
			runExecs(b, cl, counted)
		})
	}
}

func runExecs(b *testing.B, cl *client.Client, counted *countingListener) {
	var id atomic.Int64
	ctx := context.Background()
	conns := counted.accepted.Load()
	b.ReportAllocs()
	before := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := id.Add(1)
			st := client.Statement{SQL: "INSERT INTO bench_http (id, a, b) VALUES (?, ?, ?)",
				Params: []log.Value{log.Integer(n), log.Text("value of some length"), log.Integer(n % 1000)}}
			if _, err := cl.Exec(ctx, client.Options{}, st); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-before)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(counted.accepted.Load()-conns), "conns")
}

// countingListener counts the connections accepted: a client that keeps its connections
// alive opens about one per concurrent request, however many requests it sends.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
