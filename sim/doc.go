// Package sim is a deterministic simulator of a Patina cluster at scale: `patina bench
// sim` runs hundreds or thousands of nodes in one process on a virtual clock and a virtual
// network, each node being the real gossip code (gossip.Gossip: broadcast, forwarding and
// its hop budget, per-peer queues and batching, sync scheduling, peer choice, vector
// exchange and range streaming) over a real log (log.Store: Pebble on vfs.NewMem).
//
// It fills gossip's seams (gossip/seams.go) with its own: a Clock on one event loop
// (clock.go), a seeded Rand per node, a Transport over the network model (net.go: the
// round trips of Microsoft's published Azure inter-region table, embedded as data with its
// citation in azure_rtt.txt; per-link bandwidth, QUIC-like loss recovery, per-message and
// per-byte processing cost measured from the real receive path, partitions and crashes) and a Membership model (membership.go)
// with failure-detection delays from memberlist's configuration, since memberlist runs on
// wall time.
//
// Invariants:
//   - Everything runs on the loop's goroutine, one event at a time, in (time, sequence)
//     order, and every random draw comes from a source seeded by Config.Seed; so the same
//     Config gives the same Result (wall_s and cpu_s aside). Pebble's own goroutines only
//     make Append block; they decide nothing.
//   - No second copy of the protocol: the simulator moves bytes, time and membership
//     events; every protocol decision is gossip's.
//   - It imports gossip and log only (internal/archtest); gossip never imports it. Only
//     cmd/patina (and bench) import it.
//
// What the model leaves out is listed in README.md's Scale section.
package sim
