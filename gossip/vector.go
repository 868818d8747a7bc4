package gossip

import (
	"fmt"

	"github.com/patinadb/patina/log"
)

// Vectors travel in the log's own binary form (log.EncodeVector: a format byte, then
// msgpack ranges), so that the wire and the disk share one validated, fuzzed codec and a
// vector can never mean something different to sync than to the log.

// encodeVector returns the wire form of v.
func encodeVector(v *log.Vector) ([]byte, error) { return log.EncodeVector(v) }

// decodeVector reads the wire form; any malformed input is an error wrapping ErrProtocol
// (and the log's DecodeError with its offset), never a panic.
func decodeVector(b []byte) (*log.Vector, error) {
	v, err := log.DecodeVector(b)
	if err != nil {
		return nil, fmt.Errorf("%w: vector: %w", ErrProtocol, err)
	}
	return v, nil
}

// lackCount is how many complete versions theirs holds that ours does not: how much a sync
// with that peer would bring.
func lackCount(ours, theirs *log.Vector) uint64 {
	var n uint64
	for site, sv := range theirs.Sites {
		if sv == nil {
			continue
		}
		if o := ours.Sites[site]; o != nil {
			n += sv.Versions.Subtract(o.Versions).Count()
		} else {
			n += sv.Versions.Count()
		}
	}
	return n
}
