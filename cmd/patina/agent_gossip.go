package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/gossip"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// openGossip starts the gossip component with the materializer as its Applier.
func openGossip(ctx context.Context, cfg *Config, store *log.Store, mat *materializer.Materializer, apiAddr string, reg prometheus.Registerer, logger *slog.Logger) (clusterNode, error) {
	gcfg, err := cfg.gossipConfig()
	if err != nil {
		return nil, err
	}
	gcfg.APIAddr = apiAddr
	gcfg.Registerer = reg
	gcfg.Logger = logger
	g, err := gossip.New(gcfg, store, mat)
	if err != nil {
		return nil, &usageError{err}
	}
	if err := g.Open(ctx); err != nil {
		return nil, fmt.Errorf("open gossip: %w", err)
	}
	if gcfg.Fault.Enabled {
		logger.Warn("gossip fault filter ENABLED: for testing only", "rules", len(gcfg.Fault.Rules))
	}
	return gossipNode{g}, nil
}

// gossipConfig maps the agent config onto the gossip component's.
func (c *Config) gossipConfig() (gossip.Config, error) {
	g := gossip.DefaultConfig()
	g.ClusterID = c.ClusterID
	g.GossipAddr, g.QUICAddr, g.AdvertiseAddr = c.GossipAddr, c.QUICAddr, c.AdvertiseAddr
	g.Bootstrap = c.Bootstrap
	g.Fanout, g.SyncInterval, g.Region = c.Gossip.Fanout, c.Gossip.SyncInterval, c.Gossip.Region
	if c.Gossip.Compression != "" { // a Config built in code without DefaultConfig keeps gossip's
		g.Compression, g.CompressMinBytes = c.Gossip.Compression, c.Gossip.CompressMinBytes
	}
	if c.Gossip.SecretKey != "" {
		k, err := base64.StdEncoding.DecodeString(c.Gossip.SecretKey)
		if err != nil {
			return g, usagef("gossip.secret_key: %v", err)
		}
		g.SecretKey = k
	}
	g.TLS.CAFile, g.TLS.CertFile, g.TLS.KeyFile = c.Gossip.TLS.CAFile, c.Gossip.TLS.CertFile, c.Gossip.TLS.KeyFile
	g.Fault = c.Gossip.Fault.gossip()
	if err := g.Validate(); err != nil {
		return g, &usageError{err}
	}
	return g, nil
}

func (f FaultConfig) gossip() gossip.FaultConfig {
	out := gossip.FaultConfig{Enabled: f.Enabled}
	for _, r := range f.Rules {
		out.Rules = append(out.Rules, gossip.FaultRule{Peers: r.Peers, Block: r.Block, Drop: r.Drop, Delay: r.Delay, Jitter: r.Jitter})
	}
	return out
}

// gossipNode adapts *gossip.Gossip to what the agent and the API consume.
type gossipNode struct{ g *gossip.Gossip }

func (n gossipNode) Broadcast(cs *log.Changeset) { n.g.Broadcast(cs) }

func (n gossipNode) BroadcastContext(ctx context.Context, cs *log.Changeset) {
	n.g.BroadcastContext(ctx, cs)
}
func (n gossipNode) Close() error { return n.g.Close() }

func (n gossipNode) SetFaults(f FaultConfig) error {
	if !f.Enabled {
		return n.g.SetFaults(nil)
	}
	return n.g.SetFaults(f.gossip().Rules)
}

func (n gossipNode) Members() []api.Member {
	ms := n.g.Members()
	out := make([]api.Member, len(ms))
	for i, m := range ms {
		out[i] = api.Member{Name: m.Name, SiteID: m.SiteID, State: string(m.State), GossipAddr: m.GossipAddr,
			QUICAddr: m.QUICAddr, APIAddr: m.APIAddr, RTT: m.RTT, Self: m.Self}
	}
	return out
}

// P99Lag reports gossip's replication lag when the gossip component measures it.
func (n gossipNode) P99Lag() time.Duration {
	if lr, ok := any(n.g).(interface{ P99Lag() time.Duration }); ok {
		return lr.P99Lag()
	}
	return 0
}

var _ api.LagReporter = gossipNode{}

// Rejoin, SiteGaps and Reconcile serve the API's cluster admin endpoints.
func (n gossipNode) Rejoin(ctx context.Context) (api.RejoinReport, error) {
	r, err := n.g.Rejoin(ctx)
	return api.RejoinReport{Addresses: r.Addresses, Contacted: r.Contacted, Alive: r.Alive}, err
}

func (n gossipNode) SiteGaps() map[log.SiteID]uint64 { return n.g.SiteGaps() }

func (n gossipNode) Reconcile(ctx context.Context) (api.ReconcileReport, error) {
	r, err := n.g.Reconcile(ctx)
	return api.ReconcileReport{Before: r.Before, After: r.After, Passes: r.Passes, Sessions: r.Sessions,
		Busy: r.Busy, Failed: r.Failed, Peers: r.Peers}, err
}

var _ api.ClusterAdmin = gossipNode{}
