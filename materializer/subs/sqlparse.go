package subs

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// tokKind is the lexical class of a SQL token.
type tokKind uint8

const (
	tkIdent  tokKind = iota // bare identifier or keyword
	tkQIdent                // "quoted", `quoted` or [quoted] identifier
	tkString                // 'text'
	tkNumber                // 12, 1.5, 1e3, 0x1F
	tkBlob                  // X'0102'
	tkParam                 // ?, ?3, :a, @a, $a
	tkPunct                 // operators and punctuation
)

// token is one SQL token; Start and End are byte offsets into the statement.
type token struct {
	Kind       tokKind
	Start, End int
	Text       string
	// Param is a parameter's 1-based index as SQLite numbers them: ?N is N; a bare ? and
	// the first use of a name take one more than the largest index so far; a name used
	// again keeps its index.
	Param int
}

// upper returns the keyword form of a bare identifier ("" for other kinds).
func (t token) upper() string {
	if t.Kind != tkIdent {
		return ""
	}
	return strings.ToUpper(t.Text)
}

// name returns an identifier's name without quotes, lower-cased (SQLite names are
// case-insensitive), or "" when t is not an identifier.
func (t token) name() string {
	switch t.Kind {
	case tkIdent:
		return strings.ToLower(t.Text)
	case tkQIdent:
		s := t.Text[1 : len(t.Text)-1]
		switch t.Text[0] {
		case '"':
			s = strings.ReplaceAll(s, `""`, `"`)
		case '`':
			s = strings.ReplaceAll(s, "``", "`")
		}
		return strings.ToLower(s)
	}
	return ""
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// tokenize splits a SQL text into tokens, dropping white space and comments. It refuses
// unterminated strings, quoted identifiers and comments.
func tokenize(sql string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(sql) {
		c := sql[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
			continue
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("unterminated comment at %d", i)
			}
			i += end + 4
			continue
		case c == '\'':
			j, err := skipQuoted(sql, i, '\'')
			if err != nil {
				return nil, err
			}
			i = j
			toks = append(toks, token{Kind: tkString, Start: start, End: i, Text: sql[start:i]})
			continue
		case (c == 'x' || c == 'X') && i+1 < len(sql) && sql[i+1] == '\'':
			j, err := skipQuoted(sql, i+1, '\'')
			if err != nil {
				return nil, err
			}
			i = j
			toks = append(toks, token{Kind: tkBlob, Start: start, End: i, Text: sql[start:i]})
			continue
		case c == '"' || c == '`':
			j, err := skipQuoted(sql, i, c)
			if err != nil {
				return nil, err
			}
			i = j
			toks = append(toks, token{Kind: tkQIdent, Start: start, End: i, Text: sql[start:i]})
			continue
		case c == '[':
			j := strings.IndexByte(sql[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated identifier at %d", i)
			}
			i += j + 1
			toks = append(toks, token{Kind: tkQIdent, Start: start, End: i, Text: sql[start:i]})
			continue
		case isIdentStart(c):
			for i < len(sql) && isIdentChar(sql[i]) {
				i++
			}
			toks = append(toks, token{Kind: tkIdent, Start: start, End: i, Text: sql[start:i]})
			continue
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9':
			i = scanNumber(sql, i)
			toks = append(toks, token{Kind: tkNumber, Start: start, End: i, Text: sql[start:i]})
			continue
		case c == '?':
			i++
			for i < len(sql) && sql[i] >= '0' && sql[i] <= '9' {
				i++
			}
			toks = append(toks, token{Kind: tkParam, Start: start, End: i, Text: sql[start:i]})
			continue
		case (c == ':' || c == '@' || c == '$') && i+1 < len(sql) && isIdentChar(sql[i+1]):
			i++
			for i < len(sql) && (isIdentChar(sql[i]) || sql[i] == ':' && i+1 < len(sql) && sql[i+1] == ':') {
				if sql[i] == ':' {
					i++
				}
				i++
			}
			toks = append(toks, token{Kind: tkParam, Start: start, End: i, Text: sql[start:i]})
			continue
		}
		// Punctuation: two-character operators first.
		if i+1 < len(sql) {
			switch two := sql[i : i+2]; two {
			case "==", "!=", "<>", "<=", ">=", "<<", ">>", "||", "->":
				n := 2
				if two == "->" && i+2 < len(sql) && sql[i+2] == '>' {
					n = 3
				}
				i += n
				toks = append(toks, token{Kind: tkPunct, Start: start, End: i, Text: sql[start:i]})
				continue
			}
		}
		i++
		toks = append(toks, token{Kind: tkPunct, Start: start, End: i, Text: sql[start:i]})
	}
	numberParams(toks)
	return toks, nil
}

func numberParams(toks []token) {
	top := 0
	names := map[string]int{}
	for i := range toks {
		t := &toks[i]
		if t.Kind != tkParam {
			continue
		}
		switch {
		case t.Text == "?":
			top++
			t.Param = top
		case t.Text[0] == '?':
			n, err := strconv.Atoi(t.Text[1:])
			if err != nil || n < 1 {
				continue // SQLite refuses it; the statement fails when it runs
			}
			t.Param = n
			top = max(top, n)
		default:
			if n, ok := names[t.Text]; ok {
				t.Param = n
				continue
			}
			top++
			names[t.Text] = top
			t.Param = top
		}
	}
}

// skipQuoted returns the offset just past the quoted run that starts at i (doubled quotes
// escape themselves).
func skipQuoted(sql string, i int, q byte) (int, error) {
	for j := i + 1; j < len(sql); j++ {
		if sql[j] == q {
			if j+1 < len(sql) && sql[j+1] == q {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated quote at %d", i)
}

func scanNumber(sql string, i int) int {
	if sql[i] == '0' && i+1 < len(sql) && (sql[i+1] == 'x' || sql[i+1] == 'X') {
		i += 2
		for i < len(sql) && strings.IndexByte("0123456789abcdefABCDEF_", sql[i]) >= 0 {
			i++
		}
		return i
	}
	for i < len(sql) && (sql[i] >= '0' && sql[i] <= '9' || sql[i] == '.' || sql[i] == '_') {
		i++
	}
	if i < len(sql) && (sql[i] == 'e' || sql[i] == 'E') {
		j := i + 1
		if j < len(sql) && (sql[j] == '+' || sql[j] == '-') {
			j++
		}
		if j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
			i = j
			for i < len(sql) && sql[i] >= '0' && sql[i] <= '9' {
				i++
			}
		}
	}
	return i
}

// foldParams returns st with its parameters written into the SQL as literals, the way
// Corrosion expands a subscription's statement (sqlite3_expanded_sql) before looking it up,
// so that ["SELECT ... > ?", [0]] and "SELECT ... > 0" are one subscription. Literals keep
// the value's storage class exactly (1, 1.0, '1', X'31', NULL). st is returned unchanged
// when folding could change its meaning: SQL that does not tokenize, a parameter without a
// value, a text with a NUL byte or a non-finite real (no SQL literal spells them).
func foldParams(st materializer.Statement) materializer.Statement {
	if len(st.Params) == 0 && len(st.Named) == 0 {
		return st
	}
	toks, err := tokenize(st.SQL)
	if err != nil {
		return st
	}
	var b strings.Builder
	last := 0
	for _, t := range toks {
		if t.Kind != tkParam {
			continue
		}
		var v log.Value
		var ok bool
		if len(st.Named) > 0 {
			if t.Text[0] != '?' {
				v, ok = st.Named[t.Text[1:]]
			}
		} else if t.Param >= 1 && t.Param <= len(st.Params) {
			v, ok = st.Params[t.Param-1], true
		}
		lit, litOK := sqlLiteral(v)
		if !ok || !litOK {
			return st
		}
		b.WriteString(st.SQL[last:t.Start])
		b.WriteString(lit)
		last = t.End
	}
	b.WriteString(st.SQL[last:])
	return materializer.Statement{SQL: b.String()}
}

// sqlLiteral spells v as a SQL literal that SQLite reads back as exactly v. Negative
// numbers are parenthesised, so that "x-?" cannot become the comment "x--1".
func sqlLiteral(v log.Value) (string, bool) {
	switch v.Type {
	case log.TypeText:
		if strings.IndexByte(v.Text, 0) >= 0 {
			return "", false
		}
	case log.TypeReal:
		if !exactDecimal(v.Real) {
			return "", false
		}
		if v.Real < 0 || math.Signbit(v.Real) {
			return "(" + v.Quote() + ")", true
		}
	case log.TypeInteger:
		if v.Int < 0 {
			return "(" + v.Quote() + ")", true
		}
	}
	return v.Quote(), true
}

// exactDecimal reports whether f's shortest decimal form is one that any correct-enough
// decimal-to-binary conversion reads back as f: finite, at most 15 significant digits and a
// small exponent (both exact in float64 arithmetic). Other reals are left as parameters.
func exactDecimal(f float64) bool {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return false
	}
	m := strconv.FormatFloat(math.Abs(f), 'e', -1, 64) // d.ddddde±XX
	mant, exp, _ := strings.Cut(m, "e")
	e, err := strconv.Atoi(exp)
	return err == nil && len(strings.Replace(mant, ".", "", 1)) <= 15 && e >= -22 && e <= 22
}
