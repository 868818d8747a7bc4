package gossip

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/patinadb/patina/log"
)

// Wire compression: the one codec seam between frames and bytes on a link.
//
// A frame whose body is at least Config.CompressMinBytes may travel as a zstd frame:
//
//	uvarint(n) | frameZstd | inner type byte | uvarint(inner body length) | zstd(inner body)
//
// The frame reader unwraps it before anyone sees it (frameReader.next), so broadcast and
// sync code handle only the inner frame. It is flagged per frame, never per stream: a
// sender compresses only what saves bytes, and only for a peer whose membership metadata
// says it decodes zstd frames (nodeMeta.Zstd, set by every node that has this code). A
// node without it never advertises the flag and so never receives a zstd frame: mixed
// versions interoperate, each pair of new nodes compresses, and an old node gets plain
// frames from everyone.
//
// Bounds: the inner length is at most maxFrame and at most maxZstdRatio times the
// compressed bytes (a sender whose frame compresses better sends it plain), and the
// decoder never writes past that length, so a hostile frame cannot make a node allocate
// more than maxZstdRatio times the bytes it really received.

// maxZstdRatio bounds the ratio of an inner body to its compressed bytes; see above.
const maxZstdRatio = 256

// Compression names accepted by Config.Compression.
const (
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		// SpeedFastest: changesets are small and latency matters more than the last few
		// percent (bench/RESULTS.md has both levels' figures). One encoder is safe for
		// concurrent EncodeAll calls.
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(1<<20), zstd.WithZeroFrames(true))
		if err != nil {
			panic(err) // fixed, valid options
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		// DecodeAll writes at most cap(dst) (the length the frame announced, checked
		// against the ratio bound) and never takes the zstd frame header's word for it.
		d, err := zstd.NewReader(nil, zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxMemory(maxFrame),
			zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true))
		if err != nil {
			panic(err)
		}
		return d
	})
)

// compressFrame returns frame (one whole frame, as changesetFrame makes it) as a zstd
// frame, or nil when compressing does not pay: a body under min bytes, a compressed form
// no smaller, or one beyond the ratio bound.
func compressFrame(frame []byte, min int) []byte {
	n, hl := binary.Uvarint(frame)
	if hl <= 0 || n == 0 || uint64(len(frame)-hl) != n {
		return nil // not a whole frame: a caller's bug, sent plain
	}
	typ, body := frame[hl], frame[hl+1:]
	if len(body) < min || typ == frameZstd || typ == frameHello {
		return nil
	}
	out := make([]byte, binary.MaxVarintLen64+1, binary.MaxVarintLen64+2+binary.MaxVarintLen64+len(body)/2)
	out = append(out, typ)
	out = binary.AppendUvarint(out, uint64(len(body)))
	zstart := len(out)
	out = zstdEncoder().EncodeAll(body, out)
	inner := len(out) - (binary.MaxVarintLen64 + 1)
	if 1+inner+uvarintLen(uint64(inner+1)) >= len(frame) || len(body) > maxZstdRatio*(len(out)-zstart) {
		return nil
	}
	// The outer header goes right before the inner bytes, in the room left for it.
	hdr := binary.AppendUvarint(nil, uint64(inner+1))
	hdr = append(hdr, frameZstd)
	start := binary.MaxVarintLen64 + 1 - len(hdr)
	copy(out[start:], hdr)
	return out[start:]
}

// decodeZstdFrame returns the inner frame of a zstd frame's body.
func decodeZstdFrame(body []byte) (typ byte, inner []byte, err error) {
	if len(body) < 2 {
		return 0, nil, fmt.Errorf("%w: zstd frame of %d bytes", ErrProtocol, len(body))
	}
	typ = body[0]
	if typ == frameZstd || typ == frameHello || typ == 0 {
		return 0, nil, fmt.Errorf("%w: zstd frame wraps a frame of type %d", ErrProtocol, typ)
	}
	n, hl := binary.Uvarint(body[1:])
	if hl <= 0 {
		return 0, nil, fmt.Errorf("%w: zstd frame: bad length", ErrProtocol)
	}
	z := body[1+hl:]
	if n >= maxFrame || n > uint64(maxZstdRatio)*uint64(len(z)) {
		return 0, nil, fmt.Errorf("%w: zstd frame: %d bytes from %d", ErrProtocol, n, len(z))
	}
	out, err := zstdDecoder().DecodeAll(z, make([]byte, 0, n))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: zstd frame: %w", ErrProtocol, err)
	}
	if uint64(len(out)) != n {
		return 0, nil, fmt.Errorf("%w: zstd frame: %d bytes, announced %d", ErrProtocol, len(out), n)
	}
	return typ, out, nil
}

// compressing reports whether this node compresses frames it sends to a peer whose
// metadata advertises zstd.
func (g *Gossip) compressing() bool { return g.cfg.Compression == CompressionZstd }

// peerZstd reports whether the member site decodes zstd frames (its metadata says so).
func (g *Gossip) peerZstd(site log.SiteID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	info := g.known[site]
	return info != nil && info.meta != nil && info.meta.Zstd
}

// countCompressed records a frame sent compressed: its plain and its wire size.
func (g *Gossip) countCompressed(path string, plain, wire int) {
	g.m.zstdPlain.WithLabelValues(path, "sent").Add(float64(plain))
	g.m.zstdWire.WithLabelValues(path, "sent").Add(float64(wire))
}

// countReceived records the zstd frames fr read since seen (its zwire and zplain then),
// and moves seen on.
func (g *Gossip) countReceived(path string, fr *frameReader, seen *[2]uint64) {
	if fr.zwire == seen[0] {
		return
	}
	g.m.zstdWire.WithLabelValues(path, "received").Add(float64(fr.zwire - seen[0]))
	g.m.zstdPlain.WithLabelValues(path, "received").Add(float64(fr.zplain - seen[1]))
	seen[0], seen[1] = fr.zwire, fr.zplain
}
