package format

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ValueType is the SQLite storage class of a Value. The zero Value is NULL.
type ValueType uint8

// Storage classes. Wire enums are append-only.
const (
	TypeNull ValueType = iota
	TypeInteger
	TypeReal
	TypeText
	TypeBlob
)

func (t ValueType) String() string {
	switch t {
	case TypeNull:
		return "null"
	case TypeInteger:
		return "integer"
	case TypeReal:
		return "real"
	case TypeText:
		return "text"
	case TypeBlob:
		return "blob"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Value is a tagged SQLite value. Types are never coerced: 1, 1.0, '1', X'31' and NULL are
// five different values. Only the field that matches Type is meaningful.
type Value struct {
	Type ValueType
	Int  int64
	Real float64
	Text string
	Blob []byte
}

// Null returns the NULL value.
func Null() Value { return Value{} }

// Integer returns an INTEGER value.
func Integer(i int64) Value { return Value{Type: TypeInteger, Int: i} }

// Real returns a REAL value. -0.0 becomes 0.0, as SQLite stores it.
func Real(f float64) Value {
	if f == 0 {
		f = 0
	}
	return Value{Type: TypeReal, Real: f}
}

// Text returns a TEXT value.
func Text(s string) Value { return Value{Type: TypeText, Text: s} }

// Blob returns a BLOB value. A nil or empty slice is the empty blob X”, never NULL.
func Blob(b []byte) Value {
	if b == nil {
		b = []byte{}
	}
	return Value{Type: TypeBlob, Blob: b}
}

// IsNull reports whether v is NULL.
func (v Value) IsNull() bool { return v.Type == TypeNull }

// Validate checks that v is a value SQLite can store: a known type and no NaN.
func (v Value) Validate() error {
	switch v.Type {
	case TypeNull, TypeInteger, TypeText, TypeBlob:
		return nil
	case TypeReal:
		if math.IsNaN(v.Real) {
			return invalidf("value: NaN is not a SQLite value")
		}
		return nil
	}
	return invalidf("value: unknown type %d", uint8(v.Type))
}

// classRank orders storage classes as cr-sqlite does: NULL < BLOB < TEXT < REAL < INTEGER.
func classRank(t ValueType) int {
	switch t {
	case TypeNull:
		return 0
	case TypeBlob:
		return 1
	case TypeText:
		return 2
	case TypeReal:
		return 3
	case TypeInteger:
		return 4
	}
	return -1
}

// Compare orders values by cr-sqlite's crsql_compare_sqlite_values (docs/DESIGN.md rule R7): storage
// class first (NULL < BLOB < TEXT < REAL < INTEGER), then numerically or bytewise within the
// class. It returns -1, 0 or +1.
func Compare(a, b Value) int {
	if ra, rb := classRank(a.Type), classRank(b.Type); ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch a.Type {
	case TypeInteger:
		return cmp.Compare(a.Int, b.Int)
	case TypeReal:
		return cmp.Compare(a.Real, b.Real)
	case TypeText:
		return strings.Compare(a.Text, b.Text)
	case TypeBlob:
		return bytes.Compare(a.Blob, b.Blob)
	}
	return 0
}

// Equal reports whether a and b are the same value of the same storage class.
func (v Value) Equal(o Value) bool { return v.Type == o.Type && Compare(v, o) == 0 }

// SQL returns the value as database/sql binds it: nil, int64, float64, string or []byte.
// An empty blob is a non-nil empty slice so that drivers do not bind it as NULL.
func (v Value) SQL() any {
	switch v.Type {
	case TypeInteger:
		return v.Int
	case TypeReal:
		return v.Real
	case TypeText:
		return v.Text
	case TypeBlob:
		if v.Blob == nil {
			return []byte{}
		}
		return v.Blob
	}
	return nil
}

// FromSQL converts a value scanned by database/sql into a Value. The caller must make sure
// the driver did not convert the stored value (for example to time.Time); time.Time is
// refused rather than guessed.
func FromSQL(x any) (Value, error) {
	switch t := x.(type) {
	case nil:
		return Null(), nil
	case int64:
		return Integer(t), nil
	case int:
		return Integer(int64(t)), nil
	case int32:
		return Integer(int64(t)), nil
	case bool:
		if t {
			return Integer(1), nil
		}
		return Integer(0), nil
	case float64:
		return Real(t), nil
	case float32:
		return Real(float64(t)), nil
	case string:
		return Text(t), nil
	case []byte:
		return Blob(bytes.Clone(t)), nil
	case time.Time:
		return Value{}, invalidf("value: driver returned time.Time; read the raw stored value instead")
	}
	return Value{}, invalidf("value: unsupported Go type %T", x)
}

// formatReal renders a float so that it always reads back as a REAL: it carries a fraction
// or an exponent (1.0, never 1). Infinities are written as 1e999 / -1e999, which every JSON
// parser reads back as the same infinity or rejects, rather than as a string.
func formatReal(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "1e999"
	case math.IsInf(f, -1):
		return "-1e999"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

// Quote renders v as SQLite's quote() would, for display and test fixtures: NULL, 1, 1.0,
// 'it”s', X'0102'. Reals may differ from SQLite's text in the last digits; compare values,
// not this text.
func (v Value) Quote() string {
	switch v.Type {
	case TypeInteger:
		return strconv.FormatInt(v.Int, 10)
	case TypeReal:
		if math.IsInf(v.Real, 1) {
			return "9.0e+999"
		} else if math.IsInf(v.Real, -1) {
			return "-9.0e+999"
		}
		return formatReal(v.Real)
	case TypeText:
		return "'" + strings.ReplaceAll(v.Text, "'", "''") + "'"
	case TypeBlob:
		return "X'" + strings.ToUpper(hex.EncodeToString(v.Blob)) + "'"
	}
	return "NULL"
}

// String is Quote.
func (v Value) String() string { return v.Quote() }

// ParseQuoted parses a SQL literal as SQLite's quote() prints it: NULL, an integer, a real,
// a single-quoted text with doubled quotes, or X'hex'.
func ParseQuoted(s string) (Value, error) {
	switch {
	case s == "NULL":
		return Null(), nil
	case len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'':
		body := s[1 : len(s)-1]
		if strings.Count(body, "'")%2 != 0 {
			return Value{}, invalidf("literal %q: unbalanced quote", s)
		}
		return Text(strings.ReplaceAll(body, "''", "'")), nil
	case len(s) >= 3 && (s[0] == 'X' || s[0] == 'x') && s[1] == '\'' && s[len(s)-1] == '\'':
		b, err := hex.DecodeString(s[2 : len(s)-1])
		if err != nil {
			return Value{}, invalidf("literal %q: %v", s, err)
		}
		return Blob(b), nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return Integer(i), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return Value{}, invalidf("literal %q: not NULL, a number, a text or a blob", s)
	}
	return Real(f), nil
}

// MarshalJSON writes the docs/DESIGN.md section 7 form: integer as a JSON integer, real always
// with a fraction or exponent, text as a string, blob as an array of byte numbers, NULL as null.
func (v Value) MarshalJSON() ([]byte, error) { return v.AppendJSON(nil), nil }

// AppendJSON appends the JSON form of v to b.
func (v Value) AppendJSON(b []byte) []byte {
	switch v.Type {
	case TypeInteger:
		return strconv.AppendInt(b, v.Int, 10)
	case TypeReal:
		return append(b, formatReal(v.Real)...)
	case TypeText:
		return appendJSONString(b, v.Text)
	case TypeBlob:
		b = append(b, '[')
		for i, c := range v.Blob {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(c), 10)
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

// UnmarshalJSON reads the forms MarshalJSON writes, and also booleans (bound as 0/1).
// A number without fraction or exponent is an INTEGER (out of int64 range is an error);
// with one it is a REAL.
func (v *Value) UnmarshalJSON(b []byte) error {
	val, err := ParseJSONValue(b)
	if err != nil {
		return err
	}
	*v = val
	return nil
}
