// Command patina is Patina's one binary: the agent (`patina agent`), the client commands that
// talk to an agent's HTTP API (exec, query, tail, migrate, schema, sync state, members), the offline
// commands that work on a stopped node's data dir (rebuild, log inspect) and the helpers
// (tls). docs/DESIGN.md section 8 is its contract.
//
// It is the only package that wires log, materializer, gossip and api together, and the only
// one that reads config files, flags and environment variables. Nothing imports it.
//
// Adding a command: put it in its own file cmd_<name>.go and register it from an init func:
//
//	func init() { register("", newFooCmd) }      // patina foo
//	func init() { register("bench", newBarCmd) } // patina bench bar
//
// A parent ("bench") that no file registers as a command of its own is made as a plain group.
//
// Invariants:
//   - exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input (flags, config,
//     a 4xx answer of the API); the error is one line on stderr;
//   - configuration precedence is flags > PATINA_* environment > TOML file (-c) > defaults;
//   - the agent acknowledges nothing that is not durable, and on SIGTERM/SIGINT leaves the
//     cluster and closes every component in reverse order of opening; a second signal exits
//     at once.
package main
