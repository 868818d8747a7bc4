package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// txResponse is the answer of POST /v1/transactions (Corrosion's ExecResponse).
type txResponse struct {
	Results []stmtResult `json:"results"`
	Time    jsonFloat    `json:"time"` // a real, 0.0 included, as Corrosion's f64
	Version *uint64      `json:"version"`
	ActorID log.SiteID   `json:"actor_id"`
	// Error repeats the failing statement's error at the top, as every error body has one.
	Error string `json:"error,omitempty"`
}

// stmtResult is one of Corrosion's ExecResult shapes: {"rows_affected":n,"time":s} or
// {"error":"..."}, nothing else.
type stmtResult struct {
	RowsAffected *int64     `json:"rows_affected,omitempty"`
	Time         *jsonFloat `json:"time,omitempty"`
	Error        string     `json:"error,omitempty"`
}

func (s *Server) handleTransactions(w http.ResponseWriter, r *http.Request) error {
	timeout, err := requestLimit(r, 0)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	buf := answerBufs.Get().(*[]byte)
	defer putAnswerBuf(buf)
	// r's context ends when the client goes away.
	status, b, err := s.transact(r.Context(), body, timeout, propagation.HeaderCarrier(r.Header), w.Header(), (*buf)[:0])
	if err != nil {
		return err // route writes it in the ExecResponse shape (execShaped)
	}
	*buf = b
	writeJSONBytes(w, status, b)
	return nil
}

// transact runs POST /v1/transactions for either HTTP stack (handleTransactions, and
// serveWrite of the write listener): body is the request's body, timeout its ?timeout (0:
// none), carrier its headers for tracing, h the answer's headers. It appends the answer to
// b, JSON and its newline, and returns it with its status, a statement's error included;
// err is a malformed body, which the caller answers as a guard's error.
func (s *Server) transact(ctx context.Context, body []byte, timeout time.Duration, carrier propagation.TextMapCarrier, h answerHeaders, b []byte) (int, []byte, error) {
	if lim := s.cfg.TxTimeout; lim > 0 && (timeout == 0 || timeout > lim) {
		// The server's limit caps the request's: the materializer interrupts the statements
		// at the deadline and the transaction rolls back (408).
		timeout = lim
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	stmts, err := decodeStatements(body)
	if err != nil {
		return 0, b, err
	}
	start := time.Now()
	tctx, endTrace := s.traceRequest(ctx, carrier, http.MethodPost, txPath)
	res, err := s.cfg.View.Transact(tctx, stmts)
	endTrace(err)
	elapsed := time.Since(start)
	if err != nil {
		s.metrics.txError.Inc()
		err = timeoutError(ctx, timeout, err)
		msg := err.Error()
		var se *materializer.StmtError
		if errors.As(err, &se) {
			msg = fmt.Sprintf("statement %d: %v", se.Index, se.Err)
		}
		// Corrosion's shape: the failing statement's result carries the error; nothing was
		// written, so the statements before it have no result to show.
		status := s.errorHeaders(h, txPath, err)
		return status, appendJSON(b, s.execError(msg, elapsed)), nil
	}
	s.metrics.txOK.Inc()
	s.metrics.txDuration.Observe(elapsed.Seconds())
	var rows int64
	for _, sr := range res.Results {
		rows += sr.RowsAffected
	}
	s.metrics.rowsWritten.Add(float64(rows))
	b = appendTxAnswer(b, res, elapsed, s.siteJSON(s.cfg.Log.SiteID()))
	return http.StatusOK, append(b, '\n'), nil
}

// txPath is the path of writes.
const txPath = "/v1/transactions"

// appendTxAnswer appends the ExecResponse of a committed transaction as encoding/json writes
// a txResponse (TestTxAnswerEqualsMarshal), without reflection and without a value per
// result: {"results":[{"rows_affected":n,"time":s},...],"time":s,"version":v or null,
// "actor_id":"..."}. site is the actor id as a JSON string.
func appendTxAnswer(b []byte, res materializer.TxResult, elapsed time.Duration, site []byte) []byte {
	b = append(b, `{"results":[`...)
	for i, sr := range res.Results {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"rows_affected":`...)
		b = strconv.AppendInt(b, sr.RowsAffected, 10)
		b = append(b, `,"time":`...)
		b = appendSeconds(b, sr.Time)
		b = append(b, '}')
	}
	b = append(b, `],"time":`...)
	t := res.Time
	if t == 0 {
		t = elapsed
	}
	b = appendSeconds(b, t)
	b = append(b, `,"version":`...)
	if res.Version != 0 {
		b = strconv.AppendUint(b, uint64(res.Version), 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"actor_id":`...)
	b = append(b, site...)
	return append(b, '}')
}

// appendSeconds appends d in seconds as jsonFloat writes it: a JSON real, 0.0 included (a
// duration's seconds are always finite).
func appendSeconds(b []byte, d time.Duration) []byte {
	start := len(b)
	b = strconv.AppendFloat(b, d.Seconds(), 'g', -1, 64)
	if !bytes.ContainsAny(b[start:], ".eEn") {
		b = append(b, ".0"...)
	}
	return b
}

// siteJSON returns site as a JSON string, made once per site id (the log's id never changes,
// but the server does not rely on it).
func (s *Server) siteJSON(site log.SiteID) []byte {
	if c := s.site.Load(); c != nil && c.id == site {
		return c.json
	}
	c := &siteCache{id: site, json: strconv.AppendQuote(nil, site.String())}
	s.site.Store(c)
	return c.json
}

// siteCache is the actor id's JSON form (siteJSON).
type siteCache struct {
	id   log.SiteID
	json []byte
}

// answerBufs hold answers while they are written (the ResponseWriter copies them).
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func putAnswerBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		answerBufs.Put(b)
	}
}

// defaultQueryTimeout bounds a query that gives no ?timeout, as Corrosion's queries are
// bounded (60 s). Transactions have no default of their own.
const defaultQueryTimeout = 60 * time.Second

// requestTimeout reads ?timeout=S (seconds, fractions allowed) and returns the request's
// context bounded by it, and the limit applied (0 for none). Without the parameter the limit
// is def (0: none). timeout=0 means no per-request limit, as in Corrosion; whatever limit the
// server sets for every request still applies as the cap.
func requestTimeout(r *http.Request, def time.Duration) (ctx context.Context, cancel context.CancelFunc, timeout time.Duration, err error) {
	timeout, err = requestLimit(r, def)
	if err != nil {
		return nil, nil, 0, err
	}
	if timeout <= 0 {
		ctx, cancel = context.WithCancel(r.Context())
		return ctx, cancel, 0, nil
	}
	ctx, cancel = context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, timeout, nil
}

// requestLimit is requestTimeout's limit, without a context.
func requestLimit(r *http.Request, def time.Duration) (time.Duration, error) {
	if r.URL.RawQuery == "" {
		return def, nil // most requests: no query to parse into a map
	}
	return parseTimeout(r.URL.Query().Get("timeout"), def)
}

// parseTimeout reads a ?timeout value, raw ("" when the parameter is absent: def).
func parseTimeout(raw string, def time.Duration) (time.Duration, error) {
	timeout := def
	if raw != "" {
		secs, perr := strconv.ParseFloat(raw, 64)
		if perr != nil || secs < 0 || secs > 1e6 || secs != secs {
			return 0, badRequestf("timeout=%q: want a number of seconds >= 0 (0: no limit)", raw)
		}
		timeout = time.Duration(secs * float64(time.Second))
		if secs > 0 && timeout <= 0 {
			timeout = 1 // a positive limit too small to represent: the shortest there is
		}
	}
	return max(timeout, 0), nil
}

// timeoutError turns whatever error a statement cut short by ?timeout returned (an
// interrupted SQLite step, a context error) into errTimeout with a clear message.
func timeoutError(ctx context.Context, timeout time.Duration, err error) error {
	if timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: ran past timeout=%gs", errTimeout, timeout.Seconds())
	}
	return err
}
