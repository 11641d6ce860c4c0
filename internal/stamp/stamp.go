// Package stamp is the deployment unit of one region: the API that serves
// the catalog and comment flows from an in-memory read model, the background
// processor that drains async writes, and the health service that probes the
// stamp's dependencies. A stamp keeps no state of its own: everything lives
// in the replicated store, so losing a stamp loses nothing.
package stamp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/backoff"
	"github.com/contoso/shoes/internal/buildinfo"
	"github.com/contoso/shoes/internal/checkout"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/readmodel"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/telemetry"
	"github.com/contoso/shoes/internal/worker"
)

// Config configures a Stamp.
type Config struct {
	Region string // required
	// Zone is the failure domain this instance runs in inside its region
	// (an availability zone: "westeurope-1", "westeurope-2", ...),
	// announced in the stamps registry and its health report; zero:
	// Region + "-1".
	Zone     string
	Store    *store.Store   // required
	Verifier *auth.Verifier // required: verifies user and admin tokens
	Logger   *slog.Logger   // nil: discard
	// ProbeInterval is the time between health probe runs; zero: 1 s.
	ProbeInterval time.Duration
	// Seed stores the seed catalog on the first start of a deployment.
	Seed bool
	// ShutdownTimeout bounds the drain of in-flight requests; zero: 10 s.
	ShutdownTimeout time.Duration
	// Now is the clock for timestamps and ids; nil: time.Now.
	Now func() time.Time
	// Partner is told about reserved orders; nil: this stamp's processor
	// does not process orders (orders still are accepted and queued).
	Partner worker.Notifier
	// Checks are more dependency checks for the health report (the secret
	// store, the partner), beside the stamp's own.
	Checks []health.Check
	// OrderRate and OrderBurst are each user's order admission rate per
	// second and burst; zero: 5 and 10. OrderConcurrency bounds the orders
	// the stamp handles at once; zero: 256.
	OrderRate        float64
	OrderBurst       int
	OrderConcurrency int
	// CommentRate and CommentBurst limit each user's comments: per second
	// and at once; zero: 1 and 5. RatingRate and RatingBurst do the same
	// for ratings; zero: 2 and 10. Over a limit the answer is 429 with
	// Retry-After: 1, so a rate below 1 per second would ask clients back
	// too early.
	CommentRate  float64
	CommentBurst int
	RatingRate   float64
	RatingBurst  int
	// Release names the release this stamp runs, announced in the stamps
	// registry and its health report; zero: this binary's version
	// (buildinfo.Version). The stamp's telemetry names its release itself
	// (telemetry.Identity.Version).
	Release string
	// WarmRequests is how many synthetic requests the stamp answers
	// through its own handler before it first reports ready (GET
	// /api/products and GET /api/products/{id}); zero: 20; negative: none.
	WarmRequests int
	// Fault is a defect to inject, for release experiments; zero: none.
	// New refuses a Fault that ParseFault would refuse.
	Fault Fault
	// AdvertiseURL is where the edge reaches this instance, announced in
	// the stamps registry: scheme://host:port, https exactly when TLS is
	// set, with a host that is not a wildcard (CheckAdvertiseURL; New
	// refuses any other). Zero: the listener's own address, which Serve
	// refuses to announce when it is a wildcard (ErrWildcardListener).
	AdvertiseURL string
	// Telemetry records the stamp's traces and metrics; nil: none.
	Telemetry *telemetry.Telemetry
	// WorkerTelemetry records the metrics of the stamp's background
	// processor, a part of its own (telemetry.ServiceWorker); nil:
	// Telemetry. The processor's spans are those of the messages it
	// handles (store.Config.Process).
	WorkerTelemetry *telemetry.Telemetry
	// TLS, when set, makes Serve speak HTTPS on its listener with it and
	// advertise an https:// URL; a plain HTTP request is refused. Nil:
	// plain HTTP.
	TLS *tls.Config
	// EdgeCredential is the per-deployment credential the edge adds to
	// every request (httpapi.HeaderEdgeCredential); /api/... requests
	// without it get 403. Empty: the API is open to anyone who can reach
	// the stamp (a stamp run alone for development).
	EdgeCredential string
	// Capacity is how many API requests (paths under /api/) of each kind
	// the stamp handles at once: reads (GET, HEAD) and writes (the others)
	// have Capacity slots each, two bulkheads, so that writes waiting on
	// the store (a checkout's quorum write) never hold the slots reads
	// need. A request beyond its kind's slots waits for one, at most 500 ms
	// and behind at most max(4 × Capacity, 64) others; otherwise it is
	// answered 429 (Retry-After: 1) and counted as shed in the health
	// report's load.
	// Health, readiness, operations and warm-up requests take no slot.
	// Zero: 256; negative: New refuses it. SetCapacity changes it while
	// the stamp runs.
	Capacity int
	// Work is simulated work every API request holds its slot for, before
	// it is handled: a test bench's knob that gives each request a cost
	// the capacity bounds, as an instance's own cores would where
	// instances share one machine's. Zero: none; New refuses one below 0
	// or above 10 s. SetWork changes it while the stamp runs.
	Work time.Duration
	// Pprof serves the Go runtime's profiles (httpapi.Profiling) at
	// /debug/pprof/ beside the operations routes, behind their guard and
	// admin check; false: none. The edge never forwards the path.
	Pprof bool
}

// Stamp is one region's stamp.
type Stamp struct {
	cfg       Config
	log       *slog.Logger
	model     *readmodel.Model
	worker    *worker.Worker
	prober    *health.Prober
	loaded    [4]atomic.Bool         // catalog, comments, ratings, inventory watches have delivered their initial keys
	seeded    atomic.Bool            // the seed catalog is stored (set at once when Seed is off)
	warmed    atomic.Pointer[warmth] // nil until the warm-up has passed (set at once without warm requests)
	admission *admission
	checkout  *checkout.Service
	reads     *slots       // the API's capacity for reads (GET, HEAD), and their load
	writes    *slots       // the API's capacity for the other requests, and their load
	work      atomic.Int64 // Work, in nanoseconds
	meter     loadMeter
	queue     atomic.Pointer[queueReading] // the order queue's backlog as last read; nil before the first
	accepted  metric.Int64Counter          // orders accepted, by region
	start     time.Time
	id        string // this instance's id in the stamps registry
	crash     chan struct{}
	crashOnce sync.Once
}

// scopeName is the instrumentation scope of the stamp's own metrics.
const scopeName = "github.com/contoso/shoes/internal/stamp"

// MetricOrdersAccepted counts the orders the stamp accepted (answered 202
// once they were on the order stream), by region
// (contoso_orders_accepted_total).
const MetricOrdersAccepted = "contoso.orders.accepted"

var watched = [4]string{store.BucketCatalog, store.BucketComments, store.BucketRatings, store.BucketInventory}

// New validates cfg and returns a stamp; call Serve or Run to start it.
func New(cfg Config) (*Stamp, error) {
	if cfg.Region == "" || cfg.Store == nil || cfg.Verifier == nil {
		return nil, errors.New("new stamp: region, store and verifier are required")
	}
	if cfg.AdvertiseURL != "" {
		if err := CheckAdvertiseURL(cfg.AdvertiseURL, cfg.TLS != nil); err != nil {
			return nil, fmt.Errorf("new stamp %s: advertise URL: %w", cfg.Region, err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Zone == "" {
		cfg.Zone = cfg.Region + "-1"
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OrderRate <= 0 {
		cfg.OrderRate = 5
	}
	if cfg.OrderBurst <= 0 {
		cfg.OrderBurst = 10
	}
	if cfg.OrderConcurrency <= 0 {
		cfg.OrderConcurrency = 256
	}
	if cfg.CommentRate <= 0 {
		cfg.CommentRate = 1
	}
	if cfg.CommentBurst <= 0 {
		cfg.CommentBurst = 5
	}
	if cfg.RatingRate <= 0 {
		cfg.RatingRate = 2
	}
	if cfg.RatingBurst <= 0 {
		cfg.RatingBurst = 10
	}
	if cfg.Release == "" {
		cfg.Release = buildinfo.Version()
	}
	if cfg.WarmRequests == 0 {
		cfg.WarmRequests = defaultWarmRequests
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = defaultCapacity
	}
	if err := checkCapacity(cfg.Capacity); err != nil {
		return nil, fmt.Errorf("new stamp %s: %w", cfg.Region, err)
	}
	if err := checkWork(cfg.Work); err != nil {
		return nil, fmt.Errorf("new stamp %s: %w", cfg.Region, err)
	}
	if err := cfg.Fault.validate(); err != nil {
		return nil, fmt.Errorf("new stamp %s: fault: %w", cfg.Region, err)
	}
	log := cfg.Logger.With("region", cfg.Region)
	s := &Stamp{cfg: cfg, log: log, model: readmodel.New(), start: time.Now()}
	s.id = store.RegistryID(cfg.Region, shop.NewID(s.start)[20:])
	s.crash = make(chan struct{})
	s.seeded.Store(!cfg.Seed)
	if cfg.WarmRequests < 0 {
		s.warmed.Store(&warmth{})
	}
	s.admission = newAdmission(cfg)
	s.checkout = checkout.New(checkout.Config{Store: cfg.Store, Region: cfg.Region, Now: cfg.Now, Log: log,
		Known: func(sku string) bool { _, ok := s.model.SKU(sku); return ok },
		Admit: func(user string) (func(), error) { return s.admission.order(user, cfg.Now()) }})
	s.reads, s.writes = newSlots(cfg.Capacity, capacityWait), newSlots(cfg.Capacity, capacityWait)
	s.work.Store(int64(cfg.Work))
	s.meter.cpu = processCPU()
	var err error
	s.accepted, err = cfg.Telemetry.Meter(scopeName).Int64Counter(MetricOrdersAccepted,
		metric.WithUnit("{order}"), metric.WithDescription("Orders accepted: durably queued for processing."))
	if err != nil {
		return nil, fmt.Errorf("new stamp %s: %w", cfg.Region, err)
	}
	workerTel := cfg.WorkerTelemetry
	if workerTel == nil {
		workerTel = cfg.Telemetry
	}
	s.worker = worker.New(worker.Config{Region: cfg.Region, Store: cfg.Store, Partner: cfg.Partner, Now: cfg.Now,
		Logger: log.With("component", "worker"), Meter: workerTel.Meter("github.com/contoso/shoes/internal/worker")})
	s.prober = health.NewProber(health.Config{
		Region:   cfg.Region,
		Instance: s.id,
		Release:  cfg.Release,
		Zone:     cfg.Zone,
		Interval: cfg.ProbeInterval,
		Checks:   append(s.checks(), cfg.Checks...),
		Gauges:   s.gauges,
		Load:     s.load,
		Hold:     s.hold,
		Logger:   log.With("component", "health"),
	})
	return s, nil
}

// breakerReporter is a partner client that tells its circuit breaker's
// state ("closed", "half-open", "open"), as partner.Client does.
type breakerReporter interface{ BreakerState() string }

// gauges are the numbers the health report carries beside the checks: the
// partner client's breaker as "partner.breaker" (0 closed, 1 half-open, 2
// open) when the stamp has such a client, and, once the stamp has warmed
// up, "warm.requests" and "warm.ms" (how many synthetic requests it
// answered, in how long); nil when there are none.
func (s *Stamp) gauges() map[string]float64 {
	g := map[string]float64{}
	if b, ok := s.cfg.Partner.(breakerReporter); ok {
		g["partner.breaker"] = map[string]float64{"half-open": 1, "open": 2}[b.BreakerState()]
	}
	if w := s.warmed.Load(); w != nil {
		g["warm.requests"] = float64(w.n)
		g["warm.ms"] = float64(w.took.Microseconds()) / 1000
	}
	if len(g) == 0 {
		return nil
	}
	return g
}

// hold is why the health report must keep the stamp out of rotation while
// its checks pass: an injected never-ready fault, or a warm-up that has
// not passed yet ("warming up", with what it waits for before it can
// start: "warming up: seeding the catalog").
func (s *Stamp) hold() string {
	switch {
	case s.cfg.Fault.NeverReady:
		return errNeverReady.Error()
	case s.warmed.Load() != nil:
		return ""
	}
	if err := s.serving(); err != nil {
		return "warming up: " + err.Error()
	}
	return "warming up"
}

// Crash stops a serving stamp the way a crash would: its listener and
// every connection close at once, requests in flight get no answer, its
// background work stops where it is (unacknowledged messages are
// redelivered elsewhere) and its registry entry is left to expire. For
// fault injection; Serve returns nil.
func (s *Stamp) Crash() { s.crashOnce.Do(func() { close(s.crash) }) }

// ID is this instance's id in the stamps registry (and at the edge).
func (s *Stamp) ID() string { return s.id }

// Prober is the stamp's health prober.
func (s *Stamp) Prober() *health.Prober { return s.prober }

// Ready reports nil when the stamp may take traffic: the catalog is seeded,
// its read models hold the store's current data, the store answered the
// last read probe, and the stamp has warmed up. A stamp with the
// never-ready fault is never ready.
func (s *Stamp) Ready() error {
	if s.cfg.Fault.NeverReady {
		return errNeverReady
	}
	if err := s.serving(); err != nil {
		return err
	}
	if s.warmed.Load() == nil {
		return fmt.Errorf("warming up: %d synthetic requests to answer", s.cfg.WarmRequests)
	}
	return nil
}

// serving reports nil when the stamp could answer requests as it should:
// what Ready asks for besides the warm-up.
func (s *Stamp) serving() error {
	if !s.seeded.Load() {
		return errors.New("seeding the catalog")
	}
	for i := range s.loaded {
		if !s.loaded[i].Load() {
			return fmt.Errorf("read model %s is loading", watched[i])
		}
	}
	r, ok := s.prober.Result(checkStoreRead)
	if !ok || r.Status != health.Healthy {
		return errors.New("store read probe has not passed")
	}
	return nil
}

// Serve runs the stamp and serves its HTTP API on ln until ctx is done, then
// shuts down gracefully: it stops taking requests, finishes in-flight ones,
// then stops the background processor (finishing in-flight messages) and
// the watches. It announces Config.AdvertiseURL in the stamps registry, or
// ln's address; when that address is a wildcard it refuses to start
// (ErrWildcardListener): it closes ln and never reaches the store.
//
// A stamp with a Fault says so at start (a warning); with
// Fault.CrashOnStart it closes ln and returns ErrInjectedCrash at once.
func (s *Stamp) Serve(ctx context.Context, ln net.Listener) error {
	if !s.cfg.Fault.Zero() {
		s.log.Warn("this stamp injects a fault on purpose", "fault", s.cfg.Fault.String(), "release", s.cfg.Release)
	}
	if s.cfg.Fault.CrashOnStart {
		ln.Close()
		return fmt.Errorf("serve stamp %s: %w", s.cfg.Region, ErrInjectedCrash)
	}
	url, err := s.advertisedURL(ln.Addr())
	if err != nil {
		ln.Close()
		return fmt.Errorf("serve stamp %s: %w", s.cfg.Region, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	bgDone := make(chan struct{})
	go func() { s.Run(bgCtx); close(bgDone) }()
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	entry := store.StampEntry{ID: s.id, Region: s.cfg.Region,
		URL: url, Release: s.cfg.Release, Zone: s.cfg.Zone, StartedAt: s.start.UTC()}
	hbDone := make(chan struct{})
	go func() { s.heartbeat(bgCtx, entry); close(hbDone) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.log.Info("stamp serving", "addr", ln.Addr().String(), "advertised", url)

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve stamp %s: %w", s.cfg.Region, err)
	case <-s.crash:
		// As a crashed process would: every connection drops at once,
		// nothing is finished, nothing says goodbye to the registry.
		srv.Close()
		stopBg()
		s.log.Warn("stamp crashed on purpose")
		return nil
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		err = errors.Join(err, fmt.Errorf("shutdown stamp %s: %w", s.cfg.Region, serr))
	}
	stopBg()
	<-bgDone
	<-hbDone
	s.log.Info("stamp stopped")
	return err
}

// intakeLeaderEvery is how often a stamp checks that its region leads its
// region's intake stream (store.Store.KeepIntakeLeader).
const intakeLeaderEvery = 5 * time.Second

// Run runs the stamp's background parts until ctx is done: the read model
// watches, the processor, the prober, seeding, the warm-up and keeping the
// region's intake stream led from the region. None of
// them gives up while ctx lasts: each retries its dependency with back-off
// and the health checks report the trouble meanwhile.
func (s *Stamp) Run(ctx context.Context) {
	var wg sync.WaitGroup
	// The watches start once the catalog is seeded, so that their first
	// values hold the seed: a watch started before would report itself
	// loaded on an empty bucket and get the seed a moment after the
	// stamp had reported ready without it.
	wg.Go(func() {
		if s.cfg.Seed {
			s.seed(ctx)
		}
		for i, bucket := range watched {
			wg.Go(func() { s.watch(ctx, i, bucket) })
		}
	})
	wg.Go(func() {
		if err := s.worker.Run(ctx); err != nil {
			s.log.Error("background processor stopped", "error", err)
		}
	})
	wg.Go(func() { s.prober.Run(ctx) })
	wg.Go(func() { s.readOrderQueue(ctx) })
	wg.Go(func() { s.cfg.Store.KeepIntakeLeader(ctx, intakeLeaderEvery) })
	wg.Go(func() { s.followInstanceSettings(ctx) })
	wg.Go(func() { s.warm(ctx) })
	wg.Wait()
}

// heartbeat keeps this instance in the stamps registry every second until
// ctx is done, then deregisters it. A crashed instance simply stops
// heartbeating and expires from the registry on its own.
func (s *Stamp) heartbeat(ctx context.Context, e store.StampEntry) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		e.HeartbeatAt = time.Now().UTC()
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := s.cfg.Store.Heartbeat(hctx, e); err != nil && ctx.Err() == nil {
			s.log.Warn("registry heartbeat failed", "id", e.ID, "error", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := s.cfg.Store.Deregister(dctx, e.ID); err != nil {
				s.log.Warn("registry deregistration failed; the entry will expire", "id", e.ID, "error", err)
			}
			cancel()
			return
		case <-t.C:
		}
	}
}

// seed stores the seed catalog if the deployment has never been seeded,
// retrying until it succeeds: a store that is slow at start-up delays the
// seed, it does not stop the stamp.
func (s *Stamp) seed(ctx context.Context) {
	_ = backoff.Policy{First: 250 * time.Millisecond, Max: 10 * time.Second}.Retry(ctx, func(ctx context.Context) error {
		n, err := s.cfg.Store.SeedCatalog(ctx, shop.SeedCatalog())
		if err == nil {
			_, err = s.cfg.Store.SeedInventory(ctx, shop.SeedStock())
		}
		if err != nil {
			return err
		}
		if n > 0 {
			s.log.Info("seeded the catalog", "products", n)
		}
		s.seeded.Store(true)
		return nil
	}, func(err error, wait time.Duration) {
		s.log.Warn("seeding the catalog failed; retrying", "error", err, "retry_in", wait)
	})
}

// watch keeps one part of the read model current, re-establishing the
// watch when it breaks (a lost server, a leader change).
func (s *Stamp) watch(ctx context.Context, i int, bucket string) {
	apply := s.applier(bucket)
	backoff.Policy{First: time.Second, Max: time.Second}.Keep(ctx, func(ctx context.Context) error {
		return s.cfg.Store.Watch(ctx, bucket, apply, func() { s.loaded[i].Store(true) })
	}, func(err error, _ time.Duration) {
		s.log.Warn("read model watch ended; restarting", "bucket", bucket, "error", err)
	})
}
