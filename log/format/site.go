package format

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// SiteID is a node's identity: 16 random bytes made at first start and kept in its data
// directory. Its text form is a lowercase UUID string.
type SiteID [16]byte

// NewSiteID returns a random (version 4 UUID) site id.
func NewSiteID() SiteID {
	var s SiteID
	if _, err := rand.Read(s[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	s[6] = (s[6] & 0x0f) | 0x40
	s[8] = (s[8] & 0x3f) | 0x80
	return s
}

// ParseSiteID accepts a UUID string (any case, with or without hyphens) or 32 hex digits.
func ParseSiteID(s string) (SiteID, error) {
	var id SiteID
	h := strings.ReplaceAll(strings.TrimSpace(s), "-", "")
	if len(h) != 32 {
		return id, invalidf("site id %q: want a UUID or 32 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, invalidf("site id %q: %v", s, err)
	}
	return id, nil
}

// MustParseSiteID is ParseSiteID for constants in tests; it panics on error.
func MustParseSiteID(s string) SiteID {
	id, err := ParseSiteID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// String returns the UUID form, e.g. 00000000-0000-0000-0000-000000000001.
func (s SiteID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], s[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], s[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], s[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], s[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], s[10:16])
	return string(b[:])
}

// IsZero reports whether s is the all-zero id, which no real node uses.
func (s SiteID) IsZero() bool { return s == SiteID{} }

// Compare orders site ids bytewise (R12: the greater site id is recorded on an exact tie).
func (s SiteID) Compare(o SiteID) int {
	for i := range s {
		if s[i] != o[i] {
			if s[i] < o[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// MarshalText implements encoding.TextMarshaler (JSON uses the UUID string).
func (s SiteID) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *SiteID) UnmarshalText(b []byte) error {
	id, err := ParseSiteID(string(b))
	if err != nil {
		return err
	}
	*s = id
	return nil
}
