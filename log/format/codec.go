package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// FormatV1 is the leading format version byte of every encoded changeset and vector.
// A new layout gets a new byte; decoders keep reading the old ones.
const FormatV1 byte = 1

// Changeset wire layout (format 1), after the version byte, one msgpack array:
//
//	[site bin16, version uint, ts uint, first uint, last uint, last_seq uint, kind uint,
//	 changes [[table str, pk bin, cid str, val, col_version uint, cl uint, seq uint], ...],
//	 local_seq uint, compacted bool, digest bin16]
//
// compacted is written only when true or when a digest follows (older changesets have 9
// fields); digest (issue 12: the content digest, see ComputeDigest) only when known, so
// changesets written before it (9 or 10 fields) read as before, and older readers skip it.
// val is msgpack nil, int, float64, str or bin for NULL, INTEGER, REAL, TEXT and BLOB, so the
// storage class travels exactly. Decoders ignore extra trailing array elements, so fields can
// be appended without a new format byte.

var encPool = sync.Pool{New: func() any {
	e := msgpack.NewEncoder(nil)
	e.UseCompactInts(true)
	return e
}}

type byteWriter struct{ b []byte }

func (w *byteWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func (w *byteWriter) WriteByte(c byte) error { w.b = append(w.b, c); return nil }

func (w *byteWriter) WriteString(s string) (int, error) { w.b = append(w.b, s...); return len(s), nil }

// EncodeChangeset returns the binary (msgpack) form of cs.
func EncodeChangeset(cs *Changeset) ([]byte, error) {
	return AppendChangeset(make([]byte, 0, encodedSizeHint(cs)), cs)
}

// EncodedSizeHint bounds the length of cs's binary form from above (tightly): a buffer of
// that much spare capacity lets AppendChangeset encode without growing it.
func EncodedSizeHint(cs *Changeset) int { return encodedSizeHint(cs) }

// encodedSizeHint bounds the encoded size of cs from above (tightly: each header and
// integer at the size msgpack gives it), so that encoding allocates its buffer once. Grown
// from nothing, the buffer was reallocated and copied about ten times per 100-row changeset:
// a fifth of the bytes a cluster allocated under 100-row batches (every node encodes every
// version it stores, and gossip every frame it sends).
func encodedSizeHint(cs *Changeset) int {
	n := 1 + 1 + 2 + 16 + 5*9 + 1 + 5 + 9 + 1 + 2 + 16 // format, array, site, 5 uints, kind, changes header, seq, compacted, digest
	for i := range cs.Changes {
		c := &cs.Changes[i]
		n += 1 + strSize(len(c.Table)) + binSize(len(c.PK)) + strSize(len(c.CID)) + uintSize(c.ColVersion) + uintSize(c.CL) + uintSize(c.Ord)
		switch c.Val.Type {
		case TypeText:
			n += strSize(len(c.Val.Text))
		case TypeBlob:
			n += binSize(len(c.Val.Blob))
		default:
			n += 9
		}
	}
	return n
}

func strSize(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n < 1<<8:
		return 2 + n
	case n < 1<<16:
		return 3 + n
	}
	return 5 + n
}

func binSize(n int) int {
	switch {
	case n < 1<<8:
		return 2 + n
	case n < 1<<16:
		return 3 + n
	}
	return 5 + n
}

func uintSize(u uint64) int {
	switch {
	case u < 128:
		return 1
	case u < 1<<8:
		return 2
	case u < 1<<16:
		return 3
	case u < 1<<32:
		return 5
	}
	return 9
}

// AppendChangeset appends the binary form of cs to b.
func AppendChangeset(b []byte, cs *Changeset) ([]byte, error) {
	w := &byteWriter{b: append(b, FormatV1)}
	e := encPool.Get().(*msgpack.Encoder)
	e.Reset(w)
	err := encodeChangeset(e, cs)
	e.Reset(nil)
	encPool.Put(e)
	if err != nil {
		return nil, fmt.Errorf("encode changeset: %w", err)
	}
	return w.b, nil
}

// MustEncode is EncodeChangeset for tests; it panics on error.
func (cs *Changeset) MustEncode() []byte {
	b, err := EncodeChangeset(cs)
	if err != nil {
		panic(err)
	}
	return b
}

func encodeChangeset(e *msgpack.Encoder, cs *Changeset) error {
	switch {
	case !cs.Digest.IsZero():
		e.EncodeArrayLen(11)
	case cs.Compacted:
		e.EncodeArrayLen(10)
	default:
		e.EncodeArrayLen(9)
	}
	e.EncodeBytes(cs.Site[:])
	e.EncodeUint(uint64(cs.Version))
	e.EncodeUint(uint64(cs.TS))
	e.EncodeUint(cs.Span.First)
	e.EncodeUint(cs.Span.Last)
	e.EncodeUint(cs.LastOrd)
	e.EncodeUint(uint64(cs.Kind))
	e.EncodeArrayLen(len(cs.Changes))
	for i := range cs.Changes {
		c := &cs.Changes[i]
		e.EncodeArrayLen(7)
		e.EncodeString(c.Table)
		e.EncodeBytes(c.PK)
		e.EncodeString(c.CID)
		if err := encodeValue(e, c.Val); err != nil {
			return err
		}
		e.EncodeUint(c.ColVersion)
		e.EncodeUint(c.CL)
		e.EncodeUint(c.Ord)
	}
	// The byteWriter never fails, so only the last error matters.
	if !cs.Digest.IsZero() {
		e.EncodeUint(uint64(cs.Seq))
		e.EncodeBool(cs.Compacted)
		return e.EncodeBytes(cs.Digest[:])
	}
	if cs.Compacted {
		e.EncodeUint(uint64(cs.Seq))
		return e.EncodeBool(true)
	}
	return e.EncodeUint(uint64(cs.Seq))
}

func encodeValue(e *msgpack.Encoder, v Value) error {
	switch v.Type {
	case TypeNull:
		return e.EncodeNil()
	case TypeInteger:
		return e.EncodeInt(v.Int)
	case TypeReal:
		return e.EncodeFloat64(v.Real)
	case TypeText:
		return e.EncodeString(v.Text)
	case TypeBlob:
		if v.Blob == nil {
			return e.EncodeBytes([]byte{})
		}
		return e.EncodeBytes(v.Blob)
	}
	return invalidf("value: unknown type %d", v.Type)
}

// decoder wraps msgpack.Decoder over a bytes.Reader so that every length read from the
// input is checked against the bytes that remain before anything is allocated. Decoders are
// pooled; byte and string payloads are sliced out of one copy of the input (arena, and strs
// over the same memory), so a changeset of n changes costs a few allocations, not 3n:
// decoding is on the Tail path, which must read millions of changes a second, and on every
// received frame. A payload keeps its changeset's copy alive, which is the changeset's own
// lifetime in practice. Strings and byte slices share the copy safely because every payload
// is read once, so no string and no byte slice cover the same byte: a caller writing into a
// PK or a blob (capacity-capped, so append copies) never changes a string.
type decoder struct {
	r     bytes.Reader
	d     *msgpack.Decoder
	src   []byte
	size  int64
	what  string
	arena []byte // a copy of src, made on the first bin or str payload
	strs  string // the same memory as arena, as a string
}

var decPool = sync.Pool{New: func() any {
	d := &decoder{}
	d.d = msgpack.NewDecoder(&d.r)
	return d
}}

func newDecoder(what string, b []byte) *decoder {
	d := decPool.Get().(*decoder)
	d.r.Reset(b)
	d.d.Reset(&d.r)
	d.src, d.size, d.what = b, int64(len(b)), what
	return d
}

// release returns d to the pool; nothing decoded shares memory with it.
func (d *decoder) release() {
	d.r.Reset(nil)
	d.src, d.arena, d.strs = nil, nil, ""
	decPool.Put(d)
}

func (d *decoder) off() int64 { return d.size - int64(d.r.Len()) }

func (d *decoder) fail(err error) error {
	return &DecodeError{What: d.what, Off: d.off(), Err: err}
}

var errTooLong = errors.New("length exceeds input")

// minChangeBytes is the smallest encoding of one change: an array header and 7 one-byte fields.
const minChangeBytes = 8

func (d *decoder) arrayLen() (int, error) {
	n, err := d.d.DecodeArrayLen()
	if err != nil {
		return 0, d.fail(err)
	}
	if n < 0 {
		return 0, d.fail(errors.New("nil array"))
	}
	if n > d.r.Len() {
		return 0, d.fail(errTooLong)
	}
	return n, nil
}

// payload reads a str or bin header and skips its payload, returning where it lies in src.
func (d *decoder) payload() (off, n int, err error) {
	n, err = d.d.DecodeBytesLen()
	if err != nil {
		return 0, 0, d.fail(err)
	}
	if n < 0 {
		return 0, 0, d.fail(errors.New("nil where bytes expected"))
	}
	if n > d.r.Len() {
		return 0, 0, d.fail(errTooLong)
	}
	off = int(d.off())
	if _, err := d.r.Seek(int64(n), io.SeekCurrent); err != nil {
		return 0, 0, d.fail(err)
	}
	return off, n, nil
}

// rawBytes reads a str or bin payload as bytes of the arena (capacity capped, so that an
// append by the caller never runs into the next payload).
func (d *decoder) rawBytes() ([]byte, error) {
	off, n, err := d.payload()
	if err != nil {
		return nil, err
	}
	d.copySrc()
	return d.arena[off : off+n : off+n], nil
}

// copySrc makes the one copy of the input that payloads are sliced from (before, the bytes
// and the strings had a copy each: two copies of every decoded frame, 4% of a cluster's CPU
// under 100-row batches).
func (d *decoder) copySrc() {
	if d.arena == nil && len(d.src) > 0 {
		d.arena = bytes.Clone(d.src)
		d.strs = unsafe.String(unsafe.SliceData(d.arena), len(d.arena))
	}
}

// rawString reads a str or bin payload as a substring of strs.
func (d *decoder) rawString() (string, error) {
	off, n, err := d.payload()
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", nil
	}
	d.copySrc()
	return d.strs[off : off+n], nil
}

func (d *decoder) str() (string, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return "", d.fail(err)
	}
	if !msgpcode.IsString(c) {
		return "", d.fail(fmt.Errorf("code %#x: want a string", c))
	}
	return d.rawString()
}

func (d *decoder) bin() ([]byte, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return nil, d.fail(err)
	}
	if !msgpcode.IsBin(c) {
		return nil, d.fail(fmt.Errorf("code %#x: want bytes", c))
	}
	return d.rawBytes()
}

func (d *decoder) uint() (uint64, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return 0, d.fail(err)
	}
	if c == msgpcode.Uint64 {
		n, err := d.d.DecodeUint64()
		if err != nil {
			return 0, d.fail(err)
		}
		return n, nil
	}
	if !isInt(c) {
		return 0, d.fail(fmt.Errorf("code %#x: want an unsigned integer", c))
	}
	n, err := d.d.DecodeInt64()
	if err != nil {
		return 0, d.fail(err)
	}
	if n < 0 {
		return 0, d.fail(fmt.Errorf("negative %d where unsigned expected", n))
	}
	return uint64(n), nil
}

func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64)
}

func (d *decoder) value() (Value, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return Value{}, d.fail(err)
	}
	switch {
	case c == msgpcode.Nil:
		_ = d.d.DecodeNil()
		return Null(), nil
	case c == msgpcode.Uint64:
		n, err := d.d.DecodeUint64()
		if err != nil {
			return Value{}, d.fail(err)
		}
		if n > 1<<63-1 {
			return Value{}, d.fail(errors.New("integer out of int64 range"))
		}
		return Integer(int64(n)), nil
	case isInt(c):
		n, err := d.d.DecodeInt64()
		if err != nil {
			return Value{}, d.fail(err)
		}
		return Integer(n), nil
	case c == msgpcode.Float || c == msgpcode.Double:
		f, err := d.d.DecodeFloat64()
		if err != nil {
			return Value{}, d.fail(err)
		}
		v := Real(f)
		if err := v.Validate(); err != nil {
			return Value{}, d.fail(err)
		}
		return v, nil
	case msgpcode.IsString(c):
		str, err := d.rawString()
		if err != nil {
			return Value{}, err
		}
		return Text(str), nil
	case msgpcode.IsBin(c):
		b, err := d.rawBytes()
		if err != nil {
			return Value{}, err
		}
		return Blob(b), nil
	}
	return Value{}, d.fail(fmt.Errorf("code %#x is not a SQLite value", c))
}

// skipExtra skips array elements a newer writer appended.
func (d *decoder) skipExtra(n int) error {
	for ; n > 0; n-- {
		if err := d.d.Skip(); err != nil {
			return d.fail(err)
		}
	}
	return nil
}

// DecodeChangeset decodes the binary form and validates the result. It returns an error,
// never panics, on any malformed input; a changeset it returns is always valid.
func DecodeChangeset(b []byte) (*Changeset, error) {
	if len(b) == 0 {
		return nil, &DecodeError{What: "changeset", Err: io.ErrUnexpectedEOF}
	}
	if b[0] != FormatV1 {
		return nil, &DecodeError{What: "changeset", Err: fmt.Errorf("unknown format version %d", b[0])}
	}
	d := newDecoder("changeset", b[1:])
	defer d.release()
	cs, err := d.changeset()
	if err != nil {
		return nil, err
	}
	if d.r.Len() != 0 {
		return nil, d.fail(errors.New("trailing bytes"))
	}
	if err := cs.Validate(); err != nil {
		return nil, &DecodeError{What: "changeset", Off: d.off(), Err: err}
	}
	return cs, nil
}

// changeset reads the positional array that encodeChangeset writes. It is long (about 100
// lines) on purpose: one step per field, in wire order, so it reads beside the layout
// comment at the top of this file; cutting it up would scatter the layout.
func (d *decoder) changeset() (*Changeset, error) {
	n, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	if n < 8 {
		return nil, d.fail(fmt.Errorf("changeset array of %d fields, want at least 8", n))
	}
	cs := &Changeset{}
	site, err := d.bin()
	if err != nil {
		return nil, err
	}
	if len(site) != len(cs.Site) {
		return nil, d.fail(fmt.Errorf("site id of %d bytes", len(site)))
	}
	copy(cs.Site[:], site)
	var u [6]uint64
	for i := range u {
		if u[i], err = d.uint(); err != nil {
			return nil, err
		}
	}
	if u[5] > 255 {
		return nil, d.fail(fmt.Errorf("kind %d", u[5]))
	}
	cs.Version, cs.TS = Version(u[0]), Timestamp(u[1])
	cs.Span, cs.LastOrd, cs.Kind = OrdRange{u[2], u[3]}, u[4], Kind(u[5])
	nc, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	// A Change is ~18 times the 8 bytes its smallest encoding takes: size the slice by the
	// bytes that remain, so a hostile count cannot make the decoder allocate more than what
	// the input could really hold.
	if nc > d.r.Len()/minChangeBytes {
		return nil, d.fail(fmt.Errorf("%d changes in %d bytes", nc, d.r.Len()))
	}
	cs.Changes = make([]Change, nc)
	for i := range cs.Changes {
		c := &cs.Changes[i]
		fields, err := d.arrayLen()
		if err != nil {
			return nil, err
		}
		if fields < 7 {
			return nil, d.fail(fmt.Errorf("change array of %d fields, want at least 7", fields))
		}
		if c.Table, err = d.str(); err != nil {
			return nil, err
		}
		if c.PK, err = d.bin(); err != nil {
			return nil, err
		}
		if c.CID, err = d.str(); err != nil {
			return nil, err
		}
		if c.Val, err = d.value(); err != nil {
			return nil, err
		}
		if c.ColVersion, err = d.uint(); err != nil {
			return nil, err
		}
		if c.CL, err = d.uint(); err != nil {
			return nil, err
		}
		if c.Ord, err = d.uint(); err != nil {
			return nil, err
		}
		if err := d.skipExtra(fields - 7); err != nil {
			return nil, err
		}
	}
	if n >= 9 {
		seq, err := d.uint()
		if err != nil {
			return nil, err
		}
		cs.Seq = Seq(seq)
		n--
	}
	if n >= 9 {
		c, err := d.d.DecodeBool()
		if err != nil {
			return nil, d.fail(fmt.Errorf("compacted flag: %w", err))
		}
		cs.Compacted = c
		n--
	}
	if n >= 9 {
		dg, err := d.bin()
		if err != nil {
			return nil, err
		}
		if len(dg) != len(cs.Digest) {
			return nil, d.fail(fmt.Errorf("digest of %d bytes", len(dg)))
		}
		cs.Digest = Digest(dg)
		n--
	}
	if err := d.skipExtra(n - 8); err != nil {
		return nil, err
	}
	return cs, nil
}
