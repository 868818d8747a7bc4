// Package subs is Patina's subscription engine: it keeps the result of a SELECT up to date as
// the view changes and streams the difference to clients as Corrosion's change events
// (docs/DESIGN.md section 7, POST /v1/subscriptions and /v1/updates).
//
// It owns the subscriptions (statement, current result, retained recent events), their
// persistence in <data>/subscriptions/subs.db, and the fan-out to clients. It reads the view
// only through the materializer's public API (Query, Notify, Tables: the Source interface),
// so it must not import api, gossip, cmd or bench, and the materializer must not import it.
//
// Invariants:
//   - Every evaluation is exact: the user's statement itself, run on the view, in full or
//     restricted to changed primary keys where the statement's shape makes that exact (see
//     analyse), diffed against the stored result keyed by row identity. After every batch of
//     commit notices is processed, each result equals the statement's result on a committed
//     state at least as new as the batch.
//   - Change ids of a subscription grow by exactly one per event. An event is stored before
//     any client sees it, so a resume after a process restart sees no gap and no duplicate.
//   - Every evaluation of a registered subscription runs under Engine.evalMu, which keeps
//     the key index (which subscription holds which keys) exact; see keyIndex. A new
//     subscription's first evaluation runs before it is registered, and the changes
//     processed meanwhile are replayed on it at registration.
//   - A slow client never slows the notice loop or another client: its queue is bounded and
//     it is disconnected with an error event when the queue is full.
package subs
