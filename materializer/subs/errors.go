package subs

import (
	"errors"
	"fmt"

	"github.com/patinadb/patina/materializer"
)

// Sentinel errors. Those that wrap materializer.ErrBadStatement are bad input (HTTP 400).
var (
	// ErrNotSelect: the statement is not a single SELECT.
	ErrNotSelect = fmt.Errorf("%w: a subscription takes one SELECT statement", materializer.ErrBadStatement)
	// ErrUnknownTable: /v1/updates was asked for a table the view does not have.
	ErrUnknownTable = fmt.Errorf("%w: no such table", materializer.ErrBadStatement)
	// ErrNotFound: no subscription has this id (HTTP 404).
	ErrNotFound = errors.New("subs: no such subscription")
	// ErrTooOld: the change id to resume from is older than the changes retained; the
	// client must subscribe again without from (it gets the current rows).
	ErrTooOld = errors.New("subs: change id is older than the retained changes; resubscribe without from")
	// ErrFromAhead: the change id to resume from has not been reached by this subscription.
	ErrFromAhead = errors.New("subs: change id not reached by this subscription")
	// ErrFromWithoutSub: POST /v1/subscriptions?from=N for a statement that has no
	// subscription yet (HTTP 400, as in Corrosion): there is nothing to resume.
	ErrFromWithoutSub = fmt.Errorf("%w: a from parameter was given, but no subscription of this statement exists", materializer.ErrBadStatement)
	// ErrSlowClient: the client did not read its events fast enough and was disconnected.
	ErrSlowClient = errors.New("subs: client too slow: event buffer full, disconnected")
	// ErrClosed: the engine is closed or closing (HTTP 503).
	ErrClosed = errors.New("subs: closed")
	// ErrDropped: the subscription was removed (idle).
	ErrDropped = errors.New("subs: subscription dropped")
	// ErrEventTooLarge: an event (a row or a change) encodes to more than
	// Config.MaxEventBytes: it is not sent, and the stream ends with this error (as an error
	// event) rather than hold that much memory per client.
	ErrEventTooLarge = errors.New("subs: event too large to send")
)
