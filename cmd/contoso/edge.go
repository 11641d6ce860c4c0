package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/telemetry"
)

// runEdge runs the global entry point alone (a multi-host deployment): it
// follows the stamps registry in the store and serves every region's
// clients through its POPs.
func runEdge(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f edgeFlags
	pops := fs.String("pops", "", "comma-separated regions with a point of presence; the first serves clients without X-Client-Region; required")
	f.register(fs, "the entry point")
	if err := fs.Parse(args); err != nil {
		return err
	}
	regions := splitList(*pops)
	if len(regions) == 0 {
		return errors.New("-pops is required")
	}
	return f.run(ctx, edgeRun{pops: regions, line: map[string]string{"event": "listening"}, urlName: "edge"},
		getenv, stdout, stderr)
}

// edgeFlags are the flags of a command that runs points of presence: the
// edge (several POPs) and the pop (one).
type edgeFlags struct {
	logs     logFlags
	conn     partFlags
	tokens   issuerFlags // admin tokens for the operations endpoints
	listen   string
	opsAddr  string
	opsHosts string
	rate     float64
	burst    int
	via      string
	pprof    bool
}

// register adds the flags; what names the client-facing address.
func (f *edgeFlags) register(fs *flag.FlagSet, what string) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of "+what)
	fs.StringVar(&f.opsAddr, "ops-listen", "127.0.0.1:8090", "address of the operations endpoints (/ops/edge, /metrics), admin token required")
	fs.StringVar(&f.opsHosts, "ops-host", "", "comma-separated names (name or name:port) the operations endpoints also answer to, e.g. their DNS name; their own address and localhost always")
	fs.Float64Var(&f.rate, "client-rate", 200, "requests per second each client may send")
	fs.IntVar(&f.burst, "client-burst", 400, "burst of each client's rate")
	fs.BoolVar(&f.pprof, "pprof", false, "serve the Go runtime's profiles at /debug/pprof/ on the operations address (admin token required)")
	fs.StringVar(&f.via, "via", "", "comma-separated ADDR=VIA: reach the stamp at host:port ADDR through VIA (a link or proxy, host:port); other stamps are dialled directly")
	f.logs.register(fs)
	f.tokens.register(fs)
	f.conn.register(fs, "NATS servers in every region", what+" and the operations address",
		"stamp-ca", "that signed the stamps' certificates (for https:// stamps)")
}

// edgeRun is what differs between the commands that run POPs.
type edgeRun struct {
	region  string            // the region it runs in (telemetry's cloud.region); empty: a global edge
	pops    []string          // regions with a POP; the first serves clients without X-Client-Region
	line    map[string]string // the first fields of its ready line
	urlName string            // the ready line's key for the client-facing URL
}

// run serves r.pops, following the stamps registry, until ctx is done.
func (f *edgeFlags) run(ctx context.Context, r edgeRun, getenv func(string) string, stdout, stderr io.Writer) error {
	p, err := f.conn.resolve("stamp-ca")
	if err != nil {
		return err
	}
	dial, err := viaDialer(f.via)
	if err != nil {
		return err
	}
	credential := getenv(envEdgeCredential)
	if credential == "" {
		return fmt.Errorf("%s is required: the credential stamps expect from the edge", envEdgeCredential)
	}
	log, err := f.logs.logger(stderr)
	if err != nil {
		return err
	}
	vcfg, err := f.tokens.config()
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(vcfg)
	if err != nil {
		return err
	}
	tel, log, stopTelemetry, err := startTelemetry(telemetry.ServiceEdge, r.region, getenv, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	// Refuses browsers and foreign Host names before the admin check, as
	// on the operations address of up.
	guard, err := httpapi.OpsGuard(httpapi.OpsGuardConfig{Hosts: splitList(f.opsHosts), Logger: log})
	if err != nil {
		return fmt.Errorf("-ops-host: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	svc, err := deploy.NewEdge(openCtx, deploy.EdgeConfig{
		NATSURL: f.conn.nats.url, NATS: p.store, StampTLS: p.clientTLS, POPs: r.pops, Dial: dial, Credential: credential,
		ClientRate: f.rate, ClientBurst: f.burst, Logger: log, Telemetry: tel,
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
	if f.pprof {
		ops.Handle(httpapi.ProfilingPrefix, httpapi.Profiling())
	}
	return serveEndpoints(ctx, stdout, log, p.serverTLS, r.line,
		endpoint{name: r.urlName, addr: f.listen, handler: svc.Edge.Handler()},
		endpoint{name: "ops", addr: f.opsAddr, handler: httpapi.Chain(ops, httpapi.RequestIDs, guard, deploy.AdminOnly(verifier, false, log))})
}

// viaDialer is the edge's Dialer for -via: each stamp address listed is
// reached through its VIA, any other directly; nil without the flag.
func viaDialer(flagValue string) (edge.Dialer, error) {
	if strings.TrimSpace(flagValue) == "" {
		return nil, nil
	}
	via := map[string]string{}
	for _, entry := range splitList(flagValue) {
		addr, through, ok := strings.Cut(entry, "=")
		if !ok || !validHostPort(addr) || !validHostPort(through) {
			return nil, fmt.Errorf("-via: %q is not ADDR=VIA, two host:port addresses", entry)
		}
		if _, dup := via[addr]; dup {
			return nil, fmt.Errorf("-via: %s is listed twice", addr)
		}
		via[addr] = through
	}
	return func(_, _, hostport string) (string, error) {
		if through, ok := via[hostport]; ok {
			return through, nil
		}
		return hostport, nil
	}, nil
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	return err == nil && host != "" && port != ""
}
