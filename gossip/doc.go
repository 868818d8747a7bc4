// Package gossip turns single Patina nodes into a cluster: SWIM membership
// (hashicorp/memberlist), a QUIC transport (quic-go, TLS 1.3 always), broadcast of new
// changesets with a hop budget, and range sync of version vectors that repairs whatever
// broadcast missed. A sync session opens with a 16-byte digest of the client's vector to
// peers that serve them (metadata "sd"): equal logs end there, so an idle cluster's sync
// costs the same per node at any size; the vectors travel only when the digests differ.
//
// It owns the wire protocol between nodes (frames in wire.go, pinned in testdata/wire),
// the membership metadata (site id, cluster id, QUIC and API addresses, leaving flag), the
// fault hook used by tests and benchmarks, and GenerateCA/GenerateCert for `patina tls`.
//
// It must not import materializer, api, cmd, bench or sim: received changesets go to an Applier
// it declares, and it reads the log through the small Log interface it declares
// (*log.Store satisfies it). Only cmd/patina wires it to the others.
//
// # Seams
//
// Gossip takes its clock, its randomness, its transport and its membership through four
// small interfaces (seams.go), so that the same protocol code runs in production and in
// the deterministic simulator (package sim, `patina bench sim`). A zero Config field means
// production's implementation:
//
//   - Clock (Now, AfterFunc): the wall clock. Every protocol timer goes through it: the
//     per-peer batch delay and send backoff, and the sync rounds.
//   - Rand (IntN, Float64): math/rand/v2's global source. Peer choice for broadcast and
//     sync, and jitter.
//   - Transport (Listen, Send, Sync, Forget, Close): QUIC (quic-go). It moves bytes: a
//     batch of broadcast frames to a peer, or one sync session, whose steps are gossip's
//     SyncSession (vectors, then what each side lacks). What it receives goes to gossip's
//     Inbound (Broadcast, ServeSync). Cluster checks of the QUIC hello live in it.
//   - Membership (Start, Leave, Close): memberlist. It reports nodes Up (with their opaque
//     metadata) and Down through MemberEvents; refusing nodes of another cluster is its job.
//
// Rules that keep one copy of the protocol: every decision (which peers, how many hops,
// queue bounds and batching, when to sync and with whom, what a session sends) is made in
// gossip, never in a seam's implementation; seams only carry bytes, time and events. Gossip
// starts no goroutine of its own: its work runs on the Clock's callbacks, the Transport's
// and the Membership's goroutines, and the callers of Broadcast, so a simulator that calls
// everything from one event loop gets the same run for the same seed. Transport.Sync may
// run its session before returning (QUIC) or later (a simulator), and calls done once
// either way.
//
// Lifecycle: New (no I/O) -> Open (binds QUIC and memberlist, starts the loops; joining
// the bootstrap addresses goes on in the background) -> Close (graceful leave, then stop;
// idempotent). Broadcast, Members, Stats, P99Lag, Gaps, SiteGaps and SetFaults are safe for
// concurrent use once Open has returned. Rejoin and Reconcile (admin.go, an operator's
// requests through the API) block their caller until done and start no goroutine; the
// simulator does not call them.
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
