// Package gossip turns single Patina nodes into a cluster: SWIM membership
// (hashicorp/memberlist), a QUIC transport (quic-go, TLS 1.3 always), broadcast of new
// changesets with a hop budget, and range sync of version vectors that repairs whatever
// broadcast missed.
//
// It owns the wire protocol between nodes (frames in wire.go), the membership metadata
// (site id, cluster id, QUIC and API addresses) and the fault hook used by tests.
//
// It must not import materializer, api, cmd or bench: received changesets go to an Applier
// it declares, and it reads the log through the small Log interface it declares
// (*log.Store satisfies it).
//
// Invariants:
//   - Whether a received changeset is forwarded is decided only by the Applier's answer
//     (was it new to the log), never by in-memory state, so no failure can cause a
//     broadcast storm: each node forwards each changeset at most once per hop budget.
//   - Queues are bounded; a full queue drops its oldest entry. Broadcast only makes the
//     cluster fast; sync makes it converge, so a drop costs latency, never data.
//   - Nodes of another cluster id never exchange data: memberlist refuses them (Alive and
//     Merge delegates) and the QUIC hello is checked on every stream.
package gossip
