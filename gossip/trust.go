package gossip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/quic-go/quic-go"
)

// Rogue members under mutual TLS (issue 12, item 9). Membership (memberlist, SWIM over
// UDP/TCP) does not speak TLS, so a node with a certificate from another CA, or none, can
// join it. Trust therefore comes from the QUIC transport, where every connection is mutual
// TLS against the cluster's CA: with a CA configured, a member is only "alive" once a
// handshake with it succeeded ("unverified" before, dialled at once when it appears), and a
// member whose handshake fails on certificate grounds, either way, is "untrusted": it gets
// no broadcasts and no syncs, is not counted as a healthy member, and both sides log the
// refusal at warn (once per address) and count it in patina_gossip_tls_refused_total.

// Member states added by mutual TLS (see MemberState).
const (
	// StateUnverified: alive in the membership, but no TLS handshake with it has
	// succeeded yet.
	StateUnverified MemberState = "unverified"
	// StateUntrusted: its certificate was refused (not from the cluster's CA, or none), or
	// it refused ours.
	StateUntrusted MemberState = "untrusted"
)

// trust is what mutual TLS says of a member.
type trust uint8

const (
	trustUnknown trust = iota
	trustVerified
	trustRefused
)

// verifying reports whether members must prove their certificate (a CA is configured).
func (g *Gossip) verifying() bool { return g.cfg.TLS.CAFile != "" }

// memberByQUIC returns the known member advertising addr as its QUIC address (g.mu held).
func (g *Gossip) memberByQUIC(addr string) (log.SiteID, *memberInfo) {
	for site, info := range g.known {
		if info.meta == nil {
			continue
		}
		if info.meta.QUIC == addr {
			return site, info
		}
		if a, err := net.ResolveUDPAddr("udp", info.meta.QUIC); err == nil && a.String() == addr {
			return site, info
		}
	}
	return log.SiteID{}, nil
}

// tlsOutcome records the outcome of a handshake with the peer at addr: err nil is a
// success, otherwise a refusal on certificate grounds in direction "in" or "out".
func (g *Gossip) tlsOutcome(direction, addr string, err error) {
	g.mu.Lock()
	site, info := g.memberByQUIC(addr)
	name := "" // unknown: no member advertises addr
	if info != nil {
		name = site.String()
	}
	var p *peer
	first := false
	if err == nil {
		if info != nil && info.tls != trustVerified {
			info.tls = trustVerified
			g.gaugeLocked(info) // unverified -> alive
			first = true
		}
		g.mu.Unlock()
		if first {
			g.logger.Debug("member verified by mutual TLS", "node", name, attrAddr, addr)
		}
		return
	}
	if info != nil {
		first = info.tls != trustRefused
		info.tls = trustRefused
		if p = g.peers[site]; p != nil {
			delete(g.peers, site)
			g.setPeersLocked()
		}
		g.gaugeLocked(info)
	} else {
		if g.refusedAddrs == nil {
			g.refusedAddrs = map[string]bool{}
		}
		first = !g.refusedAddrs[addr]
		if len(g.refusedAddrs) < 1024 {
			g.refusedAddrs[addr] = true
		}
	}
	g.mu.Unlock()
	if p != nil {
		p.stop()
	}
	g.m.tlsRefused.WithLabelValues(direction).Inc()
	lvl := "debug"
	if first {
		lvl = "warn"
	}
	msg := "refusing a peer under mutual TLS: its certificate is not from the cluster's CA (or it sent none)"
	if te := (*quic.TransportError)(nil); errors.As(err, &te) && te.Remote {
		msg = "a peer refused our certificate under mutual TLS (it trusts another CA)"
	}
	args := []any{"node", name, attrAddr, addr, "direction", direction, attrErr, err}
	if lvl == "warn" {
		g.logger.Warn(msg, args...)
	} else {
		g.logger.Debug(msg, args...)
	}
}

// memberState is the state Members reports for a known member (g.mu held).
func (g *Gossip) memberState(info *memberInfo, st MemberState) MemberState {
	if st != StateAlive || !g.verifying() {
		return st
	}
	switch info.tls {
	case trustRefused:
		return StateUntrusted
	case trustUnknown:
		return StateUnverified
	}
	return st
}

// isCertRefusal reports whether a dial failed because a side refused the other's certificate
// (a TLS alert), rather than because the peer was unreachable.
func isCertRefusal(err error) bool {
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode.IsCryptoError() {
		return true
	}
	var ce *tls.CertificateVerificationError
	var ue x509.UnknownAuthorityError
	return errors.As(err, &ce) || errors.As(err, &ue) || errors.Is(err, errNoPeerCert)
}

var errNoPeerCert = errors.New("tls: peer sent no certificate")

// verifyingServer returns the server TLS config that checks client certificates itself, so
// that a refusal is seen (logged and counted, with the peer's address) rather than failing
// inside the handshake unseen.
func (t *quicTransport) verifyingServer(srv *tls.Config) *tls.Config {
	pool := srv.ClientCAs
	if pool == nil {
		return srv
	}
	base := srv.Clone()
	base.ClientAuth = tls.RequestClientCert
	base.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		addr := "unknown"
		if hi.Conn != nil && hi.Conn.RemoteAddr() != nil {
			addr = hi.Conn.RemoteAddr().String()
		}
		c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			err := verifyChain(raw, pool, x509.ExtKeyUsageClientAuth)
			t.g.tlsOutcome("in", addr, err)
			return err
		}
		return c, nil
	}
	return base
}

// verify dials a new member at once, so that it is verified (or refused) without waiting
// for the first broadcast or sync to need a connection.
func (t *quicTransport) verify(addr string) {
	if t.run == nil || t.run.Err() != nil {
		return
	}
	t.goRun(func() {
		ctx, cancel := context.WithTimeout(t.run, 10*time.Second)
		defer cancel()
		_, _ = t.link(addr).connect(ctx) // connect records the outcome
	})
}
