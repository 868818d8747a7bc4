package format

import (
	"errors"
	"fmt"
)

// ErrInvalid wraps every validation failure of a changeset, value, pk or vector; callers
// compare with errors.Is (log.ErrInvalid is the same value).
var ErrInvalid = errors.New("invalid")

// DecodeError is returned by every decoder of bytes from disk or network. Off is the byte
// offset at which decoding failed (best effort), Err the cause.
type DecodeError struct {
	What string
	Off  int64
	Err  error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode %s at %d: %v", e.What, e.Off, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
