package gossip

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/patinadb/patina/log"
	"github.com/vmihailenco/msgpack/v5"
)

// Wire protocol (version 1). Every QUIC stream carries frames:
//
//	uvarint(n) | type byte | body (n-1 bytes)
//
// The first frame of every stream is a hello naming the sender's cluster, site and what
// the stream is for. Broadcast streams (unidirectional, one long-lived per peer) then carry
// changeset frames. Sync streams (bidirectional, one per session) carry, each way: a vector
// frame (or busy), changeset frames oldest first, and a done frame; or, with a peer whose
// metadata says it serves them, a session opens with a digest of the client's vector and
// the vectors travel only when the digests differ (sync.go).
//
// Frame types are append-only.
const (
	frameHello     byte = 1 // msgpack hello
	frameChangeset byte = 2 // hops byte | log.EncodeChangeset bytes
	frameVector    byte = 3 // msgpack vector (see encodeVector)
	frameBusy      byte = 4 // empty: the peer serves too many syncs
	frameDone      byte = 5 // msgpack doneMsg: the sender has sent all it had to send
	frameCleared   byte = 6 // msgpack clearedMsg: versions the sender holds cleared
	frameZstd      byte = 7 // another frame, compressed (compress.go); only to peers advertising nodeMeta.Zstd
	frameDigest    byte = 8 // digestLen bytes: a digest of the sender's vector (sync.go)
	frameTraced    byte = 9 // a changeset frame with its trace context (trace.go); only to peers advertising nodeMeta.Trace
)

// digestLen is the size of a vector digest: SHA-256 of the vector's canonical encoding,
// truncated. Two logs whose digests match hold the same versions (a false match needs a
// 128-bit collision).
const digestLen = 16

// vectorDigest returns the canonical encoding of v and its digest.
func vectorDigest(v *log.Vector) (enc []byte, digest [digestLen]byte, err error) {
	enc, err = encodeVector(v)
	if err != nil {
		return nil, digest, err
	}
	sum := sha256.Sum256(enc)
	copy(digest[:], sum[:])
	return enc, digest, nil
}

// decodeDigest returns a digest frame's body as a digest.
func decodeDigest(body []byte) (d [digestLen]byte, err error) {
	if len(body) != digestLen {
		return d, fmt.Errorf("%w: digest of %d bytes, want %d", ErrProtocol, len(body), digestLen)
	}
	copy(d[:], body)
	return d, nil
}

// protoVersion is the hello's version; a peer with another major version is refused.
const protoVersion = 1

// maxFrame bounds a frame so that a corrupt length cannot make a reader allocate without
// bound. A part of PartChanges changes must fit.
const maxFrame = 64 << 20

// Stream kinds named in the hello.
const (
	streamBroadcast uint8 = 1
	streamSync      uint8 = 2
)

type hello struct {
	V       int      `msgpack:"v"`
	Cluster string   `msgpack:"cluster"`
	Site    wireSite `msgpack:"site"`
	Kind    uint8    `msgpack:"kind"`
}

// wireSite is a site id as msgpack bin 16. Its decoder checks the length before reading:
// msgpack's own []byte decoding allocates whatever length the input claims, so a few
// hostile bytes could ask for gigabytes.
type wireSite log.SiteID

var (
	_ msgpack.CustomEncoder = (*wireSite)(nil)
	_ msgpack.CustomDecoder = (*wireSite)(nil)
)

func (s *wireSite) EncodeMsgpack(e *msgpack.Encoder) error { return e.EncodeBytes(s[:]) }

func (s *wireSite) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeBytesLen()
	if err != nil {
		return err
	}
	if n != len(s) {
		return fmt.Errorf("site id of %d bytes, want %d", n, len(s))
	}
	return d.ReadFull(s[:])
}

// clearedMsg names versions of one site that the sender holds cleared (compaction dropped
// all their changes): the receiver holds them from then on, with no payload. Ranges are flat
// [first, last, ...] pairs, so a run of a million cleared versions costs a few bytes.
type clearedMsg struct {
	Site   wireSite `msgpack:"site"`
	Ranges []uint64 `msgpack:"ranges"`
}

// maxClearedRanges bounds one cleared frame (a sender cuts longer lists into several).
const maxClearedRanges = 1 << 16

// clearedFrames encodes the cleared versions of site as frames of at most maxClearedRanges
// ranges each.
func clearedFrames(b []byte, site log.SiteID, rs log.RangeSet) ([]byte, error) {
	for len(rs) > 0 {
		n := min(len(rs), maxClearedRanges)
		m := clearedMsg{Site: wireSite(site), Ranges: make([]uint64, 0, 2*n)}
		for _, r := range rs[:n] {
			m.Ranges = append(m.Ranges, r.First, r.Last)
		}
		body, err := msgpack.Marshal(&m)
		if err != nil {
			return nil, err
		}
		b = appendFrame(b, frameCleared, body)
		rs = rs[n:]
	}
	return b, nil
}

// decodeCleared decodes and checks a cleared frame body: a non-zero site and valid,
// sorted, non-empty ranges of versions >= 1.
func decodeCleared(body []byte) (log.SiteID, log.RangeSet, error) {
	var m clearedMsg
	if err := msgpack.Unmarshal(body, &m); err != nil {
		return log.SiteID{}, nil, fmt.Errorf("%w: cleared: %w", ErrProtocol, err)
	}
	site := log.SiteID(m.Site)
	if site.IsZero() {
		return site, nil, fmt.Errorf("%w: cleared versions of a zero site id", ErrProtocol)
	}
	if len(m.Ranges)%2 != 0 || len(m.Ranges) == 0 || len(m.Ranges) > 2*maxClearedRanges {
		return site, nil, fmt.Errorf("%w: cleared: %d range bounds", ErrProtocol, len(m.Ranges))
	}
	rs := make(log.RangeSet, 0, len(m.Ranges)/2)
	for i := 0; i < len(m.Ranges); i += 2 {
		rs = append(rs, log.Range{First: m.Ranges[i], Last: m.Ranges[i+1]})
	}
	if err := rs.Valid(); err != nil {
		return site, nil, fmt.Errorf("%w: cleared: %w", ErrProtocol, err)
	}
	if rs[0].First == 0 {
		return site, nil, fmt.Errorf("%w: cleared: version 0", ErrProtocol)
	}
	return site, rs, nil
}

type doneMsg struct {
	Changesets uint64 `msgpack:"changesets"`
	Changes    uint64 `msgpack:"changes"`
	Cleared    uint64 `msgpack:"cleared,omitempty"` // versions sent as cleared ranges
	// Damaged counts versions the sender holds but could not read (a damaged file in its
	// log): the receiver must get them elsewhere. Older senders never set it.
	Damaged uint64 `msgpack:"damaged,omitempty"`
}

// appendFrame appends one frame to b.
func appendFrame(b []byte, typ byte, body []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(body)+1))
	b = append(b, typ)
	return append(b, body...)
}

// changesetFrame encodes cs with its hop budget as one frame.
func changesetFrame(cs *log.Changeset, hops int) ([]byte, error) {
	if hops < 0 {
		hops = 0
	}
	if hops > 255 {
		hops = 255
	}
	// The body is encoded once into a buffer sized for it, after room for the frame header,
	// which is then written just before it: encoded from nothing and copied behind its
	// header, each frame cost two copies and about ten buffers (7% of the bytes a node
	// allocated under 100-row batches, issue 14).
	const room = binary.MaxVarintLen64 + 1
	buf := make([]byte, room, room+1+log.EncodedSizeHint(cs))
	buf = append(buf, byte(hops))
	buf, err := log.AppendChangeset(buf, cs)
	if err != nil {
		return nil, err
	}
	body := len(buf) - room
	if body+1 > maxFrame {
		return nil, fmt.Errorf("changeset %v/%d: %d bytes exceeds the frame limit", cs.Site, cs.Version, body)
	}
	var hdr [room]byte
	n := binary.PutUvarint(hdr[:], uint64(body+1))
	hdr[n] = frameChangeset
	start := room - n - 1
	copy(buf[start:], hdr[:n+1])
	return buf[start:], nil
}

func msgFrame(typ byte, v any) ([]byte, error) {
	body, err := msgpack.Marshal(v)
	if err != nil {
		return nil, err
	}
	return appendFrame(nil, typ, body), nil
}

// frameReader reads frames from a stream.
type frameReader struct {
	r     *bufio.Reader
	bytes uint64 // total bytes read, for metrics
	// zwire and zplain total the wire and the unwrapped bytes of the zstd frames read.
	zwire, zplain uint64
	// trace is the trace context of the last frame read, when it came traced ("" if not).
	trace string
}

func newFrameReader(r io.Reader) *frameReader {
	size := 64 << 10
	// A reader of bytes at hand (a simulator's message, a test's buffer) needs no buffer
	// larger than they are: at 64 KiB per message the simulator spent a tenth of its time
	// clearing buffers. A stream (QUIC) has no length and gets the full buffer.
	if l, ok := r.(interface{ Len() int }); ok {
		size = min(size, max(l.Len(), 16))
	}
	return &frameReader{r: bufio.NewReaderSize(r, size)}
}

// buffered reports whether another frame's bytes are already at hand, so that a receiver
// can batch what arrived together without waiting.
func (fr *frameReader) buffered() bool { return fr.r.Buffered() > 0 }

// next reads one frame, unwrapping a zstd frame (compress.go). io.EOF only at a clean
// frame boundary.
func (fr *frameReader) next() (typ byte, body []byte, err error) {
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("%w: truncated frame header", ErrProtocol)
		}
		return 0, nil, fmt.Errorf("read frame: %w", err)
	}
	if n == 0 || n > maxFrame {
		return 0, nil, fmt.Errorf("%w: frame length %d", ErrProtocol, n)
	}
	var buf []byte
	if n <= 64<<10 {
		buf = make([]byte, n)
		if _, err := io.ReadFull(fr.r, buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, nil, fmt.Errorf("%w: truncated frame", ErrProtocol)
			}
			return 0, nil, err
		}
	} else {
		// A large frame grows with the bytes that really arrive: a header alone must not
		// make this node allocate up to maxFrame.
		var bb bytes.Buffer
		if _, err := bb.ReadFrom(io.LimitReader(fr.r, int64(n))); err != nil {
			return 0, nil, err
		}
		if uint64(bb.Len()) != n {
			return 0, nil, fmt.Errorf("%w: truncated frame", ErrProtocol)
		}
		buf = bb.Bytes()
	}
	fr.bytes += uint64(n) + uint64(uvarintLen(n))
	typ, body = buf[0], buf[1:]
	fr.trace = ""
	if typ == frameZstd {
		if typ, body, err = decodeZstdFrame(body); err != nil {
			return 0, nil, err
		}
		fr.zwire += uint64(n) + uint64(uvarintLen(n))
		fr.zplain += uint64(len(body)) + 1 + uint64(uvarintLen(uint64(len(body))+1))
	}
	if typ == frameTraced {
		if fr.trace, typ, body, err = decodeTracedFrame(body); err != nil {
			return 0, nil, err
		}
	}
	return typ, body, nil
}

func uvarintLen(n uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], n)
}

// decodeChangesetFrame returns the hop budget and the changeset of a changeset frame body.
func decodeChangesetFrame(body []byte) (int, *log.Changeset, error) {
	if len(body) < 1 {
		return 0, nil, fmt.Errorf("%w: empty changeset frame", ErrProtocol)
	}
	cs, err := log.DecodeChangeset(body[1:])
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	// Refuse an invalid changeset here, as a protocol error of its sender: handed to the
	// Applier it would fail the whole batch it arrived with.
	if err := cs.Validate(); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return int(body[0]), cs, nil
}

func decodeHello(typ byte, body []byte) (*hello, error) {
	if typ != frameHello {
		return nil, fmt.Errorf("%w: first frame is type %d, want hello", ErrProtocol, typ)
	}
	var h hello
	if err := msgpack.Unmarshal(body, &h); err != nil {
		return nil, fmt.Errorf("%w: hello: %w", ErrProtocol, err)
	}
	if h.V != protoVersion {
		return nil, fmt.Errorf("%w: protocol version %d, want %d", ErrProtocol, h.V, protoVersion)
	}
	if log.SiteID(h.Site).IsZero() {
		return nil, fmt.Errorf("%w: hello with a zero site id", ErrProtocol)
	}
	return &h, nil
}
