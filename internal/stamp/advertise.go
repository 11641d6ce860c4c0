package stamp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/contoso/shoes/internal/httpapi"
)

// ErrWildcardListener is Serve's error for a stamp that listens on a
// wildcard address (0.0.0.0, ::, an empty host) and has no AdvertiseURL:
// the registry would announce an address every other host dials as itself.
var ErrWildcardListener = errors.New("the listener's address is a wildcard, which the edge cannot reach; set the URL to advertise")

// WildcardHost reports whether host, of a listen address or a URL, stands
// for every address of the machine: empty, 0.0.0.0 or :: (in any of their
// spellings). A stamp may listen on such an address but never advertise it.
func WildcardHost(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// CheckAdvertiseURL reports whether raw is a URL the edge can reach a
// stamp at: scheme https when the stamp serves TLS (tls true), http when it
// does not; a host that is not a wildcard (WildcardHost); an explicit port;
// and nothing else: no user information, path, query or fragment, which
// the edge would drop.
func CheckAdvertiseURL(raw string, tls bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	want, port := httpapi.Scheme(tls), "80"
	if tls {
		port = "443"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: the scheme must be %s (want %s://host:port)", raw, want, want)
	case u.Scheme != want && tls:
		return fmt.Errorf("%q: the stamp serves HTTPS, so the edge must reach it at an https:// URL", raw)
	case u.Scheme != want:
		return fmt.Errorf("%q: the stamp serves plain HTTP (it has no certificate), so an https:// URL would fail every probe", raw)
	case u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("%q: want %s://host:port and nothing more (no user, path, query or fragment)", raw, want)
	case WildcardHost(u.Hostname()):
		return fmt.Errorf("%q: %q is a wildcard address, which every other host dials as itself; name this host as the edge reaches it (a DNS name or a routable address)", raw, u.Hostname())
	case u.Port() == "":
		return fmt.Errorf("%q: no port; give the port the edge dials, e.g. %s://%s", raw, want, net.JoinHostPort(u.Hostname(), port))
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %s is not between 1 and 65535", raw, u.Port())
	}
	return nil
}

// advertisedURL is the URL the stamp announces in the registry:
// Config.AdvertiseURL (checked by New), or else the listener's own address
// at addr, which must not be a wildcard.
func (s *Stamp) advertisedURL(addr net.Addr) (string, error) {
	if s.cfg.AdvertiseURL != "" {
		return s.cfg.AdvertiseURL, nil
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", fmt.Errorf("listener address %s: %w", addr, err)
	}
	if WildcardHost(host) {
		return "", fmt.Errorf("listening on %s: %w", addr, ErrWildcardListener)
	}
	return httpapi.Scheme(s.cfg.TLS != nil) + "://" + addr.String(), nil
}
