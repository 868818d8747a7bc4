package gossip

import (
	"errors"
	"io"
	"math/rand/v2"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/quic-go/quic-go"
)

// forward sends cs to fanout random live peers, except from (the peer it came from) and
// its origin site, with hops as its budget. When the chosen peers are every candidate,
// they need not forward it further, so it goes with budget 0.
func (g *Gossip) forward(cs *log.Changeset, hops, fanout int, from string) {
	if hops <= 0 {
		return
	}
	origin := cs.Site.String()
	peers := g.alivePeers()
	cand := peers[:0]
	for _, p := range peers {
		if p.name != from && p.name != origin {
			cand = append(cand, p)
		}
	}
	if len(cand) == 0 {
		return
	}
	out := hops - 1
	if len(cand) <= fanout {
		out = 0
	} else {
		rand.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
		cand = cand[:fanout]
	}
	frame, err := changesetFrame(cs, out)
	if err != nil {
		g.logger.Error("broadcast: encode", attrSite, cs.Site, "version", cs.Version, attrErr, err)
		return
	}
	for _, p := range cand {
		p.enqueue(frame)
	}
}

// broadcastLarge sends a large local changeset as the parts the log stored, so that every
// node sees the same part boundaries; if the log has none yet, it cuts parts itself.
func (g *Gossip) broadcastLarge(cs *log.Changeset) {
	sent := 0
	for part, err := range g.log.Scan(cs.Site, cs.Version, cs.Version) {
		if err != nil {
			g.logger.Warn("broadcast: scan large version", attrSite, cs.Site, "version", cs.Version, attrErr, err)
			break
		}
		g.forward(part, g.cfg.MaxHops, g.cfg.LocalFanout, "")
		sent++
	}
	if sent > 0 {
		return
	}
	for _, part := range splitParts(cs, g.cfg.PartChanges) {
		g.forward(part, g.cfg.MaxHops, g.cfg.LocalFanout, "")
	}
}

// splitParts cuts cs into parts of at most n changes by seq range.
func splitParts(cs *log.Changeset, n int) []*log.Changeset {
	if len(cs.Changes) <= n {
		return []*log.Changeset{cs}
	}
	var out []*log.Changeset
	for i := 0; i < len(cs.Changes); i += n {
		j := min(i+n, len(cs.Changes))
		p := *cs
		p.Changes = cs.Changes[i:j]
		p.Seqs = log.SeqRange{First: cs.Changes[i].Seq, Last: cs.Changes[j-1].Seq}
		out = append(out, &p)
	}
	return out
}

// enqueue adds a frame to the peer's queue, dropping the oldest when full.
func (p *peer) enqueue(frame []byte) {
	p.qmu.Lock()
	if p.ctx.Err() != nil {
		p.qmu.Unlock()
		return
	}
	if len(p.queue) >= p.g.cfg.QueueLen {
		p.qbytes -= len(p.queue[0])
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.g.drops.Add(1)
		p.g.m.drops.Inc()
		p.g.queued.Add(-1)
	}
	p.queue = append(p.queue, frame)
	p.qbytes += len(frame)
	p.g.queued.Add(1)
	p.qmu.Unlock()
	p.g.m.queueLen.Set(float64(p.g.queued.Load()))
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// take removes up to max bytes of frames (at least one) from the queue.
func (p *peer) take(max int) (batch [][]byte, size int) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	i := 0
	for i < len(p.queue) && (i == 0 || size+len(p.queue[i]) <= max) {
		size += len(p.queue[i])
		i++
	}
	batch = append(batch, p.queue[:i]...)
	clear(p.queue[:i])
	p.queue = p.queue[i:]
	if len(p.queue) == 0 {
		p.queue = nil // let the backing array go
	}
	p.qbytes -= size
	p.g.queued.Add(int64(-i))
	return batch, size
}

func (p *peer) queuedBytes() int {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	return p.qbytes
}

// sendLoop writes the peer's queue to one long-lived unidirectional stream, in batches of
// up to BatchBytes collected over at most BatchDelay after the previous send. A failed write drops its batch (sync
// repairs) and the stream is reopened on a fresh connection.
func (p *peer) sendLoop() {
	g := p.g
	var (
		st       *quic.SendStream
		conn     *quic.Conn
		backoff  time.Duration
		buf      []byte
		lastSend time.Time
	)
	defer func() {
		if st != nil {
			st.CancelWrite(0)
		}
		p.qmu.Lock()
		n := len(p.queue)
		p.queue, p.qbytes = nil, 0
		p.qmu.Unlock()
		g.queued.Add(int64(-n))
	}()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.signal:
		}
		// Nagle-like: a frame after a quiet spell goes at once; frames that follow within
		// BatchDelay of the last send wait for the rest of it (or BatchBytes) and go
		// together. Idle links get the lowest latency, busy ones fewer, larger writes.
		if wait := time.Until(lastSend.Add(g.cfg.BatchDelay)); wait > 0 && p.queuedBytes() < g.cfg.BatchBytes {
			t := time.NewTimer(wait)
			select {
			case <-p.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		for {
			batch, _ := p.take(g.cfg.BatchBytes)
			if len(batch) == 0 {
				break
			}
			if st == nil {
				var err error
				if conn, err = p.connect(p.ctx); err == nil {
					st, err = conn.OpenUniStream()
					if err == nil {
						buf = append(buf[:0], g.hello(streamBroadcast)...)
					}
				}
				if err != nil {
					if p.ctx.Err() != nil {
						return
					}
					g.dropBatch(len(batch))
					backoff = min(max(backoff*2, 50*time.Millisecond), 2*time.Second)
					g.logger.Debug("broadcast: connect", attrPeer, p.name, attrErr, err)
					select {
					case <-p.ctx.Done():
						return
					case <-time.After(backoff):
					}
					continue
				}
			}
			for _, f := range batch {
				buf = append(buf, f...)
			}
			_ = st.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := st.Write(buf); err != nil {
				if p.ctx.Err() != nil {
					return
				}
				g.logger.Debug("broadcast: write", attrPeer, p.name, attrErr, err)
				g.dropBatch(len(batch))
				st.CancelWrite(0)
				p.dropConn(conn, err)
				st, conn = nil, nil
				continue
			}
			backoff, lastSend = 0, time.Now()
			g.m.versionsSent.WithLabelValues("broadcast").Add(float64(len(batch)))
			g.m.bytesSent.WithLabelValues("broadcast").Add(float64(len(buf)))
			buf = buf[:0]
		}
		g.m.queueLen.Set(float64(g.queued.Load()))
	}
}

func (g *Gossip) dropBatch(n int) {
	g.drops.Add(uint64(n))
	g.m.drops.Add(float64(n))
}

// serveBroadcast reads a peer's broadcast stream: it applies what arrived together as one
// batch and forwards what was new with one hop fewer.
func (g *Gossip) serveBroadcast(conn *quic.Conn, st *quic.ReceiveStream) {
	fr := newFrameReader(st)
	// A stream that never says hello must not hold a goroutine for the connection's life.
	_ = st.SetReadDeadline(time.Now().Add(syncIdleTimeout))
	h, err := g.readHello(conn, fr, streamBroadcast)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		g.logger.Debug("broadcast stream refused", attrAddr, conn.RemoteAddr(), attrErr, err)
		st.CancelRead(0)
		return
	}
	from := log.SiteID(h.Site)
	fromName := from.String()
	type item struct {
		cs   *log.Changeset
		hops int
	}
	var batch []item
	var css []*log.Changeset
	for {
		batch, css = batch[:0], css[:0]
		before := fr.bytes
		for {
			typ, body, err := fr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && g.run.Err() == nil && conn.Context().Err() == nil {
					g.logger.Debug("broadcast stream", attrPeer, fromName, attrErr, err)
				}
				if errors.Is(err, ErrProtocol) {
					_ = conn.CloseWithError(codeProtocol, "bad frame")
				}
				st.CancelRead(0)
				return
			}
			if typ != frameChangeset {
				g.logger.Warn("broadcast stream: unexpected frame", attrPeer, fromName, "type", typ)
				_ = conn.CloseWithError(codeProtocol, "unexpected frame")
				return
			}
			hops, cs, err := decodeChangesetFrame(body)
			if err != nil {
				g.logger.Warn("broadcast stream: bad changeset", attrPeer, fromName, attrErr, err)
				_ = conn.CloseWithError(codeProtocol, "bad changeset")
				return
			}
			// A peer cannot buy a longer flood than this node would give its own writes.
			batch = append(batch, item{cs, min(hops, g.cfg.MaxHops)})
			css = append(css, cs)
			if !fr.buffered() || len(batch) >= g.cfg.SyncChunk {
				break
			}
		}
		g.m.bytesRecv.WithLabelValues("broadcast").Add(float64(fr.bytes - before))
		news, err := g.applyBatch(css, "broadcast")
		if err != nil {
			if g.run.Err() != nil {
				return
			}
			g.logger.Warn("broadcast: apply", attrPeer, fromName, attrErr, err)
			continue
		}
		for i, it := range batch {
			if news[i] {
				g.forward(it.cs, it.hops, g.cfg.Fanout, fromName)
			}
		}
	}
}
