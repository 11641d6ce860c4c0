package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/contoso/shoes/internal/deploy"
)

// shutdownGrace bounds how long a long-running command lets requests in
// flight finish once it is told to stop.
const shutdownGrace = 10 * time.Second

// endpoint is one HTTP server of a long-running command.
type endpoint struct {
	name    string // its key in the ready line, e.g. "url", "ops"
	addr    string // where it listens
	handler http.Handler
}

// serveEndpoints listens on every endpoint (HTTPS with tlsCfg), prints one
// JSON line on stdout — the fields of line and every endpoint's URL under
// its name — and serves until ctx is done or a server fails. Then it shuts
// every server down, letting requests in flight finish for at most
// shutdownGrace, and returns nil after a clean stop.
func serveEndpoints(ctx context.Context, stdout io.Writer, log *slog.Logger, tlsCfg *tls.Config, line map[string]string, eps ...endpoint) error {
	lns := make([]net.Listener, 0, len(eps))
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, ep := range eps {
		ln, url, err := deploy.Listen(ep.addr, tlsCfg)
		if err != nil {
			closeAll()
			return fmt.Errorf("%s: listen %s: %w", ep.name, ep.addr, err)
		}
		line[ep.name] = url
		lns = append(lns, ln)
	}
	servers := make([]*http.Server, len(eps))
	errc := make(chan error, len(eps))
	for i, ep := range eps {
		srv := deploy.NewServer(ep.handler)
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug) // failed handshakes, bad requests
		servers[i] = srv
		go func() { errc <- srv.Serve(lns[i]) }()
	}
	b, _ := json.Marshal(line)
	fmt.Fprintf(stdout, "%s\n", b)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	log.Info("stopping: finishing the requests in flight", "grace", shutdownGrace)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, srv := range servers {
		err = errors.Join(err, srv.Shutdown(shutdownCtx))
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
