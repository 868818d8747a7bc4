package api

import (
	"math"
	"strconv"
	"strings"

	"github.com/patinadb/patina/internal/jsonscan"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// The statement decoder's fast path. decodeStatements and parseStatement first try to read
// the body in one pass straight into statements: the forms clients send ("SQL",
// ["SQL", [params]] and {"query": "SQL", "params": [...]}) with parameters that are null,
// booleans, numbers or strings without escapes. Anything else (escapes, blobs, named
// parameters, any error) makes the fast path give up, and the strict general path
// (decodeStatementsJSON, parseStatementJSON) reads the body from the start and gives every
// error its message. The general path scans a 100-row INSERT's bytes five times (the
// array into raw messages, json.Valid per statement, its parts, its params, each value)
// and allocates a raw message per value; issue 14's profiles put it at 3.2 us of the 4.9 us
// of HTTP work per replicated row.
//
// What the fast path accepts, it decodes exactly as the general path does: the same
// statements, down to nil against empty parameter lists (FuzzFastStatements checks this on
// every input, and that the general path accepts whatever the fast one does).

// fastDecoder reads statements from its scanner's bytes.
type fastDecoder struct{ jsonscan.Scanner }

// str reads a string without escapes (or fails): its bytes must be valid UTF-8 without
// control characters, so that the string is exactly what encoding/json would decode.
func (d *fastDecoder) str() (string, bool) {
	b, ok := d.Str(true)
	return string(b), ok
}

// number reads a JSON number and converts it as log.ParseJSONValue does: an integer
// without '.', 'e' or 'E' (failing outside 64 bits), else a real (infinite past the range).
func (d *fastDecoder) number() (log.Value, bool) {
	tok, real := d.Number()
	if tok == nil {
		return log.Value{}, false
	}
	s := string(tok)
	if !real {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return log.Value{}, false
		}
		return log.Integer(n), true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return log.Value{}, false
	}
	return log.Real(f), true
}

// param reads one parameter of the kinds the fast path takes.
func (d *fastDecoder) param() (log.Value, bool) {
	switch d.Peek() {
	case '"':
		s, ok := d.str()
		return log.Text(s), ok
	case 'n':
		return log.Null(), d.Lit("null")
	case 't':
		return log.Integer(1), d.Lit("true")
	case 'f':
		return log.Integer(0), d.Lit("false")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return d.number()
	}
	return log.Value{}, false // blobs, JSON bound as text, anything else
}

// count is the number of elements of the array whose first element starts at i, when
// the fast path can take it (commas outside strings, until the closing bracket): the
// parameters are allocated once, at their size (a Value is 64 bytes, and growing the slice
// doubled what a 100-row INSERT's decoding allocated). A wrong count costs only an append.
func (d *fastDecoder) count() int {
	n, inStr := 1, false
	for _, c := range d.B[d.I:] {
		switch {
		case inStr:
			if c == '"' {
				inStr = false
			} else if c == '\\' {
				return 8 // escapes: the fast path gives up anyway
			}
		case c == '"':
			inStr = true
		case c == ',':
			n++
		case c == ']' || c == '[' || c == '{':
			return n
		}
	}
	return n
}

// params reads a positional parameter array (never nil, as the general path's).
func (d *fastDecoder) params() ([]log.Value, bool) {
	if !d.Eat('[') {
		return nil, false
	}
	vals := make([]log.Value, 0, d.count())
	if d.Eat(']') {
		return vals, true
	}
	for {
		v, ok := d.param()
		if !ok {
			return nil, false
		}
		vals = append(vals, v)
		if d.Eat(']') {
			return vals, true
		}
		if !d.Eat(',') {
			return nil, false
		}
	}
}

// statement reads one statement in a form the fast path takes.
func (d *fastDecoder) statement() (st materializer.Statement, ok bool) {
	switch d.Peek() {
	case '"':
		st.SQL, ok = d.str()
	case '[':
		d.I++
		if st.SQL, ok = d.str(); !ok {
			return st, false
		}
		if d.Eat(',') {
			if st.Params, ok = d.params(); !ok {
				return st, false
			}
		}
		ok = d.Eat(']')
	case '{':
		d.I++
		var haveQuery, haveParams bool
		for first := true; ; first = false {
			if d.Eat('}') {
				break
			}
			if !first && !d.Eat(',') {
				return st, false
			}
			key, kok := d.str()
			if !kok || !d.Eat(':') {
				return st, false
			}
			switch {
			case key == "query" && !haveQuery:
				haveQuery = true
				if st.SQL, ok = d.str(); !ok {
					return st, false
				}
			case key == "params" && !haveParams:
				haveParams = true
				if d.Peek() == 'n' {
					if !d.Lit("null") {
						return st, false
					}
				} else if st.Params, ok = d.params(); !ok {
					return st, false
				}
			default:
				return st, false // named_params, a key twice, an unknown key: the general path
			}
		}
		ok = haveQuery
	}
	if ok && strings.TrimSpace(st.SQL) == "" {
		return st, false
	}
	return st, ok
}

// fastStatement is parseStatement's fast path: raw is exactly one statement.
func fastStatement(raw []byte) (materializer.Statement, bool) {
	d := fastDecoder{jsonscan.Scanner{B: raw}}
	st, ok := d.statement()
	if !ok || d.Peek() != 0 || d.I != len(raw) {
		return materializer.Statement{}, false
	}
	return st, true
}

// fastStatements is decodeStatements' fast path: body is a JSON array of statements.
func fastStatements(body []byte) ([]materializer.Statement, bool) {
	d := fastDecoder{jsonscan.Scanner{B: body}}
	if !d.Eat('[') || d.Eat(']') {
		return nil, false
	}
	var stmts []materializer.Statement
	for {
		st, ok := d.statement()
		if !ok {
			return nil, false
		}
		stmts = append(stmts, st)
		if d.Eat(']') {
			break
		}
		if !d.Eat(',') {
			return nil, false
		}
	}
	if d.Peek() != 0 || d.I != len(body) {
		return nil, false
	}
	return stmts, true
}
