package gossip

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/patinadb/patina/log"
)

// forward sends cs to fanout random live peers, except from (the peer it came from) and
// its origin site, with hops as its budget. With a Region configured, it picks only among
// the peers of this node's region (see Config.Region). When the chosen peers are every
// candidate, they need not forward it further, so it goes with budget 0.
// tp is the changeset's trace context ("" for none), for peers that read it.
func (g *Gossip) forward(cs *log.Changeset, hops, fanout int, from log.SiteID, tp string) {
	if hops <= 0 {
		return
	}
	var peers []*peer
	if g.cfg.Region != "" {
		peers = g.regionPeers(g.cfg.Region)
		if !from.IsZero() && g.peerRegion(from) != g.cfg.Region {
			fanout = g.cfg.RegionalFanout // this node brings cs into its region
		}
	} else {
		peers = g.alivePeers()
	}
	g.sendTo(cs, hops, fanout, from, tp, peers)
}

// sendTo sends cs to fanout random peers of cand (see forward).
func (g *Gossip) sendTo(cs *log.Changeset, hops, fanout int, from log.SiteID, tp string, cand []*peer) {
	n := 0
	for _, p := range cand {
		if p.site != from && p.site != cs.Site {
			cand[n] = p
			n++
		}
	}
	cand = cand[:n]
	if len(cand) == 0 {
		return
	}
	out := hops - 1
	if len(cand) <= fanout {
		out = 0
	} else {
		pick(g.rand, cand, fanout)
		cand = cand[:fanout]
	}
	frame, err := changesetFrame(cs, out)
	if err != nil {
		g.logger.Error("broadcast: encode", attrSite, cs.Site, "version", cs.Version, attrErr, err)
		return
	}
	// Each form is made once, for the peers that read it: plain or traced, either one
	// compressed when that pays.
	type form struct {
		b     []byte
		plain int // its size before compression; 0 when not compressed
	}
	var forms [4]*form // by traced<<1 | zstd
	for _, p := range cand {
		i := 0
		if tp != "" && p.trace.Load() {
			i |= 2
		}
		if g.compressing() && p.zstd.Load() {
			i |= 1
		}
		f := forms[i]
		if f == nil {
			f = &form{b: frame}
			if i&2 != 0 {
				f.b = tracedFrame(tp, frame)
			}
			if i&1 != 0 && len(f.b) >= g.cfg.CompressMinBytes {
				if z := compressFrame(f.b, g.cfg.CompressMinBytes); z != nil {
					f.b, f.plain = z, len(f.b)
				}
			}
			forms[i] = f
		}
		if f.plain > 0 {
			g.countCompressed("broadcast", f.plain, len(f.b))
		}
		p.enqueue(f.b)
	}
}

// broadcastOwn sends one of this node's changesets (or a part) on its first hops: to
// LocalFanout random peers, or, region-aware, to RemoteFanout peers of each other region
// and RegionalFanout of its own.
func (g *Gossip) broadcastOwn(cs *log.Changeset, tp string) {
	if g.cfg.Region == "" {
		g.forward(cs, g.cfg.MaxHops, g.cfg.LocalFanout, log.SiteID{}, tp)
		return
	}
	g.mu.Lock()
	g.sortedLocked()
	regions := g.regionList
	g.mu.Unlock()
	for _, r := range regions {
		fanout := g.cfg.RemoteFanout
		if r == g.cfg.Region {
			fanout = g.cfg.RegionalFanout
		}
		g.sendTo(cs, g.cfg.MaxHops, fanout, log.SiteID{}, tp, g.regionPeers(r))
	}
}

// broadcastLarge sends a large local changeset as the parts the log stored, so that every
// node sees the same part boundaries; if the log has none yet, it cuts parts itself.
func (g *Gossip) broadcastLarge(cs *log.Changeset, tp string) {
	sent := 0
	for part, err := range g.log.Scan(cs.Site, cs.Version, cs.Version) {
		if err != nil {
			g.logger.Warn("broadcast: scan large version", attrSite, cs.Site, "version", cs.Version, attrErr, err)
			break
		}
		g.broadcastOwn(part, tp)
		sent++
	}
	if sent > 0 {
		return
	}
	for _, part := range splitParts(cs, g.cfg.PartChanges) {
		g.broadcastOwn(part, tp)
	}
}

// splitParts cuts cs into parts of at most n changes by ordinal range.
func splitParts(cs *log.Changeset, n int) []*log.Changeset {
	if len(cs.Changes) <= n {
		return []*log.Changeset{cs}
	}
	var out []*log.Changeset
	for i := 0; i < len(cs.Changes); i += n {
		j := min(i+n, len(cs.Changes))
		p := *cs
		p.Changes = cs.Changes[i:j]
		p.Span = log.OrdRange{First: cs.Changes[i].Ord, Last: cs.Changes[j-1].Ord}
		out = append(out, &p)
	}
	return out
}

// enqueue adds a frame to the peer's queue, dropping the oldest when full, and schedules a
// flush unless one is pending or running.
func (p *peer) enqueue(frame []byte) {
	p.qmu.Lock()
	if p.stopped {
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
	start := !p.sending
	if start {
		p.sending = true
		p.scheduleLocked(0)
	}
	p.qmu.Unlock()
	p.g.m.queueLen.Set(float64(p.g.queued.Load()))
}

// scheduleLocked arranges the next flush, at least wait from now (a send backoff). It is
// Nagle-like: a frame after a quiet spell goes at once; frames that follow within
// BatchDelay of the last send wait for the rest of it (or BatchBytes) and go together.
// Idle links get the lowest latency, busy ones fewer, larger writes. Needs p.qmu.
func (p *peer) scheduleLocked(wait time.Duration) {
	g := p.g
	if d := p.lastSend.Add(g.cfg.BatchDelay).Sub(g.clock.Now()); d > wait && p.qbytes < g.cfg.BatchBytes {
		wait = d
	}
	g.after(wait, p.flush)
}

// take removes up to max bytes of frames (at least one) from the queue. With the queue
// empty it returns nothing and ends the flush (p.sending), atomically with respect to
// enqueue, so that a frame is never left without a flush to send it.
func (p *peer) take(max int) (batch [][]byte, size int) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	if len(p.queue) == 0 || p.stopped {
		p.sending = false
		return nil, 0
	}
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

// flush sends the peer's queue through the transport in batches of up to BatchBytes until
// it is empty. A failed send drops its batch (sync repairs) and the next flush waits a
// growing backoff.
func (p *peer) flush() {
	g := p.g
	var buf []byte
	for {
		batch, _ := p.take(g.cfg.BatchBytes)
		if len(batch) == 0 {
			break
		}
		buf = buf[:0]
		for _, f := range batch {
			buf = append(buf, f...)
		}
		if err := g.tr.Send(p.ctx, p.addr, buf); err != nil {
			if p.ctx.Err() != nil {
				return
			}
			g.dropBatch(len(batch))
			g.logger.Debug("broadcast: send", attrPeer, p.site, attrErr, err)
			p.qmu.Lock()
			p.backoff = min(max(p.backoff*2, 50*time.Millisecond), 2*time.Second)
			p.scheduleLocked(p.backoff) // p.sending stays set: this is the pending flush
			p.qmu.Unlock()
			return
		}
		p.qmu.Lock()
		p.backoff, p.lastSend = 0, g.clock.Now()
		p.qmu.Unlock()
		g.m.versionsSent.WithLabelValues("broadcast").Add(float64(len(batch)))
		g.m.bytesSent.WithLabelValues("broadcast").Add(float64(len(buf)))
	}
	g.m.queueLen.Set(float64(g.queued.Load()))
}

// stop ends the peer: its queue is dropped and the transport forgets it.
func (p *peer) stop() {
	p.cancel()
	p.qmu.Lock()
	p.stopped = true
	n := len(p.queue)
	p.queue, p.qbytes = nil, 0
	p.qmu.Unlock()
	p.g.queued.Add(int64(-n))
	if p.g.tr != nil {
		p.g.tr.Forget(p.addr)
	}
}

func (g *Gossip) dropBatch(n int) {
	g.drops.Add(uint64(n))
	g.m.drops.Add(float64(n))
}

// receiveBroadcast reads broadcast frames from r until EOF or an error: it applies what
// arrived together as one batch and forwards what was new with one hop fewer.
func (g *Gossip) receiveBroadcast(from log.SiteID, r io.Reader) error {
	fr := newFrameReader(r)
	type item struct {
		cs   *log.Changeset
		hops int
		tp   string // its trace context, when it came traced
	}
	var batch []item
	var css []*log.Changeset
	var tps []string
	var zseen [2]uint64
	for {
		batch, css, tps = batch[:0], css[:0], tps[:0]
		before := fr.bytes
		for {
			typ, body, err := fr.next()
			if err != nil {
				if errors.Is(err, io.EOF) && len(batch) > 0 {
					break // apply what arrived before the end
				}
				return err
			}
			if typ != frameChangeset {
				return fmt.Errorf("%w: broadcast frame of type %d", ErrProtocol, typ)
			}
			hops, cs, err := decodeChangesetFrame(body)
			if err != nil {
				return fmt.Errorf("bad changeset: %w", err)
			}
			// A peer cannot buy a longer flood than this node would give its own writes.
			batch = append(batch, item{cs, min(hops, g.cfg.MaxHops), fr.trace})
			css = append(css, cs)
			tps = append(tps, fr.trace)
			if !fr.buffered() || len(batch) >= g.cfg.SyncChunk {
				break
			}
		}
		g.m.bytesRecv.WithLabelValues("broadcast").Add(float64(fr.bytes - before))
		g.countReceived("broadcast", fr, &zseen)
		ctx, end := g.receiveSpan(g.run, "broadcast", css, tps)
		news, err := g.applyBatch(ctx, css, "broadcast")
		end()
		if err != nil {
			if g.run.Err() != nil {
				return ErrClosed
			}
			g.logger.Warn("broadcast: apply", attrPeer, from, attrErr, err)
			continue
		}
		for i, it := range batch {
			if news[i] {
				g.forward(it.cs, it.hops, g.cfg.Fanout, from, it.tp)
			}
		}
	}
}
