package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// The write listener (Config.WriteAddr) serves POST /v1/transactions alone, with fasthttp
// instead of net/http. It exists for one figure: on 2 cores net/http's server costs about
// twice fasthttp's CPU per exchange and, worse, its goroutine hand-offs per request are waits
// for a processor when the writer, the fsyncs and the clients all want one; single-row writes
// from 32 clients ran about 1.25x faster through this listener (bench/RESULTS.md, issue 14
// rounds 10 and 11; docs/DECISIONS.md "One HTTP stack, and a second door for writes").
//
// It is the same endpoint, not a second one: the guards are the net/http route's, through
// functions that take either stack's headers (guard, errorHeaders, parseTimeout), then the
// same admission queue, the same transact, the same answers and errors, and the same metric
// series (route="POST /v1/transactions"). TestWriteListenerAnswersAsTheAPI holds both doors to
// the same answers. What differs, and why:
//   - HTTP/1.1 only (fasthttp has no HTTP/2): Corrosion's corro-client, which speaks h2c,
//     keeps to the API's address.
//   - A transaction is not cancelled when its client goes away mid-request (fasthttp does not
//     watch the connection while the handler runs); TxTimeout and ?timeout still bound it.
//   - Paths are cleaned by fasthttp ("//v1/transactions" is /v1/transactions), where
//     net/http's mux answers a redirect.
//   - The time to send a request, headers and body together, is bounded by BodyReadTimeout
//     (net/http: 10 s for the headers, then BodyReadTimeout for the body).

// writeReadBuffer is the most header bytes a request may carry on the write listener (431
// beyond): fasthttp keeps a buffer this big per connection while it reads.
const writeReadBuffer = 16 << 10

// writeListener is the fasthttp server of Config.WriteAddr and its connections.
type writeListener struct {
	srv *fasthttp.Server
	ln  net.Listener
	m   routeMetrics

	// conns are the open connections, closed by force when a graceful shutdown runs past
	// ShutdownTimeout (fasthttp leaves them running then).
	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	gauge   prometheus.Gauge // len(conns), patina_write_listener_connections
}

// openWriteListener listens on Config.WriteAddr, with the API's TLS when it has one.
func (s *Server) openWriteListener(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.WriteAddr)
	if err != nil {
		return fmt.Errorf("listen api write listener: %w", err)
	}
	if s.cfg.TLS != nil {
		ln = newTLSListener(ln, s.cfg.TLS)
	}
	ln = watchedListener{ln}
	wl := &writeListener{ln: ln, m: s.routeMetrics(http.MethodPost + " " + txPath), conns: map[net.Conn]struct{}{}, gauge: s.metrics.writeConns}
	wl.srv = &fasthttp.Server{
		Handler:      s.serveWrite,
		ErrorHandler: s.writeReadError,
		// No Server header, as the API's; a Date header, as net/http's.
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		ReadBufferSize:               writeReadBuffer,
		ReadTimeout:                  s.cfg.BodyReadTimeout,
		IdleTimeout:                  s.cfg.IdleTimeout,
		MaxRequestBodySize:           int(min(s.cfg.MaxBodyBytes, 1<<31-1)),
		CloseOnShutdown:              true,
		Logger:                       fastLogger{s},
		ConnState:                    wl.track,
	}
	s.wl = wl
	return nil
}

// track keeps the set of open connections and their gauge. Requests pass here twice
// (active, idle) without the lock.
func (wl *writeListener) track(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		wl.connsMu.Lock()
		wl.conns[c] = struct{}{}
		wl.gauge.Set(float64(len(wl.conns)))
		wl.connsMu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		wl.connsMu.Lock()
		delete(wl.conns, c)
		wl.gauge.Set(float64(len(wl.conns)))
		wl.connsMu.Unlock()
	}
}

// serve runs the listener until shutdown.
func (wl *writeListener) serve(s *Server) {
	if err := wl.srv.Serve(wl.ln); err != nil && !errors.Is(err, net.ErrClosed) {
		s.logger.Error("api write listener stopped", attrAddr, wl.ln.Addr().String(), attrErr, err)
	}
}

// shutdown stops accepting, lets the requests in flight finish until ctx ends, then closes
// what is left.
func (wl *writeListener) shutdown(ctx context.Context) error {
	err := wl.srv.ShutdownWithContext(ctx)
	// Shutdown before Serve has taken the listener does not close it: close it here, so
	// that Serve, whenever it starts, returns.
	wl.ln.Close()
	if err != nil {
		wl.connsMu.Lock()
		for c := range wl.conns {
			c.Close()
		}
		wl.connsMu.Unlock()
		return fmt.Errorf("shutdown api write listener: %w", err)
	}
	return nil
}

// serveWrite serves one request of the write listener: POST /v1/transactions through the
// guards of route (kindData, ScopeWrite) and handleTransactions' transact.
func (s *Server) serveWrite(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) != txPath {
		err := fmt.Errorf("%w: no endpoint %s %s on the write listener, which serves POST %s alone (the rest of the API is on its address)",
			errNotFound, ctx.Method(), ctx.Path(), txPath)
		fastAnswer(ctx, s.errorHeaders(&ctx.Response.Header, string(ctx.Path()), err), appendJSON(nil, errorBody{Error: err.Error()}))
		return
	}
	if !ctx.IsPost() {
		allowed := strings.Join(s.methods[txPath], ", ")
		ctx.Response.Header.Set("Allow", allowed)
		fastAnswer(ctx, http.StatusMethodNotAllowed, appendJSON(nil, errorBody{Error: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", ctx.Method(), txPath, allowed)}))
		return
	}
	start := time.Now()
	m := s.wl.m
	m.inFlight.Inc()
	defer func() { m.done(ctx.Response.StatusCode(), start) }()
	defer s.recoverWrite(ctx)
	if err := s.guard(fastHeaders{&ctx.Request.Header}, txPath, kindData, ScopeWrite); err != nil {
		s.fastExecError(ctx, err)
		return
	}
	// fasthttp has read the body (within MaxBodyBytes and BodyReadTimeout) before calling
	// here: a slot is taken once the body is in, as route does.
	release, err := s.acquire(context.Background(), kindData)
	if err != nil {
		s.fastExecError(ctx, err)
		return
	}
	defer release()
	var raw string
	if v := ctx.QueryArgs().Peek("timeout"); len(v) > 0 {
		raw = string(v)
	}
	timeout, err := parseTimeout(raw, 0)
	if err != nil {
		s.fastExecError(ctx, err)
		return
	}
	buf := answerBufs.Get().(*[]byte)
	defer putAnswerBuf(buf)
	// The transaction's context never ends by itself: a transaction in flight completes and
	// is answered, also when the server shuts down, as on the API's address.
	status, b, err := s.transact(context.Background(), ctx.PostBody(), timeout, fastCarrier{&ctx.Request.Header}, &ctx.Response.Header, (*buf)[:0])
	if err != nil {
		s.fastExecError(ctx, err)
		return
	}
	*buf = b
	fastAnswer(ctx, status, b) // SetBody copies b
}

// fastExecError answers err as route does for /v1/transactions (writeExecError).
func (s *Server) fastExecError(ctx *fasthttp.RequestCtx, err error) {
	status := s.errorHeaders(&ctx.Response.Header, txPath, err)
	fastAnswer(ctx, status, appendJSON(nil, s.execError(err.Error(), 0)))
}

// writeReadError answers a request fasthttp could not read: too big a body (413), too slow
// (408), headers past writeReadBuffer (431), or malformed (400); fasthttp closes the
// connection after it. A connection that sent no request in time is closed without one.
func (s *Server) writeReadError(ctx *fasthttp.RequestCtx, err error) {
	if c, ok := ctx.Conn().(*watchedConn); ok && !c.read {
		// Not a byte of a request came (a pool's spare connection past ReadTimeout, a
		// failed TLS handshake): close without an answer, as net/http does. An answer
		// nobody asked for could be read as the answer to a request the client sends at
		// that moment. (fasthttp itself closes a kept-alive connection that goes quiet.)
		c.Close()
		return
	}
	var nerr net.Error
	timeout := errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout())
	// Counted as the API's address counts the same refusals (route's guards and readBody).
	m := s.wl.m
	m.inFlight.Inc()
	defer func(start time.Time) { m.done(ctx.Response.StatusCode(), start) }(time.Now())
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		err = fmt.Errorf("%w: more than %d bytes", errTooLarge, s.cfg.MaxBodyBytes)
	case timeout:
		s.metrics.slowBodies.Inc()
		err = fmt.Errorf("%w: the request took longer than %v", errBodyTimeout, s.cfg.BodyReadTimeout)
	case errors.As(err, &small):
		fastAnswer(ctx, http.StatusRequestHeaderFieldsTooLarge, appendJSON(nil, s.execError(fmt.Sprintf("request headers larger than %d bytes", writeReadBuffer), 0)))
		return
	default:
		err = badRequestf("read request: %v", err)
	}
	s.fastExecError(ctx, err)
}

// recoverWrite turns a panic of the write path (a bug, never bad input) into a logged 500
// with a JSON error: fasthttp does not recover panics, and one would end the process.
func (s *Server) recoverWrite(ctx *fasthttp.RequestCtx) {
	v := recover()
	if v == nil {
		return
	}
	err := fmt.Errorf("internal error: panic: %v", v)
	s.logger.Error("handler panic", attrPath, txPath, attrErr, err, "stack", string(debug.Stack()))
	ctx.Response.Reset()
	fastAnswer(ctx, http.StatusInternalServerError, appendJSON(nil, errorBody{Error: err.Error()}))
}

// fastAnswer answers b, JSON and its newline, with status.
func fastAnswer(ctx *fasthttp.RequestCtx, status int, b []byte) {
	ctx.Response.Header.SetContentTypeBytes(jsonContentTypeBytes)
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}

var jsonContentTypeBytes = []byte("application/json")

// fastHeaders are a fasthttp request's headers as the guards read them (requestHeaders).
type fastHeaders struct{ h *fasthttp.RequestHeader }

func (f fastHeaders) Values(key string) []string {
	all := f.h.PeekAll(key)
	if len(all) == 0 {
		return nil
	}
	out := make([]string, len(all))
	for i, v := range all {
		out[i] = string(v)
	}
	return out
}

// fastCarrier is a fasthttp request's headers as OpenTelemetry's propagators read them.
type fastCarrier struct{ h *fasthttp.RequestHeader }

func (f fastCarrier) Get(key string) string { return string(f.h.Peek(key)) }
func (f fastCarrier) Set(key, value string) { f.h.Set(key, value) }
func (f fastCarrier) Keys() []string {
	var keys []string
	for k := range f.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}

// fastLogger sends fasthttp's own messages (accept errors, mostly) to the API's log.
type fastLogger struct{ s *Server }

func (l fastLogger) Printf(format string, args ...any) {
	l.s.logger.Debug("write listener: " + fmt.Sprintf(format, args...))
}

// watchedListener's connections note whether a byte of a request has come on them (above
// TLS, so the handshake does not count), so that writeReadError can tell a connection that
// never sent a request from one whose request was cut short. fasthttp reads a connection
// and calls its ErrorHandler on the same goroutine: read needs no lock.
type watchedListener struct{ net.Listener }

func (l watchedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c}, nil
}

type watchedConn struct {
	net.Conn
	read bool
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.read = true
	}
	return n, err
}
