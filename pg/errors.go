package pg

import (
	"context"
	"errors"
	"strings"

	"github.com/patinadb/patina/materializer"
)

// pgError is an error with its SQLSTATE, sent as an ErrorResponse.
type pgError struct {
	code string
	msg  string
	hint string
}

func (e *pgError) Error() string { return e.msg + " (SQLSTATE " + e.code + ")" }

func errf(code, msg string) *pgError { return &pgError{code: code, msg: msg} }

// toPgError maps an error of the materializer (or of this package) to a SQLSTATE.
func toPgError(err error) *pgError {
	var pe *pgError
	if errors.As(err, &pe) {
		return pe
	}
	msg := err.Error()
	var se *materializer.StmtError
	if errors.As(err, &se) {
		msg = se.Err.Error()
	}
	lower := strings.ToLower(msg)
	code := "XX000"
	switch {
	case errors.Is(err, context.Canceled):
		code, msg = "57014", "canceling statement due to user request"
	case errors.Is(err, context.DeadlineExceeded):
		code = "57014"
	case errors.Is(err, materializer.ErrClosed):
		code = "57P01"
	case errors.Is(err, materializer.ErrReadOnly):
		code = "25006"
	case errors.Is(err, materializer.ErrInternalTable):
		code = "42501"
	case errors.Is(err, materializer.ErrSchemaConflict), errors.Is(err, materializer.ErrSchema):
		code = "0A000"
	case errors.Is(err, materializer.ErrConstraint):
		switch {
		case strings.Contains(lower, "unique"), strings.Contains(lower, "primary key"):
			code = "23505"
		case strings.Contains(lower, "not null"):
			code = "23502"
		case strings.Contains(lower, "check"):
			code = "23514"
		case strings.Contains(lower, "foreign key"):
			code = "23503"
		case strings.Contains(lower, "datatype mismatch"):
			code = "42804"
		default:
			code = "23000"
		}
	case errors.Is(err, materializer.ErrBadStatement):
		switch {
		case strings.Contains(lower, "no such table"):
			code = "42P01"
		case strings.Contains(lower, "no such column"):
			code = "42703"
		case strings.Contains(lower, "no such function"):
			code = "42883"
		case strings.Contains(lower, "syntax error"), strings.Contains(lower, "incomplete input"), strings.Contains(lower, "unrecognized token"):
			code = "42601"
		case strings.Contains(lower, "argument"), strings.Contains(lower, "parameter"):
			code = "08P01"
		default:
			code = "42000"
		}
	}
	return &pgError{code: code, msg: msg}
}
