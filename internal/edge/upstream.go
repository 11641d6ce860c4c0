package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// Answers to requests the edge refuses before any stamp is reached. They
// are shared values: a refusal costs no allocation.
var (
	errNotOriginForm = shop.Invalid("", "the request target must be an absolute path such as /api/products (origin-form)")
	errUncleanPath   = shop.Invalid("", "the request path must not contain empty, '.' or '..' segments")
	errNotPublic     = shop.Errorf(shop.KindNotFound, "", "no such public resource")
	errMethod        = shop.Errorf(shop.KindMethodNotAllowed, "", "the edge does not forward this method here")
)

// publicTarget refuses what the edge never forwards, before any stamp is
// reached (see the package documentation): a target that is not
// origin-form (400), a path that is not clean (400), a path outside the
// public allowlist (404), a method the allowlist does not take there
// (405).
func publicTarget(r *http.Request) error {
	u := r.URL
	if u.Scheme != "" || u.Opaque != "" || u.User != nil || u.Host != "" ||
		(r.RequestURI != "" && r.RequestURI[0] != '/') || !strings.HasPrefix(u.Path, "/") {
		return errNotOriginForm
	}
	if !cleanPath(u.Path) {
		return errUncleanPath
	}
	switch {
	case strings.HasPrefix(u.Path, "/api/"):
		if r.Method == http.MethodConnect || r.Method == http.MethodTrace {
			return errMethod
		}
		return nil
	case u.Path == "/health/live", u.Path == "/health/ready":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return errMethod
		}
		return nil
	}
	return errNotPublic
}

// cleanPath reports whether p, a decoded path, is one that no server
// resolves to another: it starts with "/" and has no "." or ".." segment,
// no empty segment ("//") except a final one (a trailing slash), and no
// backslash (a separator to some servers). The decoded path is the one to
// check: "%2e%2e" and "%2f" are "..", "/" there.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 1; ; {
		end := strings.IndexByte(p[i:], '/')
		seg := p[i:]
		if end >= 0 {
			seg = p[i : i+end]
		}
		switch {
		case seg == "." || seg == "..", strings.IndexByte(seg, '\\') >= 0:
			return false
		case seg == "" && end >= 0:
			return false
		case end < 0:
			return true
		}
		i += end + 1
	}
}

// upstream is one stamp as a POP reaches it.
type upstream struct {
	id     string
	region string // the stamp's
	scheme string // "http" or "https", as the stamp announced itself; never downgraded
	addr   string // host:port as dialled from the POP (after the Dialer)
}

// stampAddress splits a stamp's announced URL into the scheme the edge
// speaks to it and the host:port to dial (before the Dialer). Only http and
// https URLs with a host and no user information are usable; a missing port
// is the scheme's.
func stampAddress(raw string) (scheme, hostport string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("stamp URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("stamp URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", "", fmt.Errorf("stamp URL %q: want scheme://host[:port]", raw)
	}
	hostport = u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		hostport = net.JoinHostPort(u.Hostname(), port)
	}
	return u.Scheme, hostport, nil
}

// requestError is a request the edge could not build as the client sent
// it (a method, header or query the transport would refuse): the client's
// fault, answered 400, never held against a stamp.
type requestError struct{ err error }

func (e *requestError) Error() string { return "build the stamp's request: " + e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// upstreamRequest builds the request a stamp receives for r. The URL is
// put together field by field (the stamp's scheme and address, r's decoded
// path with its encoding, r's query), never from a string the client could
// make name another host. The end-to-end headers are copied (see
// copyRequestHeaders), then the request id and the edge credential set.
// The transport frames the body anew: its length when known, chunked
// otherwise; the client's framing headers never reach the stamp. A failure
// is a *requestError.
func (px *proxy) upstreamRequest(ctx context.Context, r *http.Request, up upstream, body payload) (*http.Request, error) {
	var rd io.Reader
	switch {
	case body.buf != nil:
		rd = bytes.NewReader(body.buf)
	case body.stream != nil:
		rd = body.stream
	}
	if hasCTL(r.URL.RawQuery) {
		return nil, &requestError{errors.New("control character in the query")}
	}
	// The URL is set below from its parts; the empty string parses to an
	// empty URL.
	out, err := http.NewRequestWithContext(ctx, r.Method, "", rd)
	if err != nil {
		return nil, &requestError{err}
	}
	*out.URL = url.URL{Scheme: up.scheme, Host: up.addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.Host = up.addr
	if body.stream != nil {
		out.ContentLength = body.length
	}
	// Room for every header of the client's and the edge's own, so that
	// the map is made once.
	out.Header = make(http.Header, len(r.Header)+2)
	copyRequestHeaders(out.Header, r.Header, px.e.cfg.Telemetry != nil)
	if err := checkHeaders(out.Header); err != nil {
		return nil, &requestError{err}
	}
	out.Header[httpapi.HeaderRequestID] = []string{httpapi.RequestID(r.Context())}
	if px.credential != nil {
		out.Header[httpapi.HeaderEdgeCredential] = px.credential
	}
	return out, nil
}

// Header names the edge handles itself.
const (
	headerTraceparent = "Traceparent"
	headerTracestate  = "Tracestate"
	headerBaggage     = "Baggage"
)

// isHopHeader reports a connection-level header (canonical key) that a
// proxy must not forward, in either direction.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// isTraceHeader reports the W3C trace context and baggage headers.
func isTraceHeader(k string) bool {
	return k == headerTraceparent || k == headerTracestate || k == headerBaggage
}

// copyRequestHeaders copies a client's end-to-end headers into the
// stamp's request. Left out: the hop-by-hop headers, every header the
// client names in Connection, and the headers the edge sets itself after
// this copy (the edge credential and the request id, always; the trace
// context and baggage when traced, which the telemetry transport injects
// from the edge's own span). A client cannot remove those by naming them in
// Connection, nor keep its own: without telemetry its trace context passes
// through whatever Connection says.
func copyRequestHeaders(dst, src http.Header, traced bool) {
	conn := src["Connection"]
	for k, vs := range src {
		ck := http.CanonicalHeaderKey(k)
		switch {
		case isHopHeader(ck), ck == httpapi.HeaderEdgeCredential, ck == httpapi.HeaderRequestID:
			continue
		case isTraceHeader(ck):
			if traced {
				continue
			}
		case len(conn) > 0 && namedIn(conn, ck):
			continue
		}
		dst[k] = vs
	}
}

// copyResponseHeaders copies a stamp's end-to-end response headers to the
// client's response: not the hop-by-hop ones, nor those the stamp names in
// Connection.
func copyResponseHeaders(dst, src http.Header) {
	conn := src["Connection"]
	for k, vs := range src {
		if isHopHeader(http.CanonicalHeaderKey(k)) || (len(conn) > 0 && namedIn(conn, k)) {
			continue
		}
		dst[k] = vs
	}
}

// namedIn reports whether header k is one of the comma-separated tokens of
// the Connection header values conn (case-insensitive).
func namedIn(conn []string, k string) bool {
	for _, v := range conn {
		for v != "" {
			tok := v
			if i := strings.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				v = ""
			}
			if strings.EqualFold(textproto.TrimString(tok), k) {
				return true
			}
		}
	}
	return false
}

// checkHeaders refuses a header the transport would refuse to send, by the
// transport's own rules (httpguts): a name that is not an RFC 9110 token, a
// value with a control character other than a horizontal tab. Caught here, it is the client's fault; caught by
// the transport, it would look like the stamp's.
func checkHeaders(h http.Header) error {
	for k, vs := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid value of header %q", k)
			}
		}
	}
	return nil
}

// hasCTL reports an ASCII control character (or DEL) in s.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// fault says whose an attempt's failure is: whether the stamp's health
// hears of it, and whether a retry elsewhere may mend it.
type fault uint8

const (
	// noFault: the stamp answered, with anything but 502, 503 or 504. It
	// resets the stamp's count of consecutive failures.
	noFault fault = iota
	// stampFault: no answer (refused, reset, timed out, aborted by a
	// failed probe), or 502, 503 or 504. It counts towards ejecting the
	// stamp, and an idempotent request is retried elsewhere.
	stampFault
	// clientFault: the request could not be built or sent as the client
	// gave it (a method, header or query the transport refuses, a body
	// that failed or ran over the limit). Answered 400 or 413; never
	// counted, never retried.
	clientFault
	// clientGone: the client went away. It says nothing of the stamp:
	// never counted, never retried.
	clientGone
)

// blame classifies one attempt of r: its answer or error, and the body it
// sent.
func blame(r *http.Request, resp *http.Response, err error, body payload) fault {
	if body.clientErr() != nil {
		return clientFault
	}
	if _, ok := errors.AsType[*requestError](err); ok {
		return clientFault
	}
	if r.Context().Err() != nil {
		return clientGone
	}
	if err != nil {
		return stampFault
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return stampFault
	}
	return noFault
}

// clientProblem is the answer to an attempt that was the client's fault:
// 413 for a body over the limit, 400 otherwise.
func clientProblem(err error, body payload) error {
	if cerr := body.clientErr(); cerr != nil {
		return httpapi.BodyError(cerr)
	}
	return &shop.Error{Kind: shop.KindInvalid, Detail: "the request cannot be forwarded as sent", Err: err}
}
