package netsim

import (
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer starts a TCP echo server on 127.0.0.1:0 and returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	return server(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// server starts a TCP server on 127.0.0.1:0 running handle for each
// connection (then closing it) and returns its address. Everything is closed
// at test cleanup.
func server(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads the echo, failing after 5s; it returns the
// elapsed time.
func roundTrip(t *testing.T, c net.Conn, msg string) time.Duration {
	t.Helper()
	d, err := tryRoundTrip(c, msg, 5*time.Second)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	return d
}

func tryRoundTrip(c net.Conn, msg string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := c.SetDeadline(start.Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return 0, err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return 0, err
	}
	if string(buf) != msg {
		return 0, errors.New("echo mismatch: " + string(buf))
	}
	return time.Since(start), nil
}

// expectSilence writes msg and expects a read to time out with no data.
func expectSilence(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	expectReadTimeout(t, c)
}

// expectReadTimeout expects a read with a 300ms deadline to time out with
// no data.
func expectReadTimeout(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read = %d bytes, %v; want timeout with no data", n, err)
	}
}

// expectClosed expects the connection to be closed by the peer (EOF or
// reset) within 5s, with no data.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if n != 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read = %d bytes, %v; want connection closed", n, err)
	}
}

func newNet(t *testing.T, cfg Config) *Network {
	t.Helper()
	n := New(cfg)
	t.Cleanup(func() { n.Close() })
	return n
}

func route(t *testing.T, n *Network, from, to, upstream string) string {
	t.Helper()
	addr, err := n.Route(from, to, upstream)
	if err != nil {
		t.Fatalf("Route(%s, %s): %v", from, to, err)
	}
	return addr
}

func link(t *testing.T, n *Network, a, b string) *Link {
	t.Helper()
	l, ok := n.Link(a, b)
	if !ok {
		t.Fatalf("Link(%s, %s) missing", a, b)
	}
	return l
}

func TestLatencyRoundTrip(t *testing.T) {
	echo := echoServer(t)
	n := newNet(t, Config{Latency: LatencyTable{NewPair("a", "b"): 20 * time.Millisecond}})
	addr := route(t, n, "b", "a", echo)
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Fatalf("Route address %q not on loopback", addr)
	}
	c := dial(t, addr)
	for i := range 3 {
		d := roundTrip(t, c, "hello")
		if d < 40*time.Millisecond || d > time.Second {
			t.Fatalf("round trip %d took %v; want 40ms..1s", i, d)
		}
	}
	st := link(t, n, "a", "b").Status()
	want := LinkStatus{Name: "a-b", Latency: 20 * time.Millisecond, LatencyMs: 20, Channels: 1}
	if st != want {
		t.Fatalf("Status = %+v; want %+v", st, want)
	}
}

func TestOffIsFast(t *testing.T) {
	echo := echoServer(t)
	n := newNet(t, Config{Off: true})
	c := dial(t, route(t, n, "westeurope", "eastus", echo))
	for range 5 {
		if d := roundTrip(t, c, "ping"); d > time.Second {
			t.Fatalf("round trip through Off network took %v", d)
		}
	}
	if st := link(t, n, "eastus", "westeurope").Status(); st.Latency != 0 || st.Name != "eastus-westeurope" {
		t.Fatalf("Status = %+v; want eastus-westeurope with no latency", st)
	}
}

func TestRouteSameRegionAndErrors(t *testing.T) {
	n := newNet(t, Config{Off: true})
	if got, err := n.Route("eastus", "eastus", "10.0.0.1:4222"); err != nil || got != "10.0.0.1:4222" {
		t.Fatalf("same-region Route = %q, %v; want upstream unchanged", got, err)
	}
	if _, ok := n.Link("eastus", "eastus"); ok {
		t.Fatal("same-region Route created a link")
	}
	for _, tc := range []struct{ from, to, upstream string }{
		{"East", "westeurope", "127.0.0.1:1"},
		{"east-us", "westeurope", "127.0.0.1:1"},
		{"", "westeurope", "127.0.0.1:1"},
		{"eastus", "westeurope", "no-port"},
	} {
		if addr, err := n.Route(tc.from, tc.to, tc.upstream); err == nil {
			t.Errorf("Route(%q, %q, %q) = %q; want error", tc.from, tc.to, tc.upstream, addr)
		}
	}
	if links := n.Links(); len(links) != 0 {
		t.Fatalf("failed Routes left links: %+v", links)
	}
}

func TestSetLatency(t *testing.T) {
	echo := echoServer(t)
	n := newNet(t, Config{Off: true})
	c := dial(t, route(t, n, "a", "b", echo))
	roundTrip(t, c, "warm")
	l := link(t, n, "a", "b")

	if err := l.SetLatency(30*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	if d := roundTrip(t, c, "slow"); d < 60*time.Millisecond {
		t.Fatalf("existing channel round trip %v after SetLatency(30ms); want >= 60ms", d)
	}
	// A channel created after SetLatency gets it too.
	c2 := dial(t, route(t, n, "b", "a", echo))
	if d := roundTrip(t, c2, "slow"); d < 60*time.Millisecond {
		t.Fatalf("new channel round trip %v after SetLatency(30ms); want >= 60ms", d)
	}
	if st := l.Status(); st.LatencyMs != 30 || st.Channels != 2 {
		t.Fatalf("Status = %+v; want latencyMs 30, 2 channels", st)
	}

	if err := l.SetLatency(30*time.Millisecond, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := roundTrip(t, c, "jitter"); d < 40*time.Millisecond {
		t.Fatalf("round trip %v with 30ms±10ms; want >= 40ms", d)
	}
	if st := l.Status(); st.JitterMs != 10 {
		t.Fatalf("Status = %+v; want jitterMs 10", st)
	}

	if err := l.SetLatency(-time.Millisecond, 0); err == nil {
		t.Fatal("SetLatency(negative) succeeded")
	}
	if err := l.SetLatency(0, -time.Millisecond); err == nil {
		t.Fatal("SetLatency(jitter negative) succeeded")
	}

	l.ResetLatency()
	if st := l.Status(); st.Latency != 0 || st.JitterMs != 0 {
		t.Fatalf("Status after ResetLatency on Off network = %+v; want 0", st)
	}
	if d := roundTrip(t, c, "fast"); d > time.Second {
		t.Fatalf("round trip after ResetLatency took %v", d)
	}
}

func TestResetLatencyRestoresTable(t *testing.T) {
	echo := echoServer(t)
	n := newNet(t, Config{Latency: LatencyTable{NewPair("a", "b"): 15 * time.Millisecond}})
	route(t, n, "a", "b", echo)
	l := link(t, n, "a", "b")
	if err := l.SetLatency(time.Second, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	l.ResetLatency()
	if st := l.Status(); st.Latency != 15*time.Millisecond || st.JitterMs != 0 {
		t.Fatalf("Status after ResetLatency = %+v; want 15ms, no jitter", st)
	}
}

// Bytes already waiting out a long latency are re-timed when it drops.
func TestLoweringLatencyReleasesWaitingBytes(t *testing.T) {
	echo := echoServer(t)
	n := newNet(t, Config{Off: true})
	c := dial(t, route(t, n, "a", "b", echo))
	roundTrip(t, c, "warm")
	l := link(t, n, "a", "b")
	if err := l.SetLatency(time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "stuck"); err != nil {
		t.Fatal(err)
	}
	expectReadTimeout(t, c) // held by the hour-long latency
	if err := l.SetLatency(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "stuck" {
		t.Fatalf("read after lowering latency = %q, %v", buf, err)
	}
}

func TestCutAndHeal(t *testing.T) {
	echo := echoServer(t)
	n := newNet(t, Config{Off: true})
	addr := route(t, n, "a", "b", echo)
	c1 := dial(t, addr)
	roundTrip(t, c1, "before")
	l := link(t, n, "a", "b")

	l.Cut()
	l.Cut() // idempotent
	if st := l.Status(); !st.Cut {
		t.Fatalf("Status after Cut = %+v; want cut", st)
	}
	expectSilence(t, c1, "during")
	// A new connection is accepted but hangs.
	c2 := dial(t, addr)
	expectSilence(t, c2, "during")
	// So does a channel created during the cut.
	c3 := dial(t, route(t, n, "b", "a", echo))
	expectSilence(t, c3, "during")

	l.Heal()
	if st := l.Status(); st.Cut {
		t.Fatalf("Status after Heal = %+v; want not cut", st)
	}
	// Connections that lived through the cut are closed, with no stale bytes.
	expectClosed(t, c1)
	expectClosed(t, c2)
	expectClosed(t, c3)
	// New connections work again.
	roundTrip(t, dial(t, addr), "after")
	l.Heal() // idempotent, and does not close healthy connections
	c4 := dial(t, addr)
	roundTrip(t, c4, "after")
	l.Heal()
	roundTrip(t, c4, "still")
}

// A cut hides an upstream closing its end, as a partition would.
func TestCutHidesClose(t *testing.T) {
	closed := make(chan struct{}, 1)
	up := server(t, func(c net.Conn) {
		c.Close()
		closed <- struct{}{}
	})
	n := newNet(t, Config{Off: true})
	addr := route(t, n, "a", "b", up)

	// Without a cut the close reaches the client.
	expectClosed(t, dial(t, addr))
	<-closed

	l := link(t, n, "a", "b")
	l.Cut()
	c := dial(t, addr)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream never got the connection")
	}
	expectReadTimeout(t, c)
	l.Heal()
	expectClosed(t, c)
}

func TestRemoveRegion(t *testing.T) {
	echo := echoServer(t)
	n := newNet(t, Config{Off: true})
	ab := route(t, n, "a", "b", echo)
	route(t, n, "c", "a", echo)
	bc := route(t, n, "b", "c", echo)
	c := dial(t, ab)
	roundTrip(t, c, "before")
	link(t, n, "a", "b").Cut()

	n.RemoveRegion("a")
	n.RemoveRegion("a") // nothing left to remove
	for _, p := range [][2]string{{"a", "b"}, {"b", "a"}, {"a", "c"}} {
		if _, ok := n.Link(p[0], p[1]); ok {
			t.Fatalf("Link(%s, %s) still present after RemoveRegion(a)", p[0], p[1])
		}
	}
	if got := n.Links(); len(got) != 1 || got[0].Name != "b-c" {
		t.Fatalf("Links() = %+v; want only b-c", got)
	}
	roundTrip(t, dial(t, bc), "unaffected")

	// The existing connection is closed, even though the link was cut.
	expectClosed(t, c)
	// The routed address no longer serves.
	if c2, err := net.DialTimeout("tcp", ab, 2*time.Second); err == nil {
		defer c2.Close()
		if _, err := tryRoundTrip(c2, "x", 2*time.Second); err == nil {
			t.Fatal("removed link still forwards")
		}
	}

	// The region can come back: a new, healthy link.
	c3 := dial(t, route(t, n, "a", "b", echo))
	roundTrip(t, c3, "back")
	if st := link(t, n, "a", "b").Status(); st.Cut || st.Channels != 1 {
		t.Fatalf("new link Status = %+v; want fresh link", st)
	}
}

func TestLinksSorted(t *testing.T) {
	n := newNet(t, Config{})
	echo := echoServer(t)
	route(t, n, "westeurope", "northeurope", echo)
	route(t, n, "eastus", "westeurope", echo)
	route(t, n, "northeurope", "eastus", echo)
	route(t, n, "eastus", "northeurope", echo)
	got := n.Links()
	want := []LinkStatus{
		{Name: "eastus-northeurope", Latency: 38 * time.Millisecond, LatencyMs: 38, Channels: 2},
		{Name: "eastus-westeurope", Latency: 40 * time.Millisecond, LatencyMs: 40, Channels: 1},
		{Name: "northeurope-westeurope", Latency: 10 * time.Millisecond, LatencyMs: 10, Channels: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("Links() = %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Links()[%d] = %+v; want %+v", i, got[i], want[i])
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	echo := echoServer(t)
	n := New(Config{Off: true})
	addr := route(t, n, "a", "b", echo)
	c := dial(t, addr)
	roundTrip(t, c, "before")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	expectClosed(t, c)
	if _, err := n.Route("a", "b", echo); err == nil {
		t.Fatal("Route after Close succeeded")
	}
	if links := n.Links(); len(links) != 0 {
		t.Fatalf("Links after Close = %+v", links)
	}
	if _, ok := n.Link("a", "b"); ok {
		t.Fatal("Link after Close found")
	}
}

func TestConcurrentRouteAndFaults(t *testing.T) {
	echo := echoServer(t)
	n := newNet(t, Config{Off: true})
	route(t, n, "a", "b", echo)
	l := link(t, n, "a", "b")

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			from, to := "a", "b"
			if i%2 == 1 {
				from, to = to, from
			}
			for range 5 {
				addr, err := n.Route(from, to, echo)
				if err != nil {
					errs <- err
					return
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				_, err = tryRoundTrip(c, "concurrent", 5*time.Second)
				c.Close()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			if err := l.SetLatency(time.Duration(i%3)*time.Millisecond, time.Duration(i%2)*time.Millisecond); err != nil {
				errs <- err
				return
			}
			_ = n.Links()
			_ = l.Status()
			if i%10 == 0 {
				l.ResetLatency()
			}
		}
	})
	// Other links come and go meanwhile.
	wg.Go(func() {
		for range 10 {
			if _, err := n.Route("c", "d", echo); err != nil {
				errs <- err
				return
			}
			n.RemoveRegion("d")
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := l.Status(); st.Channels != 1+8*5 {
		t.Fatalf("Channels = %d; want %d", st.Channels, 1+8*5)
	}
}

// toxiproxyGoroutines counts goroutines running toxiproxy or netsim code.
func toxiproxyGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/Shopify/toxiproxy") || strings.Contains(g, "netsim.(*linkToxic)") || strings.Contains(g, "netsim.closeStub") {
			count++
		}
	}
	return count
}

// Heal, RemoveRegion and Close leave no goroutines behind, even with bytes
// in flight and ends closed during a cut.
func TestNoGoroutineLeak(t *testing.T) {
	echo := echoServer(t)
	n := New(Config{Latency: LatencyTable{NewPair("a", "b"): 5 * time.Millisecond}})
	addr := route(t, n, "a", "b", echo)
	l := link(t, n, "a", "b")
	var conns []net.Conn
	for range 4 {
		c := dial(t, addr)
		roundTrip(t, c, "x")
		conns = append(conns, c)
	}
	l.Cut()
	for _, c := range conns {
		_, _ = io.WriteString(c, "lost in the cut")
	}
	conns[0].Close() // a close hidden by the cut
	l.Heal()
	for _, c := range conns[1:] {
		expectClosed(t, c)
	}
	c := dial(t, addr)
	roundTrip(t, c, "y")
	l.Cut()
	_, _ = io.WriteString(c, "lost")
	n.RemoveRegion("b")
	expectClosed(t, c)
	c2 := dial(t, route(t, n, "a", "c", echo))
	roundTrip(t, c2, "z")
	n.Close()
	expectClosed(t, c2)

	deadline := time.Now().Add(5 * time.Second)
	for toxiproxyGoroutines() > 0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d toxiproxy goroutines left:\n%s", toxiproxyGoroutines(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A link delays bytes; it must not also hold them back behind earlier
// ones. Each byte written while earlier bytes are in flight must come back
// one round trip after it was written, not a latency period later per
// chunk ahead of it.
func TestLatencyPipelinesChunks(t *testing.T) {
	echo := echoServer(t)
	const latency = 100 * time.Millisecond
	n := newNet(t, Config{Latency: LatencyTable{NewPair("a", "b"): latency}})
	c := dial(t, route(t, n, "a", "b", echo))
	const writes = 30
	sent := make([]time.Time, writes)
	var mu sync.Mutex
	go func() {
		for i := range writes {
			mu.Lock()
			sent[i] = time.Now()
			mu.Unlock()
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // separate writes while earlier bytes are in flight
		}
	}()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	buf := make([]byte, 1)
	for i := range writes {
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read echo %d: %v", i, err)
		}
		mu.Lock()
		lag := time.Since(sent[buf[0]])
		mu.Unlock()
		worst = max(worst, lag)
	}
	// Pipelined, every byte takes one round trip (200 ms). Chunks queued
	// behind each other would add up to another latency period each way.
	if worst > 2*latency+latency/2 {
		t.Fatalf("worst echo took %v over a %v link (round trip %v): bytes wait behind earlier chunks", worst, latency, 2*latency)
	}
}
