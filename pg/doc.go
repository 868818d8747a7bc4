// Package pg serves the PostgreSQL wire protocol (version 3) for one node, so that psql,
// pgx, psycopg2 and the tools built on them read and write Patina. The framing is jackc/pgx's
// pgproto3; this package owns the session: start-up (SSL/TLS negotiation, SCRAM-SHA-256
// against the API token), the simple and extended query protocols (Parse, Bind, Describe,
// Execute with row limits and portals, Close, Sync), BEGIN/COMMIT/ROLLBACK blocks, SET/SHOW,
// the mapping of SQLite values and declared types to PostgreSQL type OIDs (types.go), errors
// as SQLSTATE codes (errors.go), and an emulated pg_catalog/information_schema (catalog.go)
// for the queries clients send on connect and for psql's \d commands.
//
// It consumes the materializer through View (reads on the read pool; writes through
// Transact, the same path as POST /v1/transactions, so a write here is broadcast like any
// local write). It must not import api, gossip, cmd, bench or materializer/subs; only cmd
// wires it (internal/archtest checks).
//
// Invariants:
//   - a BEGIN ... COMMIT block is one Patina transaction: its writes are queued and committed
//     together at COMMIT (all or nothing); ROLLBACK, or a COMMIT after an error, discards
//     them; reads inside a block see the last commit, not the block's own queued writes;
//   - nothing is acknowledged before it is durable: CommandComplete of a write (or COMMIT)
//     is sent after Transact returned;
//   - SQL text is never interpreted beyond tokens: SQLite parses what it receives ($N renamed
//     ?N, PostgreSQL casts turned into SQLite's) and its error is what the client reads;
//   - the catalog holds names and types only, rebuilt when the view's schema_version moves.
package pg
