// Package gossip turns single Patina nodes into a cluster: SWIM membership
// (hashicorp/memberlist), a QUIC transport (quic-go, TLS 1.3 always), broadcast of new
// changesets with a hop budget, and range sync of version vectors that repairs whatever
// broadcast missed.
//
// It owns the wire protocol between nodes (frames in wire.go, pinned in testdata/wire),
// the membership metadata (site id, cluster id, QUIC and API addresses, leaving flag), the
// fault hook used by tests and benchmarks, and GenerateCA/GenerateCert for `patina tls`.
//
// It must not import materializer, api, cmd or bench: received changesets go to an Applier
// it declares, and it reads the log through the small Log interface it declares
// (*log.Store satisfies it). Only cmd/patina wires it to the others.
//
// Lifecycle: New (no I/O) -> Open (binds QUIC and memberlist, starts the loops; joining
// the bootstrap addresses goes on in the background) -> Close (graceful leave, then stop;
// idempotent). Broadcast, Members, Stats, P99Lag, Gaps and SetFaults are safe for
// concurrent use once Open has returned.
//
// Invariants:
//   - Whether a received changeset is forwarded is decided only by the Applier's answer
//     (was it new to the log), never by in-memory state, and the hop budget shrinks at
//     every hop and is capped at this node's MaxHops, so no failure can cause a broadcast
//     storm.
//   - Queues are bounded; a full queue drops its oldest entry. Broadcast only makes the
//     cluster fast; sync makes it converge, so a drop costs latency, never data.
//   - Nodes of another cluster id never exchange data: memberlist refuses them (Alive and
//     Merge delegates) and the QUIC hello is checked on every stream.
//   - Every decoder of bytes from the network returns an error wrapping ErrProtocol on
//     malformed input, never panics and never allocates more than the input justifies.
package gossip
