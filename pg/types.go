package pg

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/patinadb/patina/log"
)

// Type mapping between SQLite and PostgreSQL.
//
// A result column's type comes from its declared type, with SQLite's affinity rules (section
// 3.1 of SQLite's datatype page: INT anywhere is integer; CHAR, CLOB or TEXT text; BLOB or
// none blob; REAL, FLOA or DOUB real; the rest numeric), refined for BOOL (bool) and for
// columns with no declared type (expressions), which take the storage class of their first
// value when one is known, else text. Values that do not fit the column's type (SQLite is
// dynamically typed) are sent in text format as their own text.

const (
	oidBool    = pgtype.BoolOID
	oidBytea   = pgtype.ByteaOID
	oidInt8    = pgtype.Int8OID
	oidInt2    = pgtype.Int2OID
	oidInt4    = pgtype.Int4OID
	oidText    = pgtype.TextOID
	oidOID     = pgtype.OIDOID
	oidFloat4  = pgtype.Float4OID
	oidFloat8  = pgtype.Float8OID
	oidNumeric = pgtype.NumericOID
	oidVarchar = pgtype.VarcharOID
	oidBPChar  = pgtype.BPCharOID
	oidName    = pgtype.NameOID
	oidUnknown = pgtype.UnknownOID
	oidChar    = pgtype.QCharOID
	oidJSON    = pgtype.JSONOID
)

// typeSize is the typlen a RowDescription carries for a type.
func typeSize(oid uint32) int16 {
	switch oid {
	case oidBool, oidChar:
		return 1
	case oidInt2:
		return 2
	case oidInt4, oidFloat4, oidOID:
		return 4
	case oidInt8, oidFloat8:
		return 8
	case oidName:
		return 64
	}
	return -1
}

// oidOfDecl maps a declared column type to an OID; ok is false when decl is empty.
func oidOfDecl(decl string) (oid uint32, ok bool) {
	d := strings.ToUpper(strings.TrimSpace(decl))
	if d == "" {
		return 0, false
	}
	switch {
	case strings.HasPrefix(d, "BOOL"):
		return oidBool, true
	case strings.Contains(d, "INT"):
		return oidInt8, true
	case strings.Contains(d, "CHAR"), strings.Contains(d, "CLOB"), strings.Contains(d, "TEXT"):
		return oidText, true
	case strings.Contains(d, "BLOB"), d == "BYTEA":
		return oidBytea, true
	case strings.Contains(d, "REAL"), strings.Contains(d, "FLOA"), strings.Contains(d, "DOUB"):
		return oidFloat8, true
	case strings.HasPrefix(d, "NUMERIC"), strings.HasPrefix(d, "DECIMAL"):
		return oidNumeric, true
	case strings.HasPrefix(d, "JSON"):
		return oidJSON, true
	}
	// DATE, DATETIME, TIMESTAMP, UUID and the like: SQLite keeps them as text.
	return oidText, true
}

// oidOfValue maps a storage class to an OID (for expression columns).
func oidOfValue(v log.Value) uint32 {
	switch v.Type {
	case log.TypeInteger:
		return oidInt8
	case log.TypeReal:
		return oidFloat8
	case log.TypeBlob:
		return oidBytea
	}
	return oidText
}

// appendText appends v's PostgreSQL text form for a column of type oid.
func appendText(b []byte, oid uint32, v log.Value) []byte {
	switch v.Type {
	case log.TypeInteger:
		if oid == oidBool {
			if v.Int != 0 {
				return append(b, 't')
			}
			return append(b, 'f')
		}
		return strconv.AppendInt(b, v.Int, 10)
	case log.TypeReal:
		return appendFloat(b, v.Real)
	case log.TypeText:
		return append(b, v.Text...)
	case log.TypeBlob:
		if oid == oidBytea {
			b = append(b, `\x`...)
			return hex.AppendEncode(b, v.Blob)
		}
		return append(b, v.Blob...)
	}
	return b
}

func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendBinary appends v's binary form as oid. A value of another storage class is
// converted when that loses nothing (an integral real as int8, a numeric text as a number);
// otherwise it is an error the client sees (SQLSTATE 22P03).
func appendBinary(m *pgtype.Map, b []byte, oid uint32, v log.Value) ([]byte, error) {
	switch oid {
	case oidInt8, oidBool:
		var i int64
		switch v.Type {
		case log.TypeInteger:
			i = v.Int
		case log.TypeReal:
			if v.Real != math.Trunc(v.Real) || math.Abs(v.Real) > 1<<62 {
				return nil, fmt.Errorf("real %v in an integer column cannot be sent in binary", v.Real)
			}
			i = int64(v.Real)
		case log.TypeText:
			n, err := strconv.ParseInt(strings.TrimSpace(v.Text), 10, 64)
			if oid == oidBool && err != nil {
				switch strings.ToLower(strings.TrimSpace(v.Text)) {
				case "t", "true", "y", "yes", "on":
					n, err = 1, nil
				case "f", "false", "n", "no", "off":
					n, err = 0, nil
				}
			}
			if err != nil {
				return nil, fmt.Errorf("text %q in an integer column cannot be sent in binary", v.Text)
			}
			i = n
		default:
			return nil, fmt.Errorf("blob in an integer column cannot be sent in binary")
		}
		if oid == oidBool {
			if i != 0 {
				return append(b, 1), nil
			}
			return append(b, 0), nil
		}
		return binary.BigEndian.AppendUint64(b, uint64(i)), nil
	case oidFloat8:
		var f float64
		switch v.Type {
		case log.TypeInteger:
			f = float64(v.Int)
		case log.TypeReal:
			f = v.Real
		case log.TypeText:
			x, err := strconv.ParseFloat(strings.TrimSpace(v.Text), 64)
			if err != nil {
				return nil, fmt.Errorf("text %q in a real column cannot be sent in binary", v.Text)
			}
			f = x
		default:
			return nil, fmt.Errorf("blob in a real column cannot be sent in binary")
		}
		return binary.BigEndian.AppendUint64(b, math.Float64bits(f)), nil
	case oidNumeric:
		var x any
		switch v.Type {
		case log.TypeInteger:
			x = v.Int
		case log.TypeReal:
			x = v.Real
		default:
			s := strings.TrimSpace(v.Text)
			if v.Type == log.TypeBlob {
				s = string(v.Blob)
			}
			var n pgtype.Numeric
			if err := n.Scan(s); err != nil {
				return nil, fmt.Errorf("%q in a numeric column cannot be sent in binary", s)
			}
			x = n
		}
		return m.Encode(oidNumeric, pgtype.BinaryFormatCode, x, b)
	case oidBytea:
		if v.Type == log.TypeBlob {
			return append(b, v.Blob...), nil
		}
		return appendText(b, oidText, v), nil
	default: // text, json: the text form is the binary form
		return appendText(b, oidText, v), nil
	}
}

// decodeParam turns a bound parameter into a SQLite value. oid is the parameter's type as
// the client declared it (0 when it left it to the server, which then reads text).
func decodeParam(m *pgtype.Map, oid uint32, format int16, src []byte) (log.Value, error) {
	if src == nil {
		return log.Null(), nil
	}
	if format == pgtype.TextFormatCode {
		s := string(src)
		switch oid {
		case oidInt2, oidInt4, oidInt8, oidOID:
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return log.Value{}, fmt.Errorf("invalid input syntax for type integer: %q", s)
			}
			return log.Integer(n), nil
		case oidFloat4, oidFloat8:
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsNaN(f) {
				return log.Value{}, fmt.Errorf("invalid input syntax for type double precision: %q", s)
			}
			return log.Real(f), nil
		case oidNumeric:
			if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				return log.Integer(n), nil
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsNaN(f) {
				return log.Value{}, fmt.Errorf("invalid input syntax for type numeric: %q", s)
			}
			return log.Real(f), nil
		case oidBool:
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "t", "true", "y", "yes", "on", "1":
				return log.Integer(1), nil
			case "f", "false", "n", "no", "off", "0":
				return log.Integer(0), nil
			}
			return log.Value{}, fmt.Errorf("invalid input syntax for type boolean: %q", s)
		case oidBytea:
			if h, ok := strings.CutPrefix(s, `\x`); ok {
				b, err := hex.DecodeString(h)
				if err != nil {
					return log.Value{}, fmt.Errorf("invalid hexadecimal data for type bytea")
				}
				return log.Blob(b), nil
			}
			return log.Blob([]byte(s)), nil
		}
		return log.Text(s), nil
	}
	switch oid {
	case oidInt2:
		if len(src) != 2 {
			return log.Value{}, fmt.Errorf("binary int2 of %d bytes", len(src))
		}
		return log.Integer(int64(int16(binary.BigEndian.Uint16(src)))), nil
	case oidInt4, oidOID:
		if len(src) != 4 {
			return log.Value{}, fmt.Errorf("binary int4 of %d bytes", len(src))
		}
		if oid == oidOID {
			return log.Integer(int64(binary.BigEndian.Uint32(src))), nil
		}
		return log.Integer(int64(int32(binary.BigEndian.Uint32(src)))), nil
	case oidInt8:
		if len(src) != 8 {
			return log.Value{}, fmt.Errorf("binary int8 of %d bytes", len(src))
		}
		return log.Integer(int64(binary.BigEndian.Uint64(src))), nil
	case oidFloat4:
		if len(src) != 4 {
			return log.Value{}, fmt.Errorf("binary float4 of %d bytes", len(src))
		}
		return realValue(float64(math.Float32frombits(binary.BigEndian.Uint32(src))))
	case oidFloat8:
		if len(src) != 8 {
			return log.Value{}, fmt.Errorf("binary float8 of %d bytes", len(src))
		}
		return realValue(math.Float64frombits(binary.BigEndian.Uint64(src)))
	case oidBool:
		if len(src) != 1 {
			return log.Value{}, fmt.Errorf("binary bool of %d bytes", len(src))
		}
		if src[0] != 0 {
			return log.Integer(1), nil
		}
		return log.Integer(0), nil
	case oidBytea:
		return log.Blob(append([]byte(nil), src...)), nil
	case oidText, oidVarchar, oidBPChar, oidName, oidUnknown, oidJSON, 0:
		return log.Text(string(src)), nil
	}
	// Another type the client chose to send in binary (timestamp, uuid, numeric...): decode it
	// with pgx's codecs and keep its text form, as SQLite stores such values.
	var x any
	if err := m.Scan(oid, pgtype.BinaryFormatCode, src, &x); err != nil {
		return log.Value{}, fmt.Errorf("binary parameter of type %d: %v", oid, err)
	}
	switch x := x.(type) {
	case time.Time:
		return log.Text(x.UTC().Format("2006-01-02 15:04:05.999999999")), nil
	case [16]byte:
		return log.Text(fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])), nil
	case pgtype.Numeric:
		f, err := x.Float64Value()
		if err != nil {
			return log.Value{}, err
		}
		return realValue(f.Float64)
	case int64:
		return log.Integer(x), nil
	case float64:
		return realValue(x)
	case string:
		return log.Text(x), nil
	case []byte:
		return log.Blob(x), nil
	case bool:
		if x {
			return log.Integer(1), nil
		}
		return log.Integer(0), nil
	}
	return log.Text(fmt.Sprint(x)), nil
}

func realValue(f float64) (log.Value, error) {
	if math.IsNaN(f) {
		return log.Value{}, fmt.Errorf("NaN cannot be stored")
	}
	return log.Real(f), nil
}
