package gossip

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/patinadb/patina/log"
)

// What an operator asks of a running node's gossip (Corrosion's admin `cluster rejoin` and
// `sync reconcile-gaps`): rejoin the cluster now, and fill the gaps now instead of waiting for
// the next sync rounds. Both are called from an API request's goroutine and block it; they
// start no goroutine (the simulator does not call them).

// RejoinResult is what Rejoin did.
type RejoinResult struct {
	// Addresses are the gossip addresses joined: the bootstrap list and every member known
	// that has not left, sorted.
	Addresses []string `json:"addresses"`
	// Contacted is how many of them answered.
	Contacted int `json:"contacted"`
	// Alive is how many peers are alive after the rejoin (this node excluded).
	Alive int `json:"alive"`
}

// rejoiner is a Membership that can announce this node anew and join addresses again.
// memberlist's does; a Membership without it makes Rejoin an error.
type rejoiner interface {
	Rejoin(addrs []string, timeout time.Duration) (contacted int, err error)
}

// errNotOpen: Rejoin and Reconcile before Open or after Close.
var errNotOpen = errors.New("gossip: not running")

// Rejoin announces this node again with a fresh incarnation (which refutes a suspect or
// dead verdict other members hold about it, and re-sends its metadata), joins the bootstrap
// addresses and every known member that has not left (a full state exchange with each, so
// the two sides of a partition memberlist has given up on merge again), then starts a sync
// round. It fails only when no address answered while some were tried.
func (g *Gossip) Rejoin(ctx context.Context) (RejoinResult, error) {
	var res RejoinResult
	if !g.ready.Load() || g.closed.Load() {
		return res, errNotOpen
	}
	rj, ok := g.mem.(rejoiner)
	if !ok {
		return res, fmt.Errorf("gossip: this node's membership (%T) cannot rejoin", g.mem)
	}
	res.Addresses = g.rejoinAddrs()
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	n, err := rj.Rejoin(res.Addresses, timeout)
	res.Contacted = n
	g.triggerSync()
	res.Alive = len(g.alivePeers())
	g.m.adminOps.WithLabelValues("rejoin").Inc()
	if err != nil && n == 0 && len(res.Addresses) > 0 {
		g.logger.Warn("rejoin: no address answered", "addresses", res.Addresses, attrErr, err)
		return res, fmt.Errorf("rejoin: none of %d address(es) answered: %w", len(res.Addresses), err)
	}
	g.logger.Info("rejoined the cluster", "addresses", len(res.Addresses), "contacted", n, "alive", res.Alive)
	return res, nil
}

// rejoinAddrs is the bootstrap list and the gossip address of every member known that has
// not left, without duplicates and this node.
func (g *Gossip) rejoinAddrs() []string {
	set := map[string]bool{}
	for _, a := range g.cfg.Bootstrap {
		set[a] = true
	}
	g.mu.Lock()
	for _, info := range g.known {
		if info.state != StateLeft && info.addr != "" {
			set[info.addr] = true
		}
	}
	g.mu.Unlock()
	delete(set, g.gossipAddr)
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// ReconcileResult is what Reconcile did.
type ReconcileResult struct {
	// Before and After are the versions missing per site, up to the newest version of it
	// known anywhere (Gaps per site); sites with none missing are left out.
	Before map[log.SiteID]uint64 `json:"before"`
	After  map[log.SiteID]uint64 `json:"after"`
	// Passes over the alive peers, sessions that completed, peers that refused (busy) and
	// sessions that failed.
	Passes   int `json:"passes"`
	Sessions int `json:"sessions"`
	Busy     int `json:"busy"`
	Failed   int `json:"failed"`
	// Peers is how many peers were alive at the start.
	Peers int `json:"peers"`
}

// maxReconcilePasses bounds Reconcile's passes over the peers: each pass that brings
// something lets the next learn of versions announced meanwhile; five is plenty for a
// quiet cluster and keeps a busy one from holding the request for ever.
const maxReconcilePasses = 5

// Reconcile fills this node's gaps now: it syncs with every alive peer (not SyncPeers of
// them, as a round does), most lacking first, pass after pass, until nothing is missing, a
// pass brings nothing (what remains is held by no reachable peer: After says which sites),
// maxReconcilePasses passes ran, or ctx ends. Sessions may run beside the periodic rounds;
// what both bring is applied once (the log keeps what it does not hold).
func (g *Gossip) Reconcile(ctx context.Context) (ReconcileResult, error) {
	res := ReconcileResult{}
	if !g.ready.Load() || g.closed.Load() {
		return res, errNotOpen
	}
	res.Before = nonZero(g.gaps())
	res.Peers = len(g.alivePeers())
	prev := total(res.Before)
	for res.Passes < maxReconcilePasses && ctx.Err() == nil {
		peers := g.alivePeers()
		if len(peers) == 0 {
			break
		}
		g.byLack(peers)
		res.Passes++
		busy := 0
		for _, p := range peers {
			if ctx.Err() != nil {
				break
			}
			switch err := g.syncNow(ctx, p); {
			case err == nil:
				res.Sessions++
			case errors.Is(err, ErrBusy):
				res.Busy++
				busy++
			default:
				res.Failed++
				g.logger.Debug("reconcile: sync failed", attrPeer, p.site, attrErr, err)
			}
		}
		now := total(nonZero(g.gaps()))
		if now == 0 || (now >= prev && busy == 0) {
			break
		}
		prev = now
	}
	res.After = nonZero(g.gaps())
	g.m.adminOps.WithLabelValues("reconcile").Inc()
	g.logger.Info("reconciled sync gaps", "missing_before", total(res.Before), "missing_after", total(res.After),
		"passes", res.Passes, "sessions", res.Sessions, "busy", res.Busy, "failed", res.Failed)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("reconcile stopped after %d pass(es): %w", res.Passes, err)
	}
	return res, nil
}

// SiteGaps is Gaps per site: the versions this node lacks up to the newest known of each
// site, for sites that lack any.
func (g *Gossip) SiteGaps() map[log.SiteID]uint64 {
	if !g.ready.Load() {
		return map[log.SiteID]uint64{}
	}
	return nonZero(g.gaps())
}

// byLack orders peers as a sync round does: those this node knows it lacks most from first
// (the count learnt from each one's last vector; a peer never synced with counts 1).
func (g *Gossip) byLack(peers []*peer) {
	lack := make(map[log.SiteID]uint64, len(peers))
	g.mu.Lock()
	for _, p := range peers {
		if n, ok := g.lack[p.site]; ok {
			lack[p.site] = n
		} else {
			lack[p.site] = 1 // never synced with: worth a look
		}
	}
	g.mu.Unlock()
	sort.SliceStable(peers, func(i, j int) bool { return lack[peers[i].site] > lack[peers[j].site] })
}

// syncNow runs one client session with p and waits for its end; ctx ending cuts it short.
func (g *Gossip) syncNow(ctx context.Context, p *peer) error {
	sctx, cancel := context.WithTimeout(p.ctx, g.cfg.SyncTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	done := make(chan error, 1)
	s := g.clientSession(p)
	g.tr.Sync(sctx, p.addr, s, func(err error) { done <- err })
	err := <-done
	s.ended(err)
	outcome := "ok"
	switch {
	case err == nil:
		g.syncRounds.Add(1)
	case errors.Is(err, ErrBusy):
		outcome = "busy"
	default:
		outcome = "error"
	}
	g.m.syncRounds.WithLabelValues("reconcile", outcome).Inc()
	return err
}

func nonZero(m map[log.SiteID]uint64) map[log.SiteID]uint64 {
	out := map[log.SiteID]uint64{}
	for s, n := range m {
		if n > 0 {
			out[s] = n
		}
	}
	return out
}

func total(m map[log.SiteID]uint64) uint64 {
	var n uint64
	for _, c := range m {
		n += c
	}
	return n
}
