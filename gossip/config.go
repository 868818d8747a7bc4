package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Gossip node. Only cmd parses files, flags and env into it.
type Config struct {
	// ClusterID names the cluster; nodes with another id are refused and never exchange data.
	ClusterID string
	// GossipAddr is the memberlist bind address (UDP and TCP), host:port; port 0 picks one.
	GossipAddr string
	// QUICAddr is the UDP address of the QUIC transport, host:port; port 0 picks one.
	QUICAddr string
	// AdvertiseAddr is the host (or host:port for memberlist) other nodes reach this one at,
	// when the bind address is a wildcard or behind NAT. Empty: the bind addresses.
	AdvertiseAddr string
	// APIAddr is this node's HTTP API address, advertised in the metadata for GET /v1/members.
	APIAddr string
	// Bootstrap lists host:port gossip addresses (DNS names allowed) to join through; the
	// join is retried with backoff until one answers.
	Bootstrap []string
	// SecretKey, when set (16, 24 or 32 bytes), encrypts memberlist traffic.
	SecretKey []byte
	// TLS configures the QUIC transport.
	TLS TLSConfig

	// Fanout is how many random live members a changeset newly received from a peer is
	// forwarded to.
	Fanout int
	// LocalFanout is how many random live members this node's own new changesets are sent
	// to. Larger than Fanout so that clusters of up to LocalFanout+1 nodes are reached in
	// one hop: every hop costs a durable append before the forward.
	LocalFanout int
	// Region names this node's region (a data center or cloud region), advertised to the
	// others. When set, broadcast is region-aware: a node's own changesets go to
	// RemoteFanout members of every other region and RegionalFanout of its own, and a
	// received changeset is forwarded within the receiver's region only (RegionalFanout
	// members when it came from another region, Fanout when from its own). Each changeset
	// then crosses a WAN link about RemoteFanout times per region instead of at random,
	// in one hop from its origin. Empty: region-blind random fanout (members without a
	// region count as one region of their own).
	Region string
	// RemoteFanout and RegionalFanout: see Region.
	RemoteFanout   int
	RegionalFanout int
	// MaxHops is the hop budget of a local changeset; a receiver forwards a new changeset
	// with one hop fewer.
	MaxHops int
	// BatchDelay is how long a peer's sender waits to fill a batch after its first entry;
	// BatchBytes ends a batch early.
	BatchDelay time.Duration
	BatchBytes int
	// QueueLen bounds each peer's broadcast queue (changesets); a full queue drops its oldest.
	QueueLen int
	// PartChanges is the most changes one broadcast frame carries; larger changesets travel
	// as parts (as the log stores them).
	PartChanges int

	// Compression is how frames to peers that decode it are compressed: "zstd" (the
	// default) or "none". A node decodes zstd frames either way (see compress.go).
	Compression string
	// CompressMinBytes is the smallest frame body worth compressing; smaller frames (most
	// single-row writes) go plain, where zstd's header would eat the saving.
	CompressMinBytes int

	// SyncInterval is the mean time between sync rounds (jittered by +-25%).
	SyncInterval time.Duration
	// SyncPeers is how many peers one round syncs with.
	SyncPeers int
	// SyncChunk is the most changesets handed to the Applier at once while syncing.
	SyncChunk int
	// SyncTimeout bounds one sync session.
	SyncTimeout time.Duration
	// SyncFullVectors opens every sync session with the full vector, as before digests
	// (sync.go), and tells peers so; for comparisons (patina bench sim --full-vectors).
	SyncFullVectors bool
	// MaxServedSyncs limits concurrent syncs served to peers; more are refused and the peer
	// tries elsewhere.
	MaxServedSyncs int

	// ProbeInterval, ProbeTimeout and SuspicionMult tune failure detection (memberlist).
	// The defaults notice a dead node in about a second on a LAN.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// GossipInterval is memberlist's own gossip period (membership only).
	GossipInterval time.Duration
	// ReconnectInterval is how often a node retries joining members it lost (dead, not
	// left), so that the two sides of a healed partition merge again.
	ReconnectInterval time.Duration
	// PushPullInterval is the base period of membership anti-entropy: a full exchange of
	// the member list with one random live member. Above PushPullScaleNodes members the
	// period grows in proportion to their number (PushPullEvery, pushpull.go), so that the
	// traffic it costs each node stays flat as the cluster grows.
	PushPullInterval time.Duration
	// JoinBackoffMax caps the backoff between join attempts.
	JoinBackoffMax time.Duration
	// LeaveTimeout bounds the graceful leave on Close.
	LeaveTimeout time.Duration

	// Fault is FOR TESTING ONLY: it delays, drops or blocks gossip traffic.
	Fault FaultConfig

	// Clock, Rand, Transport and Membership are the seams (seams.go, doc.go). Nil means
	// production's: the wall clock, math/rand/v2's global source, QUIC and memberlist.
	// Only the simulator (package sim) sets them.
	Clock      Clock
	Rand       Rand
	Transport  Transport
	Membership Membership

	// oldWire makes the node advertise itself as one from before compressed and traced
	// frames (no nodeMeta.Zstd nor Trace), for the mixed-version tests.
	oldWire bool

	// Registerer receives the Prometheus metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// TLSConfig configures the QUIC transport. With CAFile, CertFile and KeyFile set, peers
// authenticate each other (mutual TLS) with certificates signed by the CA. With none set,
// the node makes an ephemeral self-signed certificate and does not verify peers: for
// loopback development only (a loud warning is logged).
type TLSConfig struct {
	CAFile   string
	CertFile string
	KeyFile  string
	// ClientCertFile and ClientKeyFile, when set, are presented when dialing; otherwise
	// CertFile and KeyFile are used for both roles.
	ClientCertFile string
	ClientKeyFile  string
}

// Enabled reports whether files are configured.
func (c TLSConfig) Enabled() bool { return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" }

// DefaultConfig returns the defaults of docs/DESIGN.md section 8: gossip on 127.0.0.1:8787, QUIC
// on 127.0.0.1:8788, fanout 3, sync about every second, dead nodes noticed in about 1 s.
func DefaultConfig() Config {
	return Config{
		GossipAddr:        "127.0.0.1:8787",
		QUICAddr:          "127.0.0.1:8788",
		APIAddr:           "127.0.0.1:8080",
		Fanout:            3,
		LocalFanout:       10,
		RemoteFanout:      1,
		RegionalFanout:    32,
		MaxHops:           4,
		BatchDelay:        200 * time.Microsecond,
		BatchBytes:        64 << 10,
		QueueLen:          10_000,
		PartChanges:       4096,
		Compression:       CompressionZstd,
		CompressMinBytes:  256,
		SyncInterval:      time.Second,
		SyncPeers:         1,
		SyncChunk:         512,
		SyncTimeout:       5 * time.Minute,
		MaxServedSyncs:    3,
		ProbeInterval:     200 * time.Millisecond,
		ProbeTimeout:      100 * time.Millisecond,
		SuspicionMult:     3,
		GossipInterval:    50 * time.Millisecond,
		ReconnectInterval: 2 * time.Second,
		PushPullInterval:  10 * time.Second,
		JoinBackoffMax:    10 * time.Second,
		LeaveTimeout:      2 * time.Second,
	}
}

// TestConfig is DefaultConfig with ephemeral loopback ports and fast timers, for tests.
func TestConfig() Config {
	c := DefaultConfig()
	c.GossipAddr = "127.0.0.1:0"
	c.QUICAddr = "127.0.0.1:0"
	c.APIAddr = ""
	c.SyncInterval = 200 * time.Millisecond
	c.ReconnectInterval = 300 * time.Millisecond
	c.JoinBackoffMax = 500 * time.Millisecond
	// The default leave bound: under -race on a loaded machine 500 ms let the leaving flag miss
	// its peers now and then, so a closed node showed as dead instead of left.
	c.LeaveTimeout = 2 * time.Second
	// Lenient failure detection: tests run with -race on a shared 2-core machine.
	c.ProbeInterval = 300 * time.Millisecond
	c.ProbeTimeout = 250 * time.Millisecond
	c.SuspicionMult = 4
	return c
}

// Validate reports the first problem of c as an error wrapping ErrConfig.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	for _, a := range []struct{ name, addr string }{{"gossip_addr", c.GossipAddr}, {"quic_addr", c.QUICAddr}} {
		if _, _, err := splitHostPort(a.addr); err != nil {
			return bad("%s %q: %v", a.name, a.addr, err)
		}
	}
	for _, b := range c.Bootstrap {
		if _, _, err := splitHostPort(b); err != nil {
			return bad("bootstrap %q: %v", b, err)
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return bad("gossip encryption key is %d bytes; want 16, 24 or 32", len(c.SecretKey))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return bad("tls: cert_file and key_file go together")
	}
	if (c.TLS.ClientCertFile == "") != (c.TLS.ClientKeyFile == "") {
		return bad("tls: client_cert_file and client_key_file go together")
	}
	if c.TLS.CAFile != "" && c.TLS.CertFile == "" {
		return bad("tls: ca_file needs cert_file and key_file (mutual TLS)")
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"fanout", int64(c.Fanout)}, {"local_fanout", int64(c.LocalFanout)},
		{"remote_fanout", int64(c.RemoteFanout)}, {"regional_fanout", int64(c.RegionalFanout)}, {"max_hops", int64(c.MaxHops)}, {"batch_bytes", int64(c.BatchBytes)},
		{"queue_len", int64(c.QueueLen)}, {"part_changes", int64(c.PartChanges)},
		{"sync_interval", int64(c.SyncInterval)}, {"sync_peers", int64(c.SyncPeers)},
		{"sync_chunk", int64(c.SyncChunk)}, {"sync_timeout", int64(c.SyncTimeout)},
		{"max_served_syncs", int64(c.MaxServedSyncs)}, {"probe_interval", int64(c.ProbeInterval)},
		{"probe_timeout", int64(c.ProbeTimeout)}, {"suspicion_mult", int64(c.SuspicionMult)},
		{"gossip_interval", int64(c.GossipInterval)}, {"reconnect_interval", int64(c.ReconnectInterval)},
		{"push_pull_interval", int64(c.PushPullInterval)},
		{"join_backoff_max", int64(c.JoinBackoffMax)}, {"leave_timeout", int64(c.LeaveTimeout)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return bad("%s must be positive (got %d)", p.name, p.v)
		}
	}
	switch c.Compression {
	case CompressionZstd, CompressionNone:
	default:
		return bad("compression %q: want %q or %q", c.Compression, CompressionZstd, CompressionNone)
	}
	if c.CompressMinBytes < 0 {
		return bad("compress_min_bytes must not be negative")
	}
	if c.BatchDelay < 0 {
		return bad("batch_delay must not be negative")
	}
	if c.ProbeTimeout > c.ProbeInterval {
		return bad("probe_timeout %v exceeds probe_interval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if err := c.Fault.validate(); err != nil {
		return bad("fault: %v", err)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, errors.New("bad port")
	}
	return host, p, nil
}
