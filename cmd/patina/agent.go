package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/internal/fsmode"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
	"github.com/patinadb/patina/materializer/subs"
	"github.com/patinadb/patina/pg"
)

// metaClusterID is the log metadata key that pins a data dir to its cluster.
const metaClusterID = "cluster_id"

// clusterNode is what the agent needs of the gossip component (agent_gossip.go wires the
// real one).
type clusterNode interface {
	api.Cluster
	// Broadcast hands a local changeset, durable in the log, to gossip; it never blocks.
	Broadcast(cs *log.Changeset)
	// BroadcastContext is Broadcast under ctx's trace span (agent_tracing.go).
	BroadcastContext(ctx context.Context, cs *log.Changeset)
	// SetFaults replaces the testing-only fault rules.
	SetFaults(FaultConfig) error
	// Close leaves the cluster gracefully and stops.
	Close() error
}

// Agent is one running node: the log, the materializer folding it into the view, gossip and
// the HTTP API.
type Agent struct {
	cfg    Config
	logger *slog.Logger
	reg    *prometheus.Registry

	store   *log.Store
	mat     *materializer.Materializer
	cluster clusterNode
	subs    *subs.Engine // agent_subs.go
	srv     *api.Server
	pg      *pg.Server // agent_pg.go; nil when pg.addr is not set
	// stopTemplates stops the [[template]] runner (agent_template.go); nil when none runs.
	stopTemplates func()
	// selfToken is the token the agent's own client of its API sends (agent_template.go's
	// selfAuth); empty when the API wants none.
	selfToken string
	// apiCert is the certificate the API serves (api.tls), which the agent's own client
	// trusts; nil without TLS.
	apiCert *tls.Certificate

	// broadcaster is the cluster the materializer's OnCommit hands local changesets to; it
	// is set once gossip is open (no local write can happen before the API opens after it).
	broadcaster atomic.Pointer[clusterNode]

	// level is the process's log level, changed at run time through /v1/admin/log_level;
	// nil when the agent was not given one (in-process tests).
	level *slog.LevelVar

	// standalone runs without gossip (in-process tests that move changes themselves).
	standalone bool

	// tracer is the OpenTelemetry provider set as global when tracing is on
	// (agent_tracing.go); a test presets one with an in-memory recorder. ownTracer: the agent
	// made it and shuts it down.
	tracer    *sdktrace.TracerProvider
	ownTracer bool

	closeOnce sync.Once
	closeErr  error
}

// NewAgent returns an agent for cfg; it does no I/O.
func NewAgent(cfg Config, logger *slog.Logger) *Agent {
	if logger == nil {
		logger = slog.Default()
	}
	return &Agent{cfg: cfg, logger: logger}
}

// Open opens every component in dependency order. ctx covers start-up only. On error,
// what was opened is closed again.
func (a *Agent) Open(ctx context.Context) (err error) {
	if err := a.cfg.Validate(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// The data dir holds every row of the cluster: private to the user that runs the agent.
	if tightened, err := fsmode.Dir(a.cfg.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	} else if tightened {
		a.logger.Warn("the data dir was readable by other users; made it private (0700)", "data_dir", a.cfg.DataDir)
	}
	var site log.SiteID
	if a.cfg.SiteID != "" {
		site, _ = parseSiteID(a.cfg.SiteID) // checked by Validate
	}
	a.store, err = log.Open(filepath.Join(a.cfg.DataDir, "log"), log.Options{SiteID: site, Logger: a.logger, MinFreeBytes: a.cfg.DB.MinFreeBytes,
		ScrubInterval: a.cfg.Log.ScrubInterval, ScrubBytesPerSec: a.cfg.Log.ScrubBytesPerSec, CommitDepth: a.cfg.DB.CommitDepth,
		MemTableBytes: a.cfg.DB.LogMemtableBytes, MaxOpenFiles: a.cfg.DB.LogMaxOpenFiles})
	if err != nil {
		if errors.Is(err, log.ErrSiteMismatch) {
			return usagef("--site-id %s: the data dir %s belongs to another site (%v)", a.cfg.SiteID, a.cfg.DataDir, err)
		}
		return err
	}
	for _, w := range securityWarnings(&a.cfg) {
		a.logger.Warn(w)
	}
	if err := a.checkClusterID(); err != nil {
		return err
	}
	schema, err := readSchema(a.cfg.Schema)
	if err != nil {
		return err
	}
	mcfg := materializer.DefaultConfig(filepath.Join(a.cfg.DataDir, "views.db"))
	mcfg.Schema = schema
	mcfg.FoldBatch, mcfg.ReadConns, mcfg.FoldDelay = a.cfg.DB.FoldBatch, a.cfg.DB.ReadConns, a.cfg.DB.FoldDelay
	mcfg.WriterDepth = a.cfg.DB.WriterDepth
	mcfg.CheckpointInterval = a.cfg.DB.CheckpointInterval
	mcfg.NoOpenCheck = !a.cfg.DB.CheckOnStart
	mcfg.Logger = a.logger
	mcfg.Registerer = a.reg
	mcfg.OnCommit = a.broadcast
	tracing, err := a.openTracing(ctx, a.store.SiteID())
	if err != nil {
		return err
	}
	if tracing {
		mcfg.OnCommitContext = a.broadcastContext
	}
	if ret, forever, err := a.cfg.Log.retention(); err != nil {
		return err
	} else if !forever {
		mcfg.Compaction = &materializer.Compaction{Retention: ret}
	}
	a.mat = materializer.New(a.store, mcfg)
	if err := a.mat.Open(ctx); err != nil {
		if errors.Is(err, materializer.ErrSchema) || errors.Is(err, materializer.ErrSchemaConflict) {
			return &usageError{fmt.Errorf("schema: %w", err)}
		}
		return fmt.Errorf("open view: %w", err)
	}
	if err := a.openSubscriptions(ctx); err != nil {
		return err
	}

	// Listen before gossip starts so that it advertises the API address really bound.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", a.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen api %s: %w", a.cfg.APIAddr, err)
	}
	if !a.standalone {
		if a.cluster, err = openGossip(ctx, &a.cfg, a.store, a.mat, ln.Addr().String(), a.reg, a.logger); err != nil {
			ln.Close()
			return err
		}
		a.broadcaster.Store(&a.cluster)
	}

	acfg := api.DefaultConfig()
	acfg.Listener = ln
	acfg.View, acfg.Log = ingestView{a.mat, a}, a.store
	if a.cluster != nil {
		acfg.Cluster = a.cluster
	}
	acfg.BearerToken = a.cfg.API.Authz.BearerToken
	acfg.Tracing = tracing
	acfg.Tokens, _ = a.cfg.API.apiTokens() // checked by Validate
	if err := a.selfAuth(&acfg); err != nil {
		ln.Close()
		return err
	}
	acfg.GuardPublic = a.cfg.API.Authz.GuardPublic
	acfg.EndpointName = a.cfg.API.EndpointName
	acfg.WriteAddr = a.cfg.API.WriteAddr
	if a.cfg.API.Socket != "" {
		// Absolute, so that the log says where clients find it (unix:///path).
		if acfg.Socket, err = filepath.Abs(a.cfg.API.Socket); err != nil {
			ln.Close()
			return &usageError{fmt.Errorf("api.socket: %w", err)}
		}
	}
	if acfg.TLS, err = a.cfg.API.TLS.serverTLS(); err != nil {
		ln.Close()
		return err
	}
	if acfg.TLS != nil {
		a.apiCert = &acfg.TLS.Certificates[0]
	}
	acfg.MaxConcurrency, acfg.MaxStreams, acfg.MaxBodyBytes = a.cfg.API.MaxConcurrency, a.cfg.API.MaxStreams, a.cfg.API.MaxBodyBytes
	acfg.BodyReadTimeout, acfg.TxTimeout = a.cfg.API.BodyTimeout, a.cfg.API.TxTimeout
	acfg.QueueDepth, acfg.QueueTimeout = a.cfg.API.QueueDepth, a.cfg.API.QueueTimeout
	acfg.Registry, acfg.Logger = a.reg, a.logger
	acfg.Subscriptions = a.subs
	acfg.LogLevel = a.level
	a.srv = api.New(acfg)
	if err := a.srv.Open(ctx); err != nil {
		ln.Close()
		return &usageError{err}
	}
	if err := a.openPG(ctx); err != nil {
		return err
	}
	if err := a.openTemplates(); err != nil {
		return err
	}
	a.logger.Info("agent ready", "site", a.store.SiteID().String(), "api", a.srv.Addr().String(),
		"data_dir", a.cfg.DataDir, "tables", len(a.mat.Tables()), "procs", runtime.GOMAXPROCS(0))
	return nil
}

// broadcast is the materializer's OnCommit: it hands each local changeset, durable and
// committed, to gossip. Gossip never blocks (full queues drop; sync repairs), so neither does
// the materializer's hook goroutine.
func (a *Agent) broadcast(css []*log.Changeset) {
	c := a.broadcaster.Load()
	if c == nil {
		return
	}
	for _, cs := range css {
		(*c).Broadcast(cs)
	}
}

// ingestView is the view the API serves. Changesets ingested through POST /v1/changes
// (bridges, restores) are broadcast like local writes once they are folded, so they reach the
// cluster in milliseconds instead of at the next sync round. Only what was new to the log
// goes out, which keeps a re-posted backup from flooding the cluster.
type ingestView struct {
	*materializer.Materializer
	a *Agent
}

func (v ingestView) Apply(ctx context.Context, css []*log.Changeset) ([]bool, error) {
	fresh, err := v.Materializer.Apply(ctx, css)
	if err != nil {
		return fresh, err
	}
	var out []*log.Changeset
	for i, isNew := range fresh {
		if isNew {
			out = append(out, css[i])
		}
	}
	if len(out) > 0 {
		v.a.broadcast(out)
	}
	return fresh, nil
}

// checkClusterID pins a data dir to its cluster: a dir made for one cluster is refused in
// another, so two fleets cannot be merged by a copied directory.
func (a *Agent) checkClusterID() error {
	stored, err := a.store.Meta(metaClusterID)
	if err != nil {
		return err
	}
	switch {
	case stored == nil:
		if a.cfg.ClusterID != "" {
			return a.store.SetMeta(metaClusterID, []byte(a.cfg.ClusterID))
		}
	case a.cfg.ClusterID == "":
		a.cfg.ClusterID = string(stored)
	case string(stored) != a.cfg.ClusterID:
		return usagef("--cluster-id %q: the data dir %s belongs to cluster %q", a.cfg.ClusterID, a.cfg.DataDir, stored)
	}
	return nil
}

// readSchema reads schema files: each path is a .sql file or a folder whose *.sql files are
// read in name order. Each file is one entry (the materializer splits statements).
func readSchema(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, usagef("schema: %v", err)
		}
		files := []string{p}
		if st.IsDir() {
			ents, err := os.ReadDir(p)
			if err != nil {
				return nil, usagef("schema: %v", err)
			}
			files = files[:0]
			for _, e := range ents {
				if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
			slices.Sort(files)
			if len(files) == 0 {
				return nil, usagef("schema: folder %s has no .sql files", p)
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, usagef("schema: %v", err)
			}
			out = append(out, string(b))
		}
	}
	return out, nil
}

// APIAddr is the address the API listens on; empty before Open.
func (a *Agent) APIAddr() string {
	if a.srv == nil || a.srv.Addr() == nil {
		return ""
	}
	return a.srv.Addr().String()
}

// WriteAddr is the address of the API's write listener (api.write_addr); "" without one.
func (a *Agent) WriteAddr() string {
	if a.srv == nil || a.srv.WriteAddr() == nil {
		return ""
	}
	return a.srv.WriteAddr().String()
}

// SiteID is this node's site id (after Open).
func (a *Agent) SiteID() log.SiteID { return a.store.SiteID() }

// SetFaults replaces the testing-only fault rules of gossip.
func (a *Agent) SetFaults(f FaultConfig) error {
	if a.cluster == nil {
		return errors.New("no gossip component")
	}
	return a.cluster.SetFaults(f)
}

// Close stops accepting requests (finishing those in flight), leaves the cluster, then
// closes the view and the log: everything acknowledged is durable already, so nothing is
// lost. Idempotent; the first error is kept.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		if a.stopTemplates != nil {
			a.stopTemplates()
		}
		if a.pg != nil {
			errs = append(errs, a.pg.Close())
		}
		if a.srv != nil {
			errs = append(errs, a.srv.Close())
		}
		a.broadcaster.Store(nil)
		if a.cluster != nil {
			errs = append(errs, a.cluster.Close())
		}
		if a.subs != nil {
			errs = append(errs, a.subs.Close())
		}
		if a.mat != nil {
			errs = append(errs, a.mat.Close())
		}
		if a.store != nil {
			errs = append(errs, a.store.Close())
		}
		errs = append(errs, a.closeTracing())
		for _, err := range errs {
			if err != nil {
				a.closeErr = err
				break
			}
		}
	})
	return a.closeErr
}
