package pg

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/materializer"
)

// View is what the server needs of the node: reads on the read pool and writes through the
// same transaction path as POST /v1/transactions. *materializer.Materializer satisfies it.
type View interface {
	Query(ctx context.Context, st materializer.Statement) (materializer.Rows, error)
	Transact(ctx context.Context, stmts []materializer.Statement) (materializer.TxResult, error)
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address, used when Listener is nil.
	Addr     string
	Listener net.Listener
	View     View
	// Password, when set, is required of every client with SCRAM-SHA-256 (any user name): the
	// agent passes its API token, so one secret guards both doors.
	Password string
	// Authenticate, when set, takes the client's password as a Patina token (scoped tokens,
	// or the API's single token) and says what it may do; an error refuses the client.
	// Tokens are kept hashed, which SCRAM cannot verify against, so the server asks for the
	// password in cleartext (AuthenticationCleartextPassword), over TLS only: a client that
	// did not start TLS is refused before it sends the password. It needs TLS and takes
	// precedence over Password.
	Authenticate func(password string) (Access, error)
	// TLS, when set, is offered to clients that ask for it (SSLRequest); nil answers 'N'.
	TLS *tls.Config
	// MaxConns bounds the connections served at once; more are refused with SQLSTATE 53300.
	MaxConns int
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Access is what an authenticated client may do.
type Access int

const (
	// AccessRead may read (SELECT and the catalog); writes are refused with 42501.
	AccessRead Access = iota + 1
	// AccessWrite may also write.
	AccessWrite
)

func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	}
	return "none"
}

// Server serves the PostgreSQL protocol for one node.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	cat     *catalog

	ln     net.Listener
	ctx    context.Context // ends at Close; every session's queries run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  atomic.Int64

	mu       sync.Mutex
	sessions map[uint32]*session // by process id, for CancelRequest
	netConns map[net.Conn]struct{}
	closed   bool
}

// New returns a server for cfg; it does no I/O.
func New(cfg Config) *Server {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 256
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{cfg: cfg, logger: logger.With("component", "pg"), sessions: map[uint32]*session{}, netConns: map[net.Conn]struct{}{}}
	s.metrics = newMetrics(s)
	s.cat = newCatalog(cfg.View)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Open listens and starts serving; ctx covers start-up only.
func (s *Server) Open(ctx context.Context) error {
	if s.cfg.View == nil {
		return errors.New("pg config: no view")
	}
	if s.cfg.Authenticate != nil && s.cfg.TLS == nil {
		return errors.New("pg config: token authentication needs TLS (the password travels in cleartext)")
	}
	if s.cfg.Registerer != nil {
		if err := s.metrics.register(s.cfg.Registerer); err != nil {
			return fmt.Errorf("register pg metrics: %w", err)
		}
	}
	if err := s.cat.open(); err != nil {
		return err
	}
	ln := s.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("listen pg: %w", err)
		}
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	s.logger.Info("postgres protocol listening", "addr", ln.Addr().String(), "auth", s.authKind(), "tls", s.cfg.TLS != nil)
	return nil
}

// Addr is the bound address (nil before Open).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.logger.Error("pg accept", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.netConns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.netConns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serveConn(c)
		}()
	}
}

// Close stops accepting, ends every session (queries in flight are cancelled; a COMMIT in
// flight finishes, since the materializer acknowledges only durable writes) and waits for
// them. Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	}
	s.mu.Lock()
	for c := range s.netConns {
		// Wake sessions blocked reading the next message; one busy in a query sees ctx end.
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(err, s.cat.close())
}

// addSession registers a session for CancelRequest and returns its key.
func (s *Server) addSession(ss *session) (pid, secret uint32) {
	var b [8]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		rand.Read(b[:])
		pid = binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if _, taken := s.sessions[pid]; !taken && pid != 0 {
			break
		}
	}
	s.sessions[pid] = ss
	return pid, binary.BigEndian.Uint32(b[4:])
}

func (s *Server) removeSession(pid uint32) {
	s.mu.Lock()
	delete(s.sessions, pid)
	s.mu.Unlock()
}

// cancelQuery serves a CancelRequest: the query running on the session with that key, if
// any, is cancelled. A wrong key is ignored, as PostgreSQL does.
func (s *Server) cancelQuery(pid, secret uint32) {
	s.mu.Lock()
	ss := s.sessions[pid]
	s.mu.Unlock()
	if ss != nil && ss.secret == secret {
		ss.cancelRunning()
	}
}

type metrics struct {
	conns    prometheus.GaugeFunc
	accepted *prometheus.CounterVec
	queries  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		conns: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "patina_pg_connections", Help: "PostgreSQL protocol connections open.",
		}, func() float64 { return float64(s.conns.Load()) }),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patina_pg_connections_total", Help: "PostgreSQL protocol connections by outcome of start-up (ok, auth_failed, refused, error).",
		}, []string{"result"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patina_pg_statements_total", Help: "Statements run over the PostgreSQL protocol by kind (read, catalog, write, commit, other) and result (ok, error).",
		}, []string{"kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patina_pg_statement_duration_seconds", Help: "Time to run a statement over the PostgreSQL protocol, to its last row or its commit.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"kind"}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.conns, m.accepted, m.queries, m.duration} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) observe(kind string, start time.Time, err error) {
	res := "ok"
	if err != nil {
		res = "error"
	}
	m.queries.WithLabelValues(kind, res).Inc()
	m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

// authKind names how clients authenticate, for the start-up log line.
func (s *Server) authKind() string {
	switch {
	case s.cfg.Authenticate != nil:
		return "tokens (cleartext over TLS)"
	case s.cfg.Password != "":
		return "password (SCRAM-SHA-256)"
	}
	return "none"
}
