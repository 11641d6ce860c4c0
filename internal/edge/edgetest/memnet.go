package edgetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Net is a network in memory for tests that run an edge under
// testing/synctest: listeners and dials over net.Pipe, whose blocked
// reads and writes are durably blocked in a bubble, so that the bubble's
// fake clock moves on while nothing else can happen. Real sockets would
// keep the bubble busy forever; here a probe round, a flapping link or an
// ejection that lasts seconds runs in no time, and every round trip lasts
// exactly what the test's latencies say.
//
// Each address is a link of its own: Cut black-holes it (no reset, no
// answer: dials and writes to and from it hang until healed or closed),
// and SetLatency delays every write to and from it. A Net made inside a
// bubble must be used only there.
type Net struct {
	mu        sync.Mutex                // guards the fields below
	listeners map[string]*pipeListener  // by address
	links     map[string]*linkCondition // by address; absent: healthy, no latency
}

// linkCondition is what reaching one address is like now.
type linkCondition struct {
	latency time.Duration // one way, on every write
	healed  chan struct{} // closed while the link is up; open while cut
}

// NewNet returns an empty network.
func NewNet() *Net {
	return &Net{listeners: map[string]*pipeListener{}, links: map[string]*linkCondition{}}
}

// Serve serves h at addr (host:port) until the test ends and returns its
// http:// URL.
func (n *Net) Serve(tb testing.TB, addr string, h http.Handler) string {
	tb.Helper()
	ln, err := n.Listen(addr)
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close(); <-done })
	return "http://" + addr
}

// Listen listens at addr (host:port), which must be free.
func (n *Net) Listen(addr string) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, taken := n.listeners[addr]; taken {
		return nil, fmt.Errorf("listen %s: address in use", addr)
	}
	ln := &pipeListener{net: n, addr: pipeAddr(addr), conns: make(chan net.Conn), closed: make(chan struct{})}
	n.listeners[addr] = ln
	return ln, nil
}

// DialContext connects to the listener at addr, as net.Dialer.DialContext
// does: refused when nobody listens there, hanging until ctx is done while
// the link is cut.
func (n *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := n.whileCut(addr, ctx.Done()); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	n.mu.Lock()
	ln := n.listeners[addr]
	n.mu.Unlock()
	if ln == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
	}
	client, server := net.Pipe()
	c := &pipeConn{Conn: client, net: n, link: addr, closed: make(chan struct{}), local: pipeAddr("client"), remote: pipeAddr(addr)}
	s := &pipeConn{Conn: server, net: n, link: addr, closed: make(chan struct{}), local: pipeAddr(addr), remote: pipeAddr("client")}
	select {
	case ln.conns <- s:
		return c, nil
	case <-ln.closed:
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
	case <-ctx.Done():
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
}

// Cut black-holes the link to addr: new dials and every write over its
// connections hang until Heal (or until they are closed or given up).
func (n *Net) Cut(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.condition(addr)
	select {
	case <-c.healed:
		c.healed = make(chan struct{})
	default: // already cut
	}
}

// Heal ends a Cut of the link to addr.
func (n *Net) Heal(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.condition(addr)
	select {
	case <-c.healed:
	default:
		close(c.healed)
	}
}

// SetLatency delays every write to and from addr by d (one way): a round
// trip of one request and its answer lasts 2d.
func (n *Net) SetLatency(addr string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.condition(addr).latency = d
}

// condition returns addr's link, healthy when new; n.mu must be held.
func (n *Net) condition(addr string) *linkCondition {
	c, ok := n.links[addr]
	if !ok {
		healed := make(chan struct{})
		close(healed)
		c = &linkCondition{healed: healed}
		n.links[addr] = c
	}
	return c
}

// link is the link to addr now: its latency, and a channel closed while
// it is up.
func (n *Net) link(addr string) (time.Duration, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.condition(addr)
	return c.latency, c.healed
}

// whileCut waits while the link to addr is cut; it fails once stop is
// closed first.
func (n *Net) whileCut(addr string, stop <-chan struct{}) error {
	for {
		_, healed := n.link(addr)
		select {
		case <-healed:
			return nil
		default:
		}
		select {
		case <-healed: // up again, unless cut anew meanwhile: look again
		case <-stop:
			return net.ErrClosed
		}
	}
}

// pipeConn is one end of a connection: its writes wait for the link's
// latency, and while the link is cut, for it to heal.
type pipeConn struct {
	net.Conn
	net           *Net
	link          string // the address whose link it crosses
	local, remote net.Addr
	closeOnce     sync.Once
	closed        chan struct{}
}

func (c *pipeConn) Write(p []byte) (int, error) {
	if latency, _ := c.net.link(c.link); latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
			return 0, net.ErrClosed
		}
	}
	if err := c.net.whileCut(c.link, c.closed); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *pipeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }

// pipeListener hands over the server ends of the connections dialled to
// its address.
type pipeListener struct {
	net       *Net
	addr      pipeAddr
	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.net.mu.Lock()
		delete(l.net.listeners, string(l.addr))
		l.net.mu.Unlock()
	})
	return nil
}

func (l *pipeListener) Addr() net.Addr { return l.addr }

// pipeAddr is an address on a Net.
type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }
