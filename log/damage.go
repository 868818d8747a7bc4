package log

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// Damage is one Pebble file found damaged: a read of its keys fails with ErrCorrupt.
// Pebble reports damage per file, so the range is the file's whole key range.
type Damage struct {
	Path string
	// Start and End bound the user keys the file holds (End included when EndInclusive).
	Start, End   []byte
	EndInclusive bool
	Err          error
}

// Keys describes the damaged key range in the log's own terms (sites, versions, ordinals).
func (d Damage) Keys() string { return describeKeys(d.Start, d.End) }

func (d Damage) String() string { return fmt.Sprintf("%s (%s)", d.Path, d.Keys()) }

// after returns the first key past the damaged range: where a scan can resume.
func (d Damage) after() []byte {
	if d.EndInclusive {
		return append(slices.Clone(d.End), 0)
	}
	return d.End
}

// recordDamage adds the file of info to the damage list, once.
func (s *Store) recordDamage(info pebble.DataCorruptionInfo) {
	f := &s.faults
	f.damageMu.Lock()
	defer f.damageMu.Unlock()
	if slices.ContainsFunc(f.damage, func(d Damage) bool { return d.Path == info.Path }) {
		return
	}
	f.damage = append(f.damage, Damage{
		Path: info.Path, Start: slices.Clone(info.Bounds.Start), End: slices.Clone(info.Bounds.End.Key),
		EndInclusive: info.Bounds.End.Kind == 1, // base.Inclusive
		Err:          info.Details,
	})
}

// Damage lists the Pebble files the store found damaged since it opened, each once.
func (s *Store) Damage() []Damage {
	s.faults.damageMu.Lock()
	defer s.faults.damageMu.Unlock()
	return slices.Clone(s.faults.damage)
}

// damageOver returns a damaged file whose range overlaps [lower, upper), the first found,
// if one is known.
func (s *Store) damageOver(lower, upper []byte) (Damage, bool) {
	for _, d := range s.Damage() {
		if bytes.Compare(d.Start, upper) < 0 && bytes.Compare(lower, d.after()) < 0 {
			return d, true
		}
	}
	return Damage{}, false
}

// describeKeys names a key range in the log's terms, e.g. "data of <site> v1 .. arrival
// seq 300".
func describeKeys(start, end []byte) string {
	a, b := describeKey(start), describeKey(end)
	if a == b {
		return a
	}
	return a + " .. " + b
}

func describeKey(k []byte) string {
	if len(k) == 0 {
		return "(start)"
	}
	site := func(b []byte) string {
		if len(b) < 16 {
			return fmt.Sprintf("%x", b)
		}
		return SiteID(b[:16]).String()
	}
	u64 := func(b []byte) uint64 {
		if len(b) < 8 {
			return 0
		}
		return binary.BigEndian.Uint64(b)
	}
	rest := k[1:]
	switch k[0] {
	case pfxMeta:
		return fmt.Sprintf("metadata %q", rest)
	case pfxUserMeta:
		return fmt.Sprintf("caller metadata %q", rest)
	case pfxData:
		if len(rest) >= 24 {
			return fmt.Sprintf("data of %s v%d", site(rest), u64(rest[16:]))
		}
		return "data of " + site(rest)
	case pfxArrival:
		return fmt.Sprintf("arrival seq %d", u64(rest))
	case pfxVector:
		return "vector of " + site(rest)
	case pfxPartial:
		if len(rest) >= 24 {
			return fmt.Sprintf("partial %s v%d", site(rest), u64(rest[16:]))
		}
		return "partial " + site(rest)
	case pfxCleared:
		return "cleared of " + site(rest)
	}
	return fmt.Sprintf("key %x", k)
}

// DamagedVersions returns, per site, the versions the store holds whose data lies in d's key
// range: what a read of them may fail on, and what a peer can send again.
func (s *Store) DamagedVersions(d Damage) map[SiteID]RangeSet {
	out := map[SiteID]RangeSet{}
	end := d.after()
	for site, sv := range s.Vector().Sites {
		lo, hi := dataKey(nil, site, 0, 0), dataKey(nil, site, Version(math.MaxUint64), math.MaxUint64)
		if bytes.Compare(hi, d.Start) < 0 || bytes.Compare(lo, end) >= 0 {
			continue
		}
		first, last := uint64(1), uint64(math.MaxUint64)
		if bytes.Compare(lo, d.Start) < 0 && len(d.Start) >= 25 { // the range starts inside this site's data
			first = binary.BigEndian.Uint64(d.Start[17:25])
		}
		if bytes.Compare(hi, end) >= 0 && len(end) >= 25 { // and ends inside it
			last = binary.BigEndian.Uint64(end[17:25])
		}
		held := sv.Versions.Subtract(sv.Cleared)
		for v := range sv.Partials {
			held.Add(uint64(v), uint64(v))
		}
		if in := held.Intersect(RangeSet{{First: first, Last: last}}); len(in) > 0 {
			out[site] = in
		}
	}
	return out
}

// describeDamage is d with the versions it holds, per site.
func (s *Store) describeDamage(d Damage) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (keys %s)", d.Path, d.Keys())
	vs := s.DamagedVersions(d)
	sites := slices.SortedFunc(maps.Keys(vs), func(a, b SiteID) int { return bytes.Compare(a[:], b[:]) })
	for _, site := range sites {
		fmt.Fprintf(&b, "; versions %s of %v", fmtRanges(vs[site], 8), site)
	}
	return b.String()
}

// DamagedVersionsOf returns the versions of site whose data lies in a file found damaged so
// far (none, at once, while nothing is damaged). Sync skips them rather than fail on each.
func (s *Store) DamagedVersionsOf(site SiteID) RangeSet {
	var out RangeSet
	for _, d := range s.Damage() {
		out.AddSet(s.DamagedVersions(d)[site])
	}
	return out
}

// DamageReport describes each damaged file found so far with the versions it held, one line
// each, for the offline tools' error messages.
func (s *Store) DamageReport() []string {
	var out []string
	for _, d := range s.Damage() {
		out = append(out, s.describeDamage(d))
	}
	return out
}
