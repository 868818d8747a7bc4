package log

import (
	"errors"
	"fmt"

	"github.com/patinadb/patina/log/format"
)

// Sentinel errors of the log package. Callers compare with errors.Is.
var (
	// ErrClosed is returned by every Store method after Close.
	ErrClosed = errors.New("log: closed")
	// ErrNotFound means the requested version (or part) is not held.
	ErrNotFound = errors.New("log: not found")
	// ErrIncomplete means a version is only partially held: some of its parts are missing.
	ErrIncomplete = errors.New("log: version incomplete")
	// ErrSiteMismatch means a data directory belongs to another site than the one asked for.
	ErrSiteMismatch = errors.New("log: site id mismatch")
	// ErrInvalid wraps every validation failure of a changeset, value, pk or vector.
	ErrInvalid = format.ErrInvalid
	// ErrSeqBeyondLog means a tail was asked to start after a seq the log has not reached.
	ErrSeqBeyondLog = errors.New("log: seq beyond end of log")
	// ErrLocked means another process (or another Store in this one) has the log open.
	ErrLocked = errors.New("log: in use by another process")
	// ErrReadOnly is returned by every write to a store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("log: opened read-only")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
