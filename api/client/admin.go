package client

import (
	"context"
	"net/http"

	"github.com/patinadb/patina/log/format"
)

// RejoinReport is what POST /v1/admin/cluster/rejoin did.
type RejoinReport struct {
	Addresses []string `json:"addresses"` // gossip addresses joined
	Contacted int      `json:"contacted"` // how many answered
	Alive     int      `json:"alive"`     // peers alive after, the agent excluded
}

// Rejoin asks the agent to announce itself anew and join its bootstrap addresses and every
// member it knows again, then sync (admin scope; Corrosion's `cluster rejoin`).
func (c *Client) Rejoin(ctx context.Context) (RejoinReport, error) {
	var out RejoinReport
	err := c.callJSON(ctx, http.MethodPost, "/v1/admin/cluster/rejoin", nil, nil, &out)
	return out, err
}

// Gaps is GET /v1/admin/sync/gaps: per site, the versions the agent lacks up to the newest
// known anywhere.
type Gaps struct {
	Total uint64                   `json:"total"`
	Sites map[format.SiteID]uint64 `json:"sites"`
}

// SyncGaps reads the agent's gaps per site (admin scope).
func (c *Client) SyncGaps(ctx context.Context) (Gaps, error) {
	var out Gaps
	err := c.callJSON(ctx, http.MethodGet, "/v1/admin/sync/gaps", nil, nil, &out)
	return out, err
}

// ReconcileReport is what POST /v1/admin/sync/reconcile did.
type ReconcileReport struct {
	// Before and After: versions missing per site (sites missing none left out).
	Before map[format.SiteID]uint64 `json:"before"`
	After  map[format.SiteID]uint64 `json:"after"`
	// Passes over the alive peers, sessions completed, refused (busy) and failed, and the
	// peers alive.
	Passes   int `json:"passes"`
	Sessions int `json:"sessions"`
	Busy     int `json:"busy"`
	Failed   int `json:"failed"`
	Peers    int `json:"peers"`
	// Complete: nothing is missing any more. When false, After names the sites whose
	// versions no reachable peer holds (or the request's time ran out: see the status).
	Complete bool `json:"complete"`
}

// ReconcileGaps asks the agent to sync with every alive peer now until it lacks nothing a
// peer holds (admin scope; Corrosion's `sync reconcile-gaps`). opts.Timeout bounds it
// (the agent's default: 60 s).
func (c *Client) ReconcileGaps(ctx context.Context, opts Options) (ReconcileReport, error) {
	var out ReconcileReport
	err := c.callJSON(ctx, http.MethodPost, "/v1/admin/sync/reconcile", opts.query(), nil, &out)
	return out, err
}
