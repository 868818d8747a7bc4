package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/patinadb/patina/materializer"
	"github.com/patinadb/patina/materializer/subs"
)

// Subscriber is the subscription engine behind /v1/subscriptions and /v1/updates.
// *subs.Engine satisfies it. Calls are concurrent; each returned stream belongs to the
// caller, who must Close it. Subscribe and Attach block for the first evaluation of a new
// subscription; the streams' Next blocks until there is an event.
type Subscriber interface {
	Subscribe(ctx context.Context, st materializer.Statement, opts subs.Options) (*subs.Stream, error)
	Attach(ctx context.Context, id string, opts subs.Options) (*subs.Stream, error)
	Updates(ctx context.Context, table string) (*subs.UpdateStream, error)
}

var _ Subscriber = (*subs.Engine)(nil)

// Headers of a subscription answer, as Corrosion names them.
const (
	headerQueryID   = "corro-query-id"
	headerQueryHash = "corro-query-hash"
)

// subscriptions holds the engine the routes use: Config.Subscriptions, or one of the
// server's own, opened at the first request (New does no I/O) and closed by Close.
type subscriptions struct {
	s   *Server
	mu  sync.Mutex
	eng Subscriber
	own *subs.Engine
}

func (sr *subscriptions) engine() (Subscriber, error) {
	if sr.s.cfg.Subscriptions != nil {
		return sr.s.cfg.Subscriptions, nil
	}
	sr.mu.Lock()
	defer sr.mu.Unlock()
	if sr.eng != nil {
		return sr.eng, nil
	}
	if sr.s.closing.Load() {
		return nil, errShuttingDown
	}
	e := subs.New(sr.s.cfg.View, subs.Config{Registerer: sr.s.cfg.Registry, Logger: sr.s.logger})
	if err := e.Open(context.Background()); err != nil {
		return nil, fmt.Errorf("open subscriptions: %w", err)
	}
	sr.eng, sr.own = e, e
	return e, nil
}

func (sr *subscriptions) close() error {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	if sr.own == nil {
		return nil
	}
	return sr.own.Close()
}

// routeSubscriptions registers POST /v1/subscriptions, GET /v1/subscriptions/{id} and
// POST /v1/updates/{table}.
func (s *Server) routeSubscriptions(mux *http.ServeMux) {
	sr := &subscriptions{s: s}
	s.closers = append(s.closers, sr.close)
	s.route(mux, "POST /v1/subscriptions", kindStream, ScopeRead, sr.handleSubscribe)
	s.route(mux, "GET /v1/subscriptions/{id}", kindStream, ScopeRead, sr.handleAttach)
	s.route(mux, "POST /v1/updates/{table}", kindStream, ScopeRead, sr.handleUpdates)
	sr.routeAdmin(mux)
}

// subscriptionOptions reads ?from=N and ?skip_rows=B.
func subscriptionOptions(r *http.Request) (subs.Options, error) {
	var o subs.Options
	q := r.URL.Query()
	if raw := q.Get("from"); raw != "" {
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return o, badRequestf("from=%q: want a change id (an integer >= 0)", raw)
		}
		o.From = &n
	}
	if raw := q.Get("skip_rows"); raw != "" {
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return o, badRequestf("skip_rows=%q: want true or false", raw)
		}
		o.SkipRows = b
	}
	return o, nil
}

// subsError maps the engine's errors to the API's statuses.
func subsError(err error) error {
	switch {
	case errors.Is(err, subs.ErrNotFound):
		return fmt.Errorf("%w: %w", errNotFound, err)
	case errors.Is(err, subs.ErrClosed), errors.Is(err, subs.ErrDropped):
		return fmt.Errorf("%w: %w", errShuttingDown, err)
	}
	return err
}

// resumeError says whether err is a refusal of ?from that the answer carries as an error
// event in the stream (docs/DESIGN.md section 7: never a silent gap).
func resumeError(err error) bool {
	return errors.Is(err, subs.ErrTooOld) || errors.Is(err, subs.ErrFromAhead) ||
		errors.Is(err, subs.ErrEventTooLarge) // a row too large to send: the stream says why
}

func (sr *subscriptions) handleSubscribe(w http.ResponseWriter, r *http.Request) error {
	opts, err := subscriptionOptions(r)
	if err != nil {
		return err
	}
	body, err := sr.s.readBody(w, r)
	if err != nil {
		return err
	}
	st, err := parseStatement(body)
	if err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	eng, err := sr.engine()
	if err != nil {
		return err
	}
	ctx, done, err := sr.streamSlot(r)
	if err != nil {
		return err
	}
	defer done()
	stream, err := eng.Subscribe(ctx, st, opts)
	if err != nil {
		return sr.refuse(w, err)
	}
	defer stream.Close()
	sr.serve(ctx, w, stream)
	return nil
}

func (sr *subscriptions) handleAttach(w http.ResponseWriter, r *http.Request) error {
	opts, err := subscriptionOptions(r)
	if err != nil {
		return err
	}
	eng, err := sr.engine()
	if err != nil {
		return err
	}
	ctx, done, err := sr.streamSlot(r)
	if err != nil {
		return err
	}
	defer done()
	id := r.PathValue("id")
	stream, err := eng.Attach(ctx, id, opts)
	if err != nil {
		if resumeError(err) {
			w.Header().Set(headerQueryID, id)
		}
		return sr.refuse(w, err)
	}
	defer stream.Close()
	sr.serve(ctx, w, stream)
	return nil
}

// streamSlot takes one of the server's stream slots (503 when all are taken) and returns the
// context the stream runs under; done ends the context and frees the slot.
func (sr *subscriptions) streamSlot(r *http.Request) (ctx context.Context, done func(), err error) {
	release, err := sr.s.acquire(r.Context(), kindStream)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := sr.s.streamContext(r)
	return ctx, func() { cancel(); release() }, nil
}

// refuse answers an error of Subscribe or Attach: a refused ?from as a stream of one error
// event, anything else with its status.
func (sr *subscriptions) refuse(w http.ResponseWriter, err error) error {
	if !resumeError(err) {
		return subsError(err)
	}
	w.Header().Set("Content-Type", ndjson)
	w.WriteHeader(http.StatusOK)
	w.Write(subs.ErrorLine(err))
	return nil
}

// lineStream is what serve reads: a subscription or an update stream.
type lineStream interface {
	Next(ctx context.Context) ([]byte, error)
	Buffered() int
}

// serve writes the stream's lines until the client goes, the server shuts down or the
// stream fails; a failure is the last line, as an error event. Lines are flushed once per
// burst: when nothing more is buffered.
func (sr *subscriptions) serve(ctx context.Context, w http.ResponseWriter, ls lineStream) {
	switch st := ls.(type) {
	case *subs.Stream:
		w.Header().Set(headerQueryID, st.ID)
		w.Header().Set(headerQueryHash, st.Hash)
	case *subs.UpdateStream:
		w.Header().Set(headerQueryID, st.ID) // corro-client's updates() requires it
	}
	w.Header().Set("Content-Type", ndjson)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	for {
		line, err := ls.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.Write(subs.ErrorLine(err))
				rc.Flush()
			}
			return
		}
		// Lines are shared between clients: written as they are, never through a buffer
		// that a later event would reuse.
		if _, err := w.Write(line); err != nil {
			return
		}
		if ls.Buffered() == 0 {
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

func (sr *subscriptions) handleUpdates(w http.ResponseWriter, r *http.Request) error {
	eng, err := sr.engine()
	if err != nil {
		return err
	}
	ctx, done, err := sr.streamSlot(r)
	if err != nil {
		return err
	}
	defer done()
	us, err := eng.Updates(ctx, r.PathValue("table"))
	if err != nil {
		return subsError(err)
	}
	defer us.Close()
	sr.serve(ctx, w, us)
	return nil
}
