package format

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
)

// Digest is a version's content digest: the first 16 bytes of SHA-256 over its site,
// version, kind, last ordinal and every change (see ComputeDigest). Zero means absent (a
// changeset from before digests, or a part or compacted copy whose origin did not say).
type Digest [16]byte

// IsZero reports whether d is absent.
func (d Digest) IsZero() bool { return d == Digest{} }

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// digestable reports whether the digest of cs can be computed from cs alone: it holds the
// whole version, uncompacted.
func (cs *Changeset) digestable() bool { return !cs.IsPart() && !cs.Compacted }

// ComputeDigest computes the digest of a whole, uncompacted version (ok false otherwise).
// The TS and the local arrival seq are not part of it: they are diagnostics and node-local.
// The layout is fixed (length-prefixed fields, big-endian integers): every node must compute
// the same bytes for the same content, whatever encoder wrote the changeset.
func (cs *Changeset) ComputeDigest() (d Digest, ok bool) {
	if !cs.digestable() {
		return d, false
	}
	h := sha256.New()
	var buf [64]byte
	b := append(buf[:0], "patina-digest-1"...)
	b = append(b, cs.Site[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(cs.Version))
	b = append(b, byte(cs.Kind))
	b = binary.BigEndian.AppendUint64(b, cs.LastOrd)
	h.Write(b)
	str := func(b []byte, s []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		return append(b, s...)
	}
	var scratch []byte
	for i := range cs.Changes {
		c := &cs.Changes[i]
		b := scratch[:0]
		b = str(b, []byte(c.Table))
		b = str(b, c.PK)
		b = str(b, []byte(c.CID))
		b = append(b, byte(c.Val.Type))
		switch c.Val.Type {
		case TypeInteger:
			b = binary.BigEndian.AppendUint64(b, uint64(c.Val.Int))
		case TypeReal:
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.Val.Real))
		case TypeText:
			b = str(b, []byte(c.Val.Text))
		case TypeBlob:
			b = str(b, c.Val.Blob)
		}
		b = binary.BigEndian.AppendUint64(b, c.ColVersion)
		b = binary.BigEndian.AppendUint64(b, c.CL)
		b = binary.BigEndian.AppendUint64(b, c.Ord)
		h.Write(b)
		scratch = b
	}
	copy(d[:], h.Sum(nil))
	return d, true
}
