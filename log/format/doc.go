// Package format is the log's data model: the types every changeset is made of (SiteID,
// Version, Seq, Value, PK, Change, Changeset, Timestamp and the HLC, Range/RangeSet and
// Vector) and their msgpack and JSON encodings, on disk and on the wire.
//
// # Imports
//
// It is a leaf: the standard library and msgpack only. It must not import package log
// (the Pebble store) nor anything of Patina's; internal/archtest checks that neither it
// nor api/client, which users embed and which builds on it, pulls in Pebble. Package log
// re-exports every exported name (log/format_aliases.go), so code that holds a Store says
// log.Changeset and code that only speaks the wire says format.Changeset: the same type.
//
// # Invariants
//
//   - Every decoder of bytes from disk or network returns an error (a *DecodeError wrapping
//     the cause), never panics, and every changeset it returns passes Changeset.Validate.
//   - Encodings are canonical: decoding and re-encoding gives the same bytes, which the
//     fuzz targets check.
//   - Every validation failure wraps ErrInvalid.
//
// The codecs are tested and fuzzed in package log (changeset_test.go, vector_test.go,
// fuzz_test.go), beside the store that writes them and with the seed files in
// log/testdata; the primary-key packing is pinned against cr-sqlite here (pk_test.go).
package format
