package log

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
)

// InspectOptions say what Inspect prints.
type InspectOptions struct {
	// Changesets adds the complete changesets, in arrival order, as JSON lines (the form of
	// docs/DESIGN.md section 7, with their arrival "seq") after the summary.
	Changesets bool
	// ChangesetsOnly prints the JSON lines and nothing else, for piping into other tools.
	ChangesetsOnly bool
	// Site keeps only this site's changesets (zero: every site).
	Site SiteID
	// FromSeq and ToSeq keep arrival seqs FromSeq..ToSeq (0: from the first / to the last).
	FromSeq, ToSeq Seq
	// Limit stops after this many changesets (0: no limit).
	Limit int
	// Check verifies the log against itself (Store.Check) and prints the outcome; Inspect
	// then returns the problems as its error.
	Check bool
	// MaxRanges caps the ranges printed per list (needs, held ordinals); 0 means 32.
	MaxRanges int
	Logger    *slog.Logger
}

// Inspect prints what the log in dir (a stopped node's <data>/log) holds: its metadata (site
// id, format, last seq, counts, bytes), its vector per site (head, versions held, gaps,
// partially held versions) and, with opt.Changesets, the changesets as JSON lines. It opens
// the log read-only and changes nothing. It is what `patina log inspect` runs.
func Inspect(dir string, w io.Writer, opt InspectOptions) error {
	s, err := open(dir, Options{ReadOnly: true, Logger: opt.Logger}, true)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	defer s.Close()
	return s.Inspect(w, opt)
}

// Inspect is the package function Inspect on an open store (a live one too).
func (s *Store) Inspect(out io.Writer, opt InspectOptions) error {
	w := bufio.NewWriter(out)
	if opt.MaxRanges <= 0 {
		opt.MaxRanges = 32
	}
	var checkErr error
	if len(s.loadErrs) > 0 {
		// The log opened only in part: say so first, and fail even without Check.
		errs := make([]error, len(s.loadErrs))
		for i, e := range s.loadErrs {
			errs[i] = fmt.Errorf("%w: %w", ErrCorrupt, e)
		}
		checkErr = errors.Join(errs...)
	}
	if !opt.ChangesetsOnly {
		for _, e := range s.loadErrs {
			fmt.Fprintf(w, "unreadable: %v\n", e)
		}
		if err := s.writeSummary(w, opt); err != nil {
			return err
		}
		if opt.Check {
			err := s.Check()
			if err == nil {
				fmt.Fprintln(w, "check: ok")
			} else {
				fmt.Fprintf(w, "check: FAILED\n%v\n", err)
			}
			checkErr = errors.Join(checkErr, err)
		}
	}
	if opt.Changesets || opt.ChangesetsOnly {
		if err := s.writeChangesets(w, opt); err != nil {
			w.Flush()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	return checkErr
}

func (s *Store) writeSummary(w io.Writer, opt InspectOptions) error {
	st := s.Stats()
	vec := s.Vector()
	mode := "read-write"
	if s.readOnly {
		mode = "read-only"
	}
	fmt.Fprintf(w, "site_id:   %v\n", s.SiteID())
	fmt.Fprintf(w, "format:    %d (opened %s)\n", FormatV1, mode)
	fmt.Fprintf(w, "last_seq:  %d\n", st.LastSeq)
	fmt.Fprintf(w, "versions:  %d complete, %d partial\n", st.Versions, st.Partials)
	fmt.Fprintf(w, "changes:   %d\n", st.Changes)
	fmt.Fprintf(w, "bytes:     %d encoded, %d on disk\n", st.Bytes, st.DiskBytes)
	fmt.Fprintf(w, "sites:     %d\n", st.Sites)
	fmt.Fprintf(w, "retained:  %d versions live (with data), %d cleared (ranges only)\n", st.Versions-st.Cleared, st.Cleared)
	if st.Dropped > 0 {
		fmt.Fprintf(w, "compacted: %d changes dropped (%d encoded bytes), %d versions cleared here; replay exact from seq %d, time %v\n",
			st.Dropped, st.CompactedBytes, st.ClearedByUs, st.HorizonSeq, st.HorizonTS)
	} else {
		fmt.Fprintf(w, "compacted: nothing\n")
	}
	meta, err := s.metaKeys()
	if err != nil {
		return err
	}
	for _, kv := range meta {
		fmt.Fprintf(w, "meta:      %s = %s\n", kv[0], showBytes(kv[1]))
	}
	for _, site := range vec.SortedSites() {
		sv := vec.Sites[site]
		needs := sv.Needs()
		local := ""
		if site == s.site {
			local = " (this node)"
		}
		fmt.Fprintf(w, "site %v%s: head %d, %d versions held, %d missing %s, %d partial\n",
			site, local, sv.Head(), sv.Versions.Count(), needs.Count(), fmtRanges(needs, opt.MaxRanges), len(sv.Partials))
		if len(sv.Cleared) > 0 {
			fmt.Fprintf(w, "  cleared %d: %s\n", sv.Cleared.Count(), fmtRanges(sv.Cleared, opt.MaxRanges))
		}
		for _, ver := range slices.Sorted(func(yield func(Version) bool) {
			for v := range sv.Partials {
				if !yield(v) {
					return
				}
			}
		}) {
			p := sv.Partials[ver]
			fmt.Fprintf(w, "  partial %d: last_seq %d, holds %s, needs %s\n", ver, p.LastOrd, fmtRanges(p.Held, opt.MaxRanges), fmtRanges(p.Needs(), opt.MaxRanges))
		}
	}
	return nil
}

func (s *Store) writeChangesets(w io.Writer, opt InspectOptions) error {
	after := Seq(0)
	if opt.FromSeq > 0 {
		after = opt.FromSeq - 1
	}
	last := s.LastSeq()
	if opt.ToSeq > 0 && opt.ToSeq < last {
		last = opt.ToSeq
	}
	n := 0
	for after < last {
		chunk, err := s.Read(after, int(min(uint64(last-after), tailChunk)))
		if err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		if len(chunk) == 0 {
			break
		}
		for _, cs := range chunk {
			after = cs.Seq
			if !opt.Site.IsZero() && cs.Site != opt.Site {
				continue
			}
			b, err := json.Marshal(cs)
			if err != nil {
				return fmt.Errorf("inspect: seq %d: %w", cs.Seq, err)
			}
			b = append(b, '\n')
			if _, err := w.Write(b); err != nil {
				return fmt.Errorf("inspect: %w", err)
			}
			if n++; opt.Limit > 0 && n >= opt.Limit {
				return nil
			}
		}
	}
	return nil
}

// metaKeys returns the Meta/SetMeta entries, by key.
func (s *Store) metaKeys() ([][2][]byte, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxUserMeta}, UpperBound: []byte{pfxUserMeta + 1}})
	if err != nil {
		return nil, err
	}
	var out [][2][]byte
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, [2][]byte{bytes.Clone(it.Key()[1:]), bytes.Clone(it.Value())})
	}
	return out, errors.Join(it.Error(), it.Close())
}

// showBytes shows printable UTF-8 as a quoted string and anything else as hex, shortened.
func showBytes(b []byte) string {
	const max = 64
	printable := utf8.Valid(b) && !strings.ContainsFunc(string(b), func(r rune) bool { return !unicode.IsPrint(r) })
	if printable {
		return strconv.Quote(truncate(string(b), max))
	}
	if len(b) > max/2 {
		return "x" + hex.EncodeToString(b[:max/2]) + fmt.Sprintf("... (%d bytes)", len(b))
	}
	return "x" + hex.EncodeToString(b)
}

// fmtRanges writes a range set as [1-5 7 9-12], at most max ranges.
func fmtRanges(rs RangeSet, max int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range rs {
		if i == max {
			fmt.Fprintf(&b, " ... %d more", len(rs)-max)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(r.First, 10))
		if r.Last != r.First {
			b.WriteByte('-')
			b.WriteString(strconv.FormatUint(r.Last, 10))
		}
	}
	b.WriteByte(']')
	return b.String()
}

// ErrCorrupt wraps every problem Check finds.
var ErrCorrupt = errors.New("log: corrupt")

// maxProblems bounds what Check reports: past a few, more of the same helps nobody.
const maxProblems = 20

// Check reads the whole log and verifies it, in the two phases of a scrub pass (scrub.go),
// unpaced: every live table file is read block by block and each block's checksum verified;
// then every key space is read from one consistent snapshot and verified against itself:
// every stored part decodes, sits under its own key and overlaps no other part of its
// version; each complete version's data matches its content digest; the persisted vector
// (complete and partial versions) is exactly what the parts add up to; the arrival index is
// dense from 1 and names each complete version once; the persisted counters match the data.
// Problems are returned joined, each wrapping ErrCorrupt. It reads the whole log: an
// offline or diagnostic tool, not a hot path (the scrub is its paced, background form).
func (s *Store) Check() error {
	p := newPacer(context.Background(), 0)
	_, damage, err := s.checkFiles(p)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	c, err := s.checkKeys(p, damage)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if len(damage) > 0 {
		s.repairSoon() // on a running store; the offline tools never repair
	}
	return errors.Join(c.problems...)
}

// checkKeys is the key walk of Check and of a scrub pass, its reads charged to p. Damage
// already found (by the file phase) is reported first, once.
func (s *Store) checkKeys(p *pacer, known []Damage) (*checker, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	// LastSeq before the snapshot: a live store may commit (and then publish) more in
	// between, never less.
	lastSeq := s.LastSeq()
	snap := s.db.NewSnapshot()
	defer snap.Close()
	c := &checker{s: s, snap: snap, reported: map[string]bool{}, p: p, lastSeq: lastSeq, live: !s.readOnly, mismatched: map[SiteID]RangeSet{}}
	for _, d := range known {
		c.reported[d.Path] = true
		c.problems = append(c.problems, s.damageProblem(d))
	}
	c.checkSiteID()
	data, err := c.checkData()
	if err != nil {
		return nil, err
	}
	stored, err := c.storedVector()
	if err != nil {
		return nil, err
	}
	cleared, err := c.checkCleared(data.vec)
	if err != nil {
		return nil, err
	}
	if !stored.Equal(data.vec) {
		diffVectors(data.vec.Canonical(), stored.Canonical(), c.bad)
	}
	if err := c.checkArrivals(data.vec, cleared); err != nil {
		return nil, err
	}
	c.checkCounters(data)
	if len(c.problems) > maxProblems {
		c.problems = c.problems[:maxProblems]
	}
	return c, nil
}

// checker is one Check: the snapshot it reads, the problems found so far and the damaged
// files already reported.
type checker struct {
	s        *Store
	snap     *pebble.Snapshot
	problems []error
	reported map[string]bool
	p        *pacer // charged with every key and value read
	lastSeq  Seq    // the store's LastSeq when the snapshot was taken
	live     bool   // the store may have committed more than lastSeq by then
	// versions counts the complete versions checked against their digest; mismatched are
	// those whose data does not match it.
	versions   uint64
	mismatched map[SiteID]RangeSet
	digests    *pebble.Iterator // over the 0x08 digests, sought forward version by version
}

// bad records a problem; it says whether to go on looking (false past maxProblems).
func (c *checker) bad(format string, args ...any) bool {
	c.problems = append(c.problems, fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...))
	return len(c.problems) < maxProblems
}

// iter walks one key space until fn returns false. A damaged file in it is reported once,
// with the keys it holds, and the walk resumes past it: the report names every damaged
// range, and the checks still run on what is readable (they then report the holes, too).
func (c *checker) iter(pfx byte, fn func(k, v []byte) bool) error {
	lower, upper := []byte{pfx}, []byte{pfx + 1}
	for {
		it, err := c.snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		stopped := false
		for ok := it.First(); ok; ok = it.Next() {
			v, verr := it.ValueAndErr()
			if verr != nil {
				err = verr
				break
			}
			if !fn(it.Key(), v) {
				stopped = true
				break
			}
			lower = append(lower[:0:0], it.Key()...)
			if perr := c.p.take(len(it.Key()) + len(v)); perr != nil {
				it.Close()
				return perr
			}
		}
		err = errors.Join(err, it.Error(), it.Close())
		if err == nil || stopped || !pebble.IsCorruptionError(err) {
			return err
		}
		d, ok := c.s.damageOver(lower, upper)
		if !ok {
			return corruptErr(err)
		}
		if !c.reported[d.Path] {
			c.reported[d.Path] = true
			c.problems = append(c.problems, c.s.damageProblem(d))
			if len(c.problems) >= maxProblems {
				return nil
			}
		}
		next := d.after()
		if bytes.Compare(next, lower) <= 0 || bytes.Compare(next, upper) >= 0 {
			return nil
		}
		lower = next
	}
}

// checkSiteID: the stored site id is the store's.
func (c *checker) checkSiteID() {
	v, closer, err := c.snap.Get(metaKey(metaSiteID))
	if err != nil {
		c.bad("site id: %v", err)
		return
	}
	defer closer.Close()
	if !bytes.Equal(v, c.s.site[:]) {
		c.bad("stored site id %x is not %v", v, c.s.site)
	}
}

// checkedData is what the stored parts add up to.
type checkedData struct {
	vec            *Vector
	changes, bytes uint64
}

// checkData reads every stored part: each decodes, sits under its own key and overlaps no
// other part of its version; each complete version's parts, put together, match the
// version's content digest.
func (c *checker) checkData() (checkedData, error) {
	d := checkedData{vec: NewVector()}
	it, err := c.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{pfxDigest}, UpperBound: []byte{pfxDigest + 1}})
	if err != nil {
		return d, err
	}
	c.digests = it
	defer it.Close()
	var cur *Changeset // the version being read, its parts so far
	err = c.iter(pfxData, func(k, v []byte) bool {
		if len(k) != 33 {
			return c.bad("data key %x of %d bytes", k, len(k))
		}
		part, err := DecodeChangeset(v)
		if err != nil {
			return c.bad("data key %x: %v", k, err)
		}
		site, ver, first := SiteID(k[1:17]), Version(binary.BigEndian.Uint64(k[17:25])), binary.BigEndian.Uint64(k[25:])
		if part.Site != site || part.Version != ver || part.Span.First != first {
			return c.bad("data key %v/%d/%d holds %v/%d seqs [%d, %d]", site, ver, first, part.Site, part.Version, part.Span.First, part.Span.Last)
		}
		if d.vec.Contains(site, ver) || (d.vec.Partial(site, ver) != nil && d.vec.Partial(site, ver).Held.Intersects(part.Span.First, part.Span.Last)) {
			return c.bad("%v/%d: part [%d, %d] overlaps another", site, ver, part.Span.First, part.Span.Last)
		}
		_, complete, err := d.vec.AddPart(site, ver, part.LastOrd, part.Span.First, part.Span.Last)
		if err != nil {
			return c.bad("%v/%d: %v", site, ver, err)
		}
		d.changes += uint64(len(part.Changes))
		d.bytes += uint64(len(v))
		if cur == nil || cur.Site != site || cur.Version != ver {
			cur = part
		} else {
			joinPart(cur, part)
		}
		if complete {
			ok := c.checkDigest(cur)
			cur = nil
			return ok
		}
		return true
	})
	c.digests = nil
	return d, err
}

// checkDigest compares a complete version's data with the digest stored for it (versions
// stored before digests, and compacted ones, have none to compare).
func (c *checker) checkDigest(cs *Changeset) bool {
	if cs.Compacted && cs.Kind != KindData {
		cs.Compacted = false
	}
	k := digestKey(cs.Site, cs.Version)
	if !c.digests.SeekGE(k) || !bytes.Equal(c.digests.Key(), k) {
		return true
	}
	held, err := c.digests.ValueAndErr()
	if err != nil || len(held) != len(Digest{}) {
		return true // the walk of the 0x08 keys reports it
	}
	c.p.take(len(k) + len(held))
	got, ok := cs.ComputeDigest()
	if !ok {
		return true
	}
	c.versions++
	if got == Digest(held) {
		return true
	}
	m := c.mismatched[cs.Site]
	m.Add(uint64(cs.Version), uint64(cs.Version))
	c.mismatched[cs.Site] = m
	return c.bad("%v/%d: the data does not match its digest (held %x, the data's %v)", cs.Site, cs.Version, held, got)
}

// joinPart appends the next part of a version (in ordinal order) to what was read of it.
func joinPart(cs, part *Changeset) {
	cs.Span.Last = part.Span.Last
	cs.Changes = append(cs.Changes, part.Changes...)
	cs.Compacted = cs.Compacted || part.Compacted
	if part.Kind == KindData {
		cs.Kind = KindData
	}
}

// storedVector reads the persisted vector: complete versions and partial ones.
func (c *checker) storedVector() (*Vector, error) {
	stored := NewVector()
	err := c.iter(pfxVector, func(k, v []byte) bool {
		if len(k) != 17 {
			return c.bad("vector key %x of %d bytes", k, len(k))
		}
		rs, err := DecodeRanges("vector", v, false)
		if err != nil {
			return c.bad("vector of %v: %v", SiteID(k[1:]), err)
		}
		stored.Site(SiteID(k[1:])).Versions = rs
		return true
	})
	if err != nil {
		return nil, err
	}
	err = c.iter(pfxPartial, func(k, v []byte) bool {
		if len(k) != 25 {
			return c.bad("partial key %x of %d bytes", k, len(k))
		}
		p, err := decodePartialValue(v)
		if err != nil {
			return c.bad("partial key %x: %v", k, err)
		}
		sv, ver := stored.Site(SiteID(k[1:17])), Version(binary.BigEndian.Uint64(k[17:]))
		if err := CheckPartial(sv, ver, p); err != nil {
			return c.bad("partial %v/%d: %v", SiteID(k[1:17]), ver, err)
		}
		if sv.Partials == nil {
			sv.Partials = map[Version]*Partial{}
		}
		sv.Partials[ver] = p
		return true
	})
	return stored, err
}

// checkCleared reads the cleared versions: held, with no data of their own. They are added
// to data, the vector the parts add up to, which then compares with the stored one.
func (c *checker) checkCleared(data *Vector) (*Vector, error) {
	cleared := NewVector()
	err := c.iter(pfxCleared, func(k, v []byte) bool {
		if len(k) != 17 {
			return c.bad("cleared key %x of %d bytes", k, len(k))
		}
		rs, err := DecodeRanges("cleared", v, false)
		if err != nil {
			return c.bad("cleared versions of %v: %v", SiteID(k[1:]), err)
		}
		site := SiteID(k[1:])
		cleared.Site(site).Versions = rs
		for _, r := range rs {
			if dv := data.Sites[site]; dv != nil && dv.Versions.Intersects(r.First, r.Last) {
				if !c.bad("site %v: cleared versions %d-%d hold data", site, r.First, r.Last) {
					return false
				}
			}
			data.Site(site).Versions.Add(r.First, r.Last)
		}
		return true
	})
	return cleared, err
}

// checkArrivals: the arrival index rises (seqs of cleared versions are gone, so it may
// jump), names each complete version that is not cleared exactly once, and ends at LastSeq.
func (c *checker) checkArrivals(data, cleared *Vector) error {
	seen := map[partKey]bool{}
	var next Seq = 1
	err := c.iter(pfxArrival, func(k, v []byte) bool {
		if len(k) != 9 || len(v) != 24 {
			return c.bad("arrival entry %x = %x", k, v)
		}
		seq := Seq(binary.BigEndian.Uint64(k[1:]))
		if seq < next {
			if !c.bad("arrival index goes back from %d to %d", next-1, seq) {
				return false
			}
		}
		next = seq + 1
		pk := partKey{SiteID(v[:16]), Version(binary.BigEndian.Uint64(v[16:]))}
		if seen[pk] {
			return c.bad("arrival seq %d names %v/%d again", seq, pk.site, pk.ver)
		}
		if !data.Contains(pk.site, pk.ver) {
			return c.bad("arrival seq %d names %v/%d, which is not held complete", seq, pk.site, pk.ver)
		}
		if cleared.Contains(pk.site, pk.ver) {
			return c.bad("arrival seq %d names %v/%d, which is cleared", seq, pk.site, pk.ver)
		}
		seen[pk] = true
		return true
	})
	if err != nil {
		return err
	}
	complete, _ := data.Counts()
	nCleared, _ := cleared.Counts()
	if uint64(len(seen)) != complete-nCleared {
		c.bad("%d complete versions (%d of them cleared), %d in the arrival index", complete, nCleared, len(seen))
	}
	if last := c.lastSeq; last > 0 && (next-1 < last || !c.live && next-1 != last) {
		c.bad("the arrival index ends at %d, the log at %d", next-1, last)
	}
	return nil
}

// checkCounters: the persisted counters match the data.
func (c *checker) checkCounters(d checkedData) {
	v, closer, err := c.snap.Get(metaKey(metaStats))
	if err != nil {
		if !errors.Is(err, pebble.ErrNotFound) || d.changes > 0 {
			c.bad("stats: %v", err)
		}
		return
	}
	defer closer.Close()
	if len(v) != 16 {
		c.bad("stats of %d bytes", len(v))
	} else if gc, gb := binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]); gc != d.changes || gb != d.bytes {
		c.bad("stats say %d changes, %d bytes; the data holds %d, %d", gc, gb, d.changes, d.bytes)
	}
}

// diffVectors reports, per site, how the vector the data adds up to differs from the stored one.
func diffVectors(data, stored *Vector, bad func(string, ...any) bool) {
	sites := map[SiteID]bool{}
	for s := range data.Sites {
		sites[s] = true
	}
	for s := range stored.Sites {
		sites[s] = true
	}
	empty := &SiteVector{}
	for _, site := range slices.SortedFunc(func(yield func(SiteID) bool) {
		for s := range sites {
			if !yield(s) {
				return
			}
		}
	}, SiteID.Compare) {
		a, b := data.Sites[site], stored.Sites[site]
		if a == nil {
			a = empty
		}
		if b == nil {
			b = empty
		}
		if !slices.Equal(a.Versions, b.Versions) {
			if !bad("site %v: the data holds versions %s, the vector says %s", site, fmtRanges(a.Versions, 8), fmtRanges(b.Versions, 8)) {
				return
			}
		}
		vers := map[Version]bool{}
		for v := range a.Partials {
			vers[v] = true
		}
		for v := range b.Partials {
			vers[v] = true
		}
		for _, ver := range slices.Sorted(func(yield func(Version) bool) {
			for v := range vers {
				if !yield(v) {
					return
				}
			}
		}) {
			pa, pb := a.Partials[ver], b.Partials[ver]
			if pa != nil && pb != nil && pa.LastOrd == pb.LastOrd && slices.Equal(pa.Held, pb.Held) {
				continue
			}
			if !bad("site %v version %d: the data holds seqs %s, the vector says %s", site, ver, showPartial(pa), showPartial(pb)) {
				return
			}
		}
	}
}

func showPartial(p *Partial) string {
	if p == nil {
		return "none (not partial)"
	}
	return fmt.Sprintf("%s of 0-%d", fmtRanges(p.Held, 8), p.LastOrd)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
