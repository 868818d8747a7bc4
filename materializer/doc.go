// Package materializer folds the log into the SQLite view users read (<data>/views.db) with
// cr-sqlite's merge rules (docs/DESIGN.md section 3, rules R1-R9 and R12), and turns local SQL transactions into
// changesets with cr-sqlite's local-write rules (L1-L8).
//
// It owns the view file: user tables, one clock table per user table
// (__patina_clock_<table>: one row per table row, the row's cl and an encoded clock of
// per-cell records col_version, origin site, origin version, ordinal), __patina_meta (site id,
// fold position), __patina_pending (changesets waiting for schema) and __patina_schema (every
// schema element folded, the set the schema is computed from). It reads and appends
// to package log; it must not import api, gossip, cmd, bench or materializer/subs.
//
// Invariants:
//   - One writer goroutine owns the write connection and every append the materializer makes
//     to the log; local transactions reach the log (written, seqs given) before their SQLite
//     commit, and the fold position commits in the same SQLite transaction as the data it
//     covers, so a crash at any point refolds from the log with exactly-once effect.
//   - The writer may be pipelined with the log's fsync (group.go's group; Config.WriterDepth
//     2, off by default): a group's SQLite transaction commits once the log has written its
//     changesets (at any depth), and the writer goes on with the next group while that
//     write syncs. Its answers, commit notices, broadcast and
//     published fold position (FoldPosition) wait for the sync, in commit order (the
//     completer; at depth 1 the writer itself, which waits for the sync in the log's
//     awaitGroup), so no caller is answered, no peer is sent and nothing outside the writer
//     sees a fold position before the log holds it durably; the view itself may show a
//     write up to one fsync before its answer. A view left ahead of its log (a crash in
//     that window, or a failed WAL sync) is rebuilt from the log: at Open (heal.go's
//     viewAheadError, found from the fold position and __patina_meta's view_seq) or at
//     once in the running writer (healAhead), before the refused writes are answered.
//   - The answer of a local transaction is the log's: once the log has taken its changeset
//     it is committed even if the view's commit then fails (a full disk); it is answered
//     once durable, and the writer folds it from the log like any backlog (viewLost). A
//     failure of the view never turns a committed write into an error answer.
//   - A row exists in a user table exactly when its clock says cl is odd.
//   - Folding is idempotent and order-independent: the same changesets in any order, with
//     duplicates, give the same tables and the same clock tables (origins included).
//   - A version becomes visible only whole: it is folded in one SQLite transaction and only
//     once the log holds all of its parts. A compacted version (Changeset.Compacted) is
//     whole too, but holds only the changes that still won where it was compacted: what it
//     shows is the survivors, never an intermediate state of the transaction.
//   - Compaction (compact.go) drops only what the view proves superseded: a change is live
//     while any record of its row's clock names its origin; refused and pending changesets,
//     unknown tables and columns, and versions not yet folded are always live. A pass judges
//     only versions the fold marked since they were last judged (superseded.go): every
//     displaced clock record and every change that loses on arrival marks its version; a
//     lost mark (restart, rebuild, overflow) costs one full pass, never a kept change for
//     good. The tests follow every incremental pass with a full one that must drop nothing.
//   - Every clock row is written by writeBuf.flush on the writer's connection, which records
//     its key in its table's clock filter (clock.go) as it writes it: the filter may say a
//     row has no clock (and its read is skipped) only when no write passed it by. A write
//     that is rolled back only costs a read later.
//   - Readers use separate read-only connections and never wait for the writer.
//   - The view's WAL is checkpointed beside the writer (checkpoint.go): a PASSIVE checkpoint,
//     on a connection opened for it under rmu (shared), so that it never blocks the writer
//     or a reader and never outlives a rebuild's swap of the file. The writer's own
//     automatic checkpoint stays as a safety net (10,000 pages).
//   - Local writes are captured in the same pass as they run (capture.go): AFTER triggers on
//     each user table, on only while a local transaction's statements run, pass each row's
//     old and new values to the SQL function __patina_capture, which exists only on the
//     writer's connections and which write statements cannot name. A transaction's events
//     are its own: they start empty and go with a failed or rolled-back transaction.
//   - The schema is replicated: migrations and schema files append schema changesets
//     (log.KindSchema) that fold alone, before anything after them in the log; the schema
//     is a function of the set of schema elements held (schemamerge.go, TestMergeSchemaProperty),
//     and a table that cannot reach it by appending columns is recreated alone and refolded
//     from the log. A table element that lags or is ahead of its table's winning definition
//     (a prefix, or the definition plus columns) is not a conflict; only a real difference is.
package materializer
