// Package api is Patina's HTTP API: Corrosion's endpoint shapes (transactions, queries,
// subscriptions, table stats, health, migrations) and Patina's own (the changeset stream,
// changeset ingest, the replicated schema, sync state, members, metrics). docs/DESIGN.md section 7 is its contract.
//
// It owns request parsing, the JSON forms of statements and results, the mapping of errors to
// status codes, authentication, load shedding, body limits and the /metrics registry. It
// consumes the materializer and the log through the small interfaces declared in api.go, so
// tests and the agent can hand it anything that satisfies them.
//
// It must not import gossip, cmd or bench. Package api/client is its Go client and must not
// import api (so that a program embedding the client does not pull in SQLite).
//
// Invariants:
//   - every error answer is a JSON object with an "error" string and a precise status
//     (400 bad input, 401 no or unknown token, 403 token of too small a scope, 404 unknown,
//     408 timeout, 409 schema conflict, 413 body too large, 503 overload or shutting down, 500 only for real internal faults; 499 is only
//     recorded in metrics, for a client that went away);
//   - streams (queries, the changeset stream) never hold a whole result in memory and flush
//     every event as soon as it is known; a failure after the first byte of a stream is sent
//     as a final {"error":...} event, since the status line is already gone;
//   - nothing is acknowledged before it is durable: a transaction or ingest answers after the
//     materializer returned, and the materializer returns after the log's fsync;
//   - an ingest body is validated whole before any of it is applied;
//   - every route of the table (routes.go) names the scope it needs; with any token
//     configured, only kindPublic routes answer without one (TestEveryRouteGuarded);
//   - load waits briefly, never without bound: past MaxConcurrency data requests, up to
//     QueueDepth more wait in arrival order for at most QueueTimeout (admission.go); a
//     request is answered 503 with Retry-After only when the queue is full, its expected
//     wait passes the timeout, or the timeout passes. Past MaxStreams streams the answer is
//     503 at once;
//   - the Unix socket (Config.Socket), when there is one, is served by the same http.Server
//     as the TCP listener: one route table, one set of limits and tokens, one shutdown; a
//     file that is not a socket is never removed (TestSocketFile);
//   - the write listener (Config.WriteAddr, writelistener.go) is a second door to POST
//     /v1/transactions alone, served by fasthttp: it passes the same guards (guard,
//     errorHeaders, parseTimeout, the admission queue) and the same transact as the net/http
//     route, so that both doors give the same answer to the same request
//     (TestWriteListenerAnswersAsTheAPI). A guard added to the route must be added there too.
//     Every other route stays on net/http, which alone speaks HTTP/2.
package api
