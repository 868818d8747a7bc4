package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"github.com/patinadb/patina/log/format"
)

// maxLine bounds one NDJSON event the client accepts (a row or a changeset).
const maxLine = 256 << 20

// Rows is the streaming answer of Query. Not safe for concurrent use; Close it.
type Rows struct {
	body    io.ReadCloser
	sc      *bufio.Scanner
	columns []string
	rowid   int64
	values  []format.Value
	elapsed float64
	done    bool
	err     error
}

// Query runs one read-only statement and streams its rows.
func (c *Client) Query(ctx context.Context, opts Options, st Statement) (*Rows, error) {
	b, ok := st.appendJSON(make([]byte, 0, statementsSize([]Statement{st})))
	if !ok {
		var err error
		if b, err = json.Marshal(st); err != nil { // a NaN parameter: encoding/json's error
			return nil, err
		}
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/queries", opts.query(), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	rows := &Rows{body: resp.Body, sc: bufio.NewScanner(resp.Body)}
	// Most answers are small (a point read is three short lines): start small, grow to maxLine.
	rows.sc.Buffer(make([]byte, 0, 4<<10), maxLine)
	// The first event is the columns (or an error).
	if !rows.sc.Scan() {
		rows.Close()
		if err := rows.sc.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("query: the answer ended before its columns")
	}
	var ev struct {
		Columns []string `json:"columns"`
		Error   *string  `json:"error"`
	}
	if err := json.Unmarshal(rows.sc.Bytes(), &ev); err != nil {
		rows.Close()
		return nil, fmt.Errorf("query: decode columns: %w", err)
	}
	if ev.Error != nil {
		rows.Close()
		return nil, &Error{Status: http.StatusOK, Message: *ev.Error}
	}
	rows.columns = ev.Columns
	return rows, nil
}

// Columns are the result's column names.
func (r *Rows) Columns() []string { return r.columns }

// Next reads the next row; false at the end or on error (see Err).
func (r *Rows) Next() bool {
	if r.done {
		return false
	}
	if !r.sc.Scan() {
		r.done = true
		if err := r.sc.Err(); err != nil {
			r.err = err
		} else {
			r.err = errors.New("query: the answer ended without eoq (agent gone?)")
		}
		return false
	}
	var ev struct {
		Row   []json.RawMessage       `json:"row"`
		EOQ   *struct{ Time float64 } `json:"eoq"`
		Error *string                 `json:"error"`
	}
	if err := json.Unmarshal(r.sc.Bytes(), &ev); err != nil {
		r.done, r.err = true, fmt.Errorf("query: decode event: %w", err)
		return false
	}
	switch {
	case ev.Error != nil:
		r.done, r.err = true, &Error{Status: http.StatusOK, Message: *ev.Error}
		return false
	case ev.EOQ != nil:
		r.done, r.elapsed = true, ev.EOQ.Time
		return false
	case len(ev.Row) == 2:
		if err := json.Unmarshal(ev.Row[0], &r.rowid); err != nil {
			r.done, r.err = true, fmt.Errorf("query: row id: %w", err)
			return false
		}
		var cells []json.RawMessage
		if err := json.Unmarshal(ev.Row[1], &cells); err != nil {
			r.done, r.err = true, fmt.Errorf("query: row cells: %w", err)
			return false
		}
		r.values = r.values[:0]
		for _, cell := range cells {
			v, err := format.ParseJSONValue(cell)
			if err != nil {
				r.done, r.err = true, fmt.Errorf("query: row %d: %w", r.rowid, err)
				return false
			}
			r.values = append(r.values, v)
		}
		return true
	}
	r.done, r.err = true, fmt.Errorf("query: unexpected event %s", truncate(r.sc.Text(), 80))
	return false
}

// RowID is the current row's number (1, 2, ...), as Corrosion numbers query rows.
func (r *Rows) RowID() int64 { return r.rowid }

// Values are the current row's cells, type-exact; valid until the next call to Next.
func (r *Rows) Values() []format.Value { return r.values }

// Err is the error that ended the rows, nil at a clean end.
func (r *Rows) Err() error { return r.err }

// Time is the query's duration the agent reported at the end; 0 before the end.
func (r *Rows) Time() float64 { return r.elapsed }

// Close releases the connection; it stops the query on the agent if it is still running.
func (r *Rows) Close() error {
	if r.done && r.err == nil {
		// A clean end (eoq): read the rest so that the connection is reused.
		closeBody(r.body)
		return nil
	}
	r.done = true
	return r.body.Close()
}

// QueryAll runs a query and collects its rows; for small results.
func (c *Client) QueryAll(ctx context.Context, opts Options, st Statement) (columns []string, rows [][]format.Value, err error) {
	rs, err := c.Query(ctx, opts, st)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	for rs.Next() {
		rows = append(rows, append([]format.Value(nil), rs.Values()...))
	}
	return rs.Columns(), rows, rs.Err()
}

// ChangesOptions select a part of the changeset stream.
type ChangesOptions struct {
	// Since is the local seq to resume after (0: from the start).
	Since format.Seq
	// Follow keeps the stream open for new changesets until ctx ends.
	Follow bool
	// JSON asks for NDJSON instead of msgpack frames (the same changesets; msgpack is smaller
	// and faster).
	JSON bool
}

// Changes streams the agent's changesets in its arrival order; each has Seq set to resume
// from. The iteration ends at the end of the log (or, with Follow, when ctx ends, which is
// not an error), or with an error.
func (c *Client) Changes(ctx context.Context, opts ChangesOptions) iter.Seq2[*format.Changeset, error] {
	return func(yield func(*format.Changeset, error) bool) {
		q := url.Values{}
		q.Set("since", strconv.FormatUint(uint64(opts.Since), 10))
		if opts.Follow {
			q.Set("follow", "true")
		}
		req, err := c.newRequest(ctx, http.MethodGet, "/v1/changes", q, nil)
		if err != nil {
			yield(nil, err)
			return
		}
		if !opts.JSON {
			req.Header.Set("Accept", "application/msgpack")
		}
		resp, err := c.do(req)
		if err != nil {
			yield(nil, err)
			return
		}
		defer resp.Body.Close()
		next := readNDJSONChangeset
		if resp.Header.Get("Content-Type") == "application/msgpack" {
			next = readFrame
		}
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		for {
			cs, err := next(br)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil && ctx.Err() != nil && opts.Follow {
				return // the caller ended the follow
			}
			if !yield(cs, err) || err != nil {
				return
			}
		}
	}
}

func readNDJSONChangeset(br *bufio.Reader) (*format.Changeset, error) {
	var line []byte
	for len(line) == 0 {
		var err error
		line, err = br.ReadBytes('\n')
		line = bytes.TrimSpace(line)
		if err != nil && (len(line) == 0 || !errors.Is(err, io.EOF)) {
			return nil, err // io.EOF at a line boundary is the end
		}
	}
	if bytes.HasPrefix(line, []byte(`{"error"`)) {
		var e struct{ Error string }
		json.Unmarshal(line, &e)
		return nil, &Error{Status: http.StatusOK, Message: e.Error}
	}
	var cs format.Changeset
	if err := json.Unmarshal(line, &cs); err != nil {
		return nil, fmt.Errorf("changes: decode: %w", err)
	}
	return &cs, nil
}

func readFrame(br *bufio.Reader) (*format.Changeset, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("changes: truncated frame length: %w", err)
		}
		return nil, err // io.EOF: the end
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxLine {
		return nil, fmt.Errorf("changes: frame of %d bytes is too large", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, fmt.Errorf("changes: truncated frame: %w", err)
	}
	if len(b) > 0 && b[0] == '{' {
		var e struct{ Error string }
		json.Unmarshal(b, &e)
		return nil, &Error{Status: http.StatusOK, Message: e.Error}
	}
	return format.DecodeChangeset(b)
}

// IngestResult says how many changesets an ingest received and how many were new.
type IngestResult struct {
	Changesets int `json:"changesets"`
	New        int `json:"new"`
}

// PostChanges sends changesets made elsewhere (msgpack frames); it returns once they are
// folded into the agent's view.
func (c *Client) PostChanges(ctx context.Context, css ...*format.Changeset) (IngestResult, error) {
	var body []byte
	for _, cs := range css {
		start := len(body)
		body = append(body, 0, 0, 0, 0)
		var err error
		if body, err = format.AppendChangeset(body, cs); err != nil {
			return IngestResult{}, err
		}
		binary.BigEndian.PutUint32(body[start:], uint32(len(body)-start-4))
	}
	return c.postChanges(ctx, "application/msgpack", body)
}

// PostChangesJSON is PostChanges with the NDJSON form.
func (c *Client) PostChangesJSON(ctx context.Context, css ...*format.Changeset) (IngestResult, error) {
	var body []byte
	for _, cs := range css {
		b, err := json.Marshal(cs)
		if err != nil {
			return IngestResult{}, err
		}
		body = append(append(body, b...), '\n')
	}
	return c.postChanges(ctx, "application/x-ndjson", body)
}

func (c *Client) postChanges(ctx context.Context, contentType string, body []byte) (IngestResult, error) {
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/changes", nil, bytes.NewReader(body))
	if err != nil {
		return IngestResult{}, err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.do(req)
	if err != nil {
		return IngestResult{}, err
	}
	defer closeBody(resp.Body)
	var out IngestResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("post changes: decode answer: %w", err)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
