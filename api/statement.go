package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/patinadb/patina/internal/jsonscan"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// parseStatement reads one statement in any of Corrosion's forms:
//
//	"SQL"
//	["SQL ?", [params]]
//	["SQL :a", {"a": v}]
//	{"query": "SQL", "params": [...], "named_params": {...}}
//
// Parameters are JSON values as docs/DESIGN.md section 7 types them (a bool binds as 0/1,
// any other JSON as its text). Parsing is strict, the same at the top of a body and inside a
// transaction's array: raw must be exactly one JSON value, and object keys must be spelled
// exactly (encoding/json alone would match "quErY" and stop before trailing bytes).
func parseStatement(raw json.RawMessage) (materializer.Statement, error) {
	if st, ok := fastStatement(raw); ok {
		return st, nil
	}
	return parseStatementJSON(raw)
}

// parseStatementJSON is parseStatement's general path (stmtfast.go has the fast one).
func parseStatementJSON(raw json.RawMessage) (materializer.Statement, error) {
	raw = jsonscan.TrimSpace(raw)
	if len(raw) == 0 {
		return materializer.Statement{}, badRequestf("empty statement")
	}
	if !json.Valid(raw) {
		return materializer.Statement{}, badRequestf("malformed JSON: %s", jsonError(raw))
	}
	var st materializer.Statement
	switch raw[0] {
	case '"':
		if err := json.Unmarshal(raw, &st.SQL); err != nil {
			return st, badRequestf("malformed JSON: %v", err)
		}
	case '[':
		var parts []json.RawMessage
		if err := json.Unmarshal(raw, &parts); err != nil {
			return st, badRequestf("malformed JSON: %v", err)
		}
		if len(parts) == 0 || len(parts) > 2 {
			return st, badRequestf(`an array statement is ["SQL"] or ["SQL", params], got %d elements`, len(parts))
		}
		if err := json.Unmarshal(parts[0], &st.SQL); err != nil {
			return st, badRequestf(`the first element of ["SQL", params] must be the SQL string`)
		}
		if len(parts) == 2 {
			var err error
			if st.Params, st.Named, err = parseParams(parts[1]); err != nil {
				return st, err
			}
		}
	case '{':
		obj, err := strictObject(raw, "query", "params", "named_params")
		if err != nil {
			return st, badRequestf(`%v (the object form is {"query": "SQL", "params": [...], "named_params": {...}})`, err)
		}
		q, ok := obj["query"]
		if !ok || json.Unmarshal(q, &st.SQL) != nil {
			return st, badRequestf(`the object form needs "query", a string`)
		}
		// Given both, Corrosion binds params and ignores named_params; so does Patina.
		switch {
		case isSet(obj["params"]):
			if bytes.TrimSpace(obj["params"])[0] != '[' {
				return st, badRequestf("params must be an array")
			}
			if st.Params, _, err = parseParams(obj["params"]); err != nil {
				return st, err
			}
		case isSet(obj["named_params"]):
			if bytes.TrimSpace(obj["named_params"])[0] != '{' {
				return st, badRequestf("named_params must be an object")
			}
			if _, st.Named, err = parseParams(obj["named_params"]); err != nil {
				return st, err
			}
		}
	default:
		return st, badRequestf(`want "SQL", ["SQL", params] or {"query": "SQL", ...}, got %s`, truncate(string(raw), 40))
	}
	if strings.TrimSpace(st.SQL) == "" {
		return st, badRequestf("empty SQL")
	}
	return st, nil
}

// strictObject decodes raw, which must be exactly one JSON object, into its members, and
// refuses a key not among keys (compared exactly, as Corrosion's serde does) or given twice.
func strictObject(raw []byte, keys ...string) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) {
		return nil, fmt.Errorf("malformed JSON: %s", jsonError(raw))
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.Token() // {
	out := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		if !slices.Contains(keys, k) {
			return nil, fmt.Errorf("unknown key %q (keys are %s, spelled exactly)", truncate(k, 40), strings.Join(keys, ", "))
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("key %q given twice", k)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// jsonError says what is wrong with invalid JSON.
func jsonError(raw []byte) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err.Error()
	}
	return "invalid JSON"
}

func isSet(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && string(raw) != "null"
}

// parseParams reads a positional array or a named object of parameters.
func parseParams(raw json.RawMessage) ([]log.Value, map[string]log.Value, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, nil, badRequestf("params: %v", err)
		}
		vals := make([]log.Value, len(elems))
		for i, e := range elems {
			v, err := parseParam(e)
			if err != nil {
				return nil, nil, badRequestf("params[%d]: %v", i, err)
			}
			vals[i] = v
		}
		return vals, nil, nil
	case len(raw) > 0 && raw[0] == '{':
		var named map[string]json.RawMessage
		if err := json.Unmarshal(raw, &named); err != nil {
			return nil, nil, badRequestf("named params: %v", err)
		}
		out := make(map[string]log.Value, len(named))
		for k, e := range named {
			v, err := parseParam(e)
			if err != nil {
				return nil, nil, badRequestf("named params %q: %v", truncate(k, 40), err)
			}
			k = strings.TrimLeft(k, ":@$")
			if k == "" {
				return nil, nil, badRequestf("named params: empty name")
			}
			out[k] = v
		}
		return nil, out, nil
	}
	return nil, nil, badRequestf("params: want an array or an object, got %s", truncate(string(raw), 40))
}

// parseParam reads one parameter: a SQLite value in the API's JSON form (null, a bool as
// 0/1, a number, a string, an array of byte values as a blob), or else, as Corrosion's
// SqliteParam::Json does, any other JSON (an object, an array that is not bytes) bound as
// its JSON text. An integer outside the 64-bit range binds as a real, as Corrosion's
// SqliteParam::Real takes the number its Integer refuses.
func parseParam(raw json.RawMessage) (log.Value, error) {
	raw = bytes.TrimSpace(raw)
	v, err := log.ParseJSONValue(raw)
	if err == nil {
		return v, nil
	}
	if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') && json.Valid(raw) {
		return log.Text(string(raw)), nil
	}
	if len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') && json.Valid(raw) {
		if f, ferr := strconv.ParseFloat(string(raw), 64); ferr == nil {
			return log.Real(f), nil
		}
	}
	return log.Value{}, err
}

// readBody returns the request's body: the one route read before it took a data slot, or
// else the whole body read now, at most MaxBodyBytes (more is 413), within BodyReadTimeout
// (slower is 408, and the connection is closed: its request is not fully read).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if sw := findStatusWriter(w); sw != nil && sw.bodyRead {
		return sw.body, nil
	}
	rc := http.NewResponseController(w)
	// A server that is not ours (a test's httptest server without deadlines) may not support
	// deadlines; the body is still read, without one.
	deadline := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)) == nil
	b, err := readAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), r.ContentLength, s.cfg.MaxBodyBytes)
	if deadline {
		// Streams keep reading the connection to notice a client that leaves: no deadline
		// from here on.
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var maxBytes *http.MaxBytesError
		if errors.As(err, &maxBytes) {
			return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, maxBytes.Limit)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.metrics.slowBodies.Inc()
			if r.ProtoMajor == 1 {
				// Over HTTP/2 only this request's stream ends: the connection carries the
				// client's other requests (corro-client multiplexes them all on one).
				w.Header().Set("Connection", "close")
			}
			return nil, fmt.Errorf("%w: the request body took longer than %v", errBodyTimeout, s.cfg.BodyReadTimeout)
		}
		return nil, badRequestf("read body: %v", err)
	}
	return b, nil
}

// readAll is io.ReadAll with the buffer sized from the request's Content-Length (n, -1 when
// unknown) when it is within max, so that a small body is read into one allocation of its
// size rather than grown from 512 bytes.
func readAll(rd io.Reader, n, max int64) ([]byte, error) {
	if n <= 0 || n > max || n > 64<<10 {
		return io.ReadAll(rd)
	}
	b := make([]byte, 0, n+1) // +1: room to meet EOF without growing
	for {
		m, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			// More than announced: net/http refuses that, but let io.ReadAll say so.
			rest, err := io.ReadAll(rd)
			return append(b, rest...), err
		}
	}
}

// decodeStatements reads a JSON array of statements.
func decodeStatements(body []byte) ([]materializer.Statement, error) {
	if stmts, ok := fastStatements(body); ok {
		return stmts, nil
	}
	return decodeStatementsJSON(body)
}

// decodeStatementsJSON is decodeStatements' general path (stmtfast.go has the fast one).
func decodeStatementsJSON(body []byte) ([]materializer.Statement, error) {
	body = jsonscan.TrimSpace(body)
	if len(body) == 0 || body[0] != '[' {
		return nil, badRequestf("body: want a JSON array of statements")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, badRequestf("malformed JSON: %v", err)
	}
	if len(raws) == 0 {
		return nil, badRequestf("no statements")
	}
	stmts := make([]materializer.Statement, len(raws))
	for i, raw := range raws {
		st, err := parseStatement(raw)
		if err != nil {
			return nil, fmt.Errorf("statement %d: %w", i, err)
		}
		stmts[i] = st
	}
	return stmts, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
