package materializer

import (
	"fmt"
	"strings"
)

// token is one lexical token of SQL text, enough to split statements and find the parts of
// a CREATE statement without a full parser. SQLite itself validates every statement.
type token struct {
	kind  tokKind
	text  string // as written
	start int    // byte offset in the source
}

type tokKind uint8

const (
	tokWord   tokKind = iota // keyword or bare identifier
	tokQuoted                // "x", `x` or [x] identifier
	tokString                // 'text'
	tokNumber
	tokPunct // one character: ( ) , ; . and others
	tokBlob  // X'..'
)

// tokenize splits sql into tokens, dropping comments and whitespace.
func tokenize(sql string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				i = len(sql)
			} else {
				i += end + 4
			}
		case c == '\'' || c == '"' || c == '`' || c == '[':
			closer := c
			if c == '[' {
				closer = ']'
			}
			j := i + 1
			for {
				if j >= len(sql) {
					return nil, fmt.Errorf("unterminated quote at offset %d", i)
				}
				if sql[j] == closer {
					if closer != ']' && j+1 < len(sql) && sql[j+1] == closer {
						j += 2
						continue
					}
					break
				}
				j++
			}
			kind := tokQuoted
			if c == '\'' {
				kind = tokString
			}
			toks = append(toks, token{kind: kind, text: sql[i : j+1], start: i})
			i = j + 1
		case (c == 'x' || c == 'X') && i+1 < len(sql) && sql[i+1] == '\'':
			j := strings.IndexByte(sql[i+2:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated blob literal at offset %d", i)
			}
			toks = append(toks, token{kind: tokBlob, text: sql[i : i+3+j], start: i})
			i += 3 + j
		case isIdentStart(c):
			j := i + 1
			for j < len(sql) && isIdentPart(sql[j]) {
				j++
			}
			toks = append(toks, token{kind: tokWord, text: sql[i:j], start: i})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9':
			j := i + 1
			for j < len(sql) && (isIdentPart(sql[j]) || sql[j] == '.' ||
				(sql[j] == '+' || sql[j] == '-') && (sql[j-1] == 'e' || sql[j-1] == 'E')) {
				j++
			}
			toks = append(toks, token{kind: tokNumber, text: sql[i:j], start: i})
			i = j
		default:
			toks = append(toks, token{kind: tokPunct, text: sql[i : i+1], start: i})
			i++
		}
	}
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// is reports whether t is the keyword kw (case-insensitive).
func (t token) is(kw string) bool { return t.kind == tokWord && strings.EqualFold(t.text, kw) }

// ident returns the identifier a word or quoted token names.
func (t token) ident() string {
	switch t.kind {
	case tokQuoted:
		q := t.text[0]
		body := t.text[1 : len(t.text)-1]
		if q == '[' {
			return body
		}
		return strings.ReplaceAll(body, string(q)+string(q), string(q))
	case tokString:
		return strings.ReplaceAll(t.text[1:len(t.text)-1], "''", "'")
	}
	return t.text
}

// splitStatements cuts sql into statements at top-level semicolons, dropping empty ones.
// CREATE TRIGGER bodies (BEGIN ... END) are kept whole.
func splitStatements(sql string) ([]string, error) {
	toks, err := tokenize(sql)
	if err != nil {
		return nil, err
	}
	var out []string
	start := -1
	depth := 0 // BEGIN ... END nesting inside CREATE TRIGGER
	trigger := false
	for i, t := range toks {
		if start < 0 {
			if t.kind == tokPunct && t.text == ";" {
				continue
			}
			start = t.start
			trigger = false
		}
		if t.is("TRIGGER") && i < 3+indexOfStart(toks, start) {
			trigger = true
		}
		if trigger && t.is("BEGIN") {
			depth++
		}
		if trigger && t.is("END") && depth > 0 {
			depth--
		}
		if t.kind == tokPunct && t.text == ";" && depth == 0 {
			out = append(out, strings.TrimSpace(sql[start:t.start]))
			start = -1
		}
	}
	if start >= 0 {
		if s := strings.TrimSpace(sql[start:]); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func indexOfStart(toks []token, start int) int {
	for i, t := range toks {
		if t.start == start {
			return i
		}
	}
	return 0
}

// quoteIdent quotes an identifier for SQL text.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// isInternalName reports whether a table name belongs to Patina (or SQLite) itself.
func isInternalName(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "__patina") || strings.HasPrefix(l, "sqlite_")
}
