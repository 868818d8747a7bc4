// Package log is Patina's shared vocabulary and its source of truth: the changeset types
// (SiteID, Version, Value, PK, Change, Changeset, Timestamp, Vector), their msgpack and JSON
// encodings, and the append-only Pebble store of changesets.
//
// It imports nothing of Patina's. Every decoder of bytes from disk or network returns an
// error, never panics, and a changeset it returns is valid (Changeset.Validate).
package log
