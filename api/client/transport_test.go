package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
)

// agentStub is an HTTP server on 127.0.0.1 that counts the connections it accepts.
type agentStub struct {
	srv      *http.Server
	addr     string
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func newAgentStub(t *testing.T, h http.HandlerFunc) *agentStub {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &agentStub{addr: ln.Addr().String()}
	a.srv = &http.Server{Handler: h, ConnState: func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			a.accepted.Add(1)
			a.mu.Lock()
			a.conns = append(a.conns, c)
			a.mu.Unlock()
		}
	}}
	go a.srv.Serve(ln)
	t.Cleanup(func() { a.srv.Close() })
	return a
}

// closeConns closes every connection the server accepted, from its side.
func (a *agentStub) closeConns() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

func newStubClient(t *testing.T, a *agentStub) (*Client, *directTransport) {
	t.Helper()
	c, err := New(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.HTTPClient().CloseIdleConnections)
	dt, ok := c.HTTPClient().Transport.(*directTransport)
	if !ok {
		t.Fatalf("a plain-HTTP client without a proxy uses %T, not the direct transport", c.HTTPClient().Transport)
	}
	return c, dt
}

func get(t *testing.T, c *Client, ctx context.Context, path string) (string, error) {
	t.Helper()
	req, err := c.newRequest(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestDirectKeepsConnections: sequential requests share one connection, concurrent ones one
// each, and the answers (fixed length, chunked, empty) arrive whole.
func TestDirectKeepsConnections(t *testing.T) {
	a := newAgentStub(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one, "))
			http.NewResponseController(w).Flush()
			w.Write([]byte("part two"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			io.Copy(w, r.Body)
			w.Write([]byte(r.URL.Path))
		}
	})
	c, _ := newStubClient(t, a)
	ctx := context.Background()
	for i := range 20 {
		for path, want := range map[string]string{"/chunked": "part one, part two", "/empty": "", "/x": "/x"} {
			if got, err := get(t, c, ctx, path); err != nil || got != want {
				t.Fatalf("request %d %s: %q, %v; want %q", i, path, got, err, want)
			}
		}
	}
	if n := a.accepted.Load(); n != 1 {
		t.Fatalf("60 sequential requests opened %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				body := strings.Repeat("b", g*i)
				req, _ := c.newRequest(ctx, http.MethodPost, "/p", nil, strings.NewReader(body))
				resp, err := c.HTTPClient().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(got) != body+"/p" {
					t.Errorf("echo: %d bytes, %v", len(got), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := a.accepted.Load(); n > 1+8 {
		t.Fatalf("8 goroutines opened %d connections, want at most 8 more than the first", n-1)
	}
}

// TestDirectPeerClosedIdle: a kept-alive connection the agent closed while it was idle is not
// used for the next request (a POST, which is never sent twice).
func TestDirectPeerClosedIdle(t *testing.T) {
	a := newAgentStub(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	c, dt := newStubClient(t, a)
	ctx := context.Background()
	if got, err := get(t, c, ctx, "/"); err != nil || got != "ok" {
		t.Fatalf("%q, %v", got, err)
	}
	a.closeConns()
	testutil.WaitFor(t, 10*time.Second, "the idle connection to show its end", func() bool {
		dt.mu.Lock()
		defer dt.mu.Unlock()
		return len(dt.idle) == 1 && !dt.idle[0].open()
	})
	req, _ := c.newRequest(ctx, http.MethodPost, "/", nil, strings.NewReader("x"))
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("POST after the agent closed the idle connection: %v", err)
	}
	closeBody(resp.Body)
	if n := a.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestDirectCancel: a context that ends interrupts a request in flight with the context's
// error; the interrupted connection is not reused, and the next request works.
func TestDirectCancel(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	a := newAgentStub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte("ok"))
	})
	defer close(release)
	c, dt := newStubClient(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	if _, err := get(t, c, ctx, "/slow"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want context.Canceled", err)
	}
	dt.mu.Lock()
	idle := len(dt.idle)
	dt.mu.Unlock()
	if idle != 0 {
		t.Fatalf("the interrupted connection went back to the pool")
	}
	if got, err := get(t, c, context.Background(), "/"); err != nil || got != "ok" {
		t.Fatalf("after a cancelled request: %q, %v", got, err)
	}
	// A context already ended: the request is not sent.
	if _, err := get(t, c, ctx, "/"); !errors.Is(err, context.Canceled) {
		t.Fatalf("request with an ended context: %v", err)
	}
}

// TestDirectBodyClosedEarly: an answer closed before its end (a long one, a stream that
// never ends) closes its connection at once (its rest would be read as the next answer);
// the next request gets a new one.
func TestDirectBodyClosedEarly(t *testing.T) {
	big := strings.Repeat("z", 1<<20)
	a := newAgentStub(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(big))
		case "/stream":
			for r.Context().Err() == nil {
				if _, err := w.Write([]byte("event\n")); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
			}
		default:
			w.Write([]byte("ok"))
		}
	})
	c, _ := newStubClient(t, a)
	for i, path := range []string{"/big", "/stream"} {
		req, _ := c.newRequest(context.Background(), http.MethodGet, path, nil, nil)
		resp, err := c.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() {
			resp.Body.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Close of an answer not read to its end did not return", path)
		}
		if got, err := get(t, c, context.Background(), "/"); err != nil || got != "ok" {
			t.Fatalf("after an answer closed early: %q, %v", got, err)
		}
		// The answer's connection is closed; "/" of the round before left one in the pool.
		if n := a.accepted.Load(); n != int64(i+2) {
			t.Fatalf("%d connections, want %d", n, i+2)
		}
	}
}

// TestDirectLargeBodyFallsBack: a body larger than the direct path sends goes through
// net/http's Transport (which reads an early answer while it writes), and arrives whole.
func TestDirectLargeBodyFallsBack(t *testing.T) {
	a := newAgentStub(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		// net/http's Transport asks for gzip; the direct path does not.
		if r.Header.Get("Accept-Encoding") != "" {
			w.Write([]byte("net/http "))
		}
		w.Write([]byte(strings.Repeat("n", int(n%7))))
	})
	c, _ := newStubClient(t, a)
	for _, tt := range []struct {
		size int
		want string
	}{{10, "nnn"}, {maxDirectBody, "nn"}, {maxDirectBody + 1, "net/http nnn"}} {
		req, _ := c.newRequest(context.Background(), http.MethodPost, "/", nil, strings.NewReader(strings.Repeat("a", tt.size)))
		resp, err := c.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != tt.want {
			t.Errorf("body of %d bytes: %q, want %q", tt.size, got, tt.want)
		}
	}
}

// TestDirectOnlyForPlainHTTP: https and proxied agents keep net/http's Transport.
func TestDirectOnlyForPlainHTTP(t *testing.T) {
	proxied := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "127.0.0.1:1"})}
	u := &url.URL{Scheme: "http", Host: "agent.example:8080"}
	if direct(u, proxied) {
		t.Error("a proxied agent uses the direct transport")
	}
	c, err := New("https://127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.HTTPClient().Transport.(*directTransport); ok {
		t.Error("an https agent uses the direct transport")
	}
}

// TestDirectCloseEndsWaitingRead: Close from another goroutine ends a Read that waits for
// the next event of a stream (a subscription stopped from outside), at once.
func TestDirectCloseEndsWaitingRead(t *testing.T) {
	a := newAgentStub(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first\n"))
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // then nothing until the client goes
	})
	c, _ := newStubClient(t, a)
	req, _ := c.newRequest(context.Background(), http.MethodGet, "/stream", nil, nil)
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 10))
		readErr <- err
	}()
	closed := make(chan struct{})
	go func() {
		resp.Body.Close()
		close(closed)
	}()
	for _, ch := range []struct {
		what string
		done func() bool
	}{
		{"Close", func() bool {
			select {
			case <-closed:
				return true
			case <-time.After(10 * time.Second):
				return false
			}
		}},
		{"the waiting Read", func() bool {
			select {
			case err := <-readErr:
				return err != nil
			case <-time.After(10 * time.Second):
				return false
			}
		}},
	} {
		if !ch.done() {
			t.Fatalf("%s did not end with an error within 10 s of Close", ch.what)
		}
	}
	if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Fatalf("Read after Close: %v", err)
	}
}

// TestDirectErrorsReadAsHTTPClients: the client's own transport, sent through without
// http.Client, fails as http.Client would: a *url.Error naming the method and the URL, with a
// password in the address redacted, and the cause (here a refused connection) kept in the chain.
func TestDirectErrorsReadAsHTTPClients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := New("http://ops:s3cret@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.HTTPClient().Transport.(*directTransport); !ok {
		t.Fatalf("the client uses %T, not its direct transport", c.HTTPClient().Transport)
	}
	_, err = c.Exec(context.Background(), Options{}, Statement{SQL: "INSERT INTO t VALUES (1)"})
	var ue *url.Error
	if !errors.As(err, &ue) || ue.Op != "Post" || !strings.HasPrefix(ue.URL, "http://ops:xxxxx@"+addr+"/v1/transactions") {
		t.Fatalf("error %v (%T), want a *url.Error for Post http://ops:xxxxx@%s/v1/transactions", err, err, addr)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the password is in the error: %v", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("the dial error is not in the chain: %v", err)
	}
}
