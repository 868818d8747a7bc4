package format

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strings"
)

// PK is a row's primary key values packed with cr-sqlite's encoding (docs/DESIGN.md section 2), so
// equal keys give equal bytes and Corrosion's pk bytes mean the same here. Byte 0 is the
// column count; each column is a tag byte (n<<3)|type and a payload.
type PK []byte

// pk type tags, as cr-sqlite writes them.
const (
	pkInteger = 1
	pkReal    = 2
	pkText    = 3
	pkBlob    = 4
	pkNull    = 5
)

// PackPK packs primary key values in declared pk order.
func PackPK(vals ...Value) (PK, error) {
	if len(vals) == 0 || len(vals) > 255 {
		return nil, invalidf("pk: %d columns, want 1..255", len(vals))
	}
	b := make([]byte, 1, 1+10*len(vals))
	b[0] = byte(len(vals))
	for _, v := range vals {
		switch v.Type {
		case TypeNull:
			b = append(b, pkNull)
		case TypeInteger:
			if v.Int < 0 {
				b = append(b, 8<<3|pkInteger)
				b = binary.BigEndian.AppendUint64(b, uint64(v.Int))
			} else {
				n := minBytes(uint64(v.Int))
				b = append(b, byte(n<<3|pkInteger))
				b = appendBE(b, uint64(v.Int), n)
			}
		case TypeReal:
			if math.IsNaN(v.Real) {
				return nil, invalidf("pk: NaN")
			}
			f := v.Real
			if f == 0 {
				f = 0 // -0.0 is stored as 0.0
			}
			b = append(b, pkReal)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(f))
		case TypeText, TypeBlob:
			var payload []byte
			tag := byte(pkText)
			if v.Type == TypeBlob {
				payload, tag = v.Blob, pkBlob
			} else {
				payload = []byte(v.Text)
			}
			n := minBytes(uint64(len(payload)))
			b = append(b, byte(n<<3)|tag)
			b = appendBE(b, uint64(len(payload)), n)
			b = append(b, payload...)
		default:
			return nil, invalidf("pk: unknown value type %d", v.Type)
		}
	}
	return PK(b), nil
}

// MustPackPK is PackPK for tests and constants; it panics on error.
func MustPackPK(vals ...Value) PK {
	pk, err := PackPK(vals...)
	if err != nil {
		panic(err)
	}
	return pk
}

func minBytes(x uint64) int {
	n := 0
	for x > 0 {
		n++
		x >>= 8
	}
	return n
}

func appendBE(b []byte, x uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(x>>(8*i)))
	}
	return b
}

var errPKTrunc = errors.New("truncated")

// UnpackPK decodes packed pk bytes. Only the canonical form PackPK writes is accepted, so
// that Pack(Unpack(b)) == b for every b that decodes.
func UnpackPK(pk []byte) ([]Value, error) { return unpackPK(pk, true) }

// validatePK checks pk as UnpackPK does without building its values (the decoder validates
// every change's pk).
func validatePK(pk []byte) error {
	_, err := unpackPK(pk, false)
	return err
}

// unpackPK decodes pk; with emit false it only checks it and allocates nothing.
func unpackPK(pk []byte, emit bool) ([]Value, error) {
	fail := func(off int, err error) ([]Value, error) {
		return nil, &DecodeError{What: "pk", Off: int64(off), Err: err}
	}
	if len(pk) == 0 {
		return fail(0, errPKTrunc)
	}
	ncols := int(pk[0])
	if ncols == 0 {
		return fail(0, errors.New("zero columns"))
	}
	var vals []Value
	if emit {
		vals = make([]Value, 0, ncols)
	}
	off := 1
	for c := 0; c < ncols; c++ {
		if off >= len(pk) {
			return fail(off, errPKTrunc)
		}
		tag := pk[off]
		typ, n := tag&7, int(tag>>3)
		off++
		switch typ {
		case pkNull:
			if n != 0 {
				return fail(off-1, errors.New("null with a length"))
			}
			vals = appendIf(emit, vals, Null())
		case pkInteger:
			if n > 8 || off+n > len(pk) {
				return fail(off, errPKTrunc)
			}
			raw := pk[off : off+n]
			off += n
			if n == 8 && raw[0]&0x80 != 0 {
				vals = appendIf(emit, vals, Integer(int64(binary.BigEndian.Uint64(raw))))
				continue
			}
			if n > 0 && raw[0] == 0 {
				return fail(off-n, errors.New("integer not minimal"))
			}
			var x uint64
			for _, c := range raw {
				x = x<<8 | uint64(c)
			}
			vals = appendIf(emit, vals, Integer(int64(x)))
		case pkReal:
			if n != 0 {
				return fail(off-1, errors.New("real with a length"))
			}
			if off+8 > len(pk) {
				return fail(off, errPKTrunc)
			}
			f := math.Float64frombits(binary.BigEndian.Uint64(pk[off:]))
			if math.IsNaN(f) || (f == 0 && math.Signbit(f)) {
				return fail(off, errors.New("real not canonical"))
			}
			off += 8
			vals = appendIf(emit, vals, Real(f))
		case pkText, pkBlob:
			if n > 4 || off+n > len(pk) {
				return fail(off, errPKTrunc)
			}
			raw := pk[off : off+n]
			if n > 0 && raw[0] == 0 {
				return fail(off, errors.New("length not minimal"))
			}
			var l uint64
			for _, c := range raw {
				l = l<<8 | uint64(c)
			}
			off += n
			if l > uint64(len(pk)-off) {
				return fail(off, errPKTrunc)
			}
			payload := pk[off : off+int(l)]
			off += int(l)
			switch {
			case !emit:
			case typ == pkText:
				vals = append(vals, Text(string(payload)))
			default:
				vals = append(vals, Blob(append([]byte{}, payload...)))
			}
		default:
			return fail(off-1, errors.New("unknown type tag"))
		}
	}
	if off != len(pk) {
		return fail(off, errors.New("trailing bytes"))
	}
	return vals, nil
}

// Values is UnpackPK.
func (pk PK) Values() ([]Value, error) { return UnpackPK(pk) }

// String shows the pk as its values, e.g. (1, 'a'), or as hex when it does not decode.
func (pk PK) String() string {
	vals, err := UnpackPK(pk)
	if err != nil {
		return "X'" + strings.ToUpper(hex.EncodeToString(pk)) + "'"
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = v.Quote()
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func appendIf(emit bool, vals []Value, v Value) []Value {
	if !emit {
		return vals
	}
	return append(vals, v)
}
