package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// Transactor runs local write transactions. Transact blocks until the transaction is durable
// in the log and visible in the view, or failed; concurrent calls are safe.
type Transactor interface {
	Transact(ctx context.Context, stmts []materializer.Statement) (materializer.TxResult, error)
}

// Querier runs read-only statements. The Rows it returns belong to the caller, who must Close
// them; concurrent calls are safe.
type Querier interface {
	Query(ctx context.Context, st materializer.Statement) (materializer.Rows, error)
}

// Applier folds changesets made elsewhere. Apply blocks until every complete version among
// them is visible in the view; it does not keep the slice.
type Applier interface {
	Apply(ctx context.Context, css []*log.Changeset) ([]bool, error)
}

// Migrator applies schema statements: what they add is appended to the log as a schema
// changeset that gossip spreads like data. It blocks on the writer loop.
type Migrator interface {
	Migrate(ctx context.Context, stmts []string) (materializer.MigrateResult, error)
}

// Inspector answers questions about the view; all methods are safe for concurrent use and do
// not block on the writer.
type Inspector interface {
	TableStats(ctx context.Context, tables []string) ([]materializer.TableStat, []string, error)
	Tables() []string
	FoldPosition() log.Seq
	// Schema is the replicated schema as this node holds it.
	Schema() materializer.SchemaInfo
}

// Notifier publishes commit notices (used by subscriptions); see materializer.Notify.
type Notifier interface {
	Notify(buf int) (<-chan materializer.Notice, func())
}

// View is everything the API needs of the materializer. *materializer.Materializer
// satisfies it.
type View interface {
	Transactor
	Querier
	Applier
	Migrator
	Inspector
	Notifier
}

// ChangeLog is what the API reads of the log. *log.Store satisfies it. Read and LastSeq never
// block; Wait blocks until the log grows past after or ctx ends. Changesets returned by Read
// belong to the caller.
type ChangeLog interface {
	SiteID() log.SiteID
	Read(after log.Seq, max int) ([]*log.Changeset, error)
	Wait(ctx context.Context, after log.Seq) error
	LastSeq() log.Seq
	Vector() *log.Vector
	Stats() log.Stats
}

// Member is one cluster member as GET /v1/members shows it.
type Member struct {
	Name       string
	SiteID     log.SiteID
	State      string // alive, suspect, dead or left
	GossipAddr string
	QUICAddr   string
	APIAddr    string
	RTT        time.Duration // 0 when unknown (and for this node)
	Self       bool          // this node
}

// Cluster is the membership view of the gossip component. Members must not block for long;
// it is called for every /v1/members and /v1/health request. The gossip component may also
// implement LagReporter.
type Cluster interface {
	Members() []Member
}

// LagReporter is implemented by a Cluster that measures replication lag (write at the origin
// to visible here); /v1/health reports it as p99_lag.
type LagReporter interface {
	P99Lag() time.Duration
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address, e.g. 127.0.0.1:8080, used when Listener is nil.
	Addr string
	// Listener, when set, is served instead of listening on Addr (the agent listens first so
	// that gossip can advertise the bound address). The Server closes it.
	Listener net.Listener

	// Socket, when set, is the path of a Unix socket on which the API is served too, for
	// clients on the same host (client.New("unix:///path")): the same routes, tokens and
	// limits, plain HTTP without TLS, and less CPU per request than TCP on loopback
	// (bench/RESULTS.md, issue 14 round 9). The file is made with mode 0660, so the agent's
	// user and group may connect; a stale socket left by a crash is replaced, a live one (a
	// running agent) or another kind of file is an error. Close removes it.
	Socket string

	// WriteAddr, when set, is a second listen address that serves POST /v1/transactions
	// alone, through a leaner HTTP/1.1 server than the API's (writelistener.go): the same
	// guards, tokens, limits, answers and metrics, and the API's TLS when it has one, at
	// less CPU per write. Clients send their writes there (client.WithWriteAddr) and
	// everything else to Addr.
	WriteAddr string

	// TLS, when set, serves HTTPS: it must hold the server's certificate (Certificates or
	// GetCertificate); ClientAuth and ClientCAs ask for client certificates. The server
	// speaks HTTP/1.1 only over it, as it does without TLS (see Open).
	TLS *tls.Config

	// View and Log are the node's materializer and log; both are required. Handlers of other
	// files in this package (subscriptions.go) reach them as s.cfg.View and s.cfg.Log.
	View View
	Log  ChangeLog
	// Cluster is nil on a node without gossip: /v1/members then lists this node alone.
	Cluster Cluster
	// Subscriptions serves /v1/subscriptions and /v1/updates (see subscriptions.go); nil
	// makes the server run its own in-memory engine over View, which does not survive a
	// restart.
	Subscriptions Subscriber
	// LogLevel, when set, is the process's log level, which GET/PUT /v1/admin/log_level read
	// and change at run time (501 when nil).
	LogLevel *slog.LevelVar

	// BearerToken is Corrosion's single api.authz.bearer_token: when not empty it is accepted
	// as "Authorization: Bearer <token>" with the admin scope.
	BearerToken string
	// Tracing makes writes (POST /v1/transactions) OpenTelemetry server spans of the global
	// provider, children of the request's traceparent header (api/trace.go). Off: no cost.
	Tracing bool
	// EndpointName is Corrosion's api.endpoint_name: a request whose
	// x-corrosion-requested-endpoint-name header names another endpoint is refused with 421
	// Misdirected Request (a client's request that reached the wrong node by a stale address).
	// Without the header, or with no name configured, nothing is checked.
	EndpointName string
	// Tokens are the scoped tokens, stored hashed (see Token, HashToken). When BearerToken
	// or Tokens name any token, every endpoint but /v1/health, /metrics and /ui requires one
	// whose scope covers the route's (401 without a valid token, 403 with too small a scope);
	// with none, the API is open.
	Tokens []Token
	// GuardPublic puts /v1/health and /metrics behind a read token too (when tokens are
	// configured).
	GuardPublic bool
	// MaxConcurrency is the most data requests (transactions, queries, changes, migrations,
	// table stats) served at once; more are shed with 503 instead of queueing without bound.
	MaxConcurrency int
	// QueueDepth is the most data requests that wait for a slot when all MaxConcurrency are
	// taken (0: the default; negative: no queue, a request finding no free slot is refused at
	// once). A request is refused with 503 and Retry-After only when the queue is full, when
	// its expected wait passes QueueTimeout, or when no slot came within QueueTimeout.
	QueueDepth int
	// QueueTimeout is the longest a data request waits in the queue for a slot.
	QueueTimeout time.Duration
	// MaxStreams is the most long-lived streams (changes with follow=true, subscriptions)
	// open at once; they do not count against MaxConcurrency.
	MaxStreams int
	// MaxBodyBytes is the largest request body accepted; more is 413.
	MaxBodyBytes int64
	// BodyReadTimeout bounds how long a client may take to send a request's body, from the
	// end of its headers; a slower one is answered 408 and its connection closed. A data
	// request takes one of the MaxConcurrency slots only once its body is read, so clients
	// that trickle bodies hold connections (and at most this long), never slots.
	BodyReadTimeout time.Duration
	// TxTimeout is the longest a write transaction may run when the request asks for no
	// shorter ?timeout (Corrosion: 60 s); its statements are then interrupted and it rolls
	// back with 408, so that one client cannot hold the node's single writer. 0 is no limit.
	TxTimeout time.Duration
	// IdleTimeout closes keep-alive connections that carry no request for this long.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Close waits for requests in flight.
	ShutdownTimeout time.Duration

	// Registry is where the API registers its metrics and what /metrics serves; nil makes a
	// private one. The agent shares one registry between its components.
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

// DefaultConfig returns the defaults: 127.0.0.1:8080, 256 concurrent data requests with
// up to 1024 more waiting at most 2 s for a slot, 1024 streams, 64 MiB bodies sent within
// 30 s.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		MaxConcurrency:  256,
		QueueDepth:      1024,
		QueueTimeout:    2 * time.Second,
		MaxStreams:      1024,
		MaxBodyBytes:    64 << 20,
		BodyReadTimeout: 30 * time.Second,
		TxTimeout:       60 * time.Second,
		IdleTimeout:     2 * time.Minute,
		ShutdownTimeout: 10 * time.Second,
	}
}

// Validate checks the config.
func (c *Config) Validate() error {
	switch {
	case c.View == nil:
		return errors.New("api config: no view")
	case c.Log == nil:
		return errors.New("api config: no log")
	case c.Listener == nil && c.Addr == "":
		return errors.New("api config: no listen address")
	case len(c.Socket) > maxSocketPath:
		return fmt.Errorf("api config: socket path %q is %d bytes, more than a Unix socket's %d", c.Socket, len(c.Socket), maxSocketPath)
	case c.MaxConcurrency <= 0:
		return fmt.Errorf("api config: max concurrency %d, want > 0", c.MaxConcurrency)
	case c.QueueTimeout < 0:
		return fmt.Errorf("api config: queue timeout %v, want >= 0", c.QueueTimeout)
	case c.MaxStreams <= 0:
		return fmt.Errorf("api config: max streams %d, want > 0", c.MaxStreams)
	case c.MaxBodyBytes <= 0:
		return fmt.Errorf("api config: max body bytes %d, want > 0", c.MaxBodyBytes)
	case c.TxTimeout < 0:
		return fmt.Errorf("api config: transaction timeout %v, want >= 0", c.TxTimeout)
	case c.BodyReadTimeout < 0:
		return fmt.Errorf("api config: body read timeout %v, want >= 0", c.BodyReadTimeout)
	}
	if err := ValidateTokens(c.Tokens); err != nil {
		return fmt.Errorf("api config: %w", err)
	}
	return nil
}

// Server serves the HTTP API of one node.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	handler http.Handler
	auth    *authority

	admit   *admission    // data request slots (MaxConcurrency) and their queue
	streams chan struct{} // stream slots (MaxStreams)

	// streamCtx ends when the server shuts down, so that endless streams (follow, subscriptions)
	// end and Shutdown does not wait for them. See streamContext.
	streamCtx    context.Context
	cancelStream context.CancelFunc
	closing      atomic.Bool
	opened       time.Time // when Open started serving, for the dashboard's uptime
	// site is the actor id's JSON form for write answers (siteJSON).
	site atomic.Pointer[siteCache]

	// methods lists the methods registered per path, for 405 answers (see route).
	methods map[string][]string
	// closers run in reverse order when Close has stopped the HTTP server; routes of other
	// files (subscriptions.go) append to it while the routes are built, in New.
	closers []func() error

	srv  *http.Server
	ln   net.Listener
	wl   *writeListener // Config.WriteAddr's server, or nil
	sock net.Listener   // the Unix socket's listener (Config.Socket), or nil
	// fresh holds the connections accepted but not yet used for a request (http.StateNew).
	// http.Server.Shutdown waits up to 5 s for such a connection before it counts as idle,
	// so one silent client (a pre-connecting pool, a TCP health check) would hold a graceful
	// stop for seconds; Close closes them at once: they carry no request.
	freshMu   sync.Mutex
	fresh     map[net.Conn]struct{}
	serveDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New returns a server; it does no I/O. cfg must be valid (see Validate).
func New(cfg Config) *Server {
	d := DefaultConfig()
	if cfg.MaxConcurrency == 0 {
		cfg.MaxConcurrency = d.MaxConcurrency
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = d.MaxStreams
	}
	if cfg.QueueDepth == 0 {
		cfg.QueueDepth = d.QueueDepth
	}
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = d.QueueTimeout
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = d.MaxBodyBytes
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = d.ShutdownTimeout
	}
	if cfg.BodyReadTimeout == 0 {
		cfg.BodyReadTimeout = d.BodyReadTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = d.IdleTimeout
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		cfg:       cfg,
		logger:    logger.With(attrComponent, "api"),
		streams:   make(chan struct{}, max(cfg.MaxStreams, 1)),
		serveDone: make(chan struct{}),
		methods:   map[string][]string{},
	}
	s.auth = newAuthority(&cfg)
	s.streamCtx, s.cancelStream = context.WithCancel(context.Background())
	s.metrics = newMetrics(s)
	s.admit = &admission{
		slots:   make(chan struct{}, max(cfg.MaxConcurrency, 1)),
		depth:   int64(max(cfg.QueueDepth, 0)),
		timeout: cfg.QueueTimeout,
		onWait:  func(n int64) { s.metrics.queued.Set(float64(n)) },
		onDone:  func(d time.Duration) { s.metrics.queueWait.Observe(d.Seconds()) },
	}
	s.handler = s.routes()
	return s
}

// Handler returns the API's handler, for tests that serve it themselves.
func (s *Server) Handler() http.Handler { return s.handler }

// Open validates the config, registers the metrics, listens and starts serving. ctx covers
// start-up only.
func (s *Server) Open(ctx context.Context) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	if err := s.metrics.register(s.cfg.Registry); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	ln := s.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("listen api: %w", err)
		}
	}
	scheme := "http"
	if s.cfg.TLS != nil {
		ln = newTLSListener(ln, s.cfg.TLS)
		scheme = "https"
	}
	s.ln = ln
	var err error
	if s.cfg.Socket != "" {
		if s.sock, err = listenSocket(ctx, s.cfg.Socket); err != nil {
			ln.Close()
			return fmt.Errorf("listen api socket: %w", err)
		}
	}
	if s.cfg.WriteAddr != "" {
		if err := s.openWriteListener(ctx); err != nil {
			ln.Close()
			if s.sock != nil {
				s.sock.Close()
			}
			return err
		}
	}
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout: it would also end long-lived streams, whose connection net/http
		// keeps reading to notice a client that goes away. Bodies get their own deadline per
		// request (readBody).
		IdleTimeout: s.cfg.IdleTimeout,
		ErrorLog:    slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		ConnState:   s.trackConn,
		Protocols:   serverProtocols(),
		HTTP2:       &http.HTTP2Config{MaxConcurrentStreams: s.h2Streams()},
	}
	s.srv.RegisterOnShutdown(s.cancelStream)
	s.opened = time.Now()
	var serving sync.WaitGroup
	serve := func(l net.Listener) {
		serving.Go(func() {
			if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logger.Error("api server stopped", attrAddr, l.Addr().String(), attrErr, err)
			}
		})
	}
	serve(ln)
	if s.sock != nil {
		serve(s.sock)
	}
	if s.wl != nil {
		serving.Go(func() { s.wl.serve(s) })
	}
	go func() {
		serving.Wait()
		close(s.serveDone)
	}()
	s.logger.Info("api listening", attrAddr, ln.Addr().String(), "scheme", scheme, "client_certs", s.cfg.TLS != nil && s.cfg.TLS.ClientAuth >= tls.VerifyClientCertIfGiven)
	if s.sock != nil {
		s.logger.Info("api listening on a unix socket", "path", s.cfg.Socket)
	}
	if s.wl != nil {
		s.logger.Info("api write listener listening", attrAddr, s.wl.ln.Addr().String(), "scheme", scheme)
	}
	return nil
}

// newTLSListener serves HTTPS on ln with cfg: TLS 1.2 at least, and HTTP/1.1 only, as
// without TLS: one connection per request in flight keeps the server's limits
// (MaxConcurrency, MaxStreams) and the client's pool behaving the same whatever the
// transport, instead of HTTP/2's cap of streams per connection.
func newTLSListener(ln net.Listener, cfg *tls.Config) net.Listener {
	tc := cfg.Clone()
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	tc.NextProtos = []string{"http/1.1"}
	return tls.NewListener(ln, tc)
}

// serverProtocols: HTTP/1.1, and HTTP/2 without TLS by prior knowledge (h2c), which is
// what corro-client speaks (its reqwest client is built with http2_prior_knowledge, so
// without h2c every one of its calls fails before a request is read). Over TLS the ALPN
// list stays http/1.1 (see Open): corro-client never uses TLS.
func serverProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// h2Streams is the most HTTP/2 streams one connection may have open: enough for every slot
// and queue place the server has, so that one multiplexing client (corro-client sends
// everything, subscriptions included, over one connection) meets the server's own limits
// and answers (503 with Retry-After) rather than HTTP/2's silent per-connection cap.
func (s *Server) h2Streams() int {
	n := s.cfg.MaxConcurrency + s.cfg.MaxStreams + max(s.cfg.QueueDepth, 0) + 16
	return min(n, 1<<20)
}

// Addr is the address the server listens on (useful with port 0); nil before Open.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// WriteAddr is the address the write listener listens on (Config.WriteAddr); nil without
// one or before Open.
func (s *Server) WriteAddr() net.Addr {
	if s.wl == nil {
		return nil
	}
	return s.wl.ln.Addr()
}

// Close stops accepting requests, ends streams, waits up to ShutdownTimeout for requests in
// flight (a transaction in flight completes and is answered), then closes the rest.
// Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.cancelStream()
		var errs []error
		if s.srv != nil {
			s.closeFresh()
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
			defer cancel()
			// Both servers wind down at once, under the same deadline.
			var wlErr error
			var wg sync.WaitGroup
			if s.wl != nil {
				wg.Go(func() { wlErr = s.wl.shutdown(ctx) })
			}
			if err := s.srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown api: %w", err))
				s.srv.Close()
			}
			wg.Wait()
			if wlErr != nil {
				errs = append(errs, wlErr)
			}
			<-s.serveDone
		}
		for i := len(s.closers) - 1; i >= 0; i-- {
			errs = append(errs, s.closers[i]())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// trackConn keeps the set of connections that have not carried a request yet; once the
// server is closing, such a connection is closed as soon as it is accepted.
func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	if st == http.StateIdle {
		// Between two requests: a connection leaves fresh at its first StateActive, and
		// every request passes here, so not through the lock.
		return
	}
	s.freshMu.Lock()
	defer s.freshMu.Unlock()
	if st != http.StateNew {
		delete(s.fresh, c)
		return
	}
	if s.closing.Load() {
		c.Close()
		return
	}
	if s.fresh == nil {
		s.fresh = map[net.Conn]struct{}{}
	}
	s.fresh[c] = struct{}{}
}

// closeFresh closes the connections that have not carried a request yet.
func (s *Server) closeFresh() {
	s.freshMu.Lock()
	defer s.freshMu.Unlock()
	for c := range s.fresh {
		c.Close()
	}
	clear(s.fresh)
}

// streamContext returns the context a long-lived stream runs under: it ends when the client
// goes away or when the server shuts down. Call the cancel func when the stream ends.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.streamCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

// The node's real components satisfy the interfaces; this catches drift at compile time.
var (
	_ View          = (*materializer.Materializer)(nil)
	_ ChangeLog     = (*log.Store)(nil)
	_ FaultReporter = (*log.Store)(nil)
	_ Screener      = (*log.Store)(nil)
	_ ForgeReporter = (*log.Store)(nil)
)
