package gossip

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/vmihailenco/msgpack/v5"
)

// syncApplyBytes bounds the bytes of changesets handed to the Applier at once while syncing.
const syncApplyBytes = 8 << 20

// syncIdleTimeout bounds each wait of a sync session for the peer (its next frame, room to
// write): a peer that stops making progress fails the session long before SyncTimeout, so
// the next round can pick another peer.
const syncIdleTimeout = 10 * time.Second

// gapsRefresh is the most often sync rounds refresh the per-site gaps gauge (Stats and
// GET /v1/health compute gaps afresh).
const gapsRefresh = 5 * time.Second

// triggerSync runs a sync round soon: at once when none is running, else right after the
// running one.
func (g *Gossip) triggerSync() {
	g.smu.Lock()
	defer g.smu.Unlock()
	if g.syncing {
		g.syncPending = true
		return
	}
	if g.syncTimer != nil && !g.syncTimer.Stop() {
		return // it fired and its round is about to start
	}
	g.syncTimer, g.syncSoon = g.after(0, g.syncTick), true
}

// scheduleSync arms the timer of the next round: SyncInterval jittered by +-25%, or at once
// when a round was asked for while the last one ran. Needs g.smu.
func (g *Gossip) scheduleSyncLocked() {
	d := jitter(g.rand, g.cfg.SyncInterval, 0.25)
	if g.syncPending {
		g.syncPending, d = false, 0
	}
	g.syncTimer, g.syncSoon = g.after(d, g.syncTick), d == 0
}

// syncTick runs one round, then arms the next. Rounds never overlap.
func (g *Gossip) syncTick() {
	g.smu.Lock()
	if g.syncing {
		g.syncPending = true
		g.smu.Unlock()
		return
	}
	g.syncing, g.syncTimer, g.syncSoon = true, nil, false
	g.smu.Unlock()
	g.syncRound(func(done, busy int) {
		// The per-site gaps gauge, at most every gapsRefresh: it reads the log's whole
		// vector and sets one series per site, n of them at n nodes.
		if now := g.clock.Now(); now.Sub(g.gapsAt) >= gapsRefresh {
			g.gapsAt = now
			g.gaps()
		}
		g.smu.Lock()
		g.syncing = false
		g.scheduleSyncLocked()
		g.smu.Unlock()
	})
}

// syncRound syncs with up to SyncPeers peers, preferring those it knows it lacks most
// from; a peer that refuses (busy) or fails is replaced by the next candidate. It calls
// finish with how many sessions completed and how many peers refused, once every session
// it started has ended.
func (g *Gossip) syncRound(finish func(done, busy int)) {
	peers := g.alivePeers()
	shuffle(g.rand, len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	g.byLack(peers)
	var done, busy int
	var next func(i int)
	next = func(i int) {
		if i >= len(peers) || done >= g.cfg.SyncPeers || g.run.Err() != nil {
			finish(done, busy)
			return
		}
		p := peers[i]
		g.startSync(p, func(err error) {
			switch {
			case err == nil:
				done++
				g.syncRounds.Add(1)
				g.m.syncRounds.WithLabelValues("client", "ok").Inc()
			case errors.Is(err, ErrBusy):
				busy++
				g.m.syncRounds.WithLabelValues("client", "busy").Inc()
			default:
				g.m.syncRounds.WithLabelValues("client", "error").Inc()
				if g.run.Err() == nil {
					g.logger.Debug("sync failed", attrPeer, p.site, attrErr, err)
				}
			}
			next(i + 1)
		})
	}
	next(0)
}

// startSync runs one session with p as the client; done gets its outcome.
func (g *Gossip) startSync(p *peer, done func(error)) {
	ctx, cancel := context.WithTimeout(p.ctx, g.cfg.SyncTimeout)
	s := g.clientSession(p)
	g.tr.Sync(ctx, p.addr, s, func(err error) {
		cancel()
		s.ended(err)
		done(err)
	})
}

// clientSession is the client's side of a session with p: it opens with a digest when p
// serves them and this node is not configured with full vectors.
func (g *Gossip) clientSession(p *peer) *syncSession {
	return &syncSession{g: g, peer: p.site, digest: p.digest && !g.cfg.SyncFullVectors}
}

// ServeSync opens a session served to from, unless this node serves MaxServedSyncs.
func (in inbound) ServeSync(from log.SiteID) (SyncSession, error) {
	g := in.g
	if n := g.served.Add(1); n > int32(g.cfg.MaxServedSyncs) {
		g.served.Add(-1)
		g.m.syncRounds.WithLabelValues("server", "busy").Inc()
		return nil, ErrBusy
	}
	return &syncSession{g: g, peer: from, server: true}, nil
}

// syncSession is one side of a sync session (SyncSession).
//
// A session opens in one of two ways. With full vectors (a peer that does not advertise
// digests): the client sends its vector; the server answers with its own and streams
// what the client lacks while the client streams what the server lacks; three legs.
// With a digest (every node serves it and says so in its metadata, unless configured with
// SyncFullVectors):
// the client sends only a digest of its vector (digestLen bytes). If the server's digest
// is the same, it answers with it and both sides send just a done frame: an idle
// cluster's sync costs a few dozen bytes whatever its size, where a vector has one entry
// per site, n at n nodes. If not, the server answers with its full vector, the client
// sends its own ahead of what the server lacks, and the server streams what the client
// lacks once it has read it; four legs, about one round trip more than full vectors, only
// when there is something to sync.
type syncSession struct {
	g      *Gossip
	peer   log.SiteID // the other side
	server bool
	fr     *frameReader
	theirs *log.Vector
	done   bool // End ran

	digest bool // the session opened with the client's digest
	same   bool // the digests matched: nothing to exchange
	// digestOf is the client's digest (server) or the one sent (client).
	digestOf [digestLen]byte
	// vectorIn (server, digests differed) is closed once Receive has read the client's
	// vector (or failed first): SendMissing waits for it.
	vectorIn  chan struct{}
	closeOnce sync.Once
	resend    []log.SiteID // sites whose content differs from the peer's (content.go)
}

// reader wraps the session's reader once: its buffer holds what was read ahead.
func (s *syncSession) reader(r io.Reader) *frameReader {
	if s.fr == nil {
		s.fr = newFrameReader(r)
	}
	return s.fr
}

// WriteVector writes the session's opening (client: its digest, or its vector to a peer
// without digests) or the answer to it (server: its digest when they match, else its
// vector).
func (s *syncSession) WriteVector(w io.Writer) error {
	enc, digest, err := vectorDigest(s.g.log.Vector())
	if err != nil {
		return fmt.Errorf("encode vector: %w", err)
	}
	var frame []byte
	switch {
	case !s.server && s.digest:
		s.digestOf = digest
		frame = appendFrame(nil, frameDigest, digest[:])
	case s.server && s.digest && digest == s.digestOf:
		s.same = true
		frame = appendFrame(nil, frameDigest, digest[:])
	default:
		if s.server && s.digest {
			s.vectorIn = make(chan struct{})
		}
		frame = s.vectorFrame(enc)
	}
	if _, err := w.Write(frame); err != nil {
		return fmt.Errorf("send vector: %w", err)
	}
	return nil
}

// ReadVector reads the peer's opening or answer (ErrBusy: the server refused) and
// remembers a vector for the choice of sync peers and for Gaps.
func (s *syncSession) ReadVector(r io.Reader) error {
	typ, body, err := s.reader(r).next()
	if err != nil {
		return fmt.Errorf("read vector: %w", err)
	}
	switch {
	case typ == frameBusy && !s.server:
		return ErrBusy
	case typ == frameDigest && (s.server || s.digest):
		d, err := decodeDigest(body)
		if err != nil {
			return err
		}
		if s.server {
			s.digest, s.digestOf = true, d
			return nil
		}
		// A server answers with a digest only when it equals the client's.
		if d != s.digestOf {
			return fmt.Errorf("%w: sync answered with another digest", ErrProtocol)
		}
		s.same = true
		return nil
	case typ != frameVector:
		return fmt.Errorf("%w: sync frame of type %d, want vector", ErrProtocol, typ)
	}
	return s.readTheirs(body)
}

func (s *syncSession) readTheirs(body []byte) error {
	theirs, err := decodeVector(body)
	if err != nil {
		return err
	}
	s.theirs = theirs
	s.g.learnVector(theirs)
	s.resend = s.g.divergentSites(s.peer, theirs)
	return nil
}

// Ready reports whether SendMissing can run without waiting for Receive: not on a served
// session whose digests differed until the client's vector was read.
func (s *syncSession) Ready() bool { return s.vectorIn == nil || s.theirs != nil }

// learnVector records the highest version of each site a peer's vector holds (for Gaps).
func (g *Gossip) learnVector(theirs *log.Vector) {
	g.mu.Lock()
	for s, sv := range theirs.Sites {
		if sv == nil {
			continue
		}
		if h := uint64(sv.Head()); h > g.heads[s] {
			g.heads[s] = h
		}
	}
	g.mu.Unlock()
}

// ended records how much a session with a peer left this node lacking of what the peer
// holds, for the choice of sync peers: nothing when it completed (it brought all of it);
// after a failure, what the peer's vector holds that this log still lacks. (Only this count
// is kept, so the log's vector is copied only after a failure.)
func (s *syncSession) ended(err error) {
	var n uint64
	if err != nil {
		if s.theirs == nil {
			return // nothing learnt
		}
		n = lackCount(s.g.log.Vector(), s.theirs)
	}
	s.g.mu.Lock()
	s.g.lack[s.peer] = n
	s.g.mu.Unlock()
}

// SendMissing writes what the peer's vector lacks, then a done frame (only the done frame
// when the digests matched). A client that opened with a digest sends its vector first; a
// server whose digest differed waits until Receive has read the client's.
func (s *syncSession) SendMissing(w io.Writer) error {
	if s.same {
		return s.g.sendMissing(w, nil, nil, false) // a done frame only
	}
	if !s.server && s.digest {
		vb, err := encodeVector(s.g.log.Vector())
		if err != nil {
			return fmt.Errorf("encode vector: %w", err)
		}
		if _, err := w.Write(s.vectorFrame(vb)); err != nil {
			return fmt.Errorf("send vector: %w", err)
		}
	}
	if s.vectorIn != nil {
		<-s.vectorIn
	}
	if s.theirs == nil {
		return errors.New("sync: send before the peer's vector")
	}
	return s.g.sendMissing(w, s.theirs, s.resend, s.zstd())
}

// zstd reports whether this side compresses the frames it sends (compress.go).
func (s *syncSession) zstd() bool { return s.g.compressing() && s.g.peerZstd(s.peer) }

// vectorFrame returns a vector frame of the encoded vector enc, as a zstd frame to a peer
// that decodes them when that saves bytes: a vector has an entry per site, and the
// versions of a site that writes often compress well (digests are too small to).
func (s *syncSession) vectorFrame(enc []byte) []byte {
	frame := appendFrame(nil, frameVector, enc)
	if s.zstd() && len(enc) >= s.g.cfg.CompressMinBytes {
		if z := compressFrame(frame, s.g.cfg.CompressMinBytes); z != nil {
			s.g.countCompressed("sync", len(frame), len(z))
			return z
		}
	}
	return frame
}

// Receive applies the peer's changesets until its done frame; a server whose digest
// differed first reads the client's vector.
func (s *syncSession) Receive(r io.Reader) error {
	fr := s.reader(r)
	if s.vectorIn != nil {
		err := s.receiveVector(fr)
		s.closeOnce.Do(func() { close(s.vectorIn) })
		if err != nil {
			return err
		}
	}
	return s.g.receiveSync(s.peer, fr)
}

func (s *syncSession) receiveVector(fr *frameReader) error {
	typ, body, err := fr.next()
	if err != nil {
		return fmt.Errorf("read vector: %w", err)
	}
	if typ != frameVector {
		return fmt.Errorf("%w: sync frame of type %d, want the client's vector", ErrProtocol, typ)
	}
	return s.readTheirs(body)
}

// End frees a served session's slot and counts its outcome.
func (s *syncSession) End(err error) {
	if !s.server || s.done {
		return
	}
	s.done = true
	s.g.served.Add(-1)
	s.ended(err)
	if err != nil {
		s.g.m.syncRounds.WithLabelValues("server", "error").Inc()
		return
	}
	s.g.m.syncRounds.WithLabelValues("server", "ok").Inc()
}

// sendMissing writes what theirs lacks, oldest version first per site, then a done frame.
// QUIC flow control bounds what is in flight; the log is read as it goes.
// With zstd set, frames that compress well go compressed (compress.go).
// resend are sites whose versions go although the peer holds them (content.go).
func (g *Gossip) sendMissing(out io.Writer, theirs *log.Vector, resend []log.SiteID, zstd bool) error {
	var w interface {
		io.Writer
		Flush() error
	}
	if _, ok := out.(interface{ AvailableBuffer() []byte }); ok {
		w = noFlush{out} // it buffers already (a bytes.Buffer: the simulator's message)
	} else {
		w = bufio.NewWriterSize(out, 256<<10)
	}
	var done doneMsg
	var bytes uint64
	write := func(cs *log.Changeset) error {
		frame, err := changesetFrame(cs, 0)
		if err != nil {
			return err
		}
		if zstd && len(frame) >= g.cfg.CompressMinBytes {
			if z := compressFrame(frame, g.cfg.CompressMinBytes); z != nil {
				g.countCompressed("sync", len(frame), len(z))
				frame = z
			}
		}
		if _, err := w.Write(frame); err != nil {
			return err
		}
		done.Changesets++
		done.Changes += uint64(len(cs.Changes))
		bytes += uint64(len(frame))
		return nil
	}
	var missing []log.SiteMissing
	if theirs != nil {
		missing = g.log.Missing(theirs)
	}
	for _, sm := range missing {
		// Cleared versions travel as ranges; only the others have payloads to scan.
		versions := sm.Versions
		if len(sm.Cleared) > 0 {
			frames, err := clearedFrames(nil, sm.Site, sm.Cleared)
			if err != nil {
				return err
			}
			if _, err := w.Write(frames); err != nil {
				return err
			}
			done.Cleared += sm.Cleared.Count()
			bytes += uint64(len(frames))
			versions = versions.Subtract(sm.Cleared)
		}
		skipped, err := g.sendVersions(sm.Site, versions, write)
		done.Damaged += skipped
		if err != nil {
			return err
		}
		skipped, err = g.sendParts(sm.Site, sm.Parts, write)
		done.Damaged += skipped
		if err != nil {
			return err
		}
	}
	for _, site := range resend {
		skipped, err := g.sendVersions(site, g.resendVersions(site), write)
		done.Damaged += skipped
		if err != nil {
			return err
		}
	}
	if done.Damaged > 0 {
		g.m.damaged.WithLabelValues("skipped").Add(float64(done.Damaged))
		g.logger.Warn("sync: versions in a damaged part of the log were not sent; the peer takes them from another node",
			"versions", done.Damaged)
	}
	body, err := msgpack.Marshal(&done)
	if err != nil {
		return err
	}
	if _, err := w.Write(appendFrame(nil, frameDone, body)); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	g.m.versionsSent.WithLabelValues("sync").Add(float64(done.Changesets))
	g.m.bytesSent.WithLabelValues("sync").Add(float64(bytes))
	return nil
}

// sendParts writes the parts of site's versions that the peer lacks (need, by version,
// oldest version first) with write; a version in a damaged part of the log is skipped and
// counted in damaged.
func (g *Gossip) sendParts(site log.SiteID, need map[log.Version]log.RangeSet, write func(*log.Changeset) error) (damaged uint64, err error) {
	vs := make([]log.Version, 0, len(need))
	for v := range need {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	for _, v := range vs {
		for cs, err := range g.log.Scan(site, v, v) {
			if errors.Is(err, log.ErrCorrupt) {
				damaged++
				break
			}
			if err != nil {
				return damaged, fmt.Errorf("scan %v/%d: %w", site, v, err)
			}
			if overlaps(need[v], cs.Span) {
				if err := write(cs); err != nil {
					return damaged, err
				}
			}
		}
	}
	return damaged, nil
}

// DamageReporter is implemented by a Log that knows which versions lie in damaged files
// (*log.Store does), file by file: sync skips the rest of such a range at once after
// damagedStreak unreadable versions in a row.
type DamageReporter interface {
	DamagedVersionsOf(site log.SiteID) log.RangeSet
}

// damagedStreak is how many unreadable versions in a row sync skips one by one before it
// skips all that the damaged file may hold. One by one loses nothing readable when one block
// of a file is damaged (Pebble reports the whole file's range); the streak bounds the cost
// when the whole file is gone.
const damagedStreak = 64

// sendVersions writes the changesets of site's versions in rs, in order. A version the log
// cannot read (ErrCorrupt: a damaged file) is skipped and counted, never the session's end:
// the rest of the range, and the other sites, still go, and the done frame says how many
// were skipped. A version cut short by the damage reaches the peer as a partial version, which
// its vector records as such, so nothing is taken as complete that was not sent whole.
func (g *Gossip) sendVersions(site log.SiteID, rs log.RangeSet, write func(*log.Changeset) error) (skipped uint64, err error) {
	todo := slices.Clone(rs)
	streak := 0
	for len(todo) > 0 {
		r := todo[0]
		from := r.First
		var scanErr error
		for cs, err := range g.log.Scan(site, log.Version(r.First), log.Version(r.Last)) {
			if err != nil {
				scanErr = err
				break
			}
			if err := write(cs); err != nil {
				return skipped, err
			}
			streak = 0
			from = uint64(cs.Version) + 1
			if cs.Span.Last < cs.LastOrd {
				from = uint64(cs.Version) // more parts of this version to come
			}
		}
		if scanErr == nil {
			todo = todo[1:]
			continue
		}
		if !errors.Is(scanErr, log.ErrCorrupt) {
			return skipped, fmt.Errorf("scan %v [%d, %d]: %w", site, r.First, r.Last, scanErr)
		}
		// Skip the version the scan stopped on; after a streak, all the damage may cover.
		rest := log.RangeSet{{First: from, Last: r.Last}}
		skip := log.RangeSet{{First: from, Last: from}}
		if streak++; streak >= damagedStreak {
			if dr, ok := g.log.(DamageReporter); ok {
				if d := rest.Intersect(dr.DamagedVersionsOf(site)); len(d) > 0 && d[0].First == from {
					skip = d[:1]
				}
			}
		}
		skipped += skip.Count()
		todo = append(rest.Subtract(skip), todo[1:]...)
	}
	return skipped, nil
}

// noFlush is a writer that buffers by itself.
type noFlush struct{ io.Writer }

func (noFlush) Flush() error { return nil }

func overlaps(rs log.RangeSet, r log.OrdRange) bool {
	for _, x := range rs {
		if x.First <= r.Last && r.First <= x.Last {
			return true
		}
	}
	return false
}

// receiveSync applies the peer's changesets in bounded chunks until its done frame.
func (g *Gossip) receiveSync(peer log.SiteID, fr *frameReader) error {
	var css []*log.Changeset
	size := 0
	flush := func() error {
		if len(css) == 0 {
			return nil
		}
		_, err := g.applyBatch(g.run, css, "sync")
		clear(css)
		css, size = css[:0], 0
		return err
	}
	before := fr.bytes
	zseen := [2]uint64{fr.zwire, fr.zplain}
	defer func() {
		g.m.bytesRecv.WithLabelValues("sync").Add(float64(fr.bytes - before))
		g.countReceived("sync", fr, &zseen)
	}()
	for {
		typ, body, err := fr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: sync stream ended without done", ErrProtocol)
			}
			return err
		}
		switch typ {
		case frameChangeset:
			_, cs, err := decodeChangesetFrame(body)
			if err != nil {
				return err
			}
			css = append(css, cs)
			size += len(body)
			if len(css) >= g.cfg.SyncChunk || size >= syncApplyBytes || !fr.buffered() {
				if err := flush(); err != nil {
					return err
				}
			}
		case frameCleared:
			site, rs, err := decodeCleared(body)
			if err != nil {
				return err
			}
			if _, err := g.log.AppendCleared(g.run, site, rs); err != nil {
				return fmt.Errorf("record cleared versions: %w", err)
			}
		case frameDone:
			var done doneMsg
			if err := msgpack.Unmarshal(body, &done); err == nil && done.Damaged > 0 {
				g.m.damaged.WithLabelValues("peer").Add(float64(done.Damaged))
				g.logger.Warn("sync: the peer could not send versions from a damaged part of its log; they will come from another node",
					attrPeer, peer, "versions", done.Damaged)
			}
			return flush()
		default:
			return fmt.Errorf("%w: sync frame of type %d", ErrProtocol, typ)
		}
	}
}
