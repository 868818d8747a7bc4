package jsonscan

import (
	"encoding/json"
	"testing"
)

// TestStr: a string the scanner takes is exactly what encoding/json decodes from it; the
// ones it refuses are escapes, control characters, and non-ASCII when not allowed or not
// valid UTF-8.
func TestStr(t *testing.T) {
	for _, tc := range []struct {
		in          string
		ascii, utf8 bool // taken with utf8OK false, true
	}{
		{`"abc"`, true, true},
		{`  "a b"`, true, true},
		{`""`, true, true},
		{`"é"`, false, true},
		{"\"\xff\"", false, false},
		{`"a\"b"`, false, false},
		{`"a\nb"`, false, false},
		{"\"a\tb\"", false, false},
		{`"abc`, false, false},
		{`abc`, false, false},
	} {
		for _, allow := range []bool{false, true} {
			s := Scanner{B: []byte(tc.in)}
			got, ok := s.Str(allow)
			want := tc.ascii
			if allow {
				want = tc.utf8
			}
			if ok != want {
				t.Errorf("Str(%v) of %q: %v, want %v", allow, tc.in, ok, want)
				continue
			}
			if !ok {
				continue
			}
			var dec string
			if err := json.Unmarshal([]byte(tc.in), &dec); err != nil || dec != string(got) || s.I != len(tc.in) {
				t.Errorf("Str(%v) of %q = %q at %d; encoding/json: %q, %v", allow, tc.in, got, s.I, dec, err)
			}
		}
	}
}

// TestNumber: number tokens follow JSON's grammar (encoding/json agrees on every token
// taken), stop where the grammar does, and say whether they are real.
func TestNumber(t *testing.T) {
	for _, tc := range []struct {
		in, tok string
		real    bool
	}{
		{"0", "0", false},
		{" -12", "-12", false},
		{"01", "0", false},
		{"1.5e3,", "1.5e3", true},
		{"-0.25]", "-0.25", true},
		{"2E-7", "2E-7", true},
		{"1e+2", "1e+2", true},
		{"-", "", false},
		{"1.", "", false},
		{".5", "", false},
		{"1e", "", false},
		{"+1", "", false},
		{"x", "", false},
	} {
		s := Scanner{B: []byte(tc.in)}
		tok, real := s.Number()
		if string(tok) != tc.tok || (tok != nil && real != tc.real) {
			t.Errorf("Number of %q = %q, %v; want %q, %v", tc.in, tok, real, tc.tok, tc.real)
			continue
		}
		if tok == nil {
			if s.I != 0 && s.B[0] != ' ' {
				t.Errorf("Number of %q moved to %d without a token", tc.in, s.I)
			}
			continue
		}
		var f float64
		if err := json.Unmarshal(tok, &f); err != nil {
			t.Errorf("token %q of %q: encoding/json says %v", tok, tc.in, err)
		}
	}
}

// TestEatPeekLit: white space before Eat and Peek, none before Lit.
func TestEatPeekLit(t *testing.T) {
	s := Scanner{B: []byte(" \t[ null,true ]\n")}
	if !s.Eat('[') || s.Peek() != 'n' || !s.Lit("null") || s.Lit("true") || !s.Eat(',') || !s.Lit("true") || !s.Eat(']') || s.Peek() != 0 {
		t.Fatalf("scan stopped at %d of %q", s.I, s.B)
	}
	if s.I != len(s.B) {
		t.Fatalf("at %d after the trailing space, want %d", s.I, len(s.B))
	}
}

// TestTrimSpace: only JSON's four white-space bytes are trimmed, at both ends; anything else
// stays for the parser to refuse.
func TestTrimSpace(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		" \t\r\n":           "",
		" [1] \n":           "[1]",
		"\v[1]":             "\v[1]", // not JSON's white space: left for the parser to refuse
		"[1]\f":             "[1]\f",
		"\u00a0\"x\"\u00a0": "\u00a0\"x\"\u00a0",
		"\t\"a b\"\r\n":     "\"a b\"",
	} {
		if got := string(TrimSpace([]byte(in))); got != want {
			t.Errorf("TrimSpace(%q) = %q, want %q", in, got, want)
		}
	}
}
