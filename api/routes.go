package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routeKind says which guards a route passes through.
type routeKind int

const (
	// kindPublic: no limit, no token unless Config.GuardPublic puts it behind ScopeRead
	// (health, metrics).
	kindPublic routeKind = iota
	// kindPage: never a token, no limit: a static page that holds no data (the dashboard;
	// its data comes from a guarded route).
	kindPage
	// kindCheap: token; cheap answers that need no slot (sync state, members).
	kindCheap
	// kindData: token and one of MaxConcurrency slots, shed with 503 when none is free. The
	// slot is taken once the body is read (within BodyReadTimeout), so that slow senders
	// cannot hold the slots fast clients need.
	kindData
	// kindStream: token; the handler takes a slot itself with s.acquire, a stream slot for a
	// long-lived stream (see handleChangesGet), so that idle followers do not starve data
	// requests.
	kindStream
)

// The scope each route needs (see Scope) is the fourth column of the route table: read for
// what only looks, write for transactions, admin for what changes the schema or takes
// changesets or data wholesale. A new route must pick one; when in doubt, admin.

// headerEndpointName names the endpoint a Corrosion client meant to reach (Config.EndpointName).
const headerEndpointName = "X-Corrosion-Requested-Endpoint-Name"

// handlerFunc is a handler that returns its error instead of writing it: the wrapper in
// route writes it as {"error": ...} with its status if nothing was written yet. A streaming
// handler that already started its answer writes its own final error event and returns nil.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	s.route(mux, "POST /v1/transactions", kindData, ScopeWrite, s.handleTransactions)
	s.route(mux, "POST /v1/queries", kindData, ScopeRead, s.handleQueries)
	s.route(mux, "POST /v1/table_stats", kindData, ScopeRead, s.handleTableStats)
	s.route(mux, "POST /v1/migrations", kindData, ScopeAdmin, s.handleMigrations)
	s.route(mux, "GET /v1/changes", kindStream, ScopeRead, s.handleChangesGet)
	s.route(mux, "POST /v1/changes", kindData, ScopeAdmin, s.handleChangesPost)
	s.route(mux, "GET /v1/backup", kindStream, ScopeAdmin, s.handleBackup) // backup.go
	s.route(mux, "GET /v1/replay", kindStream, ScopeAdmin, s.handleReplay) // replay.go
	s.route(mux, "GET /v1/schema", kindCheap, ScopeRead, s.handleSchema)
	s.route(mux, "GET /v1/sync/state", kindCheap, ScopeRead, s.handleSyncState)
	s.route(mux, "GET /v1/members", kindCheap, ScopeRead, s.handleMembers)
	s.route(mux, "GET /v1/health", kindPublic, ScopeRead, s.handleHealth)
	metricsHandler := promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
	s.route(mux, "GET /metrics", kindPublic, ScopeRead, func(w http.ResponseWriter, r *http.Request) error {
		metricsHandler.ServeHTTP(w, r)
		return nil
	})
	s.route(mux, "GET /ui", kindPage, ScopeNone, s.handleUI)
	s.route(mux, "GET /v1/dashboard", kindCheap, ScopeRead, s.handleDashboard)
	s.routeSubscriptions(mux)
	s.routeClusterAdmin(mux) // admin_cluster.go
	// JSON answers for what the patterns above do not match, instead of the mux's plain text.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: no endpoint %s %s", errNotFound, r.Method, r.URL.Path))
	})
	return mux
}

// route registers h for pattern ("METHOD /path") behind the guards of kind, for tokens of
// scope need or above, with request metrics labelled by the path. Another method on the same
// path is answered 405 in JSON.
func (s *Server) route(mux *http.ServeMux, pattern string, kind routeKind, need Scope, h handlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	s.methods[path] = append(s.methods[path], method)
	if len(s.methods[path]) == 1 {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(s.methods[path], ", "))
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, path, strings.Join(s.methods[path], ", "))})
		})
	}
	// Corrosion's clients read every error of these endpoints from an ExecResponse's
	// results[].error: the guards' and the body's errors take that shape too.
	writeErr := s.writeError
	if execShaped[path] {
		writeErr = s.writeExecError
	}
	label := strings.ReplaceAll(path, "{", "")
	label = strings.ReplaceAll(label, "}", "")
	m := s.routeMetrics(method + " " + label)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		m.inFlight.Inc()
		defer func() { m.done(sw.status(), start) }()
		if err := s.guard(r.Header, r.URL.Path, kind, need); err != nil {
			writeErr(sw, r, err)
			return
		}
		if kind == kindData {
			body, err := s.readBody(sw, r)
			if err != nil {
				writeErr(sw, r, err)
				return
			}
			// The handler's readBody finds it in sw (not in a context value: a copy of the
			// request and a context per request).
			sw.body, sw.bodyRead = body, true
			release, err := s.acquire(r.Context(), kindData)
			if err != nil {
				writeErr(sw, r, err)
				return
			}
			defer release()
		}
		defer s.recoverPanic(sw, r)
		if err := h(sw, r); err != nil {
			if sw.wrote {
				s.logger.Debug("error after the answer started", attrPath, r.URL.Path, attrErr, err)
				return
			}
			writeErr(sw, r, err)
		}
	})
}

// routeMetrics are one route's request metrics, looked up once.
type routeMetrics struct {
	reqs     *prometheus.CounterVec // curried with the route: by code
	ok       prometheus.Counter     // most answers: no label lookup
	dur      prometheus.Observer
	inFlight prometheus.Gauge
}

// routeMetrics returns the metrics of the route name ("METHOD /path"). The write listener
// (writelistener.go) counts its writes in the same series as POST /v1/transactions.
func (s *Server) routeMetrics(name string) routeMetrics {
	reqs := s.metrics.requests.MustCurryWith(map[string]string{"route": name})
	return routeMetrics{
		reqs:     reqs,
		ok:       reqs.WithLabelValues(strconv.Itoa(http.StatusOK)),
		dur:      s.metrics.requestDuration.WithLabelValues(name),
		inFlight: s.metrics.inFlight.WithLabelValues(name),
	}
}

// done counts a request that inFlight.Inc() counted in when it started at start, answered
// with code.
func (m routeMetrics) done(code int, start time.Time) {
	m.inFlight.Dec()
	if code == http.StatusOK {
		m.ok.Inc()
	} else {
		m.reqs.WithLabelValues(strconv.Itoa(code)).Inc()
	}
	m.dur.Observe(time.Since(start).Seconds())
}

// execShaped lists the paths whose errors are also shaped as Corrosion's ExecResponse.
var execShaped = map[string]bool{"/v1/transactions": true, "/v1/migrations": true}

// requestHeaders is what the guards read of a request's headers, whichever HTTP stack parsed
// them: http.Header is one, fastHeaders (writelistener.go) the other.
type requestHeaders interface{ Values(key string) []string }

// answerHeaders is what errorStatus sets on an answer: http.Header and fasthttp's
// *ResponseHeader both are.
type answerHeaders interface{ Set(key, value string) }

// guard checks the endpoint name, shutdown and the bearer token's scope of a request to
// path with headers h.
func (s *Server) guard(h requestHeaders, path string, kind routeKind, need Scope) error {
	if name := s.cfg.EndpointName; name != "" && kind != kindPage {
		// Before the token, as Corrosion checks it.
		if asked := h.Values(headerEndpointName); len(asked) > 0 && asked[0] != name {
			s.logger.Warn("request meant for another endpoint refused", "endpoint", name, "requested", asked[0], attrPath, path)
			return fmt.Errorf("%w: this is endpoint %q; the request is for %q", errMisdirected, name, asked[0])
		}
	}
	if kind == kindPage || (kind == kindPublic && !s.cfg.GuardPublic) {
		return nil
	}
	if kind != kindPublic && s.closing.Load() {
		return errShuttingDown
	}
	if !s.auth.enabled() {
		return nil
	}
	tok, err := s.auth.authorize(h, need)
	if err != nil {
		s.metrics.authFailures.WithLabelValues(strconv.Itoa(statusOf(err))).Inc()
		if tok.Name != "" {
			s.logger.Debug("token lacks scope", attrPath, path, "token", tok.Name, "scope", tok.Scope.String(), "need", need.String())
		}
		return err
	}
	return nil
}

// acquire takes a data slot (kindData) or a stream slot (kindStream). A data request
// finding every slot taken waits in the admission queue (see admission); a stream is refused
// at once, since it would hold the slot for its whole life. Refusals are errOverloaded
// (503 with Retry-After). Call release when done.
func (s *Server) acquire(ctx context.Context, kind routeKind) (release func(), err error) {
	if kind != kindStream {
		release, err := s.admit.acquire(ctx)
		if errors.Is(err, errOverloaded) {
			s.metrics.shed.Inc()
		}
		return release, err
	}
	slots := s.streams
	select {
	case slots <- struct{}{}:
		s.metrics.streamsOpen.Inc()
		return func() { s.metrics.streamsOpen.Dec(); <-slots }, nil
	default:
		s.metrics.shed.Inc()
		return nil, fmt.Errorf("%w (%d streams open)", errOverloaded, cap(slots))
	}
}

// statusWriter records whether and with which status an answer was started. It keeps
// http.Flusher working through http.ResponseController (Unwrap).
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
	// body is the request's body when route read it (bodyRead) before taking a data slot;
	// readBody returns it.
	body     []byte
	bodyRead bool
}

// findStatusWriter returns the statusWriter w is or wraps, nil if none.
func findStatusWriter(w http.ResponseWriter) *statusWriter {
	for {
		switch x := w.(type) {
		case *statusWriter:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.code
}

// recoverPanic turns a panic of a handler (a bug, never bad input) into a logged 500 with a
// JSON error, or a final error event on a stream already started, instead of a connection
// net/http drops without a word. http.ErrAbortHandler keeps its meaning.
func (s *Server) recoverPanic(sw *statusWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	err := fmt.Errorf("internal error: panic: %v", v)
	s.logger.Error("handler panic", attrPath, r.URL.Path, attrErr, err, "stack", string(debug.Stack()))
	if sw.wrote {
		newEventWriter(sw).writeError(err)
		return
	}
	writeJSON(sw, http.StatusInternalServerError, errorBody{Error: err.Error()})
}
