package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Damage in the keys read at open (issue 12). Open reads the metadata, the vector entries
// (complete, partial, cleared), the end of the arrival index and the digests; a damaged
// block among them used to stop the node. All of them but one are derived state: the vector
// and the counters are what the data adds up to, the arrival index is rebuilt by the repair
// (repair.go). So a writable open that meets damage there rebuilds them from the data it
// can read (loadFromData) and lets the repair, which runs as soon as the committer starts,
// re-write the whole log consistently; what the damage made unreadable becomes gaps that
// sync fetches again. The one key nothing can rebuild is the node's identity, its site id:
// without it the node does not know which versions it wrote, so open refuses with
// ErrIdentityLost and one line that says what to do.
//
// Two values are bounds rather than facts when their keys are lost, and each errs on the
// safe side:
//   - LastSeq: a seq given out twice would hide a version from the fold (its position is
//     already past it), while a hole costs nothing (compaction leaves holes too). When the
//     end of the arrival index is unreadable, LastSeq is set past it with a margin.
//   - This node's own head: a version number written twice would make two different
//     versions under one name. The next local version is after every own version any
//     readable key names (data, digest, vector entry), and versions up to that are trusted
//     back from peers (as after a restore, forge.go), so the lost ones return.

// ErrIdentityLost means the log's site id (the node's identity) is unreadable: the node
// cannot start on this data dir.
var ErrIdentityLost = errors.New("log: the node's identity (site id) is unreadable")

// seqMargin is added to LastSeq when the end of the arrival index is unreadable.
const seqMargin = 1 << 20

// isCorrupt reports whether err is damage Pebble found (a checksum mismatch), which the
// repair removes once loadFromData has worked around it. (A value that passes the checksums
// but does not decode is not damage the repair knows of: open still refuses it.)
func isCorrupt(err error) bool {
	return pebble.IsCorruptionError(err) || errors.Is(err, ErrCorrupt)
}

// loadFromData is load after cause (damage) stopped it: the state open needs, rebuilt from
// the data that can be read.
func (s *Store) loadFromData(want SiteID, cause error) error {
	raw, err := s.get(metaKey(metaSiteID))
	if err != nil || len(raw) != len(s.site) {
		// The key sits in the oldest table, but a damaged newer table whose range covers
		// it hides it too: the copy in the identity file stands in.
		site, ferr := readIdentity(s.fs, s.dir)
		if ferr != nil {
			if err == nil {
				err = fmt.Errorf("%d bytes", len(raw))
			}
			return fmt.Errorf("%w (%v; %s: %v): this data dir cannot be used; restore it from a backup (patina restore) or start the node with a new, empty data dir (it then joins as a new site and fetches the data from its peers)",
				ErrIdentityLost, err, identityFile, ferr)
		}
		raw = site[:]
	}
	copy(s.site[:], raw)
	if !want.IsZero() && want != s.site {
		return fmt.Errorf("%w: the directory belongs to site %v, not %v", ErrSiteMismatch, s.site, want)
	}
	s.logger.Error("log: keys read at open are damaged; rebuilding the vector and counters from the data (the log then repairs itself and fetches what is lost from peers)",
		"err", cause.Error())

	vec := NewVector()
	s.changes, s.bytes = 0, 0
	var undecodable int
	_, _, err = s.scanPast(pfxData, func(k, v []byte) {
		part, err := DecodeChangeset(v)
		if len(k) != 33 || err != nil || part.Site != SiteID(k[1:17]) || part.Version != Version(binary.BigEndian.Uint64(k[17:25])) {
			undecodable++
			return
		}
		if vec.ContainsOrdinals(part.Site, part.Version, part.Span.First, part.Span.Last) {
			return
		}
		if _, _, err := vec.AddPart(part.Site, part.Version, part.LastOrd, part.Span.First, part.Span.Last); err != nil {
			undecodable++
			return
		}
		s.changes += uint64(len(part.Changes))
		s.bytes += uint64(len(v))
	})
	if err != nil {
		return fmt.Errorf("rebuild the vector from the data: %w", err)
	}
	// Cleared versions have no data: their entries are the only record (lost ones become
	// gaps, and peers send them again).
	_, _, err = s.scanPast(pfxCleared, func(k, v []byte) {
		rs, err := DecodeRanges("cleared", v, false)
		if len(k) != 17 || err != nil {
			return
		}
		sv := vec.Site(SiteID(k[1:17]))
		for _, r := range rs {
			sv.Versions.Add(r.First, r.Last)
			sv.Cleared.Add(r.First, r.Last)
		}
	})
	if err != nil {
		return fmt.Errorf("read the cleared versions: %w", err)
	}
	if raw, err := s.get(metaKey(metaCompaction)); err == nil && len(raw) >= 32 {
		s.compSt = decodeCompactionState(raw)
	}
	s.sumContent(vec)
	s.vec = vec
	s.work = vec.Clone()
	if err := s.recoverLastSeq(vec); err != nil {
		return err
	}
	own, known := s.ownHead(vec)
	if !known {
		return fmt.Errorf("%w: a damaged file holds keys of this node's own site (%v), so it cannot tell which versions it wrote, and a version written twice would be two different versions under one name; restore it from a backup (patina restore) or start the node with a new, empty data dir (it then joins as a new site and fetches the data from its peers)",
			ErrOwnHistoryLost, s.site)
	}
	trusted := s.ownTrusted()
	if own > trusted {
		s.forge.mu.Lock()
		s.forge.trusted = own
		s.forge.mu.Unlock()
		trusted = own
	}
	next := uint64(1)
	if sv := vec.Sites[s.site]; sv != nil {
		next = uint64(sv.Head()) + 1
	}
	next = max(next, uint64(trusted)+1)
	s.nextLocal.Store(next)
	complete, partial := vec.Counts()
	s.logger.Warn("log: rebuilt from the data at open", "versions", complete, "partial", partial, "sites", len(vec.Sites),
		"undecodable_parts", undecodable, "last_seq", s.lastSeq, "next_local", next, "damaged_files", len(s.Damage()))
	return nil
}

// scanPast calls fn on every readable key of one key space, stepping over damaged blocks
// (the listener records their files as the iterator meets them). skipped says whether it met
// one, tailLost whether no readable key of the space follows the last one.
func (s *Store) scanPast(pfx byte, fn func(k, v []byte)) (skipped, tailLost bool, err error) {
	lower, upper := []byte{pfx}, []byte{pfx + 1}
	bad := padKey(lower)
	for {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return skipped, false, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			v, verr := it.ValueAndErr()
			if verr != nil {
				err = verr
				break
			}
			fn(it.Key(), v)
			bad = new(big.Int).Add(padKey(it.Key()), big.NewInt(1)) // the next key, if unreadable
		}
		err = errors.Join(err, it.Error())
		if err == nil {
			return skipped, false, it.Close()
		}
		if !pebble.IsCorruptionError(err) {
			it.Close()
			return skipped, false, err
		}
		skipped = true
		next, ok := skipDamaged(it, bad, upper)
		it.Close()
		if !ok {
			return skipped, true, nil
		}
		lower, bad = next, padKey(next)
	}
}

// keyBits: keys are compared as numbers of this many bytes (zero-padded), enough for every
// key of the log (the longest, a data key, has 33).
const keyBytes = 40

func padKey(k []byte) *big.Int {
	var b [keyBytes]byte
	copy(b[:], k)
	return new(big.Int).SetBytes(b[:])
}

// skipDamaged finds the first readable key after a damaged block: bad is a key position
// whose seek fails (the first key at or after it is in the block). A damaged block holds an
// interval of keys, so positions after bad fail until the block ends: steps of growing size
// (one more byte of the key each) find a readable position past it in a few seeks, and a
// walk back from there finds the first readable key after the block (each failing seek
// costs a corruption report, so there are few). ok is false when nothing readable follows.
func skipDamaged(it *pebble.Iterator, bad *big.Int, upper []byte) (next []byte, ok bool) {
	readable := func(x *big.Int) bool {
		k := x.FillBytes(make([]byte, keyBytes))
		if bytes.Compare(k, upper) >= 0 {
			return true
		}
		if !it.SeekGE(k) {
			return it.Error() == nil
		}
		_, err := it.ValueAndErr()
		return err == nil
	}
	if readable(bad) {
		return bad.FillBytes(make([]byte, keyBytes)), true
	}
	end := slices.Clone(upper)
	for p := range keyBytes {
		x := new(big.Int).Add(bad, new(big.Int).Lsh(big.NewInt(1), uint(8*p)))
		if x.BitLen() > 8*keyBytes {
			break
		}
		if readable(x) {
			if k := x.FillBytes(make([]byte, keyBytes)); bytes.Compare(k, upper) < 0 {
				end = k
			}
			break
		}
	}
	var first []byte
	for ok := it.SeekLT(end); ok; ok = it.Prev() {
		if _, err := it.ValueAndErr(); err != nil {
			break
		}
		first = slices.Clone(it.Key())
	}
	switch {
	case first != nil:
		return first, true
	case bytes.Compare(end, upper) < 0:
		return end, true
	}
	return nil, false
}

// recoverLastSeq sets LastSeq from the readable arrival entries and the seq floor; when the
// end of the index is unreadable, past it with a margin.
func (s *Store) recoverLastSeq(vec *Vector) error {
	var last uint64
	_, tailLost, err := s.scanPast(pfxArrival, func(k, _ []byte) {
		if len(k) == 9 {
			last = max(last, binary.BigEndian.Uint64(k[1:]))
		}
	})
	if err != nil {
		return fmt.Errorf("read the arrival index: %w", err)
	}
	if raw, err := s.get(metaKey(metaSeqFloor)); err == nil && len(raw) == 8 {
		last = max(last, binary.BigEndian.Uint64(raw))
	}
	if tailLost {
		// The end of the index is unreadable: the seqs given out there are unknown. Each
		// entry names a held version, and holes come from cleared versions, so the count
		// of both bounds them, but repairs leave holes too: a margin on top.
		complete, _ := vec.Counts()
		last += complete + seqMargin
	}
	s.lastSeq = Seq(last)
	return nil
}

// ownHead is the highest version of this node's own site any readable key names: its data
// (in vec), its vector entry, its digests. known is false when a damaged file may hold a
// higher one: it overlaps the site's data, vector entry or digests beyond what was read.
func (s *Store) ownHead(vec *Vector) (head Version, known bool) {
	if sv := vec.Sites[s.site]; sv != nil {
		head = sv.Head()
	}
	vecKnown := false
	if raw, err := s.get(vectorKey(s.site)); err == nil {
		vecKnown = true
		if rs, err := DecodeRanges("vector", raw, false); err == nil && raw != nil {
			if m, ok := rs.Max(); ok {
				head = max(head, Version(m))
			}
		}
	}
	lower := append([]byte{pfxDigest}, s.site[:]...)
	upper := incPrefix(lower)
	if it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper}); err == nil {
		if it.Last() && len(it.Key()) == 25 {
			head = max(head, Version(binary.BigEndian.Uint64(it.Key()[17:])))
		}
		it.Close()
	}
	headKnown := false
	if raw, err := s.get(metaKey(metaOwnHead)); err == nil && len(raw) == 8 {
		headKnown = true
		head = max(head, Version(binary.BigEndian.Uint64(raw)))
	}
	if vecKnown || headKnown {
		return head, true // both are written with every own version that completes
	}
	// A damaged file over the site's keys may hold versions after head, unless its range
	// ends inside the site's data or digests at a version head covers.
	for _, d := range s.Damage() {
		for _, pfx := range []byte{pfxData, pfxVector, pfxDigest} {
			lo := append([]byte{pfx}, s.site[:]...)
			hi := incPrefix(lo)
			if bytes.Compare(d.Start, hi) >= 0 || bytes.Compare(d.after(), lo) <= 0 {
				continue // no overlap
			}
			if pfx != pfxVector && bytes.HasPrefix(d.End, lo) && len(d.End) >= 25 && Version(binary.BigEndian.Uint64(d.End[17:25])) <= head {
				continue
			}
			return head, false
		}
	}
	return head, true
}

// metaOwnHead: version(8), the highest version of this node's own site held, written with
// every commit that adds one (commit.go) and by repairs.
const metaOwnHead = "own_head"

// ErrOwnHistoryLost means a damaged file may hold versions of this node's own site that no
// readable key names: the node cannot tell its next version number.
var ErrOwnHistoryLost = errors.New("log: this node's own versions are unreadable")

// identityFile holds a copy of the site id beside Pebble's files (the uuid and a newline),
// written at every writable open: the one key open cannot rebuild from the data.
const identityFile = "IDENTITY"

func writeIdentity(fs vfs.FS, dir string, site SiteID) error {
	path := fs.PathJoin(dir, identityFile)
	want := site.String() + "\n"
	if f, err := fs.Open(path); err == nil {
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) == want {
			return nil
		}
	}
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, want); err != nil {
		f.Close()
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	return fs.Rename(tmp, path)
}

func readIdentity(fs vfs.FS, dir string) (SiteID, error) {
	f, err := fs.Open(fs.PathJoin(dir, identityFile))
	if err != nil {
		return SiteID{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return SiteID{}, err
	}
	return ParseSiteID(strings.TrimSpace(string(b)))
}
