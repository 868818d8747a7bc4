package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

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
// Parameters are JSON values as DESIGN.md section 7 types them (a bool binds as 0/1).
func parseStatement(raw json.RawMessage) (materializer.Statement, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return materializer.Statement{}, badRequestf("empty statement")
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
		var obj struct {
			Query       *string         `json:"query"`
			Params      json.RawMessage `json:"params"`
			NamedParams json.RawMessage `json:"named_params"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&obj); err != nil {
			return st, badRequestf(`%v (the object form is {"query": "SQL", "params": [...], "named_params": {...}})`, err)
		}
		if obj.Query == nil {
			return st, badRequestf(`the object form needs "query"`)
		}
		st.SQL = *obj.Query
		if isSet(obj.Params) && isSet(obj.NamedParams) {
			return st, badRequestf("give params or named_params, not both")
		}
		var err error
		if isSet(obj.Params) {
			if bytes.TrimSpace(obj.Params)[0] != '[' {
				return st, badRequestf("params must be an array")
			}
			if st.Params, _, err = parseParams(obj.Params); err != nil {
				return st, err
			}
		}
		if isSet(obj.NamedParams) {
			if bytes.TrimSpace(obj.NamedParams)[0] != '{' {
				return st, badRequestf("named_params must be an object")
			}
			if _, st.Named, err = parseParams(obj.NamedParams); err != nil {
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

func isSet(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && string(raw) != "null"
}

// parseParams reads a positional array or a named object of parameters.
func parseParams(raw json.RawMessage) ([]log.Value, map[string]log.Value, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '[':
		var vals []log.Value
		if err := json.Unmarshal(raw, &vals); err != nil {
			return nil, nil, badRequestf("params: %v", err)
		}
		return vals, nil, nil
	case len(raw) > 0 && raw[0] == '{':
		var named map[string]log.Value
		if err := json.Unmarshal(raw, &named); err != nil {
			return nil, nil, badRequestf("named params: %v", err)
		}
		out := make(map[string]log.Value, len(named))
		for k, v := range named {
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

// bodyKey is the request context key of a body that route has already read.
type bodyKey struct{}

// readBody returns the request's body: the one route read before it took a data slot, or
// else the whole body read now, at most MaxBodyBytes (more is 413), within BodyReadTimeout
// (slower is 408, and the connection is closed: its request is not fully read).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if b, ok := r.Context().Value(bodyKey{}).([]byte); ok {
		return b, nil
	}
	rc := http.NewResponseController(w)
	// A server that is not ours (a test's httptest server without deadlines) may not support
	// deadlines; the body is still read, without one.
	deadline := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)) == nil
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
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
			w.Header().Set("Connection", "close")
			return nil, fmt.Errorf("%w: the request body took longer than %v", errBodyTimeout, s.cfg.BodyReadTimeout)
		}
		return nil, badRequestf("read body: %v", err)
	}
	return b, nil
}

// decodeStatements reads a JSON array of statements.
func decodeStatements(body []byte) ([]materializer.Statement, error) {
	body = bytes.TrimSpace(body)
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
