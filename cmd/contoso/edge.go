package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/httpapi"
)

// runEdge runs the global entry point alone (a multi-host deployment): it
// follows the stamps registry in the store and serves every region's
// clients through its POPs.
func runEdge(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logs     logFlags
		conn     partFlags
		pops     = fs.String("pops", "", "comma-separated regions with a point of presence; the first serves clients without X-Client-Region; required")
		listen   = fs.String("listen", "127.0.0.1:8080", "address of the entry point")
		opsAddr  = fs.String("ops-listen", "127.0.0.1:8090", "address of the operations endpoints (/ops/edge), admin token required")
		opsHosts = fs.String("ops-host", "", "comma-separated names (name or name:port) the operations endpoints also answer to, e.g. their DNS name; their own address and localhost always")
		rate     = fs.Float64("client-rate", 200, "requests per second each client may send")
		burst    = fs.Int("client-burst", 400, "burst of each client's rate")
		tokens   issuerFlags // admin tokens for the operations endpoints
	)
	logs.register(fs)
	tokens.register(fs)
	conn.register(fs, "NATS servers in every region", "the entry point and the operations address",
		"stamp-ca", "that signed the stamps' certificates (for https:// stamps)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := conn.resolve("stamp-ca")
	if err != nil {
		return err
	}
	regions := splitList(*pops)
	if len(regions) == 0 {
		return errors.New("-pops is required")
	}
	credential := getenv(envEdgeCredential)
	if credential == "" {
		return fmt.Errorf("%s is required: the credential stamps expect from the edge", envEdgeCredential)
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	vcfg, err := tokens.config()
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(vcfg)
	if err != nil {
		return err
	}
	tel, log, stopTelemetry, err := startTelemetry("contoso-edge", getenv, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	// Refuses browsers and foreign Host names before the admin check, as
	// on the operations address of up.
	guard, err := httpapi.OpsGuard(httpapi.OpsGuardConfig{Hosts: splitList(*opsHosts), Logger: log})
	if err != nil {
		return fmt.Errorf("-ops-host: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	svc, err := deploy.NewEdge(openCtx, deploy.EdgeConfig{
		NATSURL: conn.nats.url, NATS: p.store, StampTLS: p.clientTLS, POPs: regions, Credential: credential,
		ClientRate: *rate, ClientBurst: *burst, Logger: log, Telemetry: tel,
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()

	ops := http.NewServeMux()
	ops.Handle("GET /ops/edge", svc.Edge.StatusHandler())
	ops.Handle("GET /metrics", tel.MetricsHandler())
	servers := []*http.Server{
		deploy.NewServer(svc.Edge.Handler()),
		deploy.NewServer(httpapi.Chain(ops, httpapi.RequestIDs, guard, deploy.AdminOnly(verifier, false, log))),
	}
	var urls []string
	errc := make(chan error, len(servers))
	for i, addr := range []string{*listen, *opsAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		srv := servers[i]
		if p.serverTLS != nil {
			ln = tls.NewListener(ln, p.serverTLS)
			urls = append(urls, "https://"+ln.Addr().String())
		} else {
			urls = append(urls, "http://"+ln.Addr().String())
		}
		go func() { errc <- srv.Serve(ln) }()
	}
	line, _ := json.Marshal(map[string]string{"event": "listening", "edge": urls[0], "ops": urls[1]})
	fmt.Fprintf(stdout, "%s\n", line)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShutdown()
	for _, srv := range servers {
		err = errors.Join(err, srv.Shutdown(shutdownCtx))
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
