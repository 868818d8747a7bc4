package gossip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// FaultConfig is FOR TESTING AND BENCHMARKS ONLY. When Enabled, every packet this node
// sends (QUIC and memberlist, UDP and TCP dials) passes a filter that can delay, drop or
// block it per destination, so partitions and lossy links are made through the real
// stack: QUIC retransmits, memberlist suspects, sync repairs. Off by default; never
// enable it in production. Rules can be changed at run time with Gossip.SetFaults.
type FaultConfig struct {
	Enabled bool
	Rules   []FaultRule
}

// FaultRule applies to packets sent to Peers (site ids, gossip or QUIC addresses; empty
// means every peer).
type FaultRule struct {
	Peers []string
	// Block drops every packet and fails every dial.
	Block bool
	// Drop is the probability (0..1) that a packet is dropped.
	Drop float64
	// Delay (plus up to Jitter more) holds each packet back before sending it.
	Delay  time.Duration
	Jitter time.Duration
}

func (c *FaultConfig) validate() error {
	if !c.Enabled && len(c.Rules) > 0 {
		return errors.New("rules given but enabled is false")
	}
	for i, r := range c.Rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i, err)
		}
	}
	return nil
}

func (r FaultRule) validate() error {
	if r.Drop < 0 || r.Drop > 1 {
		return fmt.Errorf("drop %v outside 0..1", r.Drop)
	}
	if r.Delay < 0 || r.Jitter < 0 {
		return errors.New("negative delay or jitter")
	}
	return nil
}

// faults is the live filter. Addresses are mapped to site ids from membership metadata so
// that rules may name peers either way.
type faults struct {
	rules atomic.Pointer[[]FaultRule]
	mu    sync.RWMutex
	sites map[string]string // address -> site id string
}

func newFaults(rules []FaultRule) *faults {
	f := &faults{sites: map[string]string{}}
	f.set(rules)
	return f
}

func (f *faults) set(rules []FaultRule) {
	rs := append([]FaultRule(nil), rules...)
	f.rules.Store(&rs)
}

func (f *faults) learn(addr, site string) {
	f.mu.Lock()
	f.sites[addr] = site
	f.mu.Unlock()
}

// verdict decides the fate of one packet to addr: drop it, or send it after delay.
func (f *faults) verdict(addr string) (drop bool, delay time.Duration) {
	rules := *f.rules.Load()
	if len(rules) == 0 {
		return false, 0
	}
	f.mu.RLock()
	site := f.sites[addr]
	f.mu.RUnlock()
	for _, r := range rules {
		if !r.matches(addr, site) {
			continue
		}
		if r.Block || (r.Drop > 0 && rand.Float64() < r.Drop) {
			return true, 0
		}
		d := r.Delay
		if r.Jitter > 0 {
			d += rand.N(r.Jitter)
		}
		if d > delay {
			delay = d
		}
	}
	return false, delay
}

func (f *faults) blocked(addr string) bool {
	rules := *f.rules.Load()
	f.mu.RLock()
	site := f.sites[addr]
	f.mu.RUnlock()
	for _, r := range rules {
		if r.Block && r.matches(addr, site) {
			return true
		}
	}
	return false
}

func (r *FaultRule) matches(addr, site string) bool {
	if len(r.Peers) == 0 {
		return true
	}
	for _, p := range r.Peers {
		if p == addr || (site != "" && p == site) {
			return true
		}
	}
	return false
}

// faultPacketConn filters the QUIC transport's outgoing packets.
type faultPacketConn struct {
	net.PacketConn
	f *faults
}

func (c *faultPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	drop, delay := c.f.verdict(addr.String())
	if drop {
		return len(p), nil
	}
	if delay > 0 {
		// quic-go reuses p once WriteTo returns.
		b := append([]byte(nil), p...)
		time.AfterFunc(delay, func() { _, _ = c.PacketConn.WriteTo(b, addr) })
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// faultTransport filters memberlist's outgoing packets and stream dials, and what this
// node writes on streams peers opened (a TCP fallback ping's ack, a push-pull's answer):
// a blocked node answers nobody, as a crashed one would. Inbound streams come from an
// ephemeral port, so only rules for every peer (no Peers) can match them.
type faultTransport struct {
	*memberlist.NetTransport
	f *faults

	once     sync.Once
	stopOnce sync.Once
	streams  chan net.Conn
	done     chan struct{}
}

// StreamCh hands memberlist the streams peers open, each wrapped by the filter.
func (t *faultTransport) StreamCh() <-chan net.Conn {
	t.once.Do(t.startStreams)
	return t.streams
}

func (t *faultTransport) startStreams() {
	t.streams, t.done = make(chan net.Conn), make(chan struct{})
	in := t.NetTransport.StreamCh()
	go func() {
		for {
			select {
			case c := <-in:
				select {
				case t.streams <- faultConn{Conn: c, f: t.f}:
				case <-t.done:
					_ = c.Close()
					return
				}
			case <-t.done:
				return
			}
		}
	}()
}

// Shutdown stops the transport, then the stream filter: the transport's listener may be
// handing over a stream until it has stopped, and memberlist reads them until then.
func (t *faultTransport) Shutdown() error {
	t.once.Do(t.startStreams)
	err := t.NetTransport.Shutdown()
	t.stopOnce.Do(func() { close(t.done) })
	return err
}

// faultConn is a stream a peer opened: writes to a blocked peer fail and close it.
type faultConn struct {
	net.Conn
	f *faults
}

func (c faultConn) Write(b []byte) (int, error) {
	if c.f.blocked(c.RemoteAddr().String()) {
		_ = c.Conn.Close()
		return 0, fmt.Errorf("write to %s: blocked by the fault hook", c.RemoteAddr())
	}
	return c.Conn.Write(b)
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	drop, delay := t.f.verdict(a.Addr)
	if drop {
		return time.Now(), nil
	}
	if delay > 0 {
		cp := append([]byte(nil), b...)
		time.AfterFunc(delay, func() { _, _ = t.NetTransport.WriteToAddress(cp, a) })
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.f.blocked(a.Addr) {
		return nil, fmt.Errorf("dial %s: blocked by the fault hook", a.Addr)
	}
	return t.NetTransport.DialAddressTimeout(a, timeout)
}

// The buffer methods let quic-go size the socket's buffers through the filter as it does
// for a plain *net.UDPConn.

func (c *faultPacketConn) SetReadBuffer(n int) error {
	if u, ok := c.PacketConn.(interface{ SetReadBuffer(int) error }); ok {
		return u.SetReadBuffer(n)
	}
	return errors.ErrUnsupported
}

func (c *faultPacketConn) SetWriteBuffer(n int) error {
	if u, ok := c.PacketConn.(interface{ SetWriteBuffer(int) error }); ok {
		return u.SetWriteBuffer(n)
	}
	return errors.ErrUnsupported
}

func (c *faultPacketConn) SyscallConn() (syscall.RawConn, error) {
	if u, ok := c.PacketConn.(syscall.Conn); ok {
		return u.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
