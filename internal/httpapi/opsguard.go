package httpapi

import (
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/contoso/shoes/internal/shop"
)

// OpsGuardConfig configures OpsGuard.
type OpsGuardConfig struct {
	// Hosts are the names an operations listener answers to besides its
	// own address: each "name" (on any port) or "name:port", such as the
	// DNS name a real deployment's operators use. Nil: none, only the
	// listener's own address (and localhost on a loopback listener).
	Hosts []string
	// Logger logs refused requests at info level; nil: they are not logged.
	Logger *slog.Logger
}

// OpsGuard keeps browsers and DNS rebinding away from an operations
// listener, so that whatever trust its admin check grants (development
// mode trusts any loopback client) is granted to a program that meant to
// talk to it, never to a web page that a browser on the same machine
// happens to show. Compose it before the admin check.
//
// It refuses, with a problem+json answer:
//   - 403 to any request, reads included, whose Host is not the listener's
//     own: the address the connection arrived on
//     (http.LocalAddrContextKey), "localhost:<port>" when that address is
//     loopback, or one of cfg.Hosts. A Host without a port means port 80
//     (443 over TLS). A page whose name was rebound to 127.0.0.1 still
//     sends its own name, so it can neither write nor read;
//   - 403 to a state-changing request (any method but GET, HEAD and
//     OPTIONS) that carries an Origin other than the request's own
//     scheme://host:port, or Sec-Fetch-Site "cross-site" or "same-site".
//     A client that sends neither (curl, the chaos command) passes;
//   - 415 to any request with a body (a declared length above zero, or
//     chunked) that is not Content-Type application/json: a browser can
//     only send text/plain, form or multipart bodies without asking the
//     server first (a CORS preflight, which nothing here answers).
func OpsGuard(cfg OpsGuardConfig) (Middleware, error) {
	hosts := make([]hostPort, 0, len(cfg.Hosts))
	for _, s := range cfg.Hosts {
		h, err := parseConfiguredHost(s)
		if err != nil {
			return nil, fmt.Errorf("operations guard: %w", err)
		}
		hosts = append(hosts, h)
	}
	g := &opsGuard{hosts: hosts, log: cfg.Logger}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := g.check(r); err != nil {
				WriteError(w, r, g.log, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}

type opsGuard struct {
	hosts []hostPort // configured names; port 0 matches any port
	log   *slog.Logger
}

// hostPort is a canonical host (lower case, IP addresses in their
// shortest form, no brackets) and a port.
type hostPort struct {
	host string
	port int
}

func (g *opsGuard) check(r *http.Request) error {
	if !g.ownHost(r) {
		return shop.Errorf(shop.KindForbidden, "", "Host %q is not an address of this operations listener", r.Host)
	}
	if !safeMethod(r.Method) {
		switch site := r.Header.Get("Sec-Fetch-Site"); site {
		case "cross-site", "same-site":
			return shop.Errorf(shop.KindForbidden, "", "a %s request from another site is refused here", r.Method)
		}
		for _, origin := range r.Header.Values("Origin") {
			if !sameOrigin(origin, r) {
				return shop.Errorf(shop.KindForbidden, "", "Origin %q is not this operations address", origin)
			}
		}
	}
	if hasBody(r) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return shop.Errorf(shop.KindUnsupported, "", "a request body must be sent as Content-Type application/json")
		}
	}
	return nil
}

// ownHost reports whether r's Host names the listener r arrived on.
func (g *opsGuard) ownHost(r *http.Request) bool {
	h, ok := splitHost(r.Host, defaultPort(r.TLS != nil))
	if !ok {
		return false
	}
	if local, ok := localAddr(r); ok && h.port == int(local.Port()) {
		if h.host == local.Addr().String() || (local.Addr().IsLoopback() && h.host == "localhost") {
			return true
		}
	}
	return slices.ContainsFunc(g.hosts, func(c hostPort) bool {
		return c.host == h.host && (c.port == 0 || c.port == h.port)
	})
}

// sameOrigin reports whether origin is r's own scheme://host:port.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	tls := r.TLS != nil
	if u.Scheme != Scheme(tls) {
		return false
	}
	o, ok := splitHost(u.Host, defaultPort(tls))
	if !ok {
		return false
	}
	h, ok := splitHost(r.Host, defaultPort(tls))
	return ok && o == h
}

// localAddr is the address the connection of r arrived on.
func localAddr(r *http.Request) (netip.AddrPort, bool) {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// splitHost parses a Host header or an origin's host[:port]; without a
// port it is defPort.
func splitHost(s string, defPort int) (hostPort, bool) {
	if s == "" {
		return hostPort{}, false
	}
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		host, portText = s, strconv.Itoa(defPort)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return hostPort{}, false
	}
	host = canonicalHost(host)
	if host == "" {
		return hostPort{}, false
	}
	return hostPort{host, port}, true
}

// parseConfiguredHost parses an entry of OpsGuardConfig.Hosts: a name, or
// a name and a port.
func parseConfiguredHost(s string) (hostPort, error) {
	if s == "" || strings.ContainsAny(s, "/?#@ \t") {
		return hostPort{}, fmt.Errorf("host %q: want a name or name:port, not a URL", s)
	}
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		host, portText = s, "" // no port: any port
	}
	port := 0
	if err == nil {
		port, err = strconv.Atoi(portText)
		if err != nil || port < 1 || port > 65535 {
			return hostPort{}, fmt.Errorf("host %q: want a port from 1 to 65535", s)
		}
	}
	h := canonicalHost(host)
	if _, err := netip.ParseAddr(h); h == "" || (err != nil && strings.Contains(h, ":")) {
		return hostPort{}, fmt.Errorf("host %q: want a name or name:port", s)
	}
	return hostPort{h, port}, nil
}

// canonicalHost lower-cases a name, drops a trailing dot and writes an IP
// address in its one canonical form.
func canonicalHost(host string) string {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

func defaultPort(tls bool) int {
	if tls {
		return 443
	}
	return 80
}

func safeMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// hasBody reports whether r declares a body: a length above zero, or an
// unknown one (chunked).
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 || slices.Contains(r.TransferEncoding, "chunked")
}
