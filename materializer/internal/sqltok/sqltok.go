// Package sqltok is the one lexer of SQLite's SQL that the materializer and its
// subscription engine share: tokens, not a parse tree. It is enough to split a script into
// statements, find a statement's verb and the tables it names, read the parts of a CREATE
// statement, and number parameters the way SQLite does; SQLite itself validates every
// statement it is given, so the lexer never needs to judge one.
//
// It imports only the standard library. It follows SQLite's tokenizer where the two could
// disagree: an unterminated block comment runs to the end of the text (SQLite accepts it),
// an unterminated string, quoted identifier or blob is an error (SQLite refuses it).
package sqltok

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the lexical class of a token.
type Kind uint8

const (
	Word   Kind = iota // bare identifier or keyword
	Quoted             // "quoted", `quoted` or [quoted] identifier
	String             // 'text'
	Number             // 12, 1.5, 1e3, 0x1F
	Blob               // X'0102'
	Param              // ?, ?3, :a, @a, $a
	Punct              // operators and punctuation
)

// Token is one SQL token; Start and End are byte offsets into the text.
type Token struct {
	Kind       Kind
	Start, End int
	Text       string // as written
	// Param is a parameter's 1-based index as SQLite numbers them: ?N is N; a bare ? and
	// the first use of a name take one more than the largest index so far; a name used
	// again keeps its index.
	Param int
}

// Is reports whether t is the keyword kw (case-insensitive).
func (t Token) Is(kw string) bool { return t.Kind == Word && strings.EqualFold(t.Text, kw) }

// Upper returns the keyword form of a bare word ("" for other kinds).
func (t Token) Upper() string {
	if t.Kind != Word {
		return ""
	}
	return strings.ToUpper(t.Text)
}

// Ident returns the name a word, quoted identifier or string names, unquoted but with its
// case as written (SQLite accepts 'x' as an identifier in some places, so a string counts).
func (t Token) Ident() string {
	switch t.Kind {
	case Quoted:
		q := t.Text[0]
		body := t.Text[1 : len(t.Text)-1]
		if q == '[' {
			return body
		}
		return strings.ReplaceAll(body, string(q)+string(q), string(q))
	case String:
		return strings.ReplaceAll(t.Text[1:len(t.Text)-1], "''", "'")
	}
	return t.Text
}

// Name returns an identifier's name, unquoted and lower-cased (SQLite names are
// case-insensitive), or "" when t is not a word or quoted identifier.
func (t Token) Name() string {
	if t.Kind != Word && t.Kind != Quoted {
		return ""
	}
	return strings.ToLower(t.Ident())
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// Tokenize splits sql into tokens, dropping white space and comments, and numbers its
// parameters.
func Tokenize(sql string) ([]Token, error) {
	var toks []Token
	add := func(k Kind, start, end int) {
		toks = append(toks, Token{Kind: k, Start: start, End: end, Text: sql[start:end]})
	}
	i := 0
	for i < len(sql) {
		c := sql[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			if end := strings.Index(sql[i+2:], "*/"); end < 0 {
				i = len(sql)
			} else {
				i += end + 4
			}
		case c == '\'':
			j, err := skipQuoted(sql, i, '\'')
			if err != nil {
				return nil, err
			}
			i = j
			add(String, start, i)
		case (c == 'x' || c == 'X') && i+1 < len(sql) && sql[i+1] == '\'':
			j, err := skipQuoted(sql, i+1, '\'')
			if err != nil {
				return nil, err
			}
			i = j
			add(Blob, start, i)
		case c == '"' || c == '`':
			j, err := skipQuoted(sql, i, c)
			if err != nil {
				return nil, err
			}
			i = j
			add(Quoted, start, i)
		case c == '[':
			j := strings.IndexByte(sql[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated identifier at offset %d", i)
			}
			i += j + 1
			add(Quoted, start, i)
		case isIdentStart(c):
			for i < len(sql) && isIdentChar(sql[i]) {
				i++
			}
			add(Word, start, i)
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9':
			i = scanNumber(sql, i)
			add(Number, start, i)
		case c == '?':
			i++
			for i < len(sql) && sql[i] >= '0' && sql[i] <= '9' {
				i++
			}
			add(Param, start, i)
		case (c == ':' || c == '@' || c == '$') && i+1 < len(sql) && isIdentChar(sql[i+1]):
			i++
			for i < len(sql) && (isIdentChar(sql[i]) || sql[i] == ':' && i+1 < len(sql) && sql[i+1] == ':') {
				if sql[i] == ':' {
					i++
				}
				i++
			}
			add(Param, start, i)
		default:
			i += punctLen(sql[i:])
			add(Punct, start, i)
		}
	}
	numberParams(toks)
	return toks, nil
}

// punctLen is the length of the operator or punctuation at the start of s: two-character
// operators (and ->>) are one token.
func punctLen(s string) int {
	if len(s) >= 2 {
		switch s[:2] {
		case "==", "!=", "<>", "<=", ">=", "<<", ">>", "||":
			return 2
		case "->":
			if len(s) >= 3 && s[2] == '>' {
				return 3
			}
			return 2
		}
	}
	return 1
}

func numberParams(toks []Token) {
	top := 0
	names := map[string]int{}
	for i := range toks {
		t := &toks[i]
		if t.Kind != Param {
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
	return 0, fmt.Errorf("unterminated quote at offset %d", i)
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

// Split cuts sql into statements at top-level semicolons, dropping empty ones. CREATE
// TRIGGER bodies (BEGIN ... END) are kept whole.
func Split(sql string) ([]string, error) {
	toks, err := Tokenize(sql)
	if err != nil {
		return nil, err
	}
	var out []string
	first := -1 // index of the current statement's first token
	depth := 0  // BEGIN ... END nesting inside CREATE TRIGGER
	trigger := false
	for i, t := range toks {
		if first < 0 {
			if t.Kind == Punct && t.Text == ";" {
				continue
			}
			first = i
			trigger = false
		}
		if t.Is("TRIGGER") && i < first+3 {
			trigger = true
		}
		if trigger && t.Is("BEGIN") {
			depth++
		}
		if trigger && t.Is("END") && depth > 0 {
			depth--
		}
		if t.Kind == Punct && t.Text == ";" && depth == 0 {
			out = append(out, strings.TrimSpace(sql[toks[first].Start:t.Start]))
			first = -1
		}
	}
	if first >= 0 {
		if s := strings.TrimSpace(sql[toks[first].Start:]); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}
