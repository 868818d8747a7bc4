package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

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
	ctx, cancel, timeout, err := requestTimeout(r, 0)
	if err != nil {
		return err
	}
	defer cancel()
	if lim := s.cfg.TxTimeout; lim > 0 && (timeout == 0 || timeout > lim) {
		// The server's limit caps the request's: the materializer interrupts the statements
		// at the deadline and the transaction rolls back (408).
		var capped context.CancelFunc
		ctx, capped = context.WithTimeout(ctx, lim)
		defer capped()
		timeout = lim
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	stmts, err := decodeStatements(body)
	if err != nil {
		return err // route writes it in the ExecResponse shape (execShaped)
	}
	start := time.Now()
	tctx, endTrace := s.traceRequest(ctx, r, "POST /v1/transactions")
	res, err := s.cfg.View.Transact(tctx, stmts)
	endTrace(err)
	elapsed := time.Since(start)
	if err != nil {
		s.metrics.transactions.WithLabelValues("error").Inc()
		err = timeoutError(ctx, timeout, err)
		msg := err.Error()
		var se *materializer.StmtError
		if errors.As(err, &se) {
			msg = fmt.Sprintf("statement %d: %v", se.Index, se.Err)
		}
		// Corrosion's shape: the failing statement's result carries the error; nothing was
		// written, so the statements before it have no result to show.
		writeJSON(w, s.errorStatus(w, r, err), s.execError(msg, elapsed))
		return nil
	}
	s.metrics.transactions.WithLabelValues("ok").Inc()
	s.metrics.txDuration.Observe(elapsed.Seconds())
	out := txResponse{
		Results: make([]stmtResult, len(res.Results)),
		Time:    jsonFloat(res.Time.Seconds()),
		ActorID: s.cfg.Log.SiteID(),
	}
	if out.Time == 0 {
		out.Time = jsonFloat(elapsed.Seconds())
	}
	for i, sr := range res.Results {
		n := sr.RowsAffected
		secs := jsonFloat(sr.Time.Seconds())
		out.Results[i] = stmtResult{RowsAffected: &n, Time: &secs}
		s.metrics.rowsWritten.Add(float64(n))
	}
	if res.Version != 0 {
		v := uint64(res.Version)
		out.Version = &v
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// defaultQueryTimeout bounds a query that gives no ?timeout, as Corrosion's queries are
// bounded (60 s). Transactions have no default of their own.
const defaultQueryTimeout = 60 * time.Second

// requestTimeout reads ?timeout=S (seconds, fractions allowed) and returns the request's
// context bounded by it, and the limit applied (0 for none). Without the parameter the limit
// is def (0: none). timeout=0 means no per-request limit, as in Corrosion; whatever limit the
// server sets for every request still applies as the cap.
func requestTimeout(r *http.Request, def time.Duration) (ctx context.Context, cancel context.CancelFunc, timeout time.Duration, err error) {
	timeout = def
	if raw := r.URL.Query().Get("timeout"); raw != "" {
		secs, perr := strconv.ParseFloat(raw, 64)
		if perr != nil || secs < 0 || secs > 1e6 || secs != secs {
			return nil, nil, 0, badRequestf("timeout=%q: want a number of seconds >= 0 (0: no limit)", raw)
		}
		timeout = time.Duration(secs * float64(time.Second))
		if secs > 0 && timeout <= 0 {
			timeout = 1 // a positive limit too small to represent: the shortest there is
		}
	}
	if timeout <= 0 {
		ctx, cancel = context.WithCancel(r.Context())
		return ctx, cancel, 0, nil
	}
	ctx, cancel = context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, timeout, nil
}

// timeoutError turns whatever error a statement cut short by ?timeout returned (an
// interrupted SQLite step, a context error) into errTimeout with a clear message.
func timeoutError(ctx context.Context, timeout time.Duration, err error) error {
	if timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: ran past timeout=%gs", errTimeout, timeout.Seconds())
	}
	return err
}
