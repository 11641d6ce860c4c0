package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
)

// The request targets the edge forwards, and what it answers to the rest.
// Requests are parsed as net/http's server parses them.
func TestPublicTarget(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		want           int // 0: forwarded
	}{
		{"GET", "/api/products", 0},
		{"GET", "/api/products/", 0},
		{"POST", "/api/orders?x=1", 0},
		{"DELETE", "/api/cart/items/a%2Fb", 0},
		{"GET", "/api/", 0},
		{"GET", "/health/live", 0},
		{"HEAD", "/health/ready", 0},
		{"POST", "/health/ready", 405},
		{"CONNECT", "/api/products", 405},
		{"TRACE", "/api/products", 405},
		{"GET", "/api", 404},
		{"GET", "/", 404},
		{"GET", "/metrics", 404},
		{"GET", "/health/stamp", 404},
		{"GET", "/ops/edge", 404},
		{"GET", "/apix/products", 404},
		{"GET", "http://127.0.0.1:1/api/products", 400},
		{"GET", "https://edge.example/api/products", 400},
		{"GET", "x:@127.0.0.1:1/steal", 400},
		{"GET", "http:api/products", 400},
		{"GET", "*", 400},
		{"GET", "//127.0.0.1:1/api/products", 400},
		{"GET", "/api//products", 400},
		{"GET", "/api/./products", 400},
		{"GET", "/api/../metrics", 400},
		{"GET", "/api/%2e%2e/metrics", 400},
		{"GET", "/api/%2E%2E/metrics", 400},
		{"GET", "/api/products/..%2F..%2Fmetrics", 400},
		{"GET", "/api/products/..", 400},
		{"GET", `/api/..\metrics`, 400},
		{"GET", "/api/%5c..%5cmetrics", 400},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		got := 0
		if err := publicTarget(r); err != nil {
			got = httpapi.ProblemFor(err).Status
		}
		if got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.target, got, tc.want)
		}
	}
	// A CONNECT's authority-form target, as the server parses it.
	r := httptest.NewRequest("GET", "/api/products", nil)
	r.Method, r.RequestURI, r.URL.Path, r.URL.Host = http.MethodConnect, "127.0.0.1:1", "", "127.0.0.1:1"
	if err := publicTarget(r); httpapi.ProblemFor(err).Status != 400 {
		t.Errorf("CONNECT 127.0.0.1:1: %v, want 400", err)
	}
}

func TestCleanPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/a": true, "/a/": true, "/a/b.c": true, "/a/..b": true, "/a/b../": true, "/.well-known": true,
		"": false, "a": false, "//": false, "/a//b": false, "/.": false, "/..": false, "/a/./b": false,
		"/a/../b": false, "/a/..": false, "/a/.": false, "//a": false, `/a\b`: false,
	} {
		if got := cleanPath(p); got != want {
			t.Errorf("cleanPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// Whose fault a failed attempt is decides whether it counts against the
// stamp: only no answer and 502, 503, 504 do; a request that could not be
// built, a client body that failed, and a client that went away never do.
func TestBlame(t *testing.T) {
	live := httptest.NewRequest("POST", "/api/x", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := live.WithContext(ctx)
	answer := func(status int) *http.Response { return &http.Response{StatusCode: status} }
	failedBody := payload{stream: &clientBody{err: errors.New("unexpected EOF")}}
	for _, tc := range []struct {
		name string
		r    *http.Request
		resp *http.Response
		err  error
		body payload
		want fault
	}{
		{"200", live, answer(200), nil, payload{}, noFault},
		{"404 is an answer", live, answer(404), nil, payload{}, noFault},
		{"500 is an answer", live, answer(500), nil, payload{}, noFault},
		{"502", live, answer(502), nil, payload{}, stampFault},
		{"503", live, answer(503), nil, payload{}, stampFault},
		{"504", live, answer(504), nil, payload{}, stampFault},
		{"connection refused", live, nil, errors.New("dial tcp: connection refused"), payload{}, stampFault},
		{"aborted by a failed probe", live, nil, errStampDown, payload{}, stampFault},
		{"bad header", live, nil, &requestError{errors.New("invalid header name")}, payload{}, clientFault},
		{"bad header, wrapped", live, nil, errors.Join(errors.New("x"), &requestError{errors.New("y")}), payload{}, clientFault},
		{"client body failed", live, nil, errors.New("write: broken pipe"), failedBody, clientFault},
		{"client body failed, stamp answered", live, answer(200), nil, failedBody, clientFault},
		{"client body failed, stamp answered 503", live, answer(503), nil, failedBody, clientFault},
		{"client went away", gone, nil, context.Canceled, payload{}, clientGone},
		{"client went away after a 503", gone, answer(503), nil, payload{}, clientGone},
	} {
		if got := blame(tc.r, tc.resp, tc.err, tc.body); got != tc.want {
			t.Errorf("%s: blame = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// What a client's problem detail says about an attempt that got no
// answer, from the error the transport gave.
func TestUnansweredSaysWhy(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"aborted", fmt.Errorf("%w: %w", errStampDown, context.Canceled), "went silent"},
		{"its own timeout", fmt.Errorf("round trip: %w", context.DeadlineExceeded), "timed out"},
		{"a header timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "timed out"},
		{"refused", refused, "refused the connection"},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "dropped the connection"},
		{"closed mid-answer", fmt.Errorf("readLoop: %w", io.ErrUnexpectedEOF), "dropped the connection"},
		{"anything else", errors.New("tls: bad certificate"), "failed"},
	} {
		if got := unanswered(tc.err); got != tc.want {
			t.Errorf("%s: unanswered(%v) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
}

// The stamp's request is put together from parts: the stamp's scheme and
// address whatever the client's URL holds, the client's path with its
// encoding and query, the end-to-end headers, the edge's own credential
// and request id. A header the transport would refuse is the client's
// fault.
func TestUpstreamRequest(t *testing.T) {
	e := &Edge{cfg: Config{Credential: "cred", Now: time.Now}}
	e.proxy = newProxy(e, newTransport(e.cfg))
	up := upstream{id: "s", scheme: "https", addr: "10.0.0.7:8443"}
	r := httptest.NewRequest("GET", "/api/products/a%2Fb?q=1&r=%20", nil)
	r.URL.Host, r.URL.User = "127.0.0.1:1", nil // as if the target had named a host
	r.Header.Set("X-Edge-Credential", "forged")
	r.Header.Set("Authorization", "Bearer t")
	out, err := e.proxy.upstreamRequest(context.Background(), r, up, payload{})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.URL.String(); got != "https://10.0.0.7:8443/api/products/a%2Fb?q=1&r=%20" || out.Host != up.addr {
		t.Errorf("URL %s Host %s", got, out.Host)
	}
	if out.Header.Get("X-Edge-Credential") != "cred" || out.Header.Get("Authorization") != "Bearer t" {
		t.Errorf("headers %v", out.Header)
	}
	body := "twelve bytes"
	r = httptest.NewRequest("POST", "/api/x", strings.NewReader(body))
	r.ContentLength = -1
	out, err = e.proxy.upstreamRequest(context.Background(), r, up, payload{stream: &clientBody{r: r.Body}, length: -1})
	if err != nil || out.ContentLength != -1 {
		t.Errorf("a stream of unknown length: ContentLength %d, %v", out.ContentLength, err)
	}
	out, err = e.proxy.upstreamRequest(context.Background(), r, up, payload{buf: []byte(body)})
	if err != nil || out.ContentLength != int64(len(body)) || out.GetBody == nil {
		t.Errorf("a buffered body: ContentLength %d, %v", out.ContentLength, err)
	}
	for name, h := range map[string]http.Header{
		"NUL in a value":    {"X-A": {"a\x00b"}},
		"LF in a value":     {"X-A": {"a\nb"}},
		"space in a name":   {"X A": {"a"}},
		"colon in a name":   {"X:A": {"a"}},
		"empty name":        {"": {"a"}},
		"DEL in a value":    {"X-A": {"a\x7fb"}},
		"CR in a value":     {"X-A": {"a\rb"}},
		"NUL in a 2nd line": {"X-A": {"ok", "a\x00"}},
	} {
		r := httptest.NewRequest("GET", "/api/x", nil)
		r.Header = h
		_, err := e.proxy.upstreamRequest(context.Background(), r, up, payload{})
		if _, ok := errors.AsType[*requestError](err); !ok {
			t.Errorf("%s: %v, want a *requestError", name, err)
		}
	}
	r = httptest.NewRequest("GET", "/api/x", nil)
	r.Header.Set("X-Tab", "a\tb")
	r.Header.Set("X-Utf8", "größe")
	if _, err := e.proxy.upstreamRequest(context.Background(), r, up, payload{}); err != nil {
		t.Errorf("a tab and obs-text are valid: %v", err)
	}
	r.Method = "BAD METHOD"
	if _, err := e.proxy.upstreamRequest(context.Background(), r, up, payload{}); err == nil {
		t.Error("an invalid method was accepted")
	} else if _, ok := errors.AsType[*requestError](err); !ok {
		t.Errorf("an invalid method: %v, want a *requestError", err)
	}
}

func TestCopyHeaders(t *testing.T) {
	src := http.Header{
		"Connection":        {"keep-alive, X-Hop", " x-other , Traceparent, X-Request-Id"},
		"Keep-Alive":        {"timeout=5"},
		"Transfer-Encoding": {"chunked"},
		"Upgrade":           {"h2c"},
		"Te":                {"trailers"},
		"Trailer":           {"X-T"},
		"Proxy-Connection":  {"keep-alive"},
		"X-Hop":             {"1"},
		"X-Other":           {"1"},
		"X-Edge-Credential": {"forged"},
		"X-Request-Id":      {"client"},
		"Traceparent":       {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"Tracestate":        {"a=1"},
		"Baggage":           {"b=2"},
		"X-Kept":            {"1"},
		"Authorization":     {"Bearer t"},
	}
	keys := func(h http.Header) string {
		var ks []string
		for k := range h {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return strings.Join(ks, ",")
	}
	dst := http.Header{}
	copyRequestHeaders(dst, src, false)
	if got := keys(dst); got != "Authorization,Baggage,Traceparent,Tracestate,X-Kept" {
		t.Errorf("untraced: %s", got)
	}
	dst = http.Header{}
	copyRequestHeaders(dst, src, true)
	if got := keys(dst); got != "Authorization,X-Kept" {
		t.Errorf("traced: %s", got)
	}
	dst = http.Header{"X-Edge-Pop": {"westeurope"}}
	copyResponseHeaders(dst, http.Header{"Connection": {"X-Internal, X-Edge-Pop"}, "X-Internal": {"1"}, "Keep-Alive": {"t"}, "X-Public": {"1"}})
	if got := keys(dst); got != "X-Edge-Pop,X-Public" {
		t.Errorf("response: %s", got)
	}
}

func TestStampAddress(t *testing.T) {
	for raw, want := range map[string]string{
		"http://127.0.0.1:8080":       "http 127.0.0.1:8080",
		"https://stamp.example":       "https stamp.example:443",
		"http://stamp.example":        "http stamp.example:80",
		"https://[::1]:8443/":         "https [::1]:8443",
		"127.0.0.1:8080":              "error",
		"ftp://stamp.example":         "error",
		"https://user@stamp.example/": "error",
		"https:stamp.example":         "error",
		"":                            "error",
	} {
		scheme, hostport, err := stampAddress(raw)
		got := scheme + " " + hostport
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("stampAddress(%q) = %q (%v), want %q", raw, got, err, want)
		}
	}
}

// The checks every request passes cost no allocation.
func BenchmarkRequestChecks(b *testing.B) {
	r := httptest.NewRequest("POST", "/api/products/p-1/comments?x=1", io.NopCloser(strings.NewReader("{}")))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer t")
	r.Header.Set("Connection", "keep-alive")
	b.ReportAllocs()
	for b.Loop() {
		if publicTarget(r) != nil || checkHeaders(r.Header) != nil || namedIn(r.Header["Connection"], "Authorization") {
			b.Fatal("refused")
		}
	}
}
