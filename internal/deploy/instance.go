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

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/buildinfo"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/secrets"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/telemetry"
)

// InstanceConfig is everything one instance of a region's stamp needs, the
// same whether `up` runs it beside the others or `contoso stamp` runs it
// alone on its own host.
type InstanceConfig struct {
	Region string // required
	// Zone is the instance's failure domain in its region
	// (stamp.Config.Zone); zero: Region + "-1".
	Zone    string
	NATSURL string // required: the region's NATS server(s), comma-separated, nearest first
	// NATS is how the instance authenticates to the store servers (a
	// RoleStamp user) and the CA it trusts them with; zero: no credentials,
	// plain TCP.
	NATS     store.Credentials
	Replicas int // replicas of every store asset; zero: 3
	Verifier auth.VerifierConfig
	// Secrets is where the partner credentials come from; nil: no secrets
	// and no partner, so this instance does not process orders.
	Secrets       secrets.Provider
	SecretRefresh time.Duration // zero: 30 s
	// LKGPath and LKGKey keep the last-known-good copy of the secrets
	// (AES-256-GCM); empty path: no copy, so the instance cannot start
	// while the secret store is down.
	LKGPath string
	LKGKey  []byte
	// PartnerURL is the partner's notification endpoint; empty: no orders
	// are processed by this instance.
	PartnerURL    string
	ProbeInterval time.Duration // zero: 1 s
	Seed          bool          // seed an empty deployment
	// EdgeCredential is what the edge adds to every request; the stamp
	// refuses /api/... requests without it. Empty: the API is open.
	EdgeCredential string
	// Release is the release the instance runs (stamp.Config.Release);
	// zero: this binary's version.
	Release string
	// Fault is a defect the stamp injects, for release experiments
	// (stamp.Config.Fault); zero: none.
	Fault stamp.Fault
	// BlindStock is store.Config.UnsafeBlindStockWrites: a broken
	// guarantee on purpose; false for every real deployment.
	BlindStock bool
	// WarmRequests is stamp.Config.WarmRequests: zero 20, negative none.
	WarmRequests int
	// Capacity is stamp.Config.Capacity: the API requests the stamp
	// handles at once; zero 256.
	Capacity int
	// Work is stamp.Config.Work: simulated work every API request holds
	// its slot for, for a test bench; zero: none.
	Work time.Duration
	// TLS, when set, makes the instance serve HTTPS with it (and advertise
	// an https:// URL); nil: plain HTTP.
	TLS *tls.Config
	// AdvertiseURL is where the edge reaches the instance
	// (stamp.Config.AdvertiseURL); zero: its listener's address.
	AdvertiseURL string
	// ClientTLS is used for the instance's calls to the partner; nil: the
	// system's roots. (The secret store's client is in Secrets.)
	ClientTLS *tls.Config
	// Telemetry records the stamp's traces and metrics (service
	// contoso-stamp in Region); its processor records as another part of
	// the process, contoso-worker, with the same instance id. Both name
	// Release as their service.version (a Telemetry of another version gets
	// a part of Release's beside it). Nil: none.
	Telemetry *telemetry.Telemetry
	// Pprof serves the Go runtime's profiles on the stamp's operations
	// routes (stamp.Config.Pprof); false: none.
	Pprof  bool
	Logger *slog.Logger // nil: discard
}

// Instance is a stamp instance, built and connected, not yet serving.
type Instance struct {
	Stamp   *stamp.Stamp
	Secrets *secrets.Cache  // nil without InstanceConfig.Secrets
	Partner *partner.Client // nil when this instance processes no orders
	nc      *nats.Conn
}

// NewInstance connects to the store, loads the secrets (from the secret
// store, or from the last-known-good copy when the store is down) and
// builds the stamp.
func NewInstance(ctx context.Context, cfg InstanceConfig) (*Instance, error) {
	if cfg.Region == "" || cfg.NATSURL == "" {
		return nil, errors.New("new instance: region and NATS URL are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 3
	}
	log := cfg.Logger.With("region", cfg.Region)
	nc, err := connectStore(cfg.NATSURL, "stamp-"+cfg.Region, cfg.NATS, log)
	if err != nil {
		return nil, err
	}
	in := &Instance{nc: nc}
	fail := func(err error) (*Instance, error) { nc.Close(); return nil, err }
	if cfg.Release == "" {
		cfg.Release = buildinfo.Version()
	}
	if cfg.Zone == "" {
		cfg.Zone = cfg.Region + "-1"
	}
	id := cfg.Telemetry.Identity()
	id.Version, id.Zone = cfg.Release, cfg.Zone
	stampTel, err := cfg.Telemetry.Part(id)
	if err != nil {
		return fail(err)
	}
	workerTel, err := cfg.Telemetry.Part(telemetry.Identity{Service: telemetry.ServiceWorker, Region: cfg.Region, Zone: cfg.Zone, Instance: id.Instance, Version: cfg.Release})
	if err != nil {
		return fail(err)
	}
	inject, process := workerTel.StreamHooks("processor", cfg.Region)
	st, err := store.Open(ctx, store.Config{Conn: nc, Replicas: cfg.Replicas, Region: cfg.Region, Logger: log.With("component", "store"),
		Inject: inject, Process: process, UnsafeBlindStockWrites: cfg.BlindStock})
	if err != nil {
		return fail(err)
	}
	verifier, err := auth.NewVerifier(cfg.Verifier)
	if err != nil {
		return fail(err)
	}
	// The stamp adds the region to its logger itself.
	scfg := stamp.Config{Region: cfg.Region, Zone: cfg.Zone, Store: st, Verifier: verifier, Logger: cfg.Logger, ProbeInterval: cfg.ProbeInterval, Seed: cfg.Seed, EdgeCredential: cfg.EdgeCredential, Pprof: cfg.Pprof,
		TLS: cfg.TLS, AdvertiseURL: cfg.AdvertiseURL, Telemetry: stampTel, WorkerTelemetry: workerTel,
		Release: cfg.Release, Fault: cfg.Fault, WarmRequests: cfg.WarmRequests, Capacity: cfg.Capacity, Work: cfg.Work}
	if cfg.Secrets != nil {
		in.Secrets, err = secrets.NewCache(secrets.CacheConfig{
			Provider: cfg.Secrets, Names: secretNames, Refresh: cfg.SecretRefresh,
			Region: cfg.Region, LKGPath: cfg.LKGPath, LKGKey: cfg.LKGKey, Logger: log.With("component", "secrets"),
		})
		if err != nil {
			return fail(err)
		}
		if err := in.Secrets.Load(ctx); err != nil {
			return fail(fmt.Errorf("stamp %s secrets: %w", cfg.Region, err))
		}
		scfg.Checks = append(scfg.Checks, health.Check{Name: "secret-store", Impact: health.Degraded, Run: in.Secrets.Check})
	}
	if cfg.PartnerURL != "" && in.Secrets != nil {
		client, err := partner.NewClient(partner.ClientConfig{
			URL: cfg.PartnerURL, Secrets: partnerSecrets{in.Secrets}, Logger: log.With("component", "partner-client"),
			HTTPClient: &http.Client{Transport: workerTel.Transport(ServiceTransport(cfg.ClientTLS), "partner", cfg.Region)},
		})
		if err != nil {
			return fail(err)
		}
		scfg.Partner = client
		in.Partner = client
		// The ping comes first: past the breaker's delay it is the
		// breaker's trial (partner.Client.Ping). It calls a third party,
		// so at most once a second whatever the probe interval.
		scfg.Checks = append(scfg.Checks, health.Check{Name: "partner", Impact: health.Degraded, Every: time.Second, Run: func(ctx context.Context) (string, error) {
			err := client.Ping(ctx)
			if state := client.BreakerState(); state != "closed" {
				return "circuit breaker " + state, fmt.Errorf("partner calls are failing: %w", health.ErrDegraded)
			}
			if err != nil {
				return "circuit breaker closed; ping failed", fmt.Errorf("%w: %w", err, health.ErrDegraded)
			}
			return "circuit breaker closed; ping ok", nil
		}})
	}
	if in.Stamp, err = stamp.New(scfg); err != nil {
		return fail(err)
	}
	return in, nil
}

// Serve serves the instance on ln until ctx is done, refreshing its
// secrets meanwhile, then shuts down gracefully and closes its store
// connection.
func (in *Instance) Serve(ctx context.Context, ln net.Listener) error {
	defer in.nc.Close()
	if in.Secrets != nil {
		refreshCtx, stop := context.WithCancel(ctx)
		defer stop()
		go in.Secrets.Run(refreshCtx)
	}
	return in.Stamp.Serve(ctx, ln)
}

// ServiceTransport is a connection pool for calls to a global service
// (the partner, the secret store) that trusts roots (nil: the system's).
func ServiceTransport(roots *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.TLSClientConfig = roots
	return tr
}
