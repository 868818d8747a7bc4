package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/patinadb/patina/internal/jsonscan"
	"github.com/patinadb/patina/log/format"
)

// The write path of the client: Exec encodes its statements and decodes the ExecResponse by
// hand, because through encoding/json (reflection, MarshalJSON output validated and copied
// again, a Decoder with its own buffer per answer) a single-row transaction cost more CPU in
// the client than in the agent's HTTP server. What it sends is byte for byte what
// json.Marshal(stmts) makes, and what it decodes equals what encoding/json decodes
// (TestAppendStatementsEqualsMarshal, FuzzDecodeExecResult); whatever the fast decoder does not
// know (escapes, unknown keys, nulls, numbers out of range) goes to encoding/json.

// Exec runs statements as one transaction (all or nothing), through the write listener when
// the client has one (WithWriteAddr).
func (c *Client) Exec(ctx context.Context, opts Options, stmts ...Statement) (*ExecResult, error) {
	if c.writer != nil {
		return c.writer.Exec(ctx, opts, stmts...)
	}
	body, ok := appendStatements(make([]byte, 0, statementsSize(stmts)), stmts)
	if !ok {
		var err error
		if body, err = json.Marshal(stmts); err != nil { // a NaN parameter: encoding/json's error
			return nil, err
		}
	}
	const path = "/v1/transactions"
	req, err := c.newRequest(ctx, http.MethodPost, path, opts.query(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	buf := answerBufs.Get().(*bytes.Buffer)
	defer putAnswerBuf(buf)
	buf.Reset()
	// Read to the end: the connection goes back to the pool at EOF, not at Close.
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, fmt.Errorf("POST %s: decode answer: %w", path, err)
	}
	out, err := decodeExecResult(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("POST %s: decode answer: %w", path, err)
	}
	return out, nil
}

// answerBufs hold answers while they are decoded.
var answerBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putAnswerBuf returns buf to the pool unless one big answer made it big.
func putAnswerBuf(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		answerBufs.Put(buf)
	}
}

// statementsSize guesses the JSON size of stmts, so that appendStatements grows once at most.
func statementsSize(stmts []Statement) int {
	n := 2
	for _, st := range stmts {
		n += len(st.SQL) + 32 + 8*len(st.Params)
		for _, v := range st.Params {
			n += len(v.Text) + 4*len(v.Blob)
		}
	}
	return n
}

// appendStatements appends json.Marshal(stmts)'s bytes to b. It reports false for a REAL
// parameter that is NaN, which has no JSON form; json.Marshal then says why.
func appendStatements(b []byte, stmts []Statement) ([]byte, bool) {
	if stmts == nil {
		return append(b, "null"...), true
	}
	b = append(b, '[')
	for i, st := range stmts {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = st.appendJSON(b); !ok {
			return b, false
		}
	}
	return append(b, ']'), true
}

// appendJSON appends {"query": ..., "params": [...]} or {"query": ..., "named_params": {...}}.
func (st Statement) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"query":`...)
	b = format.Text(st.SQL).AppendJSON(b)
	if len(st.Params) > 0 {
		b = append(b, `,"params":[`...)
		for i, v := range st.Params {
			if i > 0 {
				b = append(b, ',')
			}
			if v.Type == format.TypeReal && math.IsNaN(v.Real) {
				return b, false
			}
			b = v.AppendJSON(b)
		}
		b = append(b, ']')
	}
	if len(st.Named) > 0 {
		b = append(b, `,"named_params":{`...)
		first := true
		for k, v := range st.Named {
			if !first {
				b = append(b, ',')
			}
			first = false
			if v.Type == format.TypeReal && math.IsNaN(v.Real) {
				return b, false
			}
			b = format.Text(k).AppendJSON(b)
			b = append(b, ':')
			b = v.AppendJSON(b)
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// decodeExecResult decodes an ExecResponse as json.NewDecoder(...).Decode would (one value;
// what follows it is not read).
func decodeExecResult(b []byte) (*ExecResult, error) {
	out := new(ExecResult)
	if decodeExecFast(b, out) {
		return out, nil
	}
	*out = ExecResult{}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(out); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeExecFast decodes the ExecResponse the agent writes into out: an object of the keys
// results (objects of rows_affected, time and error), time, version and actor_id, each at
// most once, with strings without escapes, integers and numbers strconv reads. It reports
// false for anything else, leaving out in any state.
func decodeExecFast(b []byte, out *ExecResult) bool {
	d := execDecoder{jsonscan.Scanner{B: b}}
	ok := d.object(func(key string) int {
		switch key {
		case "results":
			return d.check(0, d.results(out))
		case "time":
			var ok bool
			out.Time, ok = d.float()
			return d.check(1, ok)
		case "version":
			if d.literal("null") {
				return 2
			}
			v, err := strconv.ParseUint(string(d.number()), 10, 64)
			out.Version = format.Version(v)
			return d.check(2, err == nil)
		case "actor_id":
			s, ok := d.str()
			return d.check(3, ok && out.ActorID.UnmarshalText(s) == nil)
		}
		return -1
	})
	d.Space()
	return ok && d.I == len(d.B) // only whitespace may follow (the agent writes a newline)
}

// execDecoder reads the JSON of an ExecResponse (decodeExecFast).
type execDecoder struct{ jsonscan.Scanner }

// str reads a string without escapes, control characters or non-ASCII (invalid UTF-8
// becomes U+FFFD in encoding/json, which reads those), and returns its bytes (in B).
func (d *execDecoder) str() ([]byte, bool) { return d.Str(false) }

// literal reads word after white space.
func (d *execDecoder) literal(word string) bool {
	d.Space()
	return d.Lit(word)
}

// key reads an object key and its colon.
func (d *execDecoder) key() (string, bool) {
	s, ok := d.str()
	if !ok || !d.Eat(':') {
		return "", false
	}
	switch string(s) { // the keys known, without allocating
	case "results":
		return "results", true
	case "time":
		return "time", true
	case "version":
		return "version", true
	case "actor_id":
		return "actor_id", true
	case "rows_affected":
		return "rows_affected", true
	case "error":
		return "error", true
	}
	return "", false
}

// number reads a number token; nil when none comes next.
func (d *execDecoder) number() []byte {
	tok, _ := d.Number()
	return tok
}

func (d *execDecoder) float() (float64, bool) {
	tok := d.number()
	if tok == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	return f, err == nil
}

// results reads the results array.
func (d *execDecoder) results(out *ExecResult) bool {
	if !d.Eat('[') {
		return false
	}
	out.Results = []StmtResult{}
	for first := true; ; first = false {
		if d.Eat(']') {
			return true
		}
		if !first && !d.Eat(',') {
			return false
		}
		var r StmtResult
		if !d.result(&r) {
			return false
		}
		out.Results = append(out.Results, r)
	}
}

// result reads one statement's result.
func (d *execDecoder) result(r *StmtResult) bool {
	return d.object(func(key string) int {
		switch key {
		case "rows_affected":
			n, err := strconv.ParseInt(string(d.number()), 10, 64)
			r.RowsAffected = n
			return d.check(0, err == nil)
		case "time":
			var ok bool
			r.Time, ok = d.float()
			return d.check(1, ok)
		case "error":
			s, ok := d.str()
			r.Error = string(s)
			return d.check(2, ok)
		}
		return -1
	})
}

// object reads an object: for each key, field reads its value and returns the key's number
// (below 8), or -1 when it does not know the key or could not read the value. A key that
// comes twice, as encoding/json would take the last, is left to encoding/json too.
func (d *execDecoder) object(field func(key string) int) bool {
	if !d.Eat('{') {
		return false
	}
	var seen uint8
	for first := true; ; first = false {
		if d.Eat('}') {
			return true
		}
		if !first && !d.Eat(',') {
			return false
		}
		key, ok := d.key()
		if !ok {
			return false
		}
		k := field(key)
		if k < 0 || seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
	}
}

// check returns k when ok, else -1 (object's answer for a value not read).
func (d *execDecoder) check(k int, ok bool) int {
	if !ok {
		return -1
	}
	return k
}
