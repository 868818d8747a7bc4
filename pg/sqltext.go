package pg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A small lexer for the SQL PostgreSQL clients send: enough to split a simple query into
// statements, find each statement's verb, renumber $N parameters for SQLite and rewrite the
// PostgreSQL-only spellings of catalog queries. It never interprets more than tokens: SQLite
// parses what it receives and says what is wrong with it.

type tokKind uint8

const (
	tokSpace  tokKind = iota // white space and comments
	tokWord                  // identifiers and keywords
	tokQuoted                // "identifier"
	tokString                // 'string', E'string', $tag$string$tag$
	tokNumber                // 12, 1.5e3
	tokParam                 // $1
	tokPunct                 // everything else, one operator or punctuation run
	tokSemi                  // ;
)

type token struct {
	kind tokKind
	text string // as written
}

func (t token) is(word string) bool { return t.kind == tokWord && strings.EqualFold(t.text, word) }

var errUnterminated = errors.New("unterminated quoted string, identifier or comment")

// lex splits q into tokens; it fails only on an unterminated string, identifier or comment.
func lex(q string) ([]token, error) {
	var out []token
	i := 0
	for i < len(q) {
		c := q[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			for i < len(q) && strings.IndexByte(" \t\n\r\f\v", q[i]) >= 0 {
				i++
			}
			out = append(out, token{tokSpace, q[start:i]})
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
			out = append(out, token{tokSpace, q[start:i]})
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			// PostgreSQL's block comments nest.
			depth := 0
			for {
				if i+1 >= len(q) {
					return nil, errUnterminated
				}
				if q[i] == '/' && q[i+1] == '*' {
					depth++
					i += 2
				} else if q[i] == '*' && q[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			out = append(out, token{tokSpace, q[start:i]})
		case c == '\'':
			end, err := quoted(q, i, '\'', false)
			if err != nil {
				return nil, err
			}
			i = end
			out = append(out, token{tokString, q[start:i]})
		case (c == 'E' || c == 'e') && i+1 < len(q) && q[i+1] == '\'':
			end, err := quoted(q, i+1, '\'', true)
			if err != nil {
				return nil, err
			}
			i = end
			out = append(out, token{tokString, q[start:i]})
		case c == '"':
			end, err := quoted(q, i, '"', false)
			if err != nil {
				return nil, err
			}
			i = end
			out = append(out, token{tokQuoted, q[start:i]})
		case c == '$':
			j := i + 1
			for j < len(q) && isDigit(q[j]) {
				j++
			}
			if j > i+1 {
				i = j
				out = append(out, token{tokParam, q[start:i]})
				break
			}
			// A dollar-quoted string: $tag$ ... $tag$ (the tag may be empty).
			j = i + 1
			for j < len(q) && isIdent(q[j]) {
				j++
			}
			if j < len(q) && q[j] == '$' {
				tag := q[i : j+1]
				k := strings.Index(q[j+1:], tag)
				if k < 0 {
					return nil, errUnterminated
				}
				i = j + 1 + k + len(tag)
				out = append(out, token{tokString, q[start:i]})
				break
			}
			i++
			out = append(out, token{tokPunct, q[start:i]})
		case c == ';':
			i++
			out = append(out, token{tokSemi, ";"})
		case isDigit(c) || (c == '.' && i+1 < len(q) && isDigit(q[i+1])):
			for i < len(q) && (isDigit(q[i]) || q[i] == '.') {
				i++
			}
			if i < len(q) && (q[i] == 'e' || q[i] == 'E') {
				j := i + 1
				if j < len(q) && (q[j] == '+' || q[j] == '-') {
					j++
				}
				if j < len(q) && isDigit(q[j]) {
					i = j
					for i < len(q) && isDigit(q[i]) {
						i++
					}
				}
			}
			out = append(out, token{tokNumber, q[start:i]})
		case isIdentStart(c):
			for i < len(q) && isIdent(q[i]) {
				i++
			}
			out = append(out, token{tokWord, q[start:i]})
		case strings.IndexByte("+-*/<>=~!@#%^&|`?", c) >= 0:
			// An operator: a run of operator characters, as PostgreSQL reads them (a run never
			// swallows the start of a comment).
			i++
			for i < len(q) && strings.IndexByte("+-*/<>=~!@#%^&|`?", q[i]) >= 0 &&
				!(q[i] == '-' && i+1 < len(q) && q[i+1] == '-') && !(q[i] == '/' && i+1 < len(q) && q[i+1] == '*') {
				i++
			}
			out = append(out, token{tokPunct, q[start:i]})
		case c == ':' && i+1 < len(q) && q[i+1] == ':':
			i += 2
			out = append(out, token{tokPunct, "::"})
		default:
			i++
			out = append(out, token{tokPunct, q[start:i]})
		}
	}
	return out, nil
}

// quoted returns the index just past the quoted run that starts at q[i] == quote; a doubled
// quote is an escaped one, and with backslash a backslash escapes the next byte.
func quoted(q string, i int, quote byte, backslash bool) (int, error) {
	for j := i + 1; j < len(q); j++ {
		switch {
		case backslash && q[j] == '\\':
			j++
		case q[j] == quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, errUnterminated
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c >= 0x80 || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdent(c byte) bool      { return isIdentStart(c) || isDigit(c) || c == '$' }

// statement is one statement of a query string, as tokens without the trailing ';'.
type statement struct {
	toks []token
}

// splitQuery splits a simple query's text into its statements; statements with nothing but
// white space and comments are dropped.
func splitQuery(q string) ([]statement, error) {
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	var out []statement
	var cur []token
	flush := func() {
		for _, t := range cur {
			if t.kind != tokSpace {
				out = append(out, statement{toks: cur})
				break
			}
		}
		cur = nil
	}
	for _, t := range toks {
		if t.kind == tokSemi {
			flush()
			continue
		}
		cur = append(cur, t)
	}
	flush()
	return out, nil
}

// words returns the statement's tokens without white space.
func (s statement) words() []token {
	out := make([]token, 0, len(s.toks))
	for _, t := range s.toks {
		if t.kind != tokSpace {
			out = append(out, t)
		}
	}
	return out
}

// verb is the statement's first keyword, upper-cased ("" when it starts otherwise).
func (s statement) verb() string {
	for _, t := range s.toks {
		if t.kind == tokSpace {
			continue
		}
		if t.kind == tokWord {
			return strings.ToUpper(t.text)
		}
		return ""
	}
	return ""
}

// text is the statement as written.
func (s statement) text() string {
	var b strings.Builder
	for _, t := range s.toks {
		b.WriteString(t.text)
	}
	return strings.TrimSpace(b.String())
}

// sqliteText renders the statement for SQLite: $N becomes ?N (SQLite would number "$2 ... $1"
// by appearance), E'...' and $$...$$ strings become plain ones, and PostgreSQL casts
// (x::type) become SQLite's: '\x00ff'::bytea a blob literal, ::int and friends a CAST to
// the matching storage class, others (date, json, uuid, ...: text in SQLite) nothing. It
// returns the number of parameters (the highest N).
func (s statement) sqliteText() (string, int, error) {
	var out []string // one entry per token
	n := 0
	toks := s.toks
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.kind {
		case tokParam:
			k, err := strconv.Atoi(t.text[1:])
			if err != nil || k < 1 || k > 65535 {
				return "", 0, fmt.Errorf("parameter %s out of range", t.text)
			}
			n = max(n, k)
			out = append(out, "?"+t.text[1:])
		case tokString:
			out = append(out, sqliteString(t.text))
		case tokPunct:
			if t.text != "::" {
				out = append(out, t.text)
				break
			}
			typ, end := castType(toks, i+1)
			if typ == "" {
				out = append(out, t.text) // SQLite reports the syntax error
				break
			}
			i = end
			start := operandStart(toks, out)
			operand := strings.Join(out[start:], "")
			out = out[:start]
			out = append(out, castTo(strings.TrimSpace(operand), typ))
		default:
			out = append(out, t.text)
		}
	}
	return strings.TrimSpace(strings.Join(out, "")), n, nil
}

// castType reads the type name after "::" starting at toks[i] (a word, possibly schema
// qualified, "double precision", "character varying", with (n) and [] suffixes) and
// returns it lower-cased and the index of its last token; "" when there is none.
func castType(toks []token, i int) (string, int) {
	skip := func(i int) int {
		for i < len(toks) && toks[i].kind == tokSpace {
			i++
		}
		return i
	}
	i = skip(i)
	if i >= len(toks) || (toks[i].kind != tokWord && toks[i].kind != tokQuoted) {
		return "", i
	}
	name := strings.ToLower(identName(toks[i]))
	end := i
	if j := skip(i + 1); j+1 < len(toks) && toks[j].text == "." {
		if k := skip(j + 1); k < len(toks) && toks[k].kind == tokWord {
			name, end = strings.ToLower(toks[k].text), k
		}
	}
	for _, w := range []string{"precision", "varying"} {
		if j := skip(end + 1); j < len(toks) && toks[j].is(w) {
			name += " " + w
			end = j
		}
	}
	if j := skip(end + 1); j < len(toks) && toks[j].text == "(" {
		for j < len(toks) && toks[j].text != ")" {
			j++
		}
		end = j
	}
	if j := skip(end + 1); j+1 < len(toks) && toks[j].text == "[" && toks[skip(j+1)].text == "]" {
		name += "[]"
		end = skip(j + 1)
	}
	return name, end
}

// operandStart is the index in out (the rendered tokens so far) where the operand of a cast
// begins: the last token, or the whole parenthesised group it closes, or a dotted name.
func operandStart(toks []token, out []string) int {
	i := len(out) - 1
	for i >= 0 && strings.TrimSpace(out[i]) == "" {
		i--
	}
	if i < 0 {
		return len(out)
	}
	if out[i] == ")" {
		depth := 0
		for ; i >= 0; i-- {
			switch out[i] {
			case ")":
				depth++
			case "(":
				depth--
			}
			if depth == 0 {
				break
			}
		}
		// A function call: include its name.
		if i > 0 && isIdentStart(firstByte(out[i-1])) {
			i--
		}
		return max(i, 0)
	}
	for i >= 2 && out[i-1] == "." {
		i -= 2
	}
	return i
}

func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

// castTo renders operand::typ for SQLite.
func castTo(operand, typ string) string {
	base := strings.TrimSuffix(typ, "[]")
	switch base {
	case "bytea":
		if lit, ok := strings.CutPrefix(operand, "'"); ok && strings.HasSuffix(lit, "'") {
			body := strings.ReplaceAll(lit[:len(lit)-1], "''", "'")
			if h, ok := strings.CutPrefix(body, `\x`); ok {
				return "X'" + h + "'"
			}
		}
		return "CAST(" + operand + " AS BLOB)"
	case "int", "int2", "int4", "int8", "integer", "bigint", "smallint", "oid":
		return "CAST(" + operand + " AS INTEGER)"
	case "float", "float4", "float8", "real", "double precision":
		return "CAST(" + operand + " AS REAL)"
	case "numeric", "decimal":
		return "CAST(" + operand + " AS NUMERIC)"
	case "text", "varchar", "character varying", "char", "character", "bpchar", "name":
		return "CAST(" + operand + " AS TEXT)"
	case "bool", "boolean":
		switch strings.ToLower(operand) {
		case "'t'", "'true'", "'y'", "'yes'", "'on'", "'1'":
			return "1"
		case "'f'", "'false'", "'n'", "'no'", "'off'", "'0'":
			return "0"
		}
		return operand
	}
	return operand
}

// sqliteString turns a PostgreSQL string literal into a SQLite one: 'x' stays, E'x' and $$x$$
// are unescaped and re-quoted.
func sqliteString(lit string) string {
	switch {
	case lit[0] == '\'':
		return lit
	case lit[0] == '$':
		k := strings.IndexByte(lit[1:], '$') + 2
		body := lit[k : len(lit)-k]
		return "'" + strings.ReplaceAll(body, "'", "''") + "'"
	default: // E'...'
		body := lit[2 : len(lit)-1]
		var b strings.Builder
		for i := 0; i < len(body); i++ {
			c := body[i]
			if c == '\'' && i+1 < len(body) && body[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			if c != '\\' || i+1 >= len(body) {
				b.WriteByte(c)
				continue
			}
			i++
			switch body[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			default:
				b.WriteByte(body[i])
			}
		}
		return "'" + strings.ReplaceAll(b.String(), "'", "''") + "'"
	}
}

// hasWord reports whether the statement has the keyword w outside strings and quotes.
func (s statement) hasWord(w string) bool {
	for _, t := range s.toks {
		if t.is(w) {
			return true
		}
	}
	return false
}

// inferParams guesses the type of each $N from where it stands, so that drivers encode
// parameters as the columns they meet (pgx sends a []byte as bytea, not as its text form,
// only when told the parameter is bytea): VALUES tuples of an INSERT with its column list,
// "column op $N" and "$N op column" comparisons and assignments, "column IN ($1, $2)", and
// LIMIT/OFFSET. colType answers a column's OID among the statement's tables. Parameters it
// cannot place stay 0 (the client's choice; text when it has none).
func (s statement) inferParams(oids []uint32, tables []string, colType func(table, col string) (uint32, bool)) {
	w := s.words()
	set := func(tok token, oid uint32) {
		if tok.kind != tokParam {
			return
		}
		k, err := strconv.Atoi(tok.text[1:])
		if err != nil || k < 1 || k > len(oids) || oids[k-1] != 0 {
			return
		}
		oids[k-1] = oid
	}
	lookup := func(col token) (uint32, bool) {
		name := identName(col)
		found, oid := 0, uint32(0)
		for _, t := range tables {
			if o, ok := colType(t, name); ok {
				found++
				oid = o
			}
		}
		return oid, found == 1
	}
	compare := map[string]bool{"=": true, "<>": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true}
	for i, t := range w {
		switch {
		case t.kind == tokParam && i > 0 && (w[i-1].is("LIMIT") || w[i-1].is("OFFSET")):
			set(t, oidInt8)
		case t.kind == tokPunct && compare[t.text] && i > 0 && i+1 < len(w):
			if w[i+1].kind == tokParam && (w[i-1].kind == tokWord || w[i-1].kind == tokQuoted) {
				if oid, ok := lookup(w[i-1]); ok {
					set(w[i+1], oid)
				}
			}
			if w[i-1].kind == tokParam && (w[i+1].kind == tokWord || w[i+1].kind == tokQuoted) {
				if oid, ok := lookup(w[i+1]); ok {
					set(w[i-1], oid)
				}
			}
		case t.is("IN") && i > 0 && i+1 < len(w) && w[i+1].text == "(" && (w[i-1].kind == tokWord || w[i-1].kind == tokQuoted):
			if oid, ok := lookup(w[i-1]); ok {
				for j := i + 2; j < len(w) && w[j].text != ")"; j++ {
					set(w[j], oid)
				}
			}
		}
	}
	// INSERT INTO table (cols) VALUES (...), (...)
	if len(w) < 3 || !(w[0].is("INSERT") || w[0].is("REPLACE")) {
		return
	}
	i := 1
	for i < len(w) && !w[i].is("INTO") {
		i++
	}
	if i+1 >= len(w) {
		return
	}
	i++
	table := identName(w[i])
	if i+2 < len(w) && w[i+1].text == "." {
		i += 2
		table = identName(w[i])
	}
	i++
	var cols []string
	if i < len(w) && w[i].text == "(" {
		for i++; i < len(w) && w[i].text != ")"; i++ {
			if w[i].kind == tokWord || w[i].kind == tokQuoted {
				cols = append(cols, identName(w[i]))
			}
		}
		i++
	}
	if i >= len(w) || !w[i].is("VALUES") || len(cols) == 0 {
		return
	}
	for i++; i < len(w); i++ {
		if w[i].text != "(" {
			continue
		}
		pos, depth := 0, 0
		for i++; i < len(w); i++ {
			switch w[i].text {
			case "(":
				depth++
			case ")":
				depth--
			case ",":
				if depth == 0 {
					pos++
				}
			}
			if depth < 0 {
				break
			}
			if depth == 0 && w[i].kind == tokParam && pos < len(cols) &&
				(w[i-1].text == "(" || w[i-1].text == ",") && i+1 < len(w) && (w[i+1].text == "," || w[i+1].text == ")") {
				if oid, ok := colType(table, cols[pos]); ok {
					set(w[i], oid)
				}
			}
		}
	}
}

// identName is an identifier's name: a quoted one unquoted, a bare one as written (SQLite
// compares names without regard to case).
func identName(t token) string {
	if t.kind == tokQuoted {
		return strings.ReplaceAll(t.text[1:len(t.text)-1], `""`, `"`)
	}
	return t.text
}
