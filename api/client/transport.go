package client

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// directTransport is the RoundTripper of a Client that makes its own pool, for plain-HTTP
// agents reached without a proxy: each request is written and its answer read on the
// caller's goroutine, over a kept-alive HTTP/1.1 connection, with net/http's own request
// writer (Request.Write) and answer parser (http.ReadResponse). net/http's Transport gives
// every connection a reading and a writing goroutine and hands each request and answer
// between three goroutines through channels; for the short requests of the API (a
// single-row write is about 150 bytes each way) that hand-off cost about as much CPU as the
// agent's handling of the request. Anything else (https, a proxy from the environment,
// another host than the agent's) goes to the net/http Transport, fallback.
//
// A request that fails on a kept-alive connection is not sent again (a write may have been
// applied), as net/http does not resend a POST; an idle connection is checked before reuse
// (a peek that does not block), so that one the agent closed (IdleTimeout) is not used.
type directTransport struct {
	host     string // the agent's host:port in requests; requests elsewhere go to fallback
	network  string // how the agent is dialled: "tcp" to host, or "unix" to a socket path
	dialAddr string
	fallback *http.Transport
	dialer   net.Dialer
	maxIdle  int
	idleFor  time.Duration // an idle connection older than this is closed, not reused

	mu   sync.Mutex
	idle []*directConn // most recently used last
}

// directConn is one kept-alive connection.
type directConn struct {
	c     net.Conn
	raw   syscall.RawConn // for the liveness peek; nil when the conn has none
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // when it went idle
}

func newDirectTransport(host, network, dialAddr string, fallback *http.Transport, maxIdle int) *directTransport {
	return &directTransport{
		host:     host,
		network:  network,
		dialAddr: dialAddr,
		fallback: fallback,
		dialer:   agentDialer,
		maxIdle:  maxIdle,
		// Below the agent's default IdleTimeout (2 minutes), so that the peek rarely has a
		// closed connection to find.
		idleFor: 60 * time.Second,
	}
}

// agentDialer dials the agent, over TCP or its Unix socket, with net/http's default
// transport's timeouts; the direct transport and, for a socket, the fallback share it.
var agentDialer = net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}

// RoundTrip implements http.RoundTripper.
func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.takes(req) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	dc, err := t.get(ctx)
	if err == nil {
		// An ended context sends nothing (AfterFunc below would interrupt the exchange only
		// once its goroutine runs, after a fast one may be over).
		err = ctx.Err()
		if err != nil {
			t.put(dc)
		}
	}
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	// Cancellation: a context that ends interrupts the connection's reads and writes; the
	// connection is then closed, never reused.
	stop := context.AfterFunc(ctx, func() { dc.c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		dc.c.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if err := req.Write(dc.bw); err != nil { // closes req.Body
		return fail(err)
	}
	if err := dc.bw.Flush(); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(dc.br, req)
	if err != nil {
		return fail(err)
	}
	reuse := !resp.Close && !req.Close
	body := &directBody{t: t, dc: dc, rc: resp.Body, ctx: ctx, stop: stop, reuse: reuse}
	if resp.Body == http.NoBody || resp.ContentLength == 0 {
		body.done(bodyEOF)
		resp.Body = http.NoBody
		return resp, nil
	}
	resp.Body = body
	return resp, nil
}

// takes reports whether req is for the direct path: to the agent, over plain HTTP, with a
// body of known length that the socket's buffer takes at once (an agent may answer a body
// it refuses, 413, before reading all of it; net/http reads that answer while it writes),
// and nothing that changes the exchange (Upgrade, Expect: 100-continue).
func (t *directTransport) takes(req *http.Request) bool {
	if req.URL.Scheme != "http" || req.URL.Host != t.host || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return false
	}
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	return req.ContentLength > 0 && req.ContentLength <= maxDirectBody
}

// maxDirectBody is the largest request body sent on the direct path.
const maxDirectBody = 64 << 10

// directBody is an answer's body: at its end the connection goes back to the pool. Close
// may come from another goroutine while a Read waits (a subscription stopped from outside):
// it closes the connection, which ends that Read.
type directBody struct {
	t     *directTransport
	dc    *directConn
	rc    io.ReadCloser
	ctx   context.Context
	stop  func() bool
	reuse bool
	// state: 0 while the answer is read, then bodyEOF or bodyClosed (set once, by done).
	state atomic.Int32
}

const (
	bodyEOF    = 1
	bodyClosed = 2
)

func (b *directBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF:
		return 0, io.EOF
	case bodyClosed:
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done(bodyEOF)
		return n, io.EOF
	}
	if err != nil {
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
		b.done(bodyClosed)
	}
	return n, err
}

// Close ends the answer; a connection whose answer was not read to its end is closed.
func (b *directBody) Close() error {
	b.done(bodyClosed)
	return nil
}

// done releases the connection, once: to the pool when the answer was read to its end, the
// connection may carry another request and the context did not interrupt it; else closed.
func (b *directBody) done(state int32) {
	if !b.state.CompareAndSwap(0, state) {
		return
	}
	if b.stop() && state == bodyEOF && b.reuse {
		b.rc.Close() // at its end: nothing left to read
		b.t.put(b.dc)
		return
	}
	// The connection first: it ends a Read that waits, and the body's Close reads what is
	// left of the answer, which never ends for a stream (a subscription).
	b.dc.c.Close()
	b.rc.Close()
}

// get returns an idle connection that is still open, or a new one.
func (t *directTransport) get(ctx context.Context) (*directConn, error) {
	now := time.Now()
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		dc := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if now.Sub(dc.since) < t.idleFor && dc.open() {
			return dc, nil
		}
		dc.c.Close()
	}
	c, err := t.dialer.DialContext(ctx, t.network, t.dialAddr)
	if err != nil {
		return nil, err
	}
	dc := &directConn{c: c, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}
	if sc, ok := c.(syscall.Conn); ok {
		dc.raw, _ = sc.SyscallConn()
	}
	return dc, nil
}

// put keeps dc for the next request, or closes it when the pool is full.
func (t *directTransport) put(dc *directConn) {
	if dc.br.Buffered() > 0 { // bytes after the answer: not a connection to reuse
		dc.c.Close()
		return
	}
	dc.since = time.Now()
	t.mu.Lock()
	if len(t.idle) < t.maxIdle {
		t.idle = append(t.idle, dc)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	dc.c.Close()
}

// CloseIdleConnections closes the idle connections (http.Client.CloseIdleConnections).
func (t *directTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, dc := range idle {
		dc.c.Close()
	}
	t.fallback.CloseIdleConnections()
}
