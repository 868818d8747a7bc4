package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// load reads (or, in a new directory, writes) the metadata and the persisted vector. A
// writable open that meets damage there rebuilds them from the data (recover.go).
func (s *Store) load(want SiteID) error {
	err := s.loadStored(want)
	if err == nil || s.readOnly || !isCorrupt(err) {
		return err
	}
	return s.loadFromData(want, err)
}

func (s *Store) loadStored(want SiteID) error {
	if err := s.loadMeta(want); err != nil {
		return err
	}
	vec, err := s.loadVector()
	if err != nil {
		return err
	}
	if raw, err := s.get(metaKey(metaCompaction)); err != nil {
		return err
	} else if len(raw) >= 32 {
		s.compSt = decodeCompactionState(raw)
	}
	s.sumContent(vec)
	s.vec = vec
	s.work = vec.Clone()
	if err := s.loadLastSeq(); err != nil {
		return err
	}
	var next uint64 = 1
	if sv := vec.Sites[s.site]; sv != nil {
		next = uint64(sv.Head()) + 1
	}
	if t := uint64(s.ownTrusted()); t >= next { // a restore as this site (forge.go)
		next = t + 1
	}
	s.nextLocal.Store(next)
	return nil
}

// loadMeta reads (or, in a new directory, writes) the site id and the format, and reads the
// counters.
func (s *Store) loadMeta(want SiteID) error {
	raw, err := s.get(metaKey(metaSiteID))
	if err != nil {
		return err
	}
	if raw == nil && s.readOnly {
		return fmt.Errorf("%w: no site id: not a Patina log", ErrInvalid)
	}
	if raw == nil {
		s.site = want
		if s.site.IsZero() {
			s.site = NewSiteID()
		}
		b := s.db.NewBatch()
		b.Set(metaKey(metaSiteID), s.site[:], nil)
		b.Set(metaKey(metaFormat), []byte{FormatV1}, nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("write site id: %w", err)
		}
		s.logger.Debug("new log", "site", s.site)
	} else {
		if len(raw) != len(s.site) {
			return &DecodeError{What: "site id", Err: fmt.Errorf("%d bytes", len(raw))}
		}
		copy(s.site[:], raw)
		if !want.IsZero() && want != s.site {
			return fmt.Errorf("%w: the directory belongs to site %v, not %v", ErrSiteMismatch, s.site, want)
		}
	}
	if f, err := s.get(metaKey(metaFormat)); err != nil {
		return err
	} else if len(f) != 1 || f[0] != FormatV1 {
		return fmt.Errorf("%w: unknown log format %x", ErrInvalid, f)
	}
	if st, err := s.get(metaKey(metaStats)); err != nil {
		return err
	} else if len(st) == 16 {
		s.changes, s.bytes = binary.BigEndian.Uint64(st), binary.BigEndian.Uint64(st[8:])
	}
	return nil
}

// loadBad is what load does with what it cannot read: a lenient (inspecting) open notes it
// and goes on with the rest, so that Inspect and Check can still show a damaged log; a
// normal open refuses it.
func (s *Store) loadBad(err error) error {
	if !s.lenient {
		return err
	}
	s.loadErrs = append(s.loadErrs, err)
	return nil
}

// loadKeys calls fn on every key of one key space; what fn cannot read goes to loadBad.
func (s *Store) loadKeys(pfx byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfx}, UpperBound: []byte{pfx + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			if err := s.loadBad(err); err != nil {
				it.Close()
				return err
			}
		}
	}
	return it.Close()
}

// loadVector reads the persisted vector: complete versions, partial ones and cleared ones.
func (s *Store) loadVector() (*Vector, error) {
	vec := NewVector()
	err := s.loadKeys(pfxVector, func(k, v []byte) error {
		if len(k) != 17 {
			return &DecodeError{What: "vector key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}
		}
		rs, err := DecodeRanges("vector", v, false)
		if err != nil {
			return fmt.Errorf("vector of %v: %w", SiteID(k[1:17]), err)
		}
		vec.Site(SiteID(k[1:17])).Versions = rs
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.loadKeys(pfxPartial, func(k, v []byte) error {
		if len(k) != 25 {
			return &DecodeError{What: "partial key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}
		}
		p, err := decodePartialValue(v)
		if err != nil {
			return fmt.Errorf("partial %v/%d: %w", SiteID(k[1:17]), binary.BigEndian.Uint64(k[17:]), err)
		}
		sv := vec.Site(SiteID(k[1:17]))
		ver := Version(binary.BigEndian.Uint64(k[17:]))
		if err := CheckPartial(sv, ver, p); err != nil {
			return fmt.Errorf("stored partial %v/%d: %w", SiteID(k[1:17]), ver, err)
		}
		if sv.Partials == nil {
			sv.Partials = map[Version]*Partial{}
		}
		sv.Partials[ver] = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.loadKeys(pfxCleared, func(k, v []byte) error {
		if len(k) != 17 {
			return &DecodeError{What: "cleared key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}
		}
		rs, err := DecodeRanges("cleared", v, false)
		if err != nil {
			return fmt.Errorf("cleared versions of %v: %w", SiteID(k[1:17]), err)
		}
		sv := vec.Sites[SiteID(k[1:17])]
		if sv == nil || len(rs.Subtract(sv.Versions)) > 0 {
			return &DecodeError{What: "cleared versions", Err: fmt.Errorf("site %v: cleared %s are not all held", SiteID(k[1:17]), fmtRanges(rs, 4))}
		}
		sv.Cleared = rs
		return nil
	})
	if err != nil {
		return nil, err
	}
	return vec, nil
}

// loadLastSeq finds the log's last arrival seq: the last arrival key, or the floor a repair
// left (repair.go) if higher.
func (s *Store) loadLastSeq() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxArrival}, UpperBound: []byte{pfxArrival + 1}})
	if err != nil {
		return err
	}
	if it.Last() {
		if k := it.Key(); len(k) == 9 {
			s.lastSeq = Seq(binary.BigEndian.Uint64(k[1:]))
		} else if err := s.loadBad(&DecodeError{What: "arrival key", Err: fmt.Errorf("%x: %d bytes", k, len(k))}); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if raw, err := s.get(metaKey(metaSeqFloor)); err == nil && len(raw) == 8 {
		s.lastSeq = max(s.lastSeq, Seq(binary.BigEndian.Uint64(raw))) // repair.go
	}
	return nil
}

// sumContent fills in each site's content sum from the digests held (one pass over the
// 0x08 keys, 41 bytes a version). A digest that cannot be read leaves every sum zero: the
// sums are then not compared, which is what versions without digests get anyway.
func (s *Store) sumContent(vec *Vector) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxDigest}, UpperBound: []byte{pfxDigest + 1}})
	if err != nil {
		return
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, val := it.Key(), it.Value()
		if len(k) != 25 || len(val) != len(Digest{}) {
			continue
		}
		if sv := vec.Sites[SiteID(k[1:17])]; sv != nil && sv.Versions.Contains(binary.BigEndian.Uint64(k[17:])) {
			sv.Content.Add(Digest(val))
		}
	}
	if err := it.Error(); err != nil {
		s.logger.Warn("content digests unreadable: versions are not compared by content until a repair", "err", err.Error())
		for _, sv := range vec.Sites {
			sv.Content = ContentSum{}
		}
	}
}

func (s *Store) get(key []byte) ([]byte, error) {
	v, c, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(v)
	c.Close()
	return out, nil
}
