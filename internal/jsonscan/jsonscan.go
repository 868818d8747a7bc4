package jsonscan

import (
	"bytes"
	"unicode/utf8"
)

// Scanner reads JSON from B, at I.
type Scanner struct {
	B []byte
	I int
}

// Space skips white space.
func (s *Scanner) Space() {
	for s.I < len(s.B) {
		switch s.B[s.I] {
		case ' ', '\t', '\n', '\r':
			s.I++
		default:
			return
		}
	}
}

// TrimSpace returns b without JSON's white space (space, tab, newline, carriage return) at
// either end. bytes.TrimSpace also trims what JSON does not allow between tokens (a vertical
// tab, a form feed, Unicode spaces), so a body trimmed with it could parse alone and not
// inside an array.
func TrimSpace(b []byte) []byte { return bytes.Trim(b, " \t\n\r") }

// Peek returns the next byte after white space (0 at the end).
func (s *Scanner) Peek() byte {
	s.Space()
	if s.I < len(s.B) {
		return s.B[s.I]
	}
	return 0
}

// Eat consumes c after white space, if c comes next.
func (s *Scanner) Eat(c byte) bool {
	if s.Peek() == c {
		s.I++
		return true
	}
	return false
}

// Lit consumes word, if it comes next (no white space skipped).
func (s *Scanner) Lit(word string) bool {
	if len(s.B)-s.I >= len(word) && string(s.B[s.I:s.I+len(word)]) == word {
		s.I += len(word)
		return true
	}
	return false
}

// Str reads a string after white space and returns its bytes (in B), when it has no escapes
// and no control characters; non-ASCII bytes are taken only when utf8OK and they are valid
// UTF-8. Anything else fails (encoding/json's to read).
func (s *Scanner) Str(utf8OK bool) ([]byte, bool) {
	if !s.Eat('"') {
		return nil, false
	}
	start, ascii := s.I, true
	for ; s.I < len(s.B); s.I++ {
		switch c := s.B[s.I]; {
		case c == '"':
			str := s.B[start:s.I]
			s.I++
			if !ascii && !utf8.Valid(str) {
				return nil, false
			}
			return str, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			if !utf8OK {
				return nil, false
			}
			ascii = false
		}
	}
	return nil, false
}

// Number reads a number token after white space, as JSON's grammar has it, and says whether
// it has a fraction or an exponent; tok is nil (nothing read) when no number comes next.
func (s *Scanner) Number() (tok []byte, real bool) {
	s.Space()
	b, i := s.B, s.I
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		real = true
		i++
		if digits() == 0 {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		real = true
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	tok = b[s.I:i]
	s.I = i
	return tok, real
}
