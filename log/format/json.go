package format

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
)

// ParseJSONValue parses one JSON value into a Value (see Value.UnmarshalJSON).
func ParseJSONValue(b []byte) (Value, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return Value{}, invalidf("value: empty JSON")
	}
	switch b[0] {
	case 'n':
		if string(b) == "null" {
			return Null(), nil
		}
	case 't':
		if string(b) == "true" {
			return Integer(1), nil
		}
	case 'f':
		if string(b) == "false" {
			return Integer(0), nil
		}
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return Value{}, invalidf("value: %v", err)
		}
		return Text(s), nil
	case '[':
		// json.Valid first: a Decoder stops after one value and would accept "[1]]".
		if !json.Valid(b) {
			return Value{}, invalidf("value: invalid JSON %q", truncate(string(b), 40))
		}
		var elems []any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&elems); err != nil {
			return Value{}, invalidf("value: a blob is an array of byte numbers: %v", err)
		}
		out := make([]byte, len(elems))
		for i, e := range elems {
			// Only a bare number: a json.Number target would also take the string "1".
			n, ok := e.(json.Number)
			if !ok {
				return Value{}, invalidf("value: blob byte %d is not a number, want 0..255", i)
			}
			x, err := strconv.ParseUint(string(n), 10, 8)
			if err != nil {
				return Value{}, invalidf("value: blob byte %d is %s, want 0..255", i, truncate(string(n), 40))
			}
			out[i] = byte(x)
		}
		return Blob(out), nil
	case '{':
		return Value{}, invalidf("value: objects are not SQLite values")
	default:
		return parseJSONNumber(string(b))
	}
	return Value{}, invalidf("value: invalid JSON %q", truncate(string(b), 40))
}

func parseJSONNumber(s string) (Value, error) {
	if !json.Valid([]byte(s)) {
		return Value{}, invalidf("value: invalid JSON %q", truncate(s, 40))
	}
	isReal := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '.' || c == 'e' || c == 'E' {
			isReal = true
			break
		}
	}
	if !isReal {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Value{}, invalidf("value: integer %s out of the 64-bit range", truncate(s, 40))
		}
		return Integer(i), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return Value{}, invalidf("value: real %s: %v", truncate(s, 40), err)
	}
	return Real(f), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 is replaced, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	simple := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			simple = false
			break
		}
	}
	if simple {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	enc, _ := json.Marshal(s) // a string always marshals
	return append(b, enc...)
}
