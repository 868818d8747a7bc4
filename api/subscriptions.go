package api

import (
	"fmt"
	"net/http"
)

// STUB, owned by the subscriptions engineer (issue: subscriptions), who replaces this file.
//
// routeSubscriptions registers POST /v1/subscriptions, GET /v1/subscriptions/{id} and
// POST /v1/updates/{table}. What the rest of the package offers for it:
//   - s.route(mux, "METHOD /path", kindStream, h): token check, request metrics, JSON errors
//     for a returned error; a kindStream handler takes a stream slot itself with
//     release, err := s.acquire(kindStream) (503 when MaxStreams are open);
//   - s.streamContext(r): a context that ends when the client goes or the server shuts down;
//   - s.cfg.View (Query, Notify, Tables, FoldPosition) and s.cfg.Log (Read, Wait, LastSeq);
//   - parseStatement, requestTimeout, newEventWriter (flushed NDJSON events), writeJSON,
//     s.writeError, errNotFound (404), badRequestf (400);
//   - s.closers: functions Close runs after the HTTP server has stopped, in reverse order.
func (s *Server) routeSubscriptions(mux *http.ServeMux) {
	notImplemented := func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("%w: %s %s", errNotImplemented, r.Method, r.URL.Path)
	}
	s.route(mux, "POST /v1/subscriptions", kindStream, notImplemented)
	s.route(mux, "GET /v1/subscriptions/{id}", kindStream, notImplemented)
	s.route(mux, "POST /v1/updates/{table}", kindStream, notImplemented)
}
