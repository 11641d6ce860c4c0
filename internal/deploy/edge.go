package deploy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/backoff"
	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/healthmodel"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/ops"
	"github.com/contoso/shoes/internal/opsplane"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/telemetry"
)

// EdgeConfig is everything the global entry point needs, the same whether
// `up` runs it beside the stamps or `contoso edge` runs it alone.
type EdgeConfig struct {
	NATSURL string // required: NATS servers of every region, comma-separated, so the registry survives a lost region
	// NATS is how the edge authenticates to the store servers (a RoleEdge
	// user: it reads the registry and the traffic table, nothing else);
	// zero: no credentials.
	NATS store.Credentials
	POPs []string // required: regions with a point of presence
	Dial edge.Dialer
	// StampTLS verifies stamps whose URL is https://; nil: the system's
	// roots.
	StampTLS *tls.Config
	// Credential is added to every forwarded request; stamps refuse API
	// traffic without it.
	Credential  string
	ClientRate  float64
	ClientBurst int
	NoRetry     bool                 // see edge.Config.NoRetry
	Telemetry   *telemetry.Telemetry // nil: none
	Logger      *slog.Logger         // nil: discard
}

// EdgeService is a global entry point connected to the stamps registry.
type EdgeService struct {
	Edge *edge.Edge
	nc   *nats.Conn
}

// NewEdge connects to the store and builds an edge that follows the
// stamps registry and the release controller's traffic table; call Run to
// start its probes.
func NewEdge(ctx context.Context, cfg EdgeConfig) (*EdgeService, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	nc, err := connectStore(cfg.NATSURL, "edge", cfg.NATS, cfg.Logger)
	if err != nil {
		return nil, err
	}
	reg, err := store.OpenRegistry(ctx, store.Config{Conn: nc, Logger: cfg.Logger.With("component", "edge-registry")})
	if err != nil {
		nc.Close()
		return nil, err
	}
	e, err := edge.New(edge.Config{
		POPs: cfg.POPs,
		// The edge expires stamps on its own clock (Config.RegistryTTL),
		// so a registry election that expires every key at once leaves
		// its routing as it was.
		Registry: func(ctx context.Context, fn func(string, *edge.StampInfo)) error {
			return reg.OwnExpiry().Watch(ctx, func(id string, s *store.StampEntry) {
				if s == nil {
					fn(id, nil)
					return
				}
				fn(id, &edge.StampInfo{ID: s.ID, Region: s.Region, URL: s.URL, Release: s.Release, Zone: s.Zone})
			}, nil)
		},
		// The release controller's traffic table, from the same store
		// connection.
		Traffic: func(ctx context.Context, fn func(edge.Weights)) error {
			return reg.WatchTraffic(ctx, func(t *store.Traffic) {
				if t == nil {
					fn(nil)
					return
				}
				fn(edge.Weights(t.Regions))
			})
		},
		Dial:        cfg.Dial,
		StampTLS:    cfg.StampTLS,
		ClientRate:  cfg.ClientRate,
		ClientBurst: cfg.ClientBurst,
		Credential:  cfg.Credential,
		NoRetry:     cfg.NoRetry,
		Telemetry:   cfg.Telemetry,
		Routes:      stamp.APIRoutes(),
		Logger:      cfg.Logger.With("component", "edge"),
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &EdgeService{Edge: e, nc: nc}, nil
}

// Run probes and follows the registry until ctx is done, publishing every
// POP's status for the operations plane meanwhile (edge.StatusSubject),
// then closes the store connection.
func (s *EdgeService) Run(ctx context.Context) {
	defer s.nc.Close()
	var wg sync.WaitGroup
	wg.Go(func() { s.Edge.Run(ctx) })
	wg.Go(func() { s.publish(ctx) })
	wg.Wait()
}

// publish sends every POP's status once per edge.PublishInterval, and at
// once when a POP's routing changed (the plane sees a failover, or the
// first routing at start, without waiting for the tick). Core NATS, at
// most once: a lost status is replaced a tick later, and the plane judges
// a POP it has not heard from for a while as gone.
func (s *EdgeService) publish(ctx context.Context) {
	t := time.NewTicker(edge.PublishInterval)
	defer t.Stop()
	for {
		for _, p := range s.Edge.Status() {
			if b, err := json.Marshal(p); err == nil {
				_ = s.nc.Publish(edge.StatusSubject+"."+p.Region, b)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.Edge.Changed():
		}
	}
}

// OpsConfig is everything the operations plane needs, the same whether
// `up` runs it beside the parts or `contoso ops` runs it alone.
type OpsConfig struct {
	NATSURL string // required: NATS servers of every region, comma-separated
	// NATS is how the plane authenticates to the store servers (a
	// RoleOps user: it reads, hears the POPs, writes nothing).
	NATS store.Credentials
	// Sink holds the deployment's telemetry; required.
	Sink *telemetry.Sink
	// Telemetry receives the plane's gauges; nil: none.
	Telemetry *telemetry.Telemetry
	// StampTLS verifies stamps whose URL is https:// when their reports
	// are read; nil: the system's roots.
	StampTLS *tls.Config
	Regions  func() []string                 // see opsplane.Config.Regions
	Declared []string                        // see opsplane.Config.Declared
	Baseline func(a, b string) time.Duration // see opsplane.Config.Baseline
	// Instances is how many stamp instances each region should run
	// (opsplane.Config.Instances); zero: 1.
	Instances int
	// Release configures the release controller: its Env, Resolve,
	// Verified, Steps, Gate and timeouts (its records, observer and
	// regions are the plane's). Zero: dev, versions in process only.
	Release release.Config
	// Scale configures the plane's autoscaler.
	Scale ScaleConfig
	// Model is the plane's health model; nil: healthmodel.Default().
	Model  *healthmodel.Model
	Logger *slog.Logger // nil: discard
}

// OpsService is an operations plane connected to the store, with its
// release controller and its autoscaler.
type OpsService struct {
	Plane    *opsplane.Plane
	Releases *release.Controller
	Scaler   *autoscale.Scaler
	records  *store.Releases
	settings *storedInstances
	log      *slog.Logger
	nc       *nats.Conn
}

// Records are the release records the controller keeps: what a release
// agent reads.
func (s *OpsService) Records() release.Records { return s.records }

// NewOps connects to the store as the operations plane and builds the
// plane; call Run to start reading. It does not wait for the store's
// servers (the connection retries) nor for its assets (Run does).
func NewOps(cfg OpsConfig) (*OpsService, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("component", "ops")
	nc, err := connectStore(cfg.NATSURL, "ops", cfg.NATS, log)
	if err != nil {
		return nil, err
	}
	// The plane shows the release its controller drives and the
	// scaler's decisions; both read the stamps through the plane, so they
	// are built after it, before NewOps returns.
	var (
		releases *release.Controller
		scaler   *autoscale.Scaler
	)
	plane, err := opsplane.New(opsplane.Config{
		Conn: nc, Sink: cfg.Sink, Telemetry: cfg.Telemetry, Instances: cfg.Instances, Model: cfg.Model,
		StampClient: &http.Client{Transport: ServiceTransport(cfg.StampTLS)},
		Regions:     cfg.Regions, Declared: cfg.Declared, Baseline: cfg.Baseline, Logger: log,
		Release: func(ctx context.Context) (*release.Record, error) { return releases.Current(ctx) },
		Scaling: func() *autoscale.Status {
			st := scaler.Status()
			return &st
		},
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	rcfg := cfg.Release
	records := store.NewReleases(store.Config{Conn: nc, Logger: log})
	rcfg.Records = records
	rcfg.Observer = plane
	rcfg.Regions = plane.Regions
	if cfg.Regions != nil {
		rcfg.Regions = cfg.Regions
	} else if len(cfg.Declared) > 0 {
		rcfg.Regions = func() []string { return slices.Clone(cfg.Declared) }
	}
	rcfg.Logger = log
	releases, err = release.NewController(rcfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	settings := &storedInstances{records: records, prod: releases.Env() == release.EnvProd}
	if scaler, err = newScaler(cfg.Scale, cfg.Instances, nc, plane, releases, settings, rcfg.Regions, log); err != nil {
		nc.Close()
		return nil, err
	}
	return &OpsService{Plane: plane, Releases: releases, Scaler: scaler, records: records, settings: settings, nc: nc, log: log}, nil
}

// Run reads the deployment and drives the release under way until ctx is
// done, then closes the store connection.
func (s *OpsService) Run(ctx context.Context) error {
	defer s.nc.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.clearInstanceSettings(ctx) })
	wg.Go(func() { _ = s.Releases.Run(ctx) })
	wg.Go(func() { s.Scaler.Run(ctx) })
	return s.Plane.Run(ctx)
}

// clearInstanceSettings deletes the instance settings a previous run of
// the operations plane left in the store (storedInstances.clearStale),
// retrying until it is done or ctx ends: every instance starts again from
// its own configuration.
func (s *OpsService) clearInstanceSettings(ctx context.Context) {
	_ = backoff.Policy{First: 250 * time.Millisecond, Max: 5 * time.Second}.Retry(ctx, s.settings.clearStale, func(err error, wait time.Duration) {
		s.log.Warn("clearing the instance settings failed; retrying", "error", err, "retry_in", wait)
	})
}

// AdminOnly lets through requests with an admin token and, when
// trustLoopback is set (development), any request from loopback.
func AdminOnly(v *auth.Verifier, trustLoopback bool, log *slog.Logger) httpapi.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if trustLoopback && isLoopback(r.RemoteAddr) {
				next.ServeHTTP(w, r)
				return
			}
			claims, err := v.Authenticate(r)
			if err == nil {
				err = auth.RequireAdmin(claims)
			}
			if err != nil {
				httpapi.WriteError(w, r, log, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// frontDoor is the edge and the operations address of a deployment.
type frontDoor struct {
	chaos     *chaos.Chaos
	dashboard *ops.Dashboard // its event streams end before the ops listener shuts down
	plane     *opsplane.Plane
	releases  *release.Controller
	scaler    *autoscale.Scaler
	edge      *edge.Edge
	cancel    context.CancelFunc
	done      chan struct{}
	listeners
	edgeURL string
	opsURL  string
}

// startEdge starts the edge (one POP per region, following the stamps
// registry) on addr, and the operations endpoints. The edge reaches the
// registry through every region's server, so it survives the loss of any
// one region.
func (d *Deployment) startEdge(ctx context.Context, addr string) error {
	var urls []string
	for _, name := range d.cfg.Regions {
		urls = append(urls, d.regions[name].node.ClientURL())
	}
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tel, err := d.tel.Part(telemetry.Identity{Service: telemetry.ServiceEdge})
	if err != nil {
		return err
	}
	svc, err := NewEdge(openCtx, EdgeConfig{
		NATSURL:  strings.Join(urls, ","),
		NATS:     d.access.store(store.RoleEdge),
		StampTLS: d.access.clientTLS(),
		POPs:     d.cfg.Regions,
		// POP-to-stamp traffic crosses the simulated links, so a far stamp
		// really is slower.
		Dial:        func(pop, region, hostport string) (string, error) { return d.net.Route(pop, region, hostport) },
		Credential:  d.edgeCred,
		ClientRate:  d.cfg.EdgeClientRate,
		ClientBurst: d.cfg.EdgeClientBurst,
		NoRetry:     d.cfg.EdgeNoRetry,
		Telemetry:   tel,
		Logger:      d.log,
	})
	if err != nil {
		return err
	}
	// The operations plane reads the deployment over loopback exactly as
	// `contoso ops` reads it over the network: the registry, the stamps'
	// reports, the POPs' published status, the queues; only its telemetry
	// sink is this process's own.
	// The autoscaler starts and drains this process's instances through
	// the same launcher as the release agent.
	opsSvc, err := NewOps(OpsConfig{
		Scale:   ScaleConfig{Launcher: launcher{d}, Max: d.cfg.ScaleMax, Policy: d.cfg.Scaling},
		NATSURL: strings.Join(urls, ","), NATS: d.access.store(store.RoleOps),
		Sink: d.tel.Sink(), Telemetry: d.tel, StampTLS: d.access.clientTLS(),
		Regions: d.regionNames, Baseline: d.net.BaseLatency, Logger: d.log, Instances: d.instances(), Model: d.cfg.HealthModel,
		Release: release.Config{Env: d.cfg.Env, Gate: d.cfg.ReleaseGate, StartTimeout: d.cfg.ReleaseStartTimeout},
	})
	if err != nil {
		return err
	}
	// The release agent starts and drains this process's instances as
	// the release under way desires.
	agent, err := release.NewAgent(release.AgentConfig{Records: opsSvc.Records(), Launcher: launcher{d}, Hosts: d.regionUp, Settled: d.settled, Logger: d.log})
	if err != nil {
		return err
	}
	fd := &frontDoor{edge: svc.Edge, plane: opsSvc.Plane, releases: opsSvc.Releases, scaler: opsSvc.Scaler, done: make(chan struct{}), listeners: listeners{log: d.log}}
	runCtx, stop := context.WithCancel(context.Background())
	fd.cancel = stop
	d.front = fd
	go func() {
		var wg sync.WaitGroup
		wg.Go(func() { svc.Run(runCtx) })
		wg.Go(func() { _ = agent.Run(runCtx) })
		wg.Go(func() {
			if err := opsSvc.Run(runCtx); err != nil {
				d.log.Error("operations plane stopped", "error", err)
			}
		})
		wg.Wait()
		close(fd.done)
	}()
	opsHandler, err := d.opsHandler()
	if err != nil {
		fd.close()
		return err
	}
	opsAddr := d.cfg.OpsAddr
	if opsAddr == "" {
		opsAddr = "127.0.0.1:0"
	}
	if fd.edgeURL, err = fd.serve("edge", addr, svc.Edge.Handler(), d.access.serverTLS()); err == nil {
		fd.opsURL, err = fd.serve("ops", opsAddr, opsHandler, d.access.serverTLS())
	}
	if err != nil {
		fd.close()
		return err
	}
	return nil
}

func (fd *frontDoor) close() {
	if fd.chaos != nil { // heal what is still injected before the parts stop
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_ = fd.chaos.Close(ctx)
		cancel()
	}
	if fd.dashboard != nil {
		fd.dashboard.Close()
	}
	fd.shutdown()
	fd.cancel()
	<-fd.done
}

// EdgeURL is the global entry point's URL; OpsURL the operations address.
func (d *Deployment) EdgeURL() string { return d.front.edgeURL }

// OpsURL is the address of the operations endpoints (/ops/...).
func (d *Deployment) OpsURL() string { return d.front.opsURL }

// EdgeCredential is the credential the edge adds to every request it
// forwards; stamps refuse API traffic without it.
func (d *Deployment) EdgeCredential() string { return d.edgeCred }

// Edge is the deployment's global entry point.
func (d *Deployment) Edge() *edge.Edge { return d.front.edge }
