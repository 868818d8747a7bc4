package bench

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/patinadb/patina/api"
)

// floorServer serves the HTTP exchange of a write without a database (HTTPConfig.Floor): a
// net/http server on 127.0.0.1 with the API server's connection settings, whose
// POST /v1/transactions reads the request, waits for the next tick of a clock with period
// wait and answers what a one-statement transaction answers. The tick stands in for a group
// commit (every waiting request is answered at once), so that connections park and wake as
// they do against a node. Run with the same clients and load loop as an HTTP run, it gives
// what the exchange alone costs on this machine; the difference to a real run is the node's
// database path.
//
// With fast, the server is fasthttp's, as the node's write listener (api.write_addr) uses:
// then the floor is the exchange of a write sent there.
type floorServer struct {
	srv  *http.Server
	fast *fasthttp.Server // instead of srv, with fast
	ln   net.Listener
	dir  string // the Unix socket's temp dir, or ""
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	tick chan struct{} // closed at the next tick
}

// floorAnswer is a one-statement transaction's answer as the API writes it.
var floorAnswer = []byte(`{"results":[{"rows_affected":1,"time":0.000021}],"time":0.000021,"version":1,"actor_id":"00000000000000000000000000000000"}`)

// openFloor listens on 127.0.0.1, or with socket on a Unix socket in a temp dir; fast
// serves with fasthttp instead of net/http.
func openFloor(wait time.Duration, socket, fast bool) (*floorServer, error) {
	f := &floorServer{stop: make(chan struct{}), done: make(chan struct{}), tick: make(chan struct{})}
	var err error
	if socket {
		if f.dir, err = os.MkdirTemp("", "patina-bench-floor-"); err != nil {
			return nil, err
		}
		f.ln, err = net.Listen("unix", filepath.Join(f.dir, "api.sock"))
	} else {
		f.ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		f.removeDir()
		return nil, err
	}
	// The API server's keep-alive settings: its idle timeout decides when a client's pooled
	// connection is closed under it.
	go f.clock(wait)
	if fast {
		f.fast = &fasthttp.Server{Handler: f.serveFast, NoDefaultServerHeader: true, NoDefaultContentType: true,
			DisablePreParseMultipartForm: true, IdleTimeout: api.DefaultConfig().IdleTimeout, MaxRequestBodySize: 1 << 20, CloseOnShutdown: true}
		go f.fast.Serve(f.ln)
		return f, nil
	}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: api.DefaultConfig().IdleTimeout}
	go f.srv.Serve(f.ln)
	return f, nil
}

// serveFast is serve under fasthttp.
func (f *floorServer) serveFast(ctx *fasthttp.RequestCtx) {
	if status, msg := floorRefusal(ctx.IsPost(), string(ctx.Path()), ctx.PostBody()); status != 0 {
		ctx.Error(msg, status)
		return
	}
	if !f.waitTick(f.stop) {
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(floorAnswer)
}

// addr is the client's address of the server.
func (f *floorServer) addr() string {
	if f.dir != "" {
		return "unix://" + f.ln.Addr().String()
	}
	return f.ln.Addr().String()
}

func (f *floorServer) removeDir() {
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}

// clock answers every waiting request once per period; with no period, requests do not wait.
func (f *floorServer) clock(period time.Duration) {
	defer close(f.done)
	if period <= 0 {
		f.mu.Lock()
		close(f.tick)
		f.mu.Unlock()
		<-f.stop
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		f.mu.Lock()
		close(f.tick)
		f.tick = make(chan struct{})
		f.mu.Unlock()
	}
}

func (f *floorServer) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		body = nil // refused below as not a JSON array
	}
	if status, msg := floorRefusal(r.Method == http.MethodPost, r.URL.Path, body); status != 0 {
		http.Error(w, msg, status)
		return
	}
	if !f.waitTick(r.Context().Done()) {
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(floorAnswer))}
	w.Write(floorAnswer)
}

// floorRefusal is the error status and body the floor answers a request with, 0 when it
// takes it: a POST to /v1/transactions whose body is a JSON array.
func floorRefusal(post bool, path string, body []byte) (int, string) {
	if !post || path != "/v1/transactions" {
		return http.StatusNotFound, `{"error":"the floor server answers POST /v1/transactions only"}`
	}
	if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		return http.StatusBadRequest, `{"error":"want a JSON array of statements"}`
	}
	return 0, ""
}

// waitTick waits for the clock's next tick; false when abort comes first.
func (f *floorServer) waitTick(abort <-chan struct{}) bool {
	f.mu.Lock()
	tick := f.tick
	f.mu.Unlock()
	select {
	case <-tick:
		return true
	case <-abort:
		return false
	}
}

// close closes the server and its connections first, which ends any handler still waiting
// for a tick (a run cancelled mid-request), then stops the clock.
func (f *floorServer) close() error {
	var err error
	if f.fast != nil {
		close(f.stop) // ends the handlers waiting for a tick, which Shutdown waits for
		err = f.fast.Shutdown()
	} else {
		err = f.srv.Close()
		close(f.stop)
	}
	<-f.done
	f.removeDir()
	return err
}
