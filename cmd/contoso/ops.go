package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/ops"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/telemetry"
)

// envOTLPToken names the variable holding the bearer token OTLP exporters
// must send to `contoso ops` (OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20TOKEN).
const envOTLPToken = "CONTOSO_OTLP_TOKEN"

// runOps runs the operations plane alone: it reads the deployment over the
// network (the stamps registry and reports, the POPs' published status,
// the queues), receives every part's telemetry over OTLP, and serves the
// health model, SLOs, dashboard, POPs, regions, traces and its metrics.
func runOps(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ops", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logs      logFlags
		conn      partFlags
		tokens    issuerFlags
		listen    = fs.String("listen", "127.0.0.1:8095", "address of the operations endpoints (/ops/..., /metrics) and the dashboard")
		otlp      = fs.String("otlp-listen", "127.0.0.1:4318", "address of the OTLP/HTTP receiver (POST /v1/traces, /v1/metrics) every part exports to")
		otlpToken = fs.String("otlp-token-file", "", "file holding the bearer token OTLP exporters must send (mode 0600); instead of "+envOTLPToken+"; without one the receiver must listen on loopback")
		opsHosts  = fs.String("ops-host", "", "comma-separated names (name or name:port) the operations endpoints also answer to, e.g. their DNS name; their own address and localhost always")
		dev       = fs.Bool("dev", false, "development mode: loopback clients use the operations endpoints without an admin token")
		regions   = fs.String("regions", "", "comma-separated regions the deployment has: judged (unhealthy) even before or after anything is heard from them; empty: the regions stamps announce")
		insts     = fs.Int("instances", 1, "stamp instances each region should run, one per zone: fewer serving is redundancy lost (the region degraded)")
		env       = fs.String("env", "", "the environment releases go to: dev or prod (prod releases only images that passed verification, and no injected faults); empty: $"+envEnv+", else dev")
		insecure  = fs.Bool("registry-insecure", false, "speak plain HTTP to a release registry on loopback (a development registry)")
		modelFile = fs.String("health-model", "", healthModelUsage)
		scaleMax  = fs.Int("scale-max", 0, "the most stamp instances the autoscaler runs in a region (its least is -instances; PUT /ops/scaling changes both); 0: 3 × -instances")
	)
	logs.register(fs)
	tokens.register(fs)
	conn.register(fs, "NATS servers in every region", "the operations endpoints and the OTLP receiver",
		"stamp-ca", "that signed the stamps' certificates (for https:// stamps' health reports)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *env == "" {
		*env = cmp.Or(getenv(envEnv), release.EnvDev)
	}
	if *env != release.EnvDev && *env != release.EnvProd {
		return fmt.Errorf("-env must be dev or prod, not %q", *env)
	}
	if *scaleMax < 0 || *scaleMax > autoscale.MaxInstances {
		return fmt.Errorf("-scale-max must be from 0 to %d, not %d", autoscale.MaxInstances, *scaleMax)
	}
	model, err := loadHealthModel(*modelFile)
	if err != nil {
		return err
	}
	var registryOpts []artifact.Option
	if *insecure {
		registryOpts = append(registryOpts, artifact.WithInsecure())
	}
	p, err := conn.resolve("stamp-ca")
	if err != nil {
		return err
	}
	receiverToken, err := otlpTokenOf(getenv(envOTLPToken), *otlpToken, *otlp)
	if err != nil {
		return err
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
	guard, err := httpapi.OpsGuard(httpapi.OpsGuardConfig{Hosts: splitList(*opsHosts), Logger: log})
	if err != nil {
		return fmt.Errorf("-ops-host: %w", err)
	}
	tel, log, stopTelemetry, err := startTelemetry(telemetry.ServiceOps, "", getenv, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	svc, err := deploy.NewOps(deploy.OpsConfig{
		NATSURL: conn.nats.url, NATS: p.store, StampTLS: p.clientTLS,
		Sink: tel.Sink(), Telemetry: tel, Declared: splitList(*regions), Logger: log, Instances: *insts, Model: model,
		// The autoscaler's starts and drains go to the supervisors and
		// hosts that carry each region (launch.Remote).
		Scale: deploy.ScaleConfig{Max: *scaleMax},
		Release: release.Config{
			Env: *env,
			Resolve: func(ctx context.Context, image string) (string, error) {
				m, err := artifact.Inspect(ctx, image, registryOpts...)
				return m.Version, err
			},
			Verified: func(ctx context.Context, image string) error {
				_, err := artifact.Verified(ctx, image, registryOpts...)
				return err
			},
		},
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Run(runCtx); err != nil {
			log.Error("operations plane stopped", "error", err)
		}
	}()
	defer func() { stop(); <-done }()

	dash, err := ops.NewDashboard(ops.Config{Snapshot: svc.Plane.Snapshot, Logger: log.With("component", "dashboard")})
	if err != nil {
		return err
	}
	defer dash.Close()
	mux := http.NewServeMux()
	svc.Plane.Routes(mux, true)
	svc.Releases.Routes(mux, log)
	svc.Scaler.Routes(mux, log)
	dash.Routes(mux)
	mux.Handle("GET /metrics", tel.MetricsHandler())
	return serveEndpoints(ctx, stdout, log, p.serverTLS, map[string]string{"event": "ready"},
		endpoint{name: "ops", addr: *listen, handler: httpapi.Chain(mux, httpapi.RequestIDs, httpapi.Recover(log), guard, deploy.AdminOnly(verifier, *dev, log))},
		endpoint{name: "otlp", addr: *otlp, handler: httpapi.Chain(tel.Sink().OTLPHandler(), httpapi.Recover(log), httpapi.RequireBearer(receiverToken, log))})
}

// otlpTokenOf is the OTLP receiver's bearer token, from the environment or
// a file. Without one, the receiver takes telemetry from anyone who can
// reach it, so it must listen on loopback.
func otlpTokenOf(envValue, file, addr string) (string, error) {
	if strings.TrimSpace(envValue) != "" || file != "" {
		return envOrFileSecret("the OTLP receiver's bearer token", envOTLPToken, envValue, "otlp-token-file", file)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-otlp-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", errors.New("-otlp-listen off loopback needs a bearer token: set " + envOTLPToken + " or -otlp-token-file")
	}
	return "", nil
}
