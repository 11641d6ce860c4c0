package deploy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
)

// listeners are the HTTP servers a deployment part runs beside its stamps.
type listeners struct {
	log     *slog.Logger
	servers []*http.Server
}

// NewServer is an HTTP server for a public-facing part (the edge, the
// operations address): slow clients cannot hold a connection, since
// headers, bodies, writes and idle keep-alives are bounded.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// Listen listens on addr, over TLS when tlsCfg is set, and returns the
// listener and its URL (http:// or https:// and the address it took).
func Listen(addr string, tlsCfg *tls.Config) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	url := httpapi.Scheme(tlsCfg != nil) + "://" + ln.Addr().String()
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	return ln, url, nil
}

// serve serves h on addr (a NewServer), over TLS when tlsCfg is set, and
// returns its URL.
func (l *listeners) serve(name, addr string, h http.Handler, tlsCfg *tls.Config) (string, error) {
	ln, url, err := Listen(addr, tlsCfg)
	if err != nil {
		return "", fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	srv := NewServer(h)
	srv.ErrorLog = slog.NewLogLogger(l.log.Handler(), slog.LevelDebug) // failed handshakes, bad requests
	l.servers = append(l.servers, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("listener stopped", "listener", name, "error", err)
		}
	}()
	return url, nil
}

// shutdown stops taking connections and finishes in-flight requests, for
// at most five seconds per server.
func (l *listeners) shutdown() {
	for _, srv := range l.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
}
