package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// slog attribute keys of this package.
const (
	attrComponent = "component"
	attrErr       = "err"
	attrAddr      = "addr"
	attrPath      = "path"
	attrStatus    = "status"
)

// Errors of the API itself (the materializer's and the log's are mapped by statusOf).
var (
	// errBadRequest wraps malformed request bodies and parameters (400).
	errBadRequest = errors.New("bad request")
	// errUnauthorized: a missing, malformed or unknown bearer token (401). errForbidden
	// (auth.go) is a known token whose scope is too small (403).
	errUnauthorized = errors.New("missing or wrong bearer token")
	// errOverloaded: the concurrency limit is reached (503).
	errOverloaded = errors.New("overloaded: too many requests in flight, retry later")
	// errShuttingDown: the server is closing (503).
	errShuttingDown = errors.New("shutting down")
	// errTooLarge: the body passed MaxBodyBytes (413).
	errTooLarge = errors.New("request body too large")
	// errTimeout: a statement ran past the request's ?timeout (408).
	errTimeout = errors.New("timed out")
	// errBodyTimeout: the client sent its body slower than BodyReadTimeout allows (408).
	errBodyTimeout = errors.New("request body too slow")
	// errNotFound: an unknown id or path (404).
	errNotFound = errors.New("not found")
	// errNotImplemented: an endpoint this node does not serve (501).
	errNotImplemented = errors.New("not implemented")
	// errGapRefused: an ingest body would open a gap in a site's versions (409).
	errGapRefused = errors.New("ingest refused")
	// errMisdirected: the request names another endpoint (421; Config.EndpointName).
	errMisdirected = errors.New("misdirected request")
	// errUnreachable: an admin operation found no peer to work with (503).
	errUnreachable = errors.New("no peer reachable")
)

// badRequest is a 400 whose message needs no "bad request" prefix.
type badRequest struct{ msg string }

func (e *badRequest) Error() string        { return e.msg }
func (e *badRequest) Is(target error) bool { return target == errBadRequest }

func badRequestf(format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...)}
}

// statusClientClosed is the status recorded (in metrics) for a request whose client went
// away before the answer.
const statusClientClosed = 499

// statusOf maps an error to its HTTP status (docs/DESIGN.md section 7).
func statusOf(err error) int {
	var maxBytes *http.MaxBytesError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &maxBytes), errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case materializer.IsDiskFull(err):
		return http.StatusInsufficientStorage
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, errOverloaded), errors.Is(err, errShuttingDown), errors.Is(err, errUnreachable),
		errors.Is(err, materializer.ErrClosed), errors.Is(err, log.ErrClosed),
		errors.Is(err, materializer.ErrViewCorrupt):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer. nginx's "client closed request".
		return statusClientClosed
	case errors.Is(err, errTimeout), errors.Is(err, errBodyTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusRequestTimeout
	case errors.Is(err, materializer.ErrSchemaConflict), errors.Is(err, log.ErrCollision), errors.Is(err, errGapRefused):
		return http.StatusConflict
	case errors.Is(err, log.ErrForged):
		return http.StatusForbidden
	case errors.Is(err, materializer.ErrBeforeHorizon):
		// The history asked for is compacted away.
		return http.StatusGone
	case errors.Is(err, errBadRequest),
		errors.Is(err, materializer.ErrBadStatement),
		errors.Is(err, materializer.ErrReadOnly),
		errors.Is(err, materializer.ErrInternalTable),
		errors.Is(err, materializer.ErrSchema),
		errors.Is(err, materializer.ErrConstraint),
		errors.Is(err, log.ErrInvalid),
		errors.Is(err, log.ErrSeqBeyondLog):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound), errors.Is(err, log.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errMisdirected):
		return http.StatusMisdirectedRequest
	case errors.Is(err, errNotImplemented):
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// writeError answers err with its status and {"error": "..."}. Internal faults (500) are
// logged, since the client cannot act on them; other errors are the client's and are not.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	writeJSON(w, s.errorStatus(w, r, err), errorBody{Error: err.Error()})
}

// writeExecError is writeError for /v1/transactions and /v1/migrations: the body is also
// Corrosion's ExecResponse, {"results":[{"error":...}],"time":0.0,"version":null,
// "actor_id":...}, which Corrosion's clients read the message from.
func (s *Server) writeExecError(w http.ResponseWriter, r *http.Request, err error) {
	writeJSON(w, s.errorStatus(w, r, err), s.execError(err.Error(), 0))
}

// execError is the ExecResponse of a failed transaction: the error as the one result, and
// at the top level as every error body has it.
func (s *Server) execError(msg string, elapsed time.Duration) txResponse {
	out := txResponse{Results: []stmtResult{{Error: msg}}, Time: jsonFloat(elapsed.Seconds()), Error: msg}
	if s.cfg.Log != nil { // a server without a log (tests of the guards) has no actor id
		out.ActorID = s.cfg.Log.SiteID()
	}
	return out
}

// errorStatus returns err's status and sets the headers that go with it.
func (s *Server) errorStatus(w http.ResponseWriter, r *http.Request, err error) int {
	return s.errorHeaders(w.Header(), r.URL.Path, err)
}

// errorHeaders is errorStatus for either HTTP stack: h are the answer's headers, path the
// request's.
func (s *Server) errorHeaders(h answerHeaders, path string, err error) int {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		s.logger.Error("internal error", attrPath, path, attrErr, err)
	}
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="patina"`)
	}
	var se *scopeError
	if errors.As(err, &se) {
		// RFC 6750 section 3.1: the scope the request would have needed.
		h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="patina", error="insufficient_scope", scope="%s"`, se.need))
	}
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	return status
}

// writeJSON answers v as JSON with status (500 if v does not encode).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := encodeJSON(nil, v)
	if err != nil {
		status = http.StatusInternalServerError
	}
	writeJSONBytes(w, status, b)
}

// appendJSON appends v as JSON and its newline to b, for answers whose status is already
// decided (v is one of this package's answer types, which always encode).
func appendJSON(b []byte, v any) []byte {
	b, _ = encodeJSON(b, v)
	return b
}

// encodeJSON appends v as JSON and its newline to b; when v does not encode, it appends an
// errorBody saying why and returns the error.
func encodeJSON(b []byte, v any) ([]byte, error) {
	enc, err := json.Marshal(v)
	if err != nil {
		enc, _ = json.Marshal(errorBody{Error: "encode answer: " + err.Error()})
	}
	b = append(b, enc...)
	return append(b, '\n'), err
}

// writeJSONBytes answers b, JSON and its newline, with status. The headers are assigned, not
// Set: the keys are canonical already and Content-Type's value is made once (net/http never
// changes the values of an answer's headers).
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	w.Write(b)
}

var jsonContentType = []string{"application/json"}
