package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
	"github.com/patinadb/patina/template"
)

// Config is the agent's configuration: the TOML file's shape. Every key also has a flag and a
// PATINA_* environment variable (see options); flags win over env, env over the file.
type Config struct {
	DataDir       string   `toml:"data_dir"`
	SiteID        string   `toml:"site_id"`
	ClusterID     string   `toml:"cluster_id"`
	Schema        []string `toml:"schema"`
	APIAddr       string   `toml:"api_addr"`
	GossipAddr    string   `toml:"gossip_addr"`
	QUICAddr      string   `toml:"quic_addr"`
	AdvertiseAddr string   `toml:"advertise_addr"`
	Bootstrap     []string `toml:"bootstrap"`
	LogLevel      string   `toml:"log_level"`
	LogFormat     string   `toml:"log_format"`

	API    APIConfig    `toml:"api"`
	DB     DBConfig     `toml:"db"`
	Log    LogConfig    `toml:"log"`
	Gossip GossipConfig `toml:"gossip"`
	// Tracing: see agent_tracing.go.
	Tracing TracingConfig `toml:"tracing"`
	// Subscriptions: see agent_subs.go.
	Subscriptions SubscriptionsConfig `toml:"subscriptions"`
	// PG: see agent_pg.go.
	PG PGConfig `toml:"pg"`
	// Templates are the [[template]] entries: see agent_template.go.
	Templates []template.Spec `toml:"template"`

	// notes say what became of the Corrosion keys of the file (config_corrosion.go); the
	// agent logs them once its logger exists.
	notes []configNote
}

// APIConfig is the [api] section.
type APIConfig struct {
	Authz struct {
		// BearerToken is Corrosion's single token; the agent accepts it as an admin token,
		// and client commands send it.
		BearerToken string `toml:"bearer_token"`
		// Tokens are the scoped tokens, hashed ([[api.authz.tokens]]; patina token makes one).
		Tokens []TokenConfig `toml:"tokens"`
		// GuardPublic puts /v1/health and /metrics behind a read token too.
		GuardPublic bool `toml:"guard_public"`
	} `toml:"authz"`
	// TLS: see api_tls.go.
	TLS            APITLSConfig `toml:"tls"`
	MaxConcurrency int          `toml:"max_concurrency"`
	// QueueDepth and QueueTimeout shape the admission queue in front of the concurrency
	// limit (api.Config's fields of the same names; a negative depth means no queue).
	QueueDepth   int           `toml:"queue_depth"`
	QueueTimeout time.Duration `toml:"queue_timeout"`
	MaxStreams   int           `toml:"max_streams"`
	MaxBodyBytes int64         `toml:"max_body_bytes"`
	// BodyTimeout bounds how long a client may take to send a request body (408 after).
	BodyTimeout time.Duration `toml:"body_timeout"`
	// TxTimeout caps every write transaction (a shorter ?timeout wins); 0 is no cap.
	TxTimeout time.Duration `toml:"tx_timeout"`
	// EndpointName is Corrosion's api.endpoint_name (api.Config's EndpointName).
	EndpointName string `toml:"endpoint_name"`
	// Socket is a Unix socket path the API is also served on (api.Config's Socket).
	Socket string `toml:"socket"`
	// WriteAddr is the agent's write listener (api.Config's WriteAddr); client commands send
	// their writes there.
	WriteAddr string `toml:"write_addr"`
}

// TokenConfig is one [[api.authz.tokens]] entry: what `patina token` prints.
type TokenConfig struct {
	Name  string `toml:"name"`
	Scope string `toml:"scope"` // read, write or admin
	Hash  string `toml:"hash"`  // sha256:<hex> of the token
}

// apiTokens converts the [[api.authz.tokens]] entries, naming the bad one.
func (c *APIConfig) apiTokens() ([]api.Token, error) {
	out := make([]api.Token, 0, len(c.Authz.Tokens))
	for i, t := range c.Authz.Tokens {
		sc, err := api.ParseScope(t.Scope)
		if err != nil {
			return nil, usagef("api.authz.tokens[%d] (%s): %v", i, t.Name, err)
		}
		out = append(out, api.Token{Name: t.Name, Scope: sc, Hash: t.Hash})
	}
	if err := api.ValidateTokens(out); err != nil {
		return nil, usagef("api.authz.tokens: %v", err)
	}
	return out, nil
}

// DefaultFoldDelay is db.fold_delay's default: see bench/RESULTS.md, issue 14 round 3.
const DefaultFoldDelay = 0

// DBConfig is the [db] section: the materializer's tuning.
type DBConfig struct {
	// MinFreeBytes: writes are refused (507) while the data dir's disk has less free.
	MinFreeBytes int64 `toml:"min_free_bytes"`
	FoldBatch    int   `toml:"fold_batch"`
	ReadConns    int   `toml:"read_conns"`
	// FoldDelay is how long the writer, woken by changesets from peers alone, waits for more
	// before folding a small batch: one SQLite commit then folds several of them (issue 14).
	FoldDelay time.Duration `toml:"fold_delay"`
	// CheckOnStart runs SQLite's quick_check on views.db at start; a damaged view is then
	// rebuilt from the log before the node serves. Off, damage is found (and the view
	// rebuilt) by the first statement that meets it.
	CheckOnStart bool `toml:"check_on_start"`
	// CommitDepth is how many append groups may be on their way to disk at once (the log's
	// commit pipeline); 0 means the default, 2; 1 turns the overlap off.
	CommitDepth int `toml:"commit_depth"`
	// WriterDepth is how many of the view writer's groups may be on their way at once: 2
	// runs a group's SQL while the previous group's log fsync runs (more CPU per write);
	// 0 or 1, none overlaps (the default).
	WriterDepth int `toml:"writer_depth"`
	// CheckpointInterval: a checkpointer copies views.db's WAL into the file beside the
	// writer at most this often while writes come; 0 leaves it to SQLite's automatic
	// checkpoint inside the writer's commits.
	CheckpointInterval time.Duration `toml:"checkpoint_interval"`
	// LogMemtableBytes is the most the log's Pebble memtable grows to (log.Options'
	// MemTableBytes); 0 means the default, 4 MiB.
	LogMemtableBytes int64 `toml:"log_memtable_bytes"`
	// LogMaxOpenFiles bounds the log's table cache (log.Options' MaxOpenFiles); 0 means half
	// the process's open-file limit, 100 to 16384.
	LogMaxOpenFiles int `toml:"log_max_open_files"`
}

// LogConfig is the [log] section: how much history the changeset log keeps.
type LogConfig struct {
	// Retention is "forever" (every version kept, as before compaction existed) or a
	// duration: changes superseded longer ago than that are compacted away ("0s": as soon as
	// they are superseded). See README "Log retention and compaction".
	Retention string `toml:"retention"`
	// ScrubInterval: a background pass reads the whole log this often, verifying Pebble's
	// block checksums and each version's content digest, and repairs what it finds (the
	// damaged versions are fetched again from peers); 0 turns it off.
	ScrubInterval time.Duration `toml:"scrub_interval"`
	// ScrubBytesPerSec paces that pass so it never competes with writes for long.
	ScrubBytesPerSec int64 `toml:"scrub_bytes_per_sec"`
}

// DefaultScrubInterval reads the whole log once a day: damage found within a day, while
// peers surely still hold the versions (retention does not clear versions others lack).
const DefaultScrubInterval = 24 * time.Hour

// DefaultLogRetention keeps an hour of full history: long enough for a CDC consumer or a
// subscriber to ride out a restart or a deploy, and for "what did it say 20 minutes ago"
// replays; short enough that at 1,000 updates/s the window costs about 3.6 M versions
// (a few hundred MB) rather than growing without end.
const DefaultLogRetention = "1h"

// retention parses Retention: forever is true for "forever".
func (c *LogConfig) retention() (d time.Duration, forever bool, err error) {
	raw := strings.TrimSpace(c.Retention)
	if strings.EqualFold(raw, "forever") {
		return 0, true, nil
	}
	if raw == "" { // a Config built in code without DefaultConfig
		raw = DefaultLogRetention
	}
	d, err = time.ParseDuration(raw)
	if err != nil || d < 0 {
		return 0, false, usagef("log.retention %q: want a duration >= 0 (such as 0s, 10m, 24h) or forever", c.Retention)
	}
	return d, false, nil
}

// GossipConfig is the [gossip] section.
type GossipConfig struct {
	// SecretKey is base64 of 16, 24 or 32 bytes; it encrypts memberlist traffic.
	SecretKey    string        `toml:"secret_key"`
	Fanout       int           `toml:"fanout"`
	SyncInterval time.Duration `toml:"sync_interval"`
	// Region names this node's region; set on every node, broadcast becomes region-aware.
	Region string `toml:"region"`
	// Compression is "zstd" (default) or "none": how frames to peers that decode zstd go.
	Compression string `toml:"compression"`
	// CompressMinBytes is the smallest frame body compressed.
	CompressMinBytes int `toml:"compress_min_bytes"`
	TLS              struct {
		CAFile   string `toml:"ca_file"`
		CertFile string `toml:"cert_file"`
		KeyFile  string `toml:"key_file"`
	} `toml:"tls"`
	// Fault is FOR TESTING ONLY (see gossip.FaultConfig): it delays, drops or blocks this
	// node's gossip traffic. The agent re-reads it from the config file on SIGHUP.
	Fault FaultConfig `toml:"fault"`
}

// FaultConfig is the [gossip.fault] section, FOR TESTING ONLY.
type FaultConfig struct {
	Enabled bool        `toml:"enabled"`
	Rules   []FaultRule `toml:"rules"`
}

// FaultRule is one [[gossip.fault.rules]] entry.
type FaultRule struct {
	Peers  []string      `toml:"peers"`
	Block  bool          `toml:"block"`
	Drop   float64       `toml:"drop"`
	Delay  time.Duration `toml:"delay"`
	Jitter time.Duration `toml:"jitter"`
}

// DefaultConfig is what `patina agent` runs on without a config: docs/DESIGN.md section 8.
func DefaultConfig() Config {
	a := api.DefaultConfig()
	m := materializer.DefaultConfig("")
	c := Config{
		DataDir:    "./patina-data",
		APIAddr:    a.Addr,
		GossipAddr: "127.0.0.1:8787",
		QUICAddr:   "127.0.0.1:8788",
		LogLevel:   "info",
		LogFormat:  "text",
	}
	c.API.MaxConcurrency, c.API.MaxStreams, c.API.MaxBodyBytes = a.MaxConcurrency, a.MaxStreams, a.MaxBodyBytes
	c.API.BodyTimeout, c.API.TxTimeout = a.BodyReadTimeout, a.TxTimeout
	c.API.QueueDepth, c.API.QueueTimeout = a.QueueDepth, a.QueueTimeout
	c.Log.Retention = DefaultLogRetention
	c.Log.ScrubInterval, c.Log.ScrubBytesPerSec = DefaultScrubInterval, log.DefaultScrubBytesPerSec
	c.DB.FoldBatch, c.DB.ReadConns, c.DB.FoldDelay = m.FoldBatch, m.ReadConns, DefaultFoldDelay
	c.DB.MinFreeBytes = log.DefaultMinFreeBytes
	c.DB.CheckOnStart = true
	c.DB.CheckpointInterval = materializer.DefaultCheckpointInterval
	// gossip.DefaultConfig's values; agent_gossip.go starts from it and lays these over.
	c.Gossip.Fanout, c.Gossip.SyncInterval = 3, time.Second
	c.Tracing.SampleRatio = 1
	c.Gossip.Compression, c.Gossip.CompressMinBytes = "zstd", 256
	return c
}

// option is one configuration key: its TOML key, flag and environment variable, and where it
// lives in Config. The environment variable is PATINA_ and the key upper-cased with dots as
// underscores; the flag is the key with dots and underscores as dashes.
type option struct {
	key   string
	usage string
	field func(*Config) any // pointer to the field
	// agentOnly options are flags of `patina agent` only; the others (api_addr, the token)
	// are also flags of the client commands.
	agentOnly bool
}

func (o option) flag() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(o.key)
}

func (o option) env() string {
	return "PATINA_" + strings.ToUpper(strings.ReplaceAll(o.key, ".", "_"))
}

// options are every setting of the config, in the order help lists them: the core ones
// here, then the PostgreSQL and subscription ones their own files declare.
var options = slices.Concat(coreOptions, pgOptions, subsOptions, tracingOptions)

var coreOptions = []option{
	{key: "data_dir", usage: "data directory (log and view)", field: func(c *Config) any { return &c.DataDir }, agentOnly: true},
	{key: "site_id", usage: "site id (UUID) of a NEW data dir; an error on one with another id", field: func(c *Config) any { return &c.SiteID }, agentOnly: true},
	{key: "cluster_id", usage: "cluster name; nodes of other clusters are refused", field: func(c *Config) any { return &c.ClusterID }, agentOnly: true},
	{key: "schema", usage: "schema file (.sql) or folder of them; repeatable", field: func(c *Config) any { return &c.Schema }, agentOnly: true},
	{key: "api_addr", usage: "HTTP API address", field: func(c *Config) any { return &c.APIAddr }},
	{key: "gossip_addr", usage: "gossip (memberlist, UDP and TCP) bind address", field: func(c *Config) any { return &c.GossipAddr }, agentOnly: true},
	{key: "quic_addr", usage: "QUIC (UDP) bind address", field: func(c *Config) any { return &c.QUICAddr }, agentOnly: true},
	{key: "advertise_addr", usage: "host (or host:port) other nodes reach this one at", field: func(c *Config) any { return &c.AdvertiseAddr }, agentOnly: true},
	{key: "bootstrap", usage: "gossip address host:port of a node to join; repeatable", field: func(c *Config) any { return &c.Bootstrap }, agentOnly: true},
	{key: "log_level", usage: "debug, info, warn or error", field: func(c *Config) any { return &c.LogLevel }, agentOnly: true},
	{key: "log_format", usage: "text or json", field: func(c *Config) any { return &c.LogFormat }, agentOnly: true},
	{key: "api.authz.bearer_token", usage: "bearer token the API requires (clients: the token to send)", field: func(c *Config) any { return &c.API.Authz.BearerToken }},
	{key: "api.authz.guard_public", usage: "require a read token for /v1/health and /metrics too", field: func(c *Config) any { return &c.API.Authz.GuardPublic }, agentOnly: true},
	{key: "api.tls.cert_file", usage: "agent: HTTPS certificate (PEM); client: certificate to present", field: func(c *Config) any { return &c.API.TLS.CertFile }},
	{key: "api.tls.key_file", usage: "private key (PEM) of api.tls.cert_file", field: func(c *Config) any { return &c.API.TLS.KeyFile }},
	{key: "api.tls.ca_file", usage: "agent: require client certificates of this CA; client: CA the agent's certificate chains to", field: func(c *Config) any { return &c.API.TLS.CAFile }},
	{key: "api.socket", usage: "also serve the API on this Unix socket (mode 0660), for clients on this host: --api-addr unix:///path", field: func(c *Config) any { return &c.API.Socket }, agentOnly: true},
	{key: "api.write_addr", usage: "agent: also serve writes (POST /v1/transactions alone) on this host:port, through a leaner HTTP/1.1 server (less CPU per write); client: send writes there", field: func(c *Config) any { return &c.API.WriteAddr }},
	{key: "api.max_concurrency", usage: "data requests served at once; more wait in the admission queue", field: func(c *Config) any { return &c.API.MaxConcurrency }, agentOnly: true},
	{key: "api.queue_depth", usage: "data requests that may wait for a slot; more are refused with 503 (-1: no queue)", field: func(c *Config) any { return &c.API.QueueDepth }, agentOnly: true},
	{key: "api.queue_timeout", usage: "longest a data request waits for a slot before 503; an expected wait past it is refused at once", field: func(c *Config) any { return &c.API.QueueTimeout }, agentOnly: true},
	{key: "api.max_streams", usage: "long-lived streams open at once", field: func(c *Config) any { return &c.API.MaxStreams }, agentOnly: true},
	{key: "api.max_body_bytes", usage: "largest request body; more is 413", field: func(c *Config) any { return &c.API.MaxBodyBytes }, agentOnly: true},
	{key: "api.tx_timeout", usage: "longest a write transaction may run (a shorter ?timeout wins); then it is interrupted, rolled back and answered 408; 0 is no limit", field: func(c *Config) any { return &c.API.TxTimeout }, agentOnly: true},
	{key: "api.endpoint_name", usage: "this node's endpoint name: requests whose x-corrosion-requested-endpoint-name header names another are refused with 421 (Corrosion's key)", field: func(c *Config) any { return &c.API.EndpointName }, agentOnly: true},
	{key: "api.body_timeout", usage: "longest a client may take to send a request body; slower is 408 (a data slot is taken only once the body is read)", field: func(c *Config) any { return &c.API.BodyTimeout }, agentOnly: true},
	{key: "db.min_free_bytes", usage: "writes are refused with 507 while the data dir's disk has less free space (reads go on; writes resume once space is freed); -1 turns the check off", field: func(c *Config) any { return &c.DB.MinFreeBytes }, agentOnly: true},
	{key: "db.fold_batch", usage: "most changesets folded per SQLite transaction", field: func(c *Config) any { return &c.DB.FoldBatch }, agentOnly: true},
	{key: "db.fold_delay", usage: "how long the writer, woken by changesets from peers alone, waits for more before folding a small batch (more changesets per SQLite commit, that much more replication latency); 0 folds at once", field: func(c *Config) any { return &c.DB.FoldDelay }, agentOnly: true},
	{key: "db.check_on_start", usage: "check views.db at start (PRAGMA quick_check reads the whole file) and rebuild a damaged one from the log; off, the first statement that meets damage starts that rebuild", field: func(c *Config) any { return &c.DB.CheckOnStart }, agentOnly: true},
	{key: "db.read_conns", usage: "read-only SQLite connections", field: func(c *Config) any { return &c.DB.ReadConns }, agentOnly: true},
	{key: "db.commit_depth", usage: "log append groups on their way to disk at once: one is built and written while the previous one's fsync runs (0: the default, 2; 1: no overlap)", field: func(c *Config) any { return &c.DB.CommitDepth }, agentOnly: true},
	{key: "db.log_memtable_bytes", usage: "the most the log's memtable grows to before it is flushed (up to two held at once); bigger: far less compaction of the log, bigger steps of disk use (needs db.min_free_bytes of 2.5 times it) (0: the default, 4 MiB)", field: func(c *Config) any { return &c.DB.LogMemtableBytes }, agentOnly: true},
	{key: "db.log_max_open_files", usage: "the most tables of the log Pebble keeps open (its table cache); a read of a table not open opens it first (0: half the process's open-file limit, 100 to 16384)", field: func(c *Config) any { return &c.DB.LogMaxOpenFiles }, agentOnly: true},
	{key: "db.checkpoint_interval", usage: "a checkpointer copies views.db's WAL into the file beside the writer at most this often while writes come; 0: SQLite's automatic checkpoint, inside the writer's commits (every 1000 pages)", field: func(c *Config) any { return &c.DB.CheckpointInterval }, agentOnly: true},
	{key: "db.writer_depth", usage: "the view writer's groups on their way at once: 2 runs a group's SQL while the previous group's log fsync runs (lower latency, more CPU per write, up to db.commit_depth); 0 or 1: none overlaps", field: func(c *Config) any { return &c.DB.WriterDepth }, agentOnly: true},
	{key: "log.scrub_interval", usage: "how often a background pass reads the whole log, verifying checksums and digests, and repairs what it finds; 0 turns it off", field: func(c *Config) any { return &c.Log.ScrubInterval }, agentOnly: true},
	{key: "log.scrub_bytes_per_sec", usage: "read rate of the background scrub, so that it never competes with writes for long", field: func(c *Config) any { return &c.Log.ScrubBytesPerSec }, agentOnly: true},
	{key: "log.retention", usage: "how long superseded changes stay in the log: a duration (0s: compact at once) or forever", field: func(c *Config) any { return &c.Log.Retention }, agentOnly: true},
	{key: "gossip.secret_key", usage: "base64 key (16, 24 or 32 bytes) encrypting gossip", field: func(c *Config) any { return &c.Gossip.SecretKey }, agentOnly: true},
	{key: "gossip.fanout", usage: "members each new changeset is sent to", field: func(c *Config) any { return &c.Gossip.Fanout }, agentOnly: true},
	{key: "gossip.sync_interval", usage: "mean time between sync rounds", field: func(c *Config) any { return &c.Gossip.SyncInterval }, agentOnly: true},
	{key: "gossip.region", usage: "this node's region (e.g. its cloud region); set on every node for region-aware broadcast", field: func(c *Config) any { return &c.Gossip.Region }, agentOnly: true},
	{key: "gossip.compression", usage: "zstd or none: compression of gossip and sync frames to peers that decode it", field: func(c *Config) any { return &c.Gossip.Compression }, agentOnly: true},
	{key: "gossip.compress_min_bytes", usage: "smallest gossip frame body compressed", field: func(c *Config) any { return &c.Gossip.CompressMinBytes }, agentOnly: true},
	{key: "gossip.tls.ca_file", usage: "CA certificate (PEM): mutual TLS between nodes", field: func(c *Config) any { return &c.Gossip.TLS.CAFile }, agentOnly: true},
	{key: "gossip.tls.cert_file", usage: "node certificate (PEM)", field: func(c *Config) any { return &c.Gossip.TLS.CertFile }, agentOnly: true},
	{key: "gossip.tls.key_file", usage: "node private key (PEM)", field: func(c *Config) any { return &c.Gossip.TLS.KeyFile }, agentOnly: true},
	{key: "gossip.fault.enabled", usage: "FOR TESTING ONLY: enable the fault filter ([[gossip.fault.rules]] in the file)", field: func(c *Config) any { return &c.Gossip.Fault.Enabled }, agentOnly: true},
}

// configFlags holds the values flags were parsed into, to be laid over file and env.
type configFlags struct {
	path string // -c
	cfg  Config
}

// addConfigFlags registers the options as flags of c: all of them for the agent, the
// client-side ones (api_addr, token, logging) for client commands.
func addConfigFlags(c *cobra.Command, agent bool) *configFlags {
	cf := &configFlags{cfg: DefaultConfig()}
	fs := c.Flags()
	fs.StringVarP(&cf.path, "config", "c", "", "TOML config file (flags > PATINA_* env > file > defaults)")
	for _, o := range options {
		if o.agentOnly && !agent {
			continue
		}
		usage := o.usage + " [" + o.env() + "]"
		switch p := o.field(&cf.cfg).(type) {
		case *string:
			fs.StringVar(p, o.flag(), *p, usage)
		case *[]string:
			fs.StringArrayVar(p, o.flag(), *p, usage)
		case *int:
			fs.IntVar(p, o.flag(), *p, usage)
		case *int64:
			fs.Int64Var(p, o.flag(), *p, usage)
		case *bool:
			fs.BoolVar(p, o.flag(), *p, usage)
		case *time.Duration:
			fs.DurationVar(p, o.flag(), *p, usage)
		case *float64:
			fs.Float64Var(p, o.flag(), *p, usage)
		default:
			panic(fmt.Sprintf("option %s: unsupported type %T", o.key, p))
		}
	}
	if !agent {
		// The client's name for the token and the API address.
		fs.Lookup("api-authz-bearer-token").Usage = "bearer token to send [PATINA_API_AUTHZ_BEARER_TOKEN]"
		fs.Lookup("api-addr").Usage = "address of the agent's HTTP API [PATINA_API_ADDR]"
		fs.StringVar(&cf.cfg.API.Authz.BearerToken, "token", "", "the same as --api-authz-bearer-token")
	}
	return cf
}

// load builds the configuration: defaults, then the file, then the environment, then the
// flags that were given on the command line.
func (cf *configFlags) load(c *cobra.Command, getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	if cf.path != "" {
		if err := loadFile(cf.path, &cfg); err != nil {
			return cfg, err
		}
	}
	for _, o := range options {
		raw := getenv(o.env())
		if raw == "" {
			continue
		}
		if err := setFromString(o.field(&cfg), raw); err != nil {
			return cfg, usagef("%s=%q: %v", o.env(), raw, err)
		}
	}
	fs := c.Flags()
	for _, o := range options {
		if f := fs.Lookup(o.flag()); f != nil && f.Changed {
			reflect.ValueOf(o.field(&cfg)).Elem().Set(reflect.ValueOf(o.field(&cf.cfg)).Elem())
		}
	}
	if f := fs.Lookup("token"); f != nil && f.Changed {
		cfg.API.Authz.BearerToken = cf.cfg.API.Authz.BearerToken
	}
	return cfg, nil
}

// loadFile decodes a TOML file over cfg; unknown keys are an error (a typo must not be
// silently ignored).
func loadFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return usagef("config: %v", err)
	}
	// A Corrosion config file is read too: its keys become Patina's (config_corrosion.go).
	b, notes, err := corrosionDoc(path, b)
	if err != nil {
		return err
	}
	cfg.notes = append(cfg.notes, notes...)
	md, err := toml.Decode(string(b), cfg)
	if err != nil {
		return usagef("config %s: %v", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return usagef("config %s: unknown keys %s", path, strings.Join(keys, ", "))
	}
	return nil
}

// setFromString parses an environment variable into the field p points to. Lists are
// comma-separated.
func setFromString(p any, raw string) error {
	switch p := p.(type) {
	case *string:
		*p = raw
	case *[]string:
		*p = nil
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*p = append(*p, s)
			}
		}
	case *int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return errors.New("want an integer")
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return errors.New("want an integer")
		}
		*p = n
	case *bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("want true or false")
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("want a duration such as 500ms or 2s")
		}
		*p = d
	case *float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return errors.New("want a number")
		}
		*p = f
	default:
		return fmt.Errorf("unsupported type %T", p)
	}
	return nil
}

// Validate checks what the components do not check themselves, with the key's name in the
// message.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return usagef("data_dir is empty")
	}
	if c.SiteID != "" {
		if _, err := parseSiteID(c.SiteID); err != nil {
			return usagef("site_id %q: %v", c.SiteID, err)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return usagef("log_level: %v", err)
	}
	if c.Log.ScrubInterval < 0 {
		return usagef("log.scrub_interval %v: want 0 (off) or more", c.Log.ScrubInterval)
	}
	if c.Log.ScrubBytesPerSec < 0 {
		return usagef("log.scrub_bytes_per_sec %d: want more than 0 (0: the default rate)", c.Log.ScrubBytesPerSec)
	}
	if c.DB.FoldDelay < 0 {
		return usagef("db.fold_delay %v: want 0 or more", c.DB.FoldDelay)
	}
	if c.DB.CheckpointInterval < 0 {
		return usagef("db.checkpoint_interval %v: want 0 (no checkpointer) or more", c.DB.CheckpointInterval)
	}
	if c.DB.LogMemtableBytes < 0 || (c.DB.LogMemtableBytes > 0 && c.DB.LogMemtableBytes < 1<<20) || c.DB.LogMemtableBytes > 1<<30 {
		return usagef("db.log_memtable_bytes %d: want 0 (the default, 4 MiB) or 1 MiB to 1 GiB", c.DB.LogMemtableBytes)
	}
	// The disk use moves by about twice the memtable at once (a WAL file preallocated at
	// 110% of it, a flushed table as big): the free-space margin must cover such a step, or
	// Pebble meets a full disk before writes are refused.
	if mt := c.DB.LogMemtableBytes; mt > 0 && c.DB.MinFreeBytes >= 0 {
		minFree := c.DB.MinFreeBytes
		if minFree == 0 {
			minFree = log.DefaultMinFreeBytes
		}
		if need := mt * 5 / 2; minFree < need {
			return usagef("db.log_memtable_bytes %d needs db.min_free_bytes of at least %d (2.5 times it: a new log WAL file preallocates 110%% of it and a flush writes as much), not %d", mt, need, minFree)
		}
	}
	if c.DB.LogMaxOpenFiles < 0 || (c.DB.LogMaxOpenFiles > 0 && c.DB.LogMaxOpenFiles < log.MinOpenFiles) {
		return usagef("db.log_max_open_files %d: want 0 (half the open-file limit, at most 16384) or at least %d", c.DB.LogMaxOpenFiles, log.MinOpenFiles)
	}
	if lim, ok := log.OpenFileLimit(); ok && c.DB.LogMaxOpenFiles > 0 && uint64(c.DB.LogMaxOpenFiles) > lim {
		// Pebble would run the process out of descriptors (sockets, the view) before its
		// table cache filled.
		return usagef("db.log_max_open_files %d is more than this process may open (its open-file limit is %d): lower it, or 0 for half the limit", c.DB.LogMaxOpenFiles, lim)
	}
	if c.DB.CommitDepth < 0 {
		return usagef("db.commit_depth %d: want 0 (the default, 2) or more", c.DB.CommitDepth)
	}
	if c.DB.WriterDepth < 0 {
		return usagef("db.writer_depth %d: want 0 (the default, 1) or more", c.DB.WriterDepth)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return usagef("log_format %q: want text or json", c.LogFormat)
	}
	if _, err := c.API.apiTokens(); err != nil {
		return err
	}
	if _, _, err := c.Log.retention(); err != nil {
		return err
	}
	if r := c.Tracing.SampleRatio; !(r >= 0 && r <= 1) {
		return usagef("tracing.sample_ratio %v: want 0 to 1", r)
	}
	if err := c.API.TLS.validate(); err != nil {
		return err
	}
	if c.Gossip.SecretKey != "" {
		if _, err := base64.StdEncoding.DecodeString(c.Gossip.SecretKey); err != nil {
			return usagef("gossip.secret_key: not base64: %v", err)
		}
	}
	return nil
}

// parseSiteID reads a site id as a UUID or 32 hex digits.
func parseSiteID(s string) (log.SiteID, error) {
	id, err := log.ParseSiteID(s)
	if err != nil {
		return id, errors.New("want a UUID such as 00000000-0000-0000-0000-000000000001 or 32 hex digits")
	}
	if id.IsZero() {
		return id, errors.New("the zero site id is reserved")
	}
	return id, nil
}
