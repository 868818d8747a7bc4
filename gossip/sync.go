package gossip

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/quic-go/quic-go"
	"github.com/vmihailenco/msgpack/v5"
)

// syncApplyBytes bounds the bytes of changesets handed to the Applier at once while syncing.
const syncApplyBytes = 8 << 20

// syncIdleTimeout bounds each wait of a sync session for the peer (its next frame, room to
// write): a peer that stops making progress fails the session long before SyncTimeout, so
// the next round can pick another peer.
const syncIdleTimeout = 10 * time.Second

// idleStream sets a fresh read or write deadline on a sync stream before each operation.
type idleStream struct{ st *quic.Stream }

func (s idleStream) Read(b []byte) (int, error) {
	_ = s.st.SetReadDeadline(time.Now().Add(syncIdleTimeout))
	return s.st.Read(b)
}

func (s idleStream) Write(b []byte) (int, error) {
	_ = s.st.SetWriteDeadline(time.Now().Add(syncIdleTimeout))
	return s.st.Write(b)
}

func (g *Gossip) triggerSync() {
	select {
	case g.syncNow <- struct{}{}:
	default:
	}
}

// syncLoop runs a sync round every SyncInterval (jittered by +-25%), and at once when a
// member joins (which covers this node's own start: its first peers join it).
func (g *Gossip) syncLoop() {
	for {
		d := g.cfg.SyncInterval
		d = d*3/4 + time.Duration(rand.Int64N(int64(d)/2+1))
		t := time.NewTimer(d)
		select {
		case <-g.run.Done():
			t.Stop()
			return
		case <-t.C:
		case <-g.syncNow:
			t.Stop()
		}
		g.syncRound()
		g.gaps()
	}
}

// syncRound syncs with up to SyncPeers peers, preferring those it knows it lacks most
// from; a peer that refuses (busy) or fails is replaced by the next candidate. It returns
// how many sessions completed and how many peers refused.
func (g *Gossip) syncRound() (done, busy int) {
	peers := g.alivePeers()
	if len(peers) == 0 {
		return 0, 0
	}
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	ours := g.log.Vector()
	lack := make(map[string]uint64, len(peers))
	g.mu.Lock()
	for _, p := range peers {
		if v := g.vectors[p.name]; v != nil {
			lack[p.name] = lackCount(ours, v)
		} else {
			lack[p.name] = 1 // unknown: worth a look
		}
	}
	g.mu.Unlock()
	sort.SliceStable(peers, func(i, j int) bool { return lack[peers[i].name] > lack[peers[j].name] })
	for _, p := range peers {
		if done >= g.cfg.SyncPeers || g.run.Err() != nil {
			return done, busy
		}
		err := g.syncWith(p)
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
				g.logger.Debug("sync failed", attrPeer, p.name, attrErr, err)
			}
		}
	}
	return done, busy
}

// syncWith runs one session as the client.
func (g *Gossip) syncWith(p *peer) error {
	ctx, cancel := context.WithTimeout(p.ctx, g.cfg.SyncTimeout)
	defer cancel()
	conn, err := p.connect(ctx)
	if err != nil {
		return err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		p.dropConn(conn, err)
		return fmt.Errorf("open sync stream: %w", err)
	}
	defer st.CancelRead(0)
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	defer stop()
	ours := g.log.Vector()
	vb, err := encodeVector(ours)
	if err != nil {
		return fmt.Errorf("encode vector: %w", err)
	}
	out := append(g.hello(streamSync), appendFrame(nil, frameVector, vb)...)
	if _, err := (idleStream{st}).Write(out); err != nil {
		return fmt.Errorf("send vector: %w", err)
	}
	fr := newFrameReader(idleStream{st})
	typ, body, err := fr.next()
	if err != nil {
		return fmt.Errorf("read vector: %w", err)
	}
	switch typ {
	case frameBusy:
		st.CancelWrite(0)
		return ErrBusy
	case frameVector:
	default:
		return fmt.Errorf("%w: sync reply of type %d", ErrProtocol, typ)
	}
	theirs, err := decodeVector(body)
	if err != nil {
		return err
	}
	return g.exchange(p.name, st, fr, ours, theirs)
}

// serveSync serves one session: refuse when busy, else swap vectors and exchange.
func (g *Gossip) serveSync(conn *quic.Conn, st *quic.Stream) {
	defer st.CancelRead(0)
	fr := newFrameReader(idleStream{st})
	h, err := g.readHello(conn, fr, streamSync)
	if err != nil {
		st.CancelWrite(0)
		g.logger.Debug("sync stream refused", attrAddr, conn.RemoteAddr(), attrErr, err)
		return
	}
	from := log.SiteID(h.Site)
	if n := g.served.Add(1); n > int32(g.cfg.MaxServedSyncs) {
		g.served.Add(-1)
		g.m.syncRounds.WithLabelValues("server", "busy").Inc()
		_, _ = st.Write(appendFrame(nil, frameBusy, nil))
		_ = st.Close()
		return
	}
	defer g.served.Add(-1)
	ctx, cancel := context.WithTimeout(g.run, g.cfg.SyncTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	defer stop()
	typ, body, err := fr.next()
	if err == nil && typ != frameVector {
		err = fmt.Errorf("%w: sync frame of type %d, want vector", ErrProtocol, typ)
	}
	var theirs *log.Vector
	if err == nil {
		theirs, err = decodeVector(body)
	}
	if err != nil {
		g.m.syncRounds.WithLabelValues("server", "error").Inc()
		g.logger.Debug("sync: read vector", attrPeer, from, attrErr, err)
		st.CancelWrite(0)
		return
	}
	ours := g.log.Vector()
	vb, err := encodeVector(ours)
	if err != nil {
		st.CancelWrite(0)
		return
	}
	if _, err := (idleStream{st}).Write(appendFrame(nil, frameVector, vb)); err != nil {
		return
	}
	if err := g.exchange(from.String(), st, fr, ours, theirs); err != nil {
		g.m.syncRounds.WithLabelValues("server", "error").Inc()
		if g.run.Err() == nil {
			g.logger.Debug("sync served", attrPeer, from, attrErr, err)
		}
		return
	}
	g.m.syncRounds.WithLabelValues("server", "ok").Inc()
}

// exchange streams the peer what it lacks while applying what it streams back. Both ends
// run it at once over one bidirectional stream.
func (g *Gossip) exchange(name string, st *quic.Stream, fr *frameReader, ours, theirs *log.Vector) error {
	g.mu.Lock()
	g.vectors[name] = theirs
	g.mu.Unlock()
	sendErr := make(chan error, 1)
	go func() {
		err := g.sendMissing(st, theirs)
		if err != nil {
			st.CancelWrite(0)
		} else {
			err = st.Close()
		}
		sendErr <- err
	}()
	recvErr := g.receiveSync(name, fr)
	if recvErr != nil {
		st.CancelRead(0)
		st.CancelWrite(0)
	}
	if err := <-sendErr; err != nil && recvErr == nil {
		return fmt.Errorf("send: %w", err)
	}
	if recvErr != nil {
		return fmt.Errorf("receive: %w", recvErr)
	}
	return nil
}

// sendMissing writes what theirs lacks, oldest version first per site, then a done frame.
// QUIC flow control bounds what is in flight; the log is read as it goes.
func (g *Gossip) sendMissing(st *quic.Stream, theirs *log.Vector) error {
	w := bufio.NewWriterSize(idleStream{st}, 256<<10)
	var done doneMsg
	var bytes uint64
	write := func(cs *log.Changeset) error {
		frame, err := changesetFrame(cs, 0)
		if err != nil {
			return err
		}
		if _, err := w.Write(frame); err != nil {
			return err
		}
		done.Changesets++
		done.Changes += uint64(len(cs.Changes))
		bytes += uint64(len(frame))
		return nil
	}
	for _, sm := range g.log.Missing(theirs) {
		for _, r := range sm.Versions {
			for cs, err := range g.log.Scan(sm.Site, log.Version(r.First), log.Version(r.Last)) {
				if err != nil {
					return fmt.Errorf("scan %v [%d, %d]: %w", sm.Site, r.First, r.Last, err)
				}
				if err := write(cs); err != nil {
					return err
				}
			}
		}
		vs := make([]log.Version, 0, len(sm.Parts))
		for v := range sm.Parts {
			vs = append(vs, v)
		}
		sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		for _, v := range vs {
			need := sm.Parts[v]
			for cs, err := range g.log.Scan(sm.Site, v, v) {
				if err != nil {
					return fmt.Errorf("scan %v/%d: %w", sm.Site, v, err)
				}
				if overlaps(need, cs.Seqs) {
					if err := write(cs); err != nil {
						return err
					}
				}
			}
		}
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

func overlaps(rs log.RangeSet, r log.SeqRange) bool {
	for _, x := range rs {
		if x.First <= r.Last && r.First <= x.Last {
			return true
		}
	}
	return false
}

// receiveSync applies the peer's changesets in bounded chunks until its done frame.
func (g *Gossip) receiveSync(name string, fr *frameReader) error {
	var css []*log.Changeset
	size := 0
	flush := func() error {
		if len(css) == 0 {
			return nil
		}
		_, err := g.applyBatch(css, "sync")
		clear(css)
		css, size = css[:0], 0
		return err
	}
	before := fr.bytes
	defer func() { g.m.bytesRecv.WithLabelValues("sync").Add(float64(fr.bytes - before)) }()
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
		case frameDone:
			return flush()
		default:
			return fmt.Errorf("%w: sync frame of type %d", ErrProtocol, typ)
		}
	}
}
