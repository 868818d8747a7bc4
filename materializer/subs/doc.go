// Package subs is Patina's subscription engine: it keeps the result of a SELECT up to date as
// the view changes and streams the difference to clients as Corrosion's change events
// (DESIGN.md section 7, POST /v1/subscriptions and /v1/updates).
//
// It owns the subscriptions (definition, current result, retained recent changes), their
// persistence in <data>/subscriptions/subs.db, and the fan-out to clients. It reads the view
// only through the materializer's public API (Query, Notify, Tables), so it must not import
// api, gossip, cmd or bench, and the materializer must not import it.
//
// Invariants:
//   - A subscription's stored result always equals the query's result at some committed
//     snapshot of the view, and after every notice is processed it equals the current one:
//     every evaluation is exact (a full re-run, or a re-run restricted to the rows whose
//     primary keys changed when the query's shape makes that exact), and it is diffed against
//     the stored result keyed by row identity.
//   - Change ids of a subscription grow by exactly one per event; an event is persisted
//     before any client sees it, so a resume after a restart never sees an id twice with
//     different contents.
//   - A slow client never slows the notice loop or another client: its buffer is bounded and
//     it is disconnected with an error when the buffer is full.
package subs
