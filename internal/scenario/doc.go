// Package scenario holds the scenarios recorded from the real cr-sqlite (0.16, see
// testdata/crsqlite/README.md for the format) and loads them for tests of any package: the
// materializer's replays, cmd/patina's replay over HTTP, and any test that must keep "every
// recorded scenario passing" (a change to what the log keeps or sends, compaction, ...).
//
// The files live in this package's testdata and are embedded, so a test finds them whatever
// its working directory and in a clone with nothing beside it; a corpus that is missing or
// empty fails the test (it never skips). Corpora:
//
//   - Edge (testdata/crsqlite/edge.json): 32 hand-written edge cases with descriptions.
//   - PKEdge (testdata/crsqlite-pk/edge.json): 25 primary-key updates, multi-statement
//     transactions and partial syncs (format additions in its README).
//   - Random, RandomTx: random scenarios recorded by testdata/crsqlite-gen, the second with
//     transactions of 1-4 statements per local step.
//
// Files named by the environment variable PATINA_CRSQLITE_SCENARIOS (a path list) are loaded
// by Extra, in the same format.
//
// It must not import any Patina package: every package's tests may import it.
package scenario
