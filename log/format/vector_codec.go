package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// Vector binary layout (format 1), after the format byte, one msgpack array of sites, in site
// order:
//
//	[[site bin16, versions [first, last, first, last, ...],
//	  partials [[version, last_seq, seqs [first, last, ...]], ...]], ...]
//
// Ranges are flat uint pairs so a mostly contiguous vector costs a few bytes per site.

// EncodeVector returns the binary (msgpack) form of v.
func EncodeVector(v *Vector) ([]byte, error) {
	w := &byteWriter{b: []byte{FormatV1}}
	e := encPool.Get().(*msgpack.Encoder)
	e.Reset(w)
	defer func() { e.Reset(nil); encPool.Put(e) }()
	c := v.Canonical()
	sites := c.SortedSites()
	e.EncodeArrayLen(len(sites))
	for _, s := range sites {
		sv := c.Sites[s]
		if sv.Content.N > 0 {
			e.EncodeArrayLen(4)
		} else {
			e.EncodeArrayLen(3)
		}
		e.EncodeBytes(s[:])
		encodeRanges(e, sv.Versions)
		vers := slices.Sorted(maps.Keys(sv.Partials))
		e.EncodeArrayLen(len(vers))
		for _, ver := range vers {
			p := sv.Partials[ver]
			e.EncodeArrayLen(3)
			e.EncodeUint(uint64(ver))
			e.EncodeUint(p.LastOrd)
			encodeRanges(e, p.Held)
		}
		if sv.Content.N > 0 {
			// A 4th field, skipped by decoders that predate it: [xor (16 bytes), n].
			e.EncodeArrayLen(2)
			e.EncodeBytes(sv.Content.Xor[:])
			e.EncodeUint(sv.Content.N)
		}
	}
	return w.b, nil
}

// MustEncode is EncodeVector for tests; it panics on error.
func (v *Vector) MustEncode() []byte {
	b, err := EncodeVector(v)
	if err != nil {
		panic(err)
	}
	return b
}

func encodeRanges(e *msgpack.Encoder, rs RangeSet) {
	e.EncodeArrayLen(2 * len(rs))
	for _, r := range rs {
		e.EncodeUint(r.First)
		e.EncodeUint(r.Last)
	}
}

// AppendRanges is the stored form of one site's complete versions (format byte, ranges).
func AppendRanges(b []byte, rs RangeSet) []byte {
	w := &byteWriter{b: append(b, FormatV1)}
	e := encPool.Get().(*msgpack.Encoder)
	e.Reset(w)
	encodeRanges(e, rs)
	e.Reset(nil)
	encPool.Put(e)
	return w.b
}

// DecodeRanges reads what AppendRanges wrote.
func DecodeRanges(what string, b []byte, allowZero bool) (RangeSet, error) {
	if len(b) == 0 || b[0] != FormatV1 {
		return nil, &DecodeError{What: what, Err: errors.New("unknown format")}
	}
	d := newDecoder(what, b[1:])
	defer d.release()
	rs, err := d.ranges(allowZero)
	if err != nil {
		return nil, err
	}
	if d.r.Len() != 0 {
		return nil, d.fail(errors.New("trailing bytes"))
	}
	return rs, nil
}

func (d *decoder) ranges(allowZero bool) (RangeSet, error) {
	n, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	if n%2 != 0 {
		return nil, d.fail(fmt.Errorf("range array of odd length %d", n))
	}
	rs := make(RangeSet, 0, n/2)
	for range n / 2 {
		var r Range
		if r.First, err = d.uint(); err != nil {
			return nil, err
		}
		if r.Last, err = d.uint(); err != nil {
			return nil, err
		}
		if !allowZero && r.First == 0 {
			return nil, d.fail(invalidf("version 0 in a range"))
		}
		rs = append(rs, r)
	}
	if err := rs.Valid(); err != nil {
		return nil, d.fail(err)
	}
	return rs, nil
}

// DecodeVector decodes the binary form. It returns an error, never panics, on any malformed
// input; a vector it returns has valid range sets and partials that are neither complete nor
// also held completely.
func DecodeVector(b []byte) (*Vector, error) {
	if len(b) == 0 {
		return nil, &DecodeError{What: "vector", Err: io.ErrUnexpectedEOF}
	}
	if b[0] != FormatV1 {
		return nil, &DecodeError{What: "vector", Err: fmt.Errorf("unknown format version %d", b[0])}
	}
	d := newDecoder("vector", b[1:])
	defer d.release()
	n, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	v := NewVector()
	for range n {
		fields, err := d.arrayLen()
		if err != nil {
			return nil, err
		}
		if fields < 3 {
			return nil, d.fail(fmt.Errorf("site array of %d fields, want at least 3", fields))
		}
		raw, err := d.bin()
		if err != nil {
			return nil, err
		}
		var s SiteID
		if len(raw) != len(s) {
			return nil, d.fail(fmt.Errorf("site id of %d bytes", len(raw)))
		}
		copy(s[:], raw)
		if _, dup := v.Sites[s]; dup {
			return nil, d.fail(fmt.Errorf("site %v twice", s))
		}
		sv := &SiteVector{}
		if sv.Versions, err = d.ranges(false); err != nil {
			return nil, err
		}
		if err := d.partials(sv); err != nil {
			return nil, err
		}
		extra := fields - 3
		if extra > 0 { // the content sum
			extra--
			if err := d.contentSum(sv); err != nil {
				return nil, err
			}
		}
		if err := d.skipExtra(extra); err != nil {
			return nil, err
		}
		if len(sv.Versions) > 0 || len(sv.Partials) > 0 {
			v.Sites[s] = sv
		}
	}
	if d.r.Len() != 0 {
		return nil, d.fail(errors.New("trailing bytes"))
	}
	return v, nil
}

// partials reads a site's partial versions (an array of [version, last ordinal, held
// ranges, ...]) into sv, whose versions are read already: each is checked against them.
func (d *decoder) partials(sv *SiteVector) error {
	np, err := d.arrayLen()
	if err != nil {
		return err
	}
	for range np {
		pf, err := d.arrayLen()
		if err != nil {
			return err
		}
		if pf < 3 {
			return d.fail(fmt.Errorf("partial array of %d fields, want at least 3", pf))
		}
		ver, err := d.uint()
		if err != nil {
			return err
		}
		p := &Partial{}
		if p.LastOrd, err = d.uint(); err != nil {
			return err
		}
		if p.Held, err = d.ranges(true); err != nil {
			return err
		}
		if err := d.skipExtra(pf - 3); err != nil {
			return err
		}
		if err := CheckPartial(sv, Version(ver), p); err != nil {
			return d.fail(err)
		}
		if sv.Partials == nil {
			sv.Partials = map[Version]*Partial{}
		}
		sv.Partials[Version(ver)] = p
	}
	return nil
}

// contentSum reads a site's content sum ([xor of the digests, count, ...]) into sv.
func (d *decoder) contentSum(sv *SiteVector) error {
	n, err := d.arrayLen()
	if err != nil {
		return err
	}
	if n < 2 {
		return d.fail(fmt.Errorf("content sum of %d fields, want at least 2", n))
	}
	x, err := d.bin()
	if err != nil {
		return err
	}
	if len(x) != len(Digest{}) {
		return d.fail(fmt.Errorf("content sum of %d bytes", len(x)))
	}
	copy(sv.Content.Xor[:], x)
	if sv.Content.N, err = d.uint(); err != nil {
		return err
	}
	return d.skipExtra(n - 2)
}

// CheckPartial reports whether p is a consistent held part of version ver of a site whose
// complete versions are sv (read back from disk, so it is checked, not trusted).
func CheckPartial(sv *SiteVector, ver Version, p *Partial) error {
	switch {
	case ver == 0:
		return invalidf("partial of version 0")
	case sv.Partials[ver] != nil:
		return invalidf("partial version %d twice", ver)
	case sv.Versions.Contains(uint64(ver)):
		return invalidf("version %d both complete and partial", ver)
	case len(p.Held) == 0:
		return invalidf("partial version %d holds no seqs", ver)
	case p.Held[len(p.Held)-1].Last > p.LastOrd:
		return invalidf("partial version %d: seqs beyond last_seq %d", ver, p.LastOrd)
	case p.complete():
		return invalidf("partial version %d holds every seq", ver)
	}
	return nil
}

// The JSON form, for GET /v1/sync/state: per site its head (greatest version held in whole
// or in part), needs (versions 1..head not held completely, as [first, last] pairs), and the
// partially held versions with their last ordinal, the ordinals held and the ordinals needed:
//
//	{"sites":{"<uuid>":{"head":12,"needs":[[3,4]],
//	  "partials":{"4":{"last_seq":9999,"seqs":[[0,4095]],"needs":[[4096,9999]]}}}}}
//
// needs is derivable from the rest; it is there for people and for Corrosion-style peers.

type vectorJSON struct {
	Sites map[SiteID]siteVectorJSON `json:"sites"`
}

type siteVectorJSON struct {
	Head     Version                `json:"head"`
	Needs    [][2]uint64            `json:"needs"`
	Partials map[string]partialJSON `json:"partials,omitempty"`
}

type partialJSON struct {
	LastSeq uint64      `json:"last_seq"`
	Seqs    [][2]uint64 `json:"seqs"`
	Needs   [][2]uint64 `json:"needs"`
}

func pairs(rs RangeSet) [][2]uint64 {
	out := make([][2]uint64, len(rs))
	for i, r := range rs {
		out[i] = [2]uint64{r.First, r.Last}
	}
	return out
}

func fromPairs(ps [][2]uint64) (RangeSet, error) {
	rs := make(RangeSet, len(ps))
	for i, p := range ps {
		rs[i] = Range{p[0], p[1]}
	}
	return rs, rs.Valid()
}

// MarshalJSON writes the sync-state form described above.
func (v *Vector) MarshalJSON() ([]byte, error) {
	j := vectorJSON{Sites: make(map[SiteID]siteVectorJSON, len(v.Sites))}
	for s, sv := range v.Canonical().Sites {
		sj := siteVectorJSON{Head: sv.Head(), Needs: pairs(sv.Needs())}
		if len(sv.Partials) > 0 {
			sj.Partials = make(map[string]partialJSON, len(sv.Partials))
			for ver, p := range sv.Partials {
				sj.Partials[strconv.FormatUint(uint64(ver), 10)] = partialJSON{LastSeq: p.LastOrd, Seqs: pairs(p.Held), Needs: pairs(p.Needs())}
			}
		}
		j.Sites[s] = sj
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the sync-state form; needs of partial versions are ignored (they follow
// from ordinals), and everything is checked as DecodeVector checks it.
func (v *Vector) UnmarshalJSON(b []byte) error {
	var j vectorJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&j); err != nil {
		return invalidf("vector json: %v", err)
	}
	out := NewVector()
	for s, sj := range j.Sites {
		needs, err := fromPairs(sj.Needs)
		if err != nil {
			return fmt.Errorf("vector json: site %v: needs: %w", s, err)
		}
		sv := &SiteVector{}
		if sj.Head > 0 {
			if len(needs) > 0 && (needs[0].First == 0 || needs[len(needs)-1].Last > uint64(sj.Head)) {
				return invalidf("vector json: site %v: needs outside 1..head %d", s, sj.Head)
			}
			sv.Versions = RangeSet{{1, uint64(sj.Head)}}.Subtract(needs)
		} else if len(needs) > 0 {
			return invalidf("vector json: site %v: needs without a head", s)
		}
		for key, pj := range sj.Partials {
			ver, err := strconv.ParseUint(key, 10, 64)
			if err != nil {
				return invalidf("vector json: site %v: partial version %q", s, key)
			}
			seqs, err := fromPairs(pj.Seqs)
			if err != nil {
				return fmt.Errorf("vector json: site %v: partial %d: %w", s, ver, err)
			}
			p := &Partial{LastOrd: pj.LastSeq, Held: seqs}
			if ver > uint64(sj.Head) {
				return invalidf("vector json: site %v: partial %d above head %d", s, ver, sj.Head)
			}
			if err := CheckPartial(sv, Version(ver), p); err != nil {
				return fmt.Errorf("vector json: site %v: %w", s, err)
			}
			if sv.Partials == nil {
				sv.Partials = map[Version]*Partial{}
			}
			sv.Partials[Version(ver)] = p
		}
		if h := sv.Head(); h != sj.Head {
			return invalidf("vector json: site %v: head %d, but versions held end at %d", s, sj.Head, h)
		}
		if len(sv.Versions) > 0 || len(sv.Partials) > 0 {
			out.Sites[s] = sv
		}
	}
	*v = *out
	return nil
}
