package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// SubEvent is one event of a subscription stream (POST /v1/subscriptions): exactly one of
// its fields is set. Change is [kind, rowid, cells, change_id] as the API sends it.
type SubEvent struct {
	Columns []string          `json:"columns,omitempty"`
	Row     json.RawMessage   `json:"row,omitempty"`
	EOQ     *json.RawMessage  `json:"eoq,omitempty"`
	Change  []json.RawMessage `json:"change,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// Subscription is an open subscription stream. Read it with Next until it returns false,
// then check Err; Close it in any case.
type Subscription struct {
	ID   string // the subscription's id (Corro-Query-Id)
	resp *http.Response
	br   *bufio.Reader
	ev   SubEvent
	err  error
}

// Subscribe subscribes to one SELECT's result: the stream sends its columns, its current
// rows (unless skipRows), an end-of-query event, then one event per change until ctx ends or
// Close.
func (c *Client) Subscribe(ctx context.Context, st Statement, skipRows bool) (*Subscription, error) {
	body, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if skipRows {
		q.Set("skip_rows", "true")
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/subscriptions", q, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	return &Subscription{ID: resp.Header.Get("Corro-Query-Id"), resp: resp, br: bufio.NewReaderSize(resp.Body, 64<<10)}, nil
}

// Next reads the next event; false when the stream ended (see Err). An {"error": ...} event
// ends the stream with an *Error.
func (s *Subscription) Next() bool {
	if s.err != nil {
		return false
	}
	line, err := s.br.ReadBytes('\n')
	if err != nil {
		s.err = fmt.Errorf("subscription %s: stream ended: %w", s.ID, err)
		return false
	}
	s.ev = SubEvent{}
	if err := json.Unmarshal(line, &s.ev); err != nil {
		s.err = fmt.Errorf("subscription %s: bad event %s: %w", s.ID, truncate(string(line), 80), err)
		return false
	}
	if s.ev.Error != "" {
		s.err = &Error{Status: http.StatusOK, Message: s.ev.Error}
		return false
	}
	return true
}

// Event is the event Next read.
func (s *Subscription) Event() SubEvent { return s.ev }

// Err is what ended the stream.
func (s *Subscription) Err() error { return s.err }

// Close ends the stream.
func (s *Subscription) Close() error { return s.resp.Body.Close() }
