package gossip

import (
	"fmt"
	"slices"

	"github.com/patinadb/patina/log"
)

// Content divergence (issue 12, item 4). A log refuses a version that arrives with another
// digest than the copy it holds, but two nodes that each hold their own copy of (site,
// version) with different content (two writers of one site, or a forgery that reached one
// node first) hold the same vector, so a sync alone would never send either copy. Each
// site's entry of a vector therefore carries a content sum (log.ContentSum: the XOR of the
// digests of the versions held, and their count), inside the vector frame as a 4th field
// of the site, which older decoders skip. When a peer holds the same versions of a site
// with a different sum, the site's content differs somewhere: it is counted, logged once
// per peer and state, and this node sends the site's versions (at most maxResend, the
// newest) although the peer holds them (only for sites whose sums cover every version
// held: see divergentSites), so that the peer's ingest names each colliding
// version (log.ErrCollision, counted in health's collisions) and keeps its own copy. The peer
// does the same the other way.

// maxResend bounds the versions of one divergent site sent to one peer.
const maxResend = 65536

// divergentSites returns the sites whose content the peer holds differently and that were
// not reported for this peer and state yet.
func (g *Gossip) divergentSites(peer log.SiteID, theirs *log.Vector) []log.SiteID {
	var ours *log.Vector
	var out []log.SiteID
	for site, t := range theirs.Sites {
		if t == nil || t.Content.N == 0 {
			continue
		}
		if ours == nil {
			ours = g.log.Vector()
		}
		o := ours.Sites[site]
		if o == nil || o.Content.N != t.Content.N || o.Content.Xor == t.Content.Xor || !slices.Equal(o.Versions, t.Versions) {
			continue
		}
		// Compare only sums over every version held: a version compaction cleared leaves
		// the sum (its digest goes with its data), and the vector does not say which were
		// cleared, so two nodes that cleared different versions of equal number would hold
		// equal versions and counts with different sums and look divergent, at every state
		// of a churning site. Sums that leave versions out (cleared, or written before
		// digests) therefore say nothing.
		if o.Content.N != o.Versions.Count() {
			continue
		}
		key := fmt.Sprintf("%s/%v/%v/%v", peer, site, o.Content.Xor, t.Content.Xor)
		g.mu.Lock()
		if g.diverged == nil {
			g.diverged = map[string]struct{}{}
		}
		_, seen := g.diverged[key]
		g.diverged[key] = struct{}{}
		g.mu.Unlock()
		if seen {
			continue
		}
		g.m.divergent.Inc()
		g.logger.Warn("a peer holds the same versions of a site with other content (two writers of one site, or a forgery): sending them so that each colliding version is named",
			attrPeer, peer, "site", site, "versions", t.Content.N, "our_sum", o.Content.Xor, "their_sum", t.Content.Xor)
		out = append(out, site)
	}
	return out
}

// resendVersions is what goes of a divergent site: the versions held with content (not
// cleared), the newest maxResend of them.
func (g *Gossip) resendVersions(site log.SiteID) log.RangeSet {
	sv := g.log.Vector().Sites[site]
	if sv == nil {
		return nil
	}
	rs := sv.Versions.Subtract(sv.Cleared)
	if n := rs.Count(); n > maxResend {
		skip := n - maxResend
		var out log.RangeSet
		for _, r := range rs {
			if skip >= r.Count() {
				skip -= r.Count()
				continue
			}
			out.Add(r.First+skip, r.Last)
			skip = 0
		}
		rs = out
	}
	return rs
}
