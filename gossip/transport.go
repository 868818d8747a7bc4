package gossip

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/quic-go/quic-go"
)

// QUIC application error codes (append-only).
const (
	codeOK           quic.ApplicationErrorCode = 0
	codeWrongCluster quic.ApplicationErrorCode = 1
	codeProtocol     quic.ApplicationErrorCode = 2
	codeShutdown     quic.ApplicationErrorCode = 3
)

func (g *Gossip) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           3 * time.Second,
		MaxIdleTimeout:                 5 * time.Second,
		KeepAlivePeriod:                time.Second,
		MaxIncomingStreams:             int64(g.cfg.MaxServedSyncs) + 16,
		MaxIncomingUniStreams:          16,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 2 << 20,
		MaxConnectionReceiveWindow:     32 << 20,
	}
}

func (g *Gossip) openQUIC() error {
	srv, cli, insecure, err := tlsConfigs(g.cfg.TLS)
	if err != nil {
		return err
	}
	if insecure {
		g.logger.Warn("!!! GOSSIP TLS IS NOT VERIFIED: no CA configured, so this node uses an ephemeral " +
			"self-signed certificate and accepts any peer. Use only for loopback development; configure " +
			"gossip tls ca_file, cert_file and key_file (see `patina tls`) for anything else !!!")
	}
	g.serverTLS, g.clientTLS = srv, cli
	udpAddr, err := net.ResolveUDPAddr("udp", g.cfg.QUICAddr)
	if err != nil {
		return fmt.Errorf("quic addr %q: %w", g.cfg.QUICAddr, err)
	}
	udp, err := net.ListenUDP("udp", udpAddr)
	if err != nil {
		return fmt.Errorf("quic listen %s: %w", g.cfg.QUICAddr, err)
	}
	g.udp = udp
	var pc net.PacketConn = udp
	if g.faults != nil {
		g.logger.Warn("gossip FAULT HOOK ENABLED: traffic may be delayed, dropped or blocked on purpose (testing only)")
		pc = &faultPacketConn{PacketConn: udp, f: g.faults}
	}
	g.qt = &quic.Transport{Conn: pc, StatelessResetKey: g.resetKey()}
	ln, err := g.qt.Listen(g.serverTLS, g.quicConfig())
	if err != nil {
		return fmt.Errorf("quic listen: %w", err)
	}
	g.ln = ln
	bound := udp.LocalAddr().(*net.UDPAddr)
	g.quicPort = bound.Port
	host := bound.IP.String()
	if adv := g.cfg.AdvertiseAddr; adv != "" {
		host = adv
		if h, _, err := splitHostPort(adv); err == nil {
			host = h
		}
	} else if bound.IP.IsUnspecified() {
		host = "" // the memberlist advertise address, once known (openMemberlist)
	}
	if host != "" {
		g.quicAddr = hostPort(host, bound.Port)
	}
	return nil
}

// resetKey derives the QUIC stateless reset key from what stays the same across restarts
// of this node. A node restarted on the same address then answers packets of its previous
// life's connections with a stateless reset, so peers drop those dead connections at once
// instead of waiting for the idle timeout (losing broadcasts and stalling syncs meanwhile).
func (g *Gossip) resetKey() *quic.StatelessResetKey {
	h := sha256.New()
	h.Write([]byte("patina gossip stateless reset v1\x00"))
	h.Write(g.site[:])
	h.Write([]byte(g.cfg.ClusterID))
	h.Write(g.cfg.SecretKey)
	var k quic.StatelessResetKey
	copy(k[:], h.Sum(nil))
	return &k
}

func (g *Gossip) hello(kind uint8) []byte {
	b, err := msgFrame(frameHello, &hello{V: protoVersion, Cluster: g.cfg.ClusterID, Site: wireSite(g.site), Kind: kind})
	if err != nil {
		panic(err) // a fixed struct always encodes
	}
	return b
}

// acceptLoop serves incoming connections until the listener closes.
func (g *Gossip) acceptLoop() {
	for {
		conn, err := g.ln.Accept(g.run)
		if err != nil {
			if g.run.Err() == nil {
				g.logger.Warn("quic accept", attrErr, err)
			}
			return
		}
		g.goRun(func() { g.serveConn(conn) })
	}
}

func (g *Gossip) serveConn(conn *quic.Conn) {
	ctx := conn.Context()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := conn.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			g.goRun(func() { g.serveBroadcast(conn, st) })
		}
	}()
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			break
		}
		g.goRun(func() { g.serveSync(conn, st) })
	}
	wg.Wait()
}

// readHello reads and checks the first frame of a stream; a peer of another cluster gets
// its connection closed.
func (g *Gossip) readHello(conn *quic.Conn, fr *frameReader, want uint8) (*hello, error) {
	typ, body, err := fr.next()
	if err != nil {
		return nil, err
	}
	h, err := decodeHello(typ, body)
	if err != nil {
		_ = conn.CloseWithError(codeProtocol, "bad hello")
		return nil, err
	}
	if h.Cluster != g.cfg.ClusterID {
		g.m.refusedCluster.Inc()
		_ = conn.CloseWithError(codeWrongCluster, "wrong cluster")
		return nil, fmt.Errorf("%w: %q from %v", ErrWrongCluster, h.Cluster, conn.RemoteAddr())
	}
	if h.Kind != want {
		_ = conn.CloseWithError(codeProtocol, "bad stream kind")
		return nil, fmt.Errorf("%w: stream kind %d, want %d", ErrProtocol, h.Kind, want)
	}
	return h, nil
}

// peer is a live member: its broadcast queue and sender, and a reused QUIC connection.
type peer struct {
	g        *Gossip
	name     string
	site     log.SiteID
	quicAddr string

	ctx    context.Context
	cancel context.CancelFunc

	qmu    sync.Mutex
	queue  [][]byte // encoded changeset frames
	qbytes int
	signal chan struct{}

	cmu  sync.Mutex
	conn *quic.Conn
}

func (g *Gossip) newPeer(name string, site log.SiteID, quicAddr string) *peer {
	ctx, cancel := context.WithCancel(g.run)
	p := &peer{g: g, name: name, site: site, quicAddr: quicAddr, ctx: ctx, cancel: cancel, signal: make(chan struct{}, 1)}
	g.goRun(p.sendLoop)
	return p
}

func (p *peer) stop() {
	p.cancel()
	p.cmu.Lock()
	if p.conn != nil {
		_ = p.conn.CloseWithError(codeShutdown, "peer gone")
		p.conn = nil
	}
	p.cmu.Unlock()
}

// connect returns the peer's connection, dialing it if needed.
func (p *peer) connect(ctx context.Context) (*quic.Conn, error) {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	if p.conn != nil && p.conn.Context().Err() == nil {
		return p.conn, nil
	}
	if p.ctx.Err() != nil {
		return nil, ErrClosed
	}
	addr, err := net.ResolveUDPAddr("udp", p.quicAddr)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", p.quicAddr, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := p.g.qt.Dial(dctx, addr, p.g.clientTLS, p.g.quicConfig())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.quicAddr, err)
	}
	p.conn = conn
	return conn, nil
}

// dropConn forgets conn if it is still the current one, so that the next use redials.
func (p *peer) dropConn(conn *quic.Conn, err error) {
	p.cmu.Lock()
	if p.conn == conn {
		p.conn = nil
	}
	p.cmu.Unlock()
	code := codeProtocol
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		code = codeOK
	}
	_ = conn.CloseWithError(code, "dropped")
}
