package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Forged history (issue 12, item 4). Two defences, both in the log because only the log knows
// what it holds:
//
//   - A node is the only writer of its own site. A changeset of this node's site that it does
//     not hold was not written by it (its log is intact: the site id lives in it), so Ingest
//     refuses it with ErrForged. A restore as an existing site is the one explicit exception:
//     TrustOwnVersions records up to which version the cluster may hand this node its own
//     versions back.
//   - Every version carries a content digest (Digest) computed by its origin over the whole
//     version. A (site, version) that arrives with a digest other than the one held is a
//     collision (ErrCollision): the held copy is kept, the arrival refused, and it is counted,
//     logged at warn and shown in Stats (health, metrics). Without signatures a receiver cannot
//     tell which copy is genuine, but it is never silently the wrong one.

var (
	// ErrForged is a changeset of this node's own site that this node did not write.
	ErrForged = errors.New("log: a version of this node's own site that it did not write")
	// ErrCollision is a (site, version) held with different content (another digest).
	ErrCollision = errors.New("log: version held with different content")
)

// checkDigest fills in cs's digest when absent and computable, and refuses one that does not
// match the content it claims to digest. It returns the changeset to store: cs itself, or a
// copy carrying the digest (a remote caller's changeset may be shared with other goroutines,
// so it is never written to).
func checkDigest(cs *Changeset) (*Changeset, error) {
	if noDigests {
		return cs, nil
	}
	d, ok := cs.ComputeDigest()
	if !ok {
		return cs, nil
	}
	if cs.Digest.IsZero() {
		c := *cs
		c.Digest = d
		return &c, nil
	}
	if cs.Digest != d {
		return nil, invalidf("changeset %v/%d: digest %v does not match its content (%v)", cs.Site, cs.Version, cs.Digest, d)
	}
	return cs, nil
}

// noDigests turns digests off (no computation, no 0x08 key, no content sum): only the
// benchmark that measures what they cost sets it (digest_bench_test.go), before any store
// opens.
var noDigests bool

// digestKey: 0x08 site(16) version(8) -> the digest of a complete version, written when it
// becomes complete. Versions stored before digests have none and are never compared.
const pfxDigest byte = 0x08

func digestKey(site SiteID, v Version) []byte {
	b := append(make([]byte, 0, 25), pfxDigest)
	b = append(b, site[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// heldDigest returns the digest recorded for a complete version (zero when none).
func (s *Store) heldDigest(site SiteID, v Version) (Digest, error) {
	if err := s.rlock(); err != nil {
		return Digest{}, err
	}
	defer s.closeMu.RUnlock()
	raw, err := s.get(digestKey(site, v))
	if err != nil || len(raw) != len(Digest{}) {
		return Digest{}, err
	}
	return Digest(raw), nil
}

// metaOwnTrusted: version(8), the highest version of this node's own site that Ingest
// accepts from others (set by a restore as an existing site).
const metaOwnTrusted = "own_trusted"

// forgeState counts refusals for Stats and bounds the warn lines: one per (site, version),
// at most maxForgeLogged of them, then one line saying the rest are only counted.
type forgeState struct {
	mu         sync.Mutex
	forged     uint64
	collisions uint64
	logged     map[partKey]struct{}
	trusted    Version // loaded lazily from metaOwnTrusted
	loaded     bool
}

const maxForgeLogged = 256

// ForgeStats are the refusals Ingest made since the store opened.
type ForgeStats struct {
	Forged     uint64 // changesets of this node's own site it did not write
	Collisions uint64 // versions that arrived with another digest than the one held
}

// Forgeries returns the refusals counted since the store opened.
func (s *Store) Forgeries() ForgeStats {
	s.forge.mu.Lock()
	defer s.forge.mu.Unlock()
	return ForgeStats{Forged: s.forge.forged, Collisions: s.forge.collisions}
}

func (s *Store) ownTrusted() Version {
	s.forge.mu.Lock()
	defer s.forge.mu.Unlock()
	if !s.forge.loaded {
		if raw, err := s.get(metaKey(metaOwnTrusted)); err == nil && len(raw) == 8 {
			s.forge.trusted = Version(binary.BigEndian.Uint64(raw))
		}
		s.forge.loaded = true
	}
	return s.forge.trusted
}

// TrustOwnVersions is the explicit step of a restore as an existing site: versions of this
// node's own site up to v exist in the cluster (they were written by the node being
// replaced, after the backup), so Ingest accepts them from peers, and the next local version
// is after them so that this node never writes a different version under the same number.
func (s *Store) TrustOwnVersions(v Version) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	if err := s.rlock(); err != nil {
		return err
	}
	s.rep.metaMu.RLock()
	err := s.db.Set(metaKey(metaOwnTrusted), b[:], s.wopts)
	s.rep.metaMu.RUnlock()
	s.closeMu.RUnlock()
	if err != nil {
		return fmt.Errorf("trust own versions: %w", err)
	}
	s.forge.mu.Lock()
	s.forge.trusted, s.forge.loaded = v, true
	s.forge.mu.Unlock()
	for {
		cur := s.nextLocal.Load()
		if uint64(v) < cur || s.nextLocal.CompareAndSwap(cur, uint64(v)+1) {
			return nil
		}
	}
}

// Screen says whether Ingest would refuse cs, without storing anything: ErrForged,
// ErrCollision, an ErrInvalid (shape or digest), or nil. An API checks a whole body with it
// before applying any of it; a refusal is counted and logged as Ingest's are.
func (s *Store) Screen(cs *Changeset) error {
	if err := cs.Validate(); err != nil {
		return err
	}
	cs, err := checkDigest(cs)
	if err != nil {
		return err
	}
	return s.screen(cs, true)
}

// screen is Screen on a validated changeset with its digest filled in; note records the
// refusal (counter and warn line).
func (s *Store) screen(cs *Changeset, note bool) error {
	held := s.Contains(cs.Site, cs.Version)
	if cs.Site == s.site && !held && cs.Version > s.ownTrusted() {
		// Parts of a version being written locally are never ingested: a node writes its
		// versions only through Append/AppendLocal, never through Ingest.
		if note {
			s.noteForge(cs, ErrForged, Digest{})
		}
		return fmt.Errorf("%w: %v/%d (this node's next version is %d)", ErrForged, cs.Site, cs.Version, s.NextLocalVersion())
	}
	if cs.Digest.IsZero() || !held && !s.repairPending(cs.Site, cs.Version) {
		return nil
	}
	// Held, or removed by a repair (repair.go) whose digest was kept: the copy must match.
	h, err := s.heldDigest(cs.Site, cs.Version)
	if err != nil {
		return err
	}
	if !h.IsZero() && h != cs.Digest {
		if note {
			s.noteForge(cs, ErrCollision, h)
		}
		return fmt.Errorf("%w: %v/%d held with digest %v, arrived with %v", ErrCollision, cs.Site, cs.Version, h, cs.Digest)
	}
	return nil
}

func (s *Store) noteForge(cs *Changeset, kind error, held Digest) {
	s.forge.mu.Lock()
	if kind == ErrForged {
		s.forge.forged++
		s.metrics.forged.Inc()
	} else {
		s.forge.collisions++
		s.metrics.collisions.Inc()
	}
	if s.forge.logged == nil {
		s.forge.logged = map[partKey]struct{}{}
	}
	k := partKey{cs.Site, cs.Version}
	_, seen := s.forge.logged[k]
	n := len(s.forge.logged)
	if !seen && n <= maxForgeLogged {
		s.forge.logged[k] = struct{}{}
	}
	s.forge.mu.Unlock()
	switch {
	case seen || n > maxForgeLogged:
	case n == maxForgeLogged:
		s.logger.Warn("more forged or colliding versions: counted, no longer logged", "limit", maxForgeLogged)
	case kind == ErrForged:
		s.logger.Warn("refused a version of this node's own site that it did not write (forged?)",
			"site", cs.Site, "version", cs.Version, "next_local", s.NextLocalVersion())
	default:
		s.logger.Warn("refused a version held with different content (two writers of one site, or a forgery)",
			"site", cs.Site, "version", cs.Version, "held_digest", held, "arrived_digest", cs.Digest)
	}
}

// Ingest is Append for changesets made elsewhere (gossip, sync, POST /v1/changes): it
// refuses, per changeset and without failing the others, a version of this node's own site
// it did not write (ErrForged) and a version held with another digest (ErrCollision); each is
// reported in its AppendResult.Refused, counted and logged. An invalid changeset (shape, or a
// digest that does not match its content) fails the whole call as in Append.
func (s *Store) Ingest(ctx context.Context, css ...*Changeset) ([]AppendResult, error) {
	res := make([]AppendResult, len(css))
	keep := make([]*Changeset, 0, len(css))
	idx := make([]int, 0, len(css))
	for i, cs := range css {
		if cs == nil {
			return nil, invalidf("ingest: changeset %d is nil", i)
		}
		if err := cs.Validate(); err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		cs, err := checkDigest(cs)
		if err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		if err := s.screen(cs, true); err != nil {
			if !errors.Is(err, ErrForged) && !errors.Is(err, ErrCollision) {
				return nil, fmt.Errorf("ingest: %w", err)
			}
			res[i].Refused = err
			res[i].Complete = s.Contains(cs.Site, cs.Version)
			continue
		}
		keep = append(keep, cs)
		idx = append(idx, i)
	}
	if len(keep) == 0 {
		return res, nil
	}
	var got []AppendResult
	p, err := s.appendAsync(ctx, keep, true) // validated and digest-checked above
	if err == nil {
		got, err = p.Wait()
	}
	if err != nil {
		return nil, err
	}
	for j, r := range got {
		res[idx[j]] = r
	}
	return res, nil
}
