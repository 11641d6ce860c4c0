// Package edgetest holds what tests of the edge share, in its own tests and
// against a whole deployment: a table of hostile requests written as raw
// bytes, a raw HTTP/1.1 exchange over TCP (net/http's client cannot write
// these requests), a listener that records every byte anyone sends it,
// and a network in memory (Net) that runs an edge and its stamps under
// testing/synctest.
package edgetest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Targets are the addresses hostile requests name, each host:port.
type Targets struct {
	Edge    string // the edge itself; required
	Foreign string // a listener that must never hear from the edge (see Recorder); required
	Stamp   string // a stamp's own address; empty: Foreign
	Ops     string // the operations address; empty: Foreign
}

// By is who gives an answer.
type By uint8

const (
	// ByStamp: a stamp answered through the edge. The answer carries
	// X-Served-Region; its status is Answer.Status, or below 500 when that
	// is zero.
	ByStamp By = iota + 1
	// ByEdge: the edge's handler refused the request itself: a
	// problem+json answer that no stamp gave.
	ByEdge
	// ByServer: net/http's server refused the request before the edge's
	// handler ran (a plain-text or empty answer that no stamp gave).
	ByServer
)

func (b By) String() string {
	switch b {
	case ByStamp:
		return "stamp"
	case ByEdge:
		return "edge"
	case ByServer:
		return "server"
	}
	return fmt.Sprintf("By(%d)", b)
}

// Answer is one answer a hostile request must get.
type Answer struct {
	Status int // zero: any status below 500 (ByStamp only)
	By     By
}

// Case is one hostile exchange on a connection of its own.
type Case struct {
	Name string
	Raw  string   // the bytes sent, as is
	Want []Answer // the answers in order; the connection may close after them
}

// Hostile is the table of hostile requests against an edge at t.Edge: each
// tries to make it reach another host (t.Foreign, t.Ops, a stamp's own
// address), reach a stamp's private endpoints, or desynchronise the framing
// between the edge and a stamp. Requests that reach a stamp ask for public
// API paths that answer without a token (GET /api/products), or accept any
// status below 500 from it.
func Hostile(t Targets) []Case {
	e, f := t.Edge, t.Foreign
	stamp, ops := t.Stamp, t.Ops
	if stamp == "" {
		stamp = f
	}
	if ops == "" {
		ops = f
	}
	_, foreignPort, _ := net.SplitHostPort(f)
	get := func(target string) string { return "GET " + target + " HTTP/1.1\r\nHost: " + e + "\r\n\r\n" }
	post := func(target, headers, body string) string {
		return "POST " + target + " HTTP/1.1\r\nHost: " + e + "\r\n" + headers + "\r\n" + body
	}
	stamp200 := []Answer{{200, ByStamp}}
	fromStamp := []Answer{{0, ByStamp}}
	edge := func(status int) []Answer { return []Answer{{status, ByEdge}} }
	server := func(status int) []Answer { return []Answer{{status, ByServer}} }
	chaos := `{"fault":"region-outage","target":"westeurope","duration":"1m"}`
	smuggled := "GET /metrics HTTP/1.1\r\nHost: " + e + "\r\n\r\n"
	return []Case{
		// The request target.
		{"absolute-form to a foreign host", "GET http://" + f + "/api/products HTTP/1.1\r\nHost: " + e + "\r\nAuthorization: Bearer secret\r\n\r\n", edge(400)},
		{"absolute-form https to a foreign host", get("https://" + f + "/api/products"), edge(400)},
		{"absolute-form naming the edge itself", get("http://" + e + "/api/products"), edge(400)},
		{"absolute-form naming a stamp's metrics", get("http://" + stamp + "/metrics"), edge(400)},
		{"absolute-form with userinfo", get("http://x@" + f + "/api/products"), edge(400)},
		{"userinfo trick x:@host:port", "GET x:@" + f + "/steal HTTP/1.1\r\nHost: " + e + "\r\nAuthorization: Bearer secret\r\n\r\n", edge(400)},
		{"userinfo trick to the operations address", "POST x:@" + ops + "/ops/chaos HTTP/1.1\r\nHost: " + e + "\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(chaos)) + "\r\n\r\n" + chaos, edge(400)},
		{"absolute-form POST /ops/chaos to the operations address", "POST http://" + ops + "/ops/chaos HTTP/1.1\r\nHost: " + ops + "\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(chaos)) + "\r\n\r\n" + chaos, edge(400)},
		{"absolute-form DELETE /ops/regions to the operations address", "DELETE http://" + ops + "/ops/regions/westeurope HTTP/1.1\r\nHost: " + ops + "\r\n\r\n", edge(400)},
		{"userinfo trick DELETE /ops/regions", "DELETE x:@" + ops + "/ops/regions/westeurope HTTP/1.1\r\nHost: " + e + "\r\n\r\n", edge(400)},
		{"three userinfo requests to a closed port", strings.Repeat("GET x:@127.0.0.1:1/api/products HTTP/1.1\r\nHost: "+e+"\r\n\r\n", 3),
			[]Answer{{400, ByEdge}, {400, ByEdge}, {400, ByEdge}}},
		{"authority-form CONNECT", "CONNECT " + f + " HTTP/1.1\r\nHost: " + f + "\r\n\r\n", edge(400)},
		{"CONNECT with a path", "CONNECT /api/products HTTP/1.1\r\nHost: " + e + "\r\n\r\n", edge(405)},
		{"TRACE", "TRACE /api/products HTTP/1.1\r\nHost: " + e + "\r\n\r\n", edge(405)},
		// net/http answers OPTIONS * itself; it never reaches the handler.
		{"asterisk-form OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: " + e + "\r\n\r\n", server(200)},
		{"asterisk-form GET *", get("*"), edge(400)},
		{"HTTP/2 preface over HTTP/1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", edge(400)},
		{"opaque target", get("http:api/products"), edge(400)},
		{"opaque mailto target", get("mailto:x@" + f), edge(400)},
		{"path not starting with /", get("api/products"), server(400)},
		{"network-path reference //host/path", get("//" + f + "/api/products"), edge(400)},
		{"empty segment", get("/api//products"), edge(400)},
		{"dot segment", get("/api/./products"), edge(400)},
		{"dot-dot segments", get("/api/../metrics"), edge(400)},
		{"percent-encoded dot-dot segments", get("/api/%2e%2e/metrics"), edge(400)},
		{"percent-encoded slashes around dot-dot", get("/api/products/..%2f..%2fmetrics"), edge(400)},
		{"trailing dot-dot", get("/api/products/.."), edge(400)},
		{"HTTP/1.0 absolute-form", "GET http://" + f + "/api/products HTTP/1.0\r\n\r\n", edge(400)},

		// The allowlist.
		{"a stamp's /metrics", get("/metrics"), edge(404)},
		{"a stamp's /health/stamp", get("/health/stamp"), edge(404)},
		{"/ops/edge", get("/ops/edge"), edge(404)},
		{"POST /ops/chaos", post("/ops/chaos", "Content-Type: application/json\r\nContent-Length: "+fmt.Sprint(len(chaos))+"\r\n", chaos), edge(404)},
		{"DELETE /ops/regions/westeurope", "DELETE /ops/regions/westeurope HTTP/1.1\r\nHost: " + e + "\r\n\r\n", edge(404)},
		{"unknown path", get("/admin"), edge(404)},
		{"/api without its slash", get("/api"), edge(404)},
		{"POST /health/live", post("/health/live", "Content-Length: 0\r\n", ""), edge(405)},
		{"GET /health/ready", get("/health/ready"), stamp200},
		{"backslash separators", get(`/api/..\metrics`), edge(400)},
		{"a URL in the query names no host", get("/api/products?next=http://" + f + "/steal"), stamp200},

		// Framing: what net/http refuses, what it normalises, and how the
		// edge reframes what it forwards.
		{"Content-Length and Transfer-Encoding with a smuggled request", post("/api/products", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"+smuggled),
			[]Answer{{0, ByStamp}, {404, ByEdge}}},
		{"Transfer-Encoding and a short Content-Length", post("/api/products", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "8\r\nSMUGGLED\r\n0\r\n\r\n"), fromStamp},
		{"duplicate identical Content-Length", post("/api/products", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), fromStamp},
		{"conflicting Content-Length", post("/api/products", "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), server(400)},
		{"Content-Length with a sign", post("/api/products", "Content-Length: +5\r\n", "hello"), server(400)},
		{"negative Content-Length", post("/api/products", "Content-Length: -1\r\n", ""), server(400)},
		{"invalid chunk size", post("/api/products", "Idempotency-Key: hostile-chunk\r\nTransfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"), edge(400)},
		{"chunked with a trailing smuggled request", post("/api/products", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"+
			"POST /ops/chaos HTTP/1.1\r\nHost: "+e+"\r\nContent-Length: "+fmt.Sprint(len(chaos))+"\r\n\r\n"+chaos),
			[]Answer{{0, ByStamp}, {404, ByEdge}}},
		{"GET whose body is a smuggled request", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled, stamp200},
		{"Transfer-Encoding: chunked, identity", post("/api/products", "Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"), server(501)},
		{"Transfer-Encoding: xchunked", post("/api/products", "Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), server(501)},
		{"two Transfer-Encoding headers", post("/api/products", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), server(501)},
		{"space before the colon of Transfer-Encoding", post("/api/products", "Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), server(400)},
		{"HTTP/1.0 ignores Transfer-Encoding", "POST /api/products HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", fromStamp},

		// Hosts and headers.
		{"Host with userinfo", "GET /api/products HTTP/1.1\r\nHost: x@" + f + "\r\n\r\n", server(400)},
		{"Host with a foreign port", "GET /api/products HTTP/1.1\r\nHost: 127.0.0.1:" + foreignPort + "\r\n\r\n", stamp200},
		{"two Host headers", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nHost: " + f + "\r\n\r\n", server(400)},
		{"no Host header", "GET /api/products HTTP/1.1\r\n\r\n", server(400)},
		{"Connection names X-Edge-Credential", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nConnection: X-Edge-Credential\r\nX-Edge-Credential: forged\r\n\r\n", stamp200},
		{"Connection names X-Request-Id", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nConnection: keep-alive, X-Request-Id\r\nX-Request-Id: hostile-1\r\n\r\n", stamp200},
		{"Connection names traceparent", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nConnection: traceparent, tracestate, baggage\r\n" +
			"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n", stamp200},
		{"h2c upgrade", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", stamp200},
		// net/http joins a folded line with a space, as RFC 9112 lets a
		// proxy do: the stamp gets one line.
		{"obs-fold header", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nX-Folded: a\r\n b\r\n\r\n", stamp200},
		{"NUL in a header value", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nX-Nul: a\x00b\r\n\r\n", server(400)},
		{"bare CR in a header value", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nX-CR: a\rb\r\n\r\n", server(400)},
		{"space in a header name", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nBad Header: x\r\n\r\n", server(400)},
		{"overlong header", "GET /api/products HTTP/1.1\r\nHost: " + e + "\r\nX-Long: " + strings.Repeat("a", 1<<20+8<<10) + "\r\n\r\n", server(431)},
		{"invalid method", "G@T /api/products HTTP/1.1\r\nHost: " + e + "\r\n\r\n", server(400)},
		{"HTTP/2.0 request line", "GET /api/products HTTP/2.0\r\nHost: " + e + "\r\n\r\n", server(505)},
		{"bare LF line endings", "GET /metrics HTTP/1.1\nHost: " + e + "\n\n", edge(404)},
	}
}

// Response is one answer read off a raw connection, its body read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Exchange sends raw to addr on a new TCP connection and reads the final
// answers (1xx skipped), each whole: at most max of them, until the server
// closes the connection or sends nothing for idle. With max 0 it closes its
// side after raw (so a server waiting for the rest of a request gives up at
// once) and reads every answer until the server closes. It fails only when
// an answer does not parse; a server that waits for more input is not an
// error. The requests raw holds (as far as net/http parses them) tell the
// answers to HEAD from the others. With tlsCfg, it speaks TLS to addr.
func Exchange(addr string, tlsCfg *tls.Config, raw []byte, max int, idle time.Duration) ([]Response, error) {
	var conn net.Conn
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil { // the same bytes, inside TLS
		cfg := tlsCfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, cfg)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, err
		}
		_ = tc.SetDeadline(time.Time{})
		conn = tc
	}
	defer conn.Close()
	go func() { // a server refusing early may stop reading
		if _, err := conn.Write(raw); err == nil && max == 0 {
			_ = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
	}()
	methods := Methods(raw)
	br := bufio.NewReader(conn)
	var out []Response
	for max == 0 || len(out) < max {
		if err := conn.SetReadDeadline(time.Now().Add(idle)); err != nil {
			return out, err
		}
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) || isReset(err) {
				return out, nil
			}
			return out, err
		}
		req := &http.Request{Method: http.MethodGet}
		if len(out) < len(methods) {
			req.Method = methods[len(out)]
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return out, nil
			}
			return out, fmt.Errorf("answer %d does not parse: %w", len(out)+1, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !isReset(err) {
			return out, fmt.Errorf("answer %d: body: %w", len(out)+1, err)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue
		}
		out = append(out, Response{Status: resp.StatusCode, Header: resp.Header, Body: body})
	}
	return out, nil
}

func isReset(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// Methods lists the methods of the complete requests in raw, in order, as
// net/http's parser reads them (bodies skipped), up to the first that does
// not parse.
func Methods(raw []byte) []string {
	br := bufio.NewReader(bytes.NewReader(raw))
	var out []string
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return out
		}
		_, err = io.Copy(io.Discard, req.Body)
		if err != nil {
			return out
		}
		out = append(out, req.Method)
	}
}

// Check compares the answers got to a case's wants: each status, and who
// gave it (see By).
func Check(c Case, got []Response) error {
	if len(got) < len(c.Want) {
		return fmt.Errorf("%d answers, want %d: %s", len(got), len(c.Want), Describe(got))
	}
	for i, w := range c.Want {
		g := got[i]
		fromStamp := g.Header.Get("X-Served-Region") != ""
		problem := g.Header.Get("Content-Type") == "application/problem+json"
		switch {
		case w.Status != 0 && g.Status != w.Status,
			w.Status == 0 && g.Status >= 500:
			return fmt.Errorf("answer %d: status %d, want %d by %s: %s", i+1, g.Status, w.Status, w.By, Describe(got))
		case w.By == ByStamp && !fromStamp:
			return fmt.Errorf("answer %d: not from a stamp (no X-Served-Region): %s", i+1, Describe(got))
		case w.By != ByStamp && fromStamp:
			return fmt.Errorf("answer %d: a stamp answered, want the %s: %s", i+1, w.By, Describe(got))
		case w.By == ByEdge && !problem:
			return fmt.Errorf("answer %d: not a problem+json from the edge: %s", i+1, Describe(got))
		case w.By == ByServer && problem:
			return fmt.Errorf("answer %d: the edge's handler answered, want net/http's server: %s", i+1, Describe(got))
		}
	}
	return nil
}

// Describe prints answers for a failure message.
func Describe(rs []Response) string {
	var b strings.Builder
	for i, r := range rs {
		body := r.Body
		if len(body) > 200 {
			body = body[:200]
		}
		fmt.Fprintf(&b, "[%d] %d %s region=%q %q ", i+1, r.Status, r.Header.Get("Content-Type"), r.Header.Get("X-Served-Region"), body)
	}
	if len(rs) == 0 {
		return "no answer"
	}
	return b.String()
}

// Recorder is a TCP listener on 127.0.0.1 that must never hear from the
// edge: it accepts every connection, records every byte received, and
// answers each connection with a 200 whose body says it was reached, so
// that a leak also shows in the client's answer.
type Recorder struct {
	ln    net.Listener
	mu    sync.Mutex // guards the fields below
	conns int
	got   []byte // the first 64 KiB received
	n     int    // bytes received in all
}

// MustRecord starts a Recorder, closed when the test ends.
func MustRecord(tb testing.TB) *Recorder {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &Recorder{ln: ln}
	tb.Cleanup(func() { ln.Close() })
	go r.accept()
	return r
}

func (r *Recorder) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns++
		r.mu.Unlock()
		go r.serve(c)
	}
}

func (r *Recorder) serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	answered := false
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.n += n
			if keep := min(n, 64<<10-len(r.got)); keep > 0 {
				r.got = append(r.got, buf[:keep]...)
			}
			r.mu.Unlock()
			if !answered {
				answered = true
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nthe foreign host heard!\n")
			}
		}
		if err != nil {
			return
		}
	}
}

// Addr is the listener's host:port.
func (r *Recorder) Addr() string { return r.ln.Addr().String() }

// Heard reports the connections accepted and the bytes received so far
// (the first 64 KiB of them).
func (r *Recorder) Heard() (conns, n int, got []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, r.n, bytes.Clone(r.got)
}

// MustBeSilent fails the test when anyone connected to r.
func (r *Recorder) MustBeSilent(tb testing.TB, after string) {
	tb.Helper()
	if conns, n, got := r.Heard(); conns > 0 || n > 0 {
		tb.Fatalf("after %s the foreign listener accepted %d connections and %d bytes: %q", after, conns, n, got)
	}
}
