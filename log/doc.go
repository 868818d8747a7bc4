// Package log is Patina's source of truth: the append-only Pebble store of changesets (Store)
// that every node keeps in <data>/log/, with compaction (Compact) and inspection (Inspect,
// Store.Check) for stopped nodes. The vocabulary it stores (SiteID, Version, Value, PK,
// Change, Changeset, Timestamp, Vector and their encodings) lives in the leaf package
// log/format, so the Go client can speak it without Pebble; log re-exports every name of it
// (format_aliases.go, written by go generate), so log.Changeset and format.Changeset are
// one type.
//
// # Imports
//
// It imports nothing of Patina's but log/format (materializer, gossip, api and cmd import
// it, never the reverse; internal/archtest checks this). Outside the standard library it
// uses only Pebble, msgpack and the Prometheus client.
//
// # Glossary
//
// One name per meaning:
//
//   - Ordinal (Ord): a change's place inside its version, 0..LastOrd, the same on every
//     node: Change.Ord, Changeset.Span (an OrdRange), Changeset.LastOrd, Partial.Held. On
//     the wire and in the JSON forms it keeps cr-sqlite's and Corrosion's name, "seq", for
//     compatibility; in Go it is never called seq.
//   - Seq (the type): this node's own arrival counter over its log, different on every node
//     and meaningless to send to another (an offset, as in Kafka): Changeset.Seq,
//     Stats.LastSeq, the 0x04 arrival index, Tail and Read positions, the materializer's
//     fold position, the API's since=.
//
// A site is one writer (SiteID, 16 bytes, a node's identity in the log); a version is one
// transaction of one site, numbered 1, 2, ... by that site; a vector is what a node holds,
// per site, as ranges of versions (plus versions held in part and cleared versions).
//
// # Pebble key layout
//
// One byte of prefix per key space; integers are big-endian so that Pebble's bytewise order
// is numeric order:
//
//	0x01 name                            -> internal metadata: "site_id" (16 bytes),
//	                                        "format" (1 byte, FormatV1), "stats"
//	                                        (changes uint64, encoded bytes uint64)
//	0x02 name                            -> caller metadata (Meta, SetMeta)
//	0x03 site(16) version(8) first(8)    -> one stored part: an encoded Changeset holding
//	                                        ordinals first..last of the version (the whole version
//	                                        when first = 0 and last = last_seq)
//	0x04 seq(8)                          -> site(16) version(8): the arrival index; seq is the
//	                                        local seq at which the version became complete
//	0x05 site(16)                        -> the site's complete versions: format byte, msgpack
//	                                        array of flat [first, last, ...] ranges
//	0x06 site(16) version(8)             -> a version held in part: format byte, uvarint
//	                                        last_seq, msgpack ranges of the ordinals held
//	0x07 site(16)                        -> the site's cleared versions (a subset of its
//	                                        0x05 ranges): format byte, msgpack ranges
//	0x01 "compaction"                    -> horizon seq, horizon ts, changes dropped,
//	                                        versions cleared, bytes removed (uint64 each)
//	0x01 "own_head"                      -> version(8): this node's highest own version,
//	                                        away from the vector entries (recover.go)
//	0x01 "scrub"                         -> unix nanos(8): end of the last scrub pass
//	0x08 site(16) version(8)             -> the version's content digest (forge.go)
//
// Beside Pebble's files, IDENTITY holds a copy of the site id (the one key open cannot
// rebuild from the data; recover.go).
//
// Parts of one version are adjacent in key order, so Get and Scan read a version with one
// seek; Read and Tail walk the arrival index and seek into the data for each version.
//
// # Invariants
//
//   - A version is complete when its stored parts hold every ordinal 0..last_seq. Then, and only
//     then, it is in its site's 0x05 ranges, it has no 0x06 entry, and exactly one 0x04
//     arrival entry names it. A version held in part has a 0x06 entry and no arrival entry.
//   - Stored parts of a version are disjoint (Append trims what is already held) and each
//     sits under the key of its own site, version and first ordinal.
//   - Arrival seqs rise with no repeat: 1..LastSeq, dense until compaction clears versions
//     (a cleared version loses its arrival entry, so its seq is a hole that never fills).
//     The version at LastSeq is never cleared, so Read before the end always finds one.
//   - Compaction (Compact) only ever rewrites complete data versions with arrival seq up to
//     the caller's fold position, dropping changes its Judge names superseded: a version
//     keeps its live changes (Changeset.Compacted; the ordinals of Span it no longer carries
//     were superseded) or is cleared (0x07; no data, no arrival entry). Schema and empty
//     changesets are never touched. One pass at a time; each batch is one turn of the
//     committer, so the stats and vector stay exact. A pass over CompactOptions.Candidates
//     reads and judges only the versions named (the caller knows which rows changed) and
//     hands back in Retry what holds a superseded change that cannot go yet.
//   - The data, the vector entries, the arrival entries and the stats counters of one
//     commit are written in one Pebble batch, so a crash at any instant leaves them
//     consistent with each other; Store.Check verifies all of it, and a SIGKILL test checks
//     it after 20 kills mid-append.
//   - Durable before visible: Append returns, and the published vector, LastSeq, Tail and
//     Get show a version, only after its batch is synced.
//   - Local versions have no gaps: AppendLocal reserves the next version and queues the
//     request under one mutex, so versions reach the committer in order, and a refused call
//     reserves nothing.
//   - Every decoder of bytes from disk or network returns an error (a *DecodeError wrapping
//     the cause), never panics, and every changeset it returns passes Changeset.Validate.
//
// # Group commit
//
// Groups are written one at a time, under the committer's lock (commitMu). Append
// validates, cuts large changesets into parts of at most Options.MaxPartChanges changes and
// encodes them in the caller's goroutine. An append that finds the committer idle (nothing
// queued, nothing being written, a pipeline slot free) then writes its own group, on its
// own goroutine (tryCommit); otherwise it queues one request for the committer goroutine,
// which takes the first queued request and every other one already waiting (up to
// maxBatchItems parts). Either way the group is decided against the working vector (what
// is new), written into one Pebble batch and handed to Pebble without waiting for the WAL's
// fsync (ApplyNoSyncWait), and queued, in write order, for publication (pubQ). The callers
// then wait: whoever holds pubMu takes the head of that queue, waits for its fsync, and only
// then publishes it to the read side (vector, LastSeq, counters, under a short lock), wakes
// tails and answers its callers; a caller publishes the groups up to its own, so it is woken
// by Pebble's flush loop directly. (A goroutine of the log's own that published and
// answered would add two hand-offs per group, each a turn in the scheduler's run queue,
// about half a millisecond behind a busy node's HTTP handlers; so would the committer's
// queue for a lone appender.) The commit is pipelined: while group N's fsync runs, group
// N+1 is collected, built and written behind it, so its fsync starts as soon as N's ends,
// instead of the disk waiting between two groups. Options.CommitDepth (default 2) bounds the
// groups on their way; 1 is the serial committer.
// Invariants: an answer never precedes the fsync of what it answers
// (TestPipelinedCommitAcksAfterSync holds the fsync; TestAckedAppendsSurvivePowerLoss checks
// every answered append against copies of a filesystem that forgets unsynced data); the WAL is one ordered
// file, so a group is durable only once every earlier one is, and groups are published in
// write order (TestLaterWaiterPublishesInOrder); a group with nothing new (its items held by
// the working vector, which includes groups not synced yet) still waits its turn, because
// "held" may mean "held by a group still on its way"; every group written has a caller that
// waits for it (AppendAsync's callers must Wait), and Close publishes any left. Local
// versions are written in the order they were reserved (TestConcurrentLocalAppendsKeepOrder:
// an idle appender writes its own group only when nothing is queued ahead of it).
// Compaction and repair read and replace the published state, so the committer publishes
// every group written before running them.
// There is no timer: a lone writer pays one fsync per append and never waits for company.
// When the last batch was shared, the committer yields the processor once before it stops
// collecting, so that writers just woken by the last commit can queue their next append for
// this group rather than the next one (with 16 writers this raised the appends per fsync
// from about 7 to about 12 on the 2-core bench machine, at no cost to a lone writer). A failed
// write or fsync leaves the working vector ahead of the disk, so the store refuses every
// later write (groups already on their way fail too) until it is reopened, which reads the
// truth back from disk (CommitFailure says why; a group whose apply fails fails the store
// before the next group is built on it). Pebble's WAL error is sticky and Pebble panics when
// a later commit or a WAL rotation meets it, so a failing disk may also end the process: the
// invariant holds either way (TestWALFailureRefusesLaterGroups fails a child's WAL with
// groups in flight and checks what it answered against what the directory holds).
//
// # Damage
//
// A damaged Pebble block is an error of the reads that meet it, recorded (Damage) and then
// repaired (repair.go: the log re-written without what is unreadable, which sync fetches
// again). A background scrub (scrub.go, Options.ScrubInterval) reads every file and checks
// every version against its digest, so damage no read meets is found too; Check runs the same
// checks unpaced. A writable open that meets damage in the keys it reads rebuilds them from
// the data (recover.go); only an unreadable identity, or an unknowable own head, stops it.
//
// Readers (Get, Scan, Read, Tail, Vector, Missing) never wait for the committer: they read
// the published state under a read lock and Pebble's own snapshots. Vector and Missing take
// that lock once per site, so copying a vector of a thousand sites (milliseconds) never delays
// a commit's publication; each site is exact, and the log only grows. Tail reads in chunks and
// holds nothing between them, so a slow consumer never blocks appends.
package log
