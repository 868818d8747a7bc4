package log

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key spaces of the Pebble store (doc.go describes the layout). Integers are big-endian so
// that Pebble's bytewise order is numeric order.
const (
	pfxMeta     byte = 0x01 // 0x01 name -> internal metadata
	pfxUserMeta byte = 0x02 // 0x02 name -> Meta/SetMeta values
	pfxData     byte = 0x03 // 0x03 site(16) version(8) first_seq(8) -> encoded changeset part
	pfxArrival  byte = 0x04 // 0x04 seq(8) -> site(16) version(8)
	pfxVector   byte = 0x05 // 0x05 site(16) -> complete versions (format byte, ranges)
	pfxPartial  byte = 0x06 // 0x06 site(16) version(8) -> partial (format byte, last_seq, ranges)
	pfxCleared  byte = 0x07 // 0x07 site(16) -> cleared versions (format byte, ranges)
)

// Internal metadata names.
const (
	metaSiteID = "site_id"
	metaFormat = "format"
	metaStats  = "stats" // changes(8) bytes(8) held
	// metaCompaction: horizon seq(8), horizon ts(8), changes dropped(8), versions cleared(8).
	metaCompaction = "compaction"
)

func metaKey(name string) []byte { return append([]byte{pfxMeta}, name...) }

func userMetaKey(name string) []byte { return append([]byte{pfxUserMeta}, name...) }

func dataKey(b []byte, site SiteID, v Version, first uint64) []byte {
	b = append(b, pfxData)
	b = append(b, site[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(v))
	return binary.BigEndian.AppendUint64(b, first)
}

func arrivalKey(seq Seq) []byte {
	return binary.BigEndian.AppendUint64([]byte{pfxArrival}, uint64(seq))
}

func arrivalValue(site SiteID, v Version) []byte {
	b := make([]byte, 0, 24)
	b = append(b, site[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func vectorKey(site SiteID) []byte { return append([]byte{pfxVector}, site[:]...) }

func clearedKey(site SiteID) []byte { return append([]byte{pfxCleared}, site[:]...) }

func partialKey(site SiteID, v Version) []byte {
	b := append([]byte{pfxPartial}, site[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// incPrefix returns the smallest key greater than every key with prefix p (p must not be all
// 0xff bytes), for an iterator's exclusive upper bound.
func incPrefix(p []byte) []byte {
	out := append([]byte(nil), p...)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] != 0xff {
			out[i]++
			return out[:i+1]
		}
	}
	return nil
}

func encodePartialValue(p *Partial) []byte {
	b := binary.AppendUvarint([]byte{FormatV1}, p.LastOrd)
	return AppendRanges(b, p.Held)
}

func decodePartialValue(b []byte) (*Partial, error) {
	if len(b) == 0 || b[0] != FormatV1 {
		return nil, &DecodeError{What: "partial", Err: errors.New("unknown format")}
	}
	ls, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return nil, &DecodeError{What: "partial", Off: 1, Err: fmt.Errorf("bad last_seq")}
	}
	rs, err := DecodeRanges("partial", b[1+n:], true)
	if err != nil {
		return nil, err
	}
	return &Partial{LastOrd: ls, Held: rs}, nil
}
