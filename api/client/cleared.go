package client

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/patinadb/patina/log/format"
)

// Cleared versions in a backup (issue 11): a compacted log holds versions whose changes
// were all superseded as ranges without data ("cleared"). A backup carries them in one JSON
// frame after its changesets, in the framing of the changeset stream (4-byte big-endian
// length, then the bytes; a frame starting with '{' is JSON, never a changeset):
//
//	{"cleared": {"<site id>": [[first, last], ...], ...}}
//
// A restore (or POST /v1/changes) records them, so the restored node has no gaps where the
// backed-up one had cleared versions, and its own site's next version comes after them.

// clearedJSON is the frame's body.
type clearedJSON struct {
	Cleared map[format.SiteID][][2]uint64 `json:"cleared"`
}

// ClearedOf lists the cleared versions of every site of v that has any.
func ClearedOf(v *format.Vector) map[format.SiteID]format.RangeSet {
	out := map[format.SiteID]format.RangeSet{}
	for site, sv := range v.Sites {
		if len(sv.Cleared) > 0 {
			out[site] = sv.Cleared.Clone()
		}
	}
	return out
}

// AppendClearedFrame appends the frame holding cleared (length included) to b.
func AppendClearedFrame(b []byte, cleared map[format.SiteID]format.RangeSet) ([]byte, error) {
	body, err := json.Marshal(clearedJSON{Cleared: encodeCleared(cleared)})
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...), nil
}

func encodeCleared(cleared map[format.SiteID]format.RangeSet) map[format.SiteID][][2]uint64 {
	out := make(map[format.SiteID][][2]uint64, len(cleared))
	for site, rs := range cleared {
		pairs := make([][2]uint64, len(rs))
		for i, r := range rs {
			pairs[i] = [2]uint64{r.First, r.Last}
		}
		out[site] = pairs
	}
	return out
}

// IsClearedFrame reports whether a frame's bytes (without the length) are a cleared frame
// rather than a changeset or another JSON event.
func IsClearedFrame(frame []byte) bool {
	if len(frame) == 0 || frame[0] != '{' {
		return false
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal(frame, &probe) != nil {
		return false
	}
	for k := range probe {
		if strings.EqualFold(k, "cleared") { // as encoding/json matches field names
			return true
		}
	}
	return false
}

// DecodeClearedFrame decodes a cleared frame's bytes (without the length) and checks it:
// non-zero sites, ranges in order, disjoint, from version 1 on.
func DecodeClearedFrame(frame []byte) (map[format.SiteID]format.RangeSet, error) {
	var m clearedJSON
	if err := json.Unmarshal(frame, &m); err != nil {
		return nil, fmt.Errorf("cleared versions: %w", err)
	}
	if m.Cleared == nil {
		return nil, fmt.Errorf("cleared versions: no \"cleared\" object")
	}
	return decodeCleared(m.Cleared)
}

func decodeCleared(m map[format.SiteID][][2]uint64) (map[format.SiteID]format.RangeSet, error) {
	out := make(map[format.SiteID]format.RangeSet, len(m))
	for site, pairs := range m {
		if site.IsZero() {
			return nil, fmt.Errorf("cleared versions: zero site id")
		}
		rs := make(format.RangeSet, 0, len(pairs))
		for _, p := range pairs {
			rs = append(rs, format.Range{First: p[0], Last: p[1]})
		}
		if err := rs.Valid(); err != nil {
			return nil, fmt.Errorf("cleared versions of %v: %w", site, err)
		}
		if len(rs) > 0 && rs[0].First == 0 {
			return nil, fmt.Errorf("cleared versions of %v: version 0", site)
		}
		out[site] = rs
	}
	return out, nil
}

// SortedSites lists the sites of cleared in order (for deterministic application).
func SortedSites(cleared map[format.SiteID]format.RangeSet) []format.SiteID {
	out := make([]format.SiteID, 0, len(cleared))
	for s := range cleared {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b format.SiteID) int { return slices.Compare(a[:], b[:]) })
	return out
}
