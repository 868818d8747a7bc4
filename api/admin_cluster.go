package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// Corrosion's admin `cluster rejoin` and `sync reconcile-gaps`, over HTTP behind the admin
// scope: POST /v1/admin/cluster/rejoin, GET /v1/admin/sync/gaps and POST
// /v1/admin/sync/reconcile. The gossip component does the work (through cmd's adapter, since
// api must not import gossip); a node without one answers 501 for rejoin and reconcile, and
// its gaps are what its own vector shows.

// ClusterAdmin is implemented by a Cluster an operator can steer.
type ClusterAdmin interface {
	// Rejoin announces this node anew and joins the bootstrap addresses and every known
	// member again, then starts a sync round.
	Rejoin(ctx context.Context) (RejoinReport, error)
	// SiteGaps is, per site that lacks any, the versions this node lacks up to the newest
	// version of the site known anywhere (what health's gaps sums, with peers' heads).
	SiteGaps() map[log.SiteID]uint64
	// Reconcile syncs with every alive peer now, pass after pass, until nothing is missing,
	// a pass brings nothing, or ctx ends (an error then).
	Reconcile(ctx context.Context) (ReconcileReport, error)
}

// The answers' types are the Go client's (api imports api/client, never the reverse), so
// that server and client cannot drift apart.
type (
	// RejoinReport is the answer of POST /v1/admin/cluster/rejoin.
	RejoinReport = client.RejoinReport
	// ReconcileReport is the answer of POST /v1/admin/sync/reconcile.
	ReconcileReport = client.ReconcileReport
	// gapsAnswer is GET /v1/admin/sync/gaps.
	gapsAnswer = client.Gaps
)

// defaultReconcileTimeout bounds a reconcile without ?timeout: as long as a query may run.
const defaultReconcileTimeout = defaultQueryTimeout

func (s *Server) routeClusterAdmin(mux *http.ServeMux) {
	s.route(mux, "POST /v1/admin/cluster/rejoin", kindCheap, ScopeAdmin, s.handleRejoin)
	s.route(mux, "GET /v1/admin/sync/gaps", kindCheap, ScopeAdmin, s.handleGaps)
	s.route(mux, "POST /v1/admin/sync/reconcile", kindCheap, ScopeAdmin, s.handleReconcile)
}

func (s *Server) clusterAdmin() (ClusterAdmin, error) {
	if ca, ok := s.cfg.Cluster.(ClusterAdmin); ok && s.cfg.Cluster != nil {
		return ca, nil
	}
	return nil, fmt.Errorf("%w: this node runs without gossip: there is no cluster to rejoin or sync with", errNotImplemented)
}

func (s *Server) handleRejoin(w http.ResponseWriter, r *http.Request) error {
	ca, err := s.clusterAdmin()
	if err != nil {
		return err
	}
	ctx, cancel, _, err := requestTimeout(r, 30*time.Second)
	if err != nil {
		return err
	}
	defer cancel()
	rep, err := ca.Rejoin(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", errUnreachable, err)
	}
	if rep.Addresses == nil {
		rep.Addresses = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Server) handleGaps(w http.ResponseWriter, r *http.Request) error {
	out := gapsAnswer{Sites: map[log.SiteID]uint64{}}
	if ca, err := s.clusterAdmin(); err == nil {
		out.Sites = ca.SiteGaps()
	} else {
		for site, sv := range s.cfg.Log.Vector().Sites {
			head, held := siteHead(sv)
			if head > held {
				out.Sites[site] = head - held
			}
		}
	}
	for _, n := range out.Sites {
		out.Total += n
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleReconcile(w http.ResponseWriter, r *http.Request) error {
	ca, err := s.clusterAdmin()
	if err != nil {
		return err
	}
	ctx, cancel, timeout, err := requestTimeout(r, defaultReconcileTimeout)
	if err != nil {
		return err
	}
	defer cancel()
	rep, err := ca.Reconcile(ctx)
	if err != nil {
		return timeoutError(ctx, timeout, err)
	}
	rep.Complete = len(rep.After) == 0
	writeJSON(w, http.StatusOK, rep)
	return nil
}
