package api

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

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

// fastDecoder reads JSON from b at i.
type fastDecoder struct {
	b []byte
	i int
}

func (d *fastDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space (0 at the end).
func (d *fastDecoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// eat consumes c after white space.
func (d *fastDecoder) eat(c byte) bool {
	if d.peek() == c {
		d.i++
		return true
	}
	return false
}

// str reads a string without escapes (or fails): its bytes must be valid UTF-8 without
// control characters, so that the string is exactly what encoding/json would decode.
func (d *fastDecoder) str() (string, bool) {
	if !d.eat('"') {
		return "", false
	}
	start, ascii := d.i, true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return "", false // encoding/json replaces invalid bytes: the general path does it
			}
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
		d.i++
	}
	return "", false
}

// lit reads the literal word.
func (d *fastDecoder) lit(word string) bool {
	if len(d.b)-d.i >= len(word) && string(d.b[d.i:d.i+len(word)]) == word {
		d.i += len(word)
		return true
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number reads a JSON number and converts it as log.ParseJSONValue does: an integer
// without '.', 'e' or 'E' (failing outside 64 bits), else a real (infinite past the range).
func (d *fastDecoder) number() (log.Value, bool) {
	b, start := d.b, d.i
	i := d.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return log.Value{}, false
	}
	real := false
	if i < len(b) && b[i] == '.' {
		real = true
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return log.Value{}, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		real = true
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return log.Value{}, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s := string(b[start:i])
	d.i = i
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
	switch d.peek() {
	case '"':
		s, ok := d.str()
		return log.Text(s), ok
	case 'n':
		return log.Null(), d.lit("null")
	case 't':
		return log.Integer(1), d.lit("true")
	case 'f':
		return log.Integer(0), d.lit("false")
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
	for _, c := range d.b[d.i:] {
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
	if !d.eat('[') {
		return nil, false
	}
	vals := make([]log.Value, 0, d.count())
	if d.eat(']') {
		return vals, true
	}
	for {
		v, ok := d.param()
		if !ok {
			return nil, false
		}
		vals = append(vals, v)
		if d.eat(']') {
			return vals, true
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

// statement reads one statement in a form the fast path takes.
func (d *fastDecoder) statement() (st materializer.Statement, ok bool) {
	switch d.peek() {
	case '"':
		st.SQL, ok = d.str()
	case '[':
		d.i++
		if st.SQL, ok = d.str(); !ok {
			return st, false
		}
		if d.eat(',') {
			if st.Params, ok = d.params(); !ok {
				return st, false
			}
		}
		ok = d.eat(']')
	case '{':
		d.i++
		var haveQuery, haveParams bool
		for first := true; ; first = false {
			if d.eat('}') {
				break
			}
			if !first && !d.eat(',') {
				return st, false
			}
			key, kok := d.str()
			if !kok || !d.eat(':') {
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
				if d.peek() == 'n' {
					if !d.lit("null") {
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
	d := fastDecoder{b: raw}
	st, ok := d.statement()
	if !ok || d.peek() != 0 || d.i != len(raw) {
		return materializer.Statement{}, false
	}
	return st, true
}

// fastStatements is decodeStatements' fast path: body is a JSON array of statements.
func fastStatements(body []byte) ([]materializer.Statement, bool) {
	d := fastDecoder{b: body}
	if !d.eat('[') || d.eat(']') {
		return nil, false
	}
	var stmts []materializer.Statement
	for {
		st, ok := d.statement()
		if !ok {
			return nil, false
		}
		stmts = append(stmts, st)
		if d.eat(']') {
			break
		}
		if !d.eat(',') {
			return nil, false
		}
	}
	if d.peek() != 0 || d.i != len(body) {
		return nil, false
	}
	return stmts, true
}
