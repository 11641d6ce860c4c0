package opsplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/backoff"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/healthmodel"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/slo"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/telemetry"
)

// forgetRegion is how long a region nobody announces a stamp in stays in
// the model when Config.Regions is nil.
const forgetRegion = 10 * time.Minute

// Config configures a Plane.
type Config struct {
	// Conn is the plane's store connection (a store.RoleOps user): it
	// hears the POPs' status on it, and reads the registry and the queues'
	// backlog through the store it finds on it (store.Config.FindOnly: it
	// never declares an asset). Required.
	Conn *nats.Conn
	// Sink holds the deployment's telemetry: the metric history behind the
	// traffic signals and SLOs, the traces and the recent error logs.
	// Required.
	Sink *telemetry.Sink
	// Telemetry receives the plane's gauges (the model's verdicts and the
	// signals behind them); nil: none.
	Telemetry *telemetry.Telemetry
	// StampClient reads the stamps' health reports; its transport must
	// trust the stamps' CA when they serve https. Nil: http.DefaultClient's
	// transport. Every read is bounded by scrapeTimeout either way.
	StampClient *http.Client
	// Regions returns the regions the model judges, once per evaluation.
	// Nil: Declared, plus every region a stamp announced itself in during
	// the last ten minutes (a region that dies stays judged, unhealthy).
	Regions func() []string
	// Declared are regions judged even before a stamp of theirs is heard
	// (a deployment's shape); used only when Regions is nil.
	Declared []string
	// Baseline is the expected one-way latency between two regions, for
	// the link signals; nil: the least round trip seen on each path.
	Baseline func(a, b string) time.Duration
	// Instances is how many stamp instances each region should run (one
	// per zone): fewer serving is redundancy lost, the region degraded
	// (the signal stamp.capacity, the share that serves). Zero: 1.
	Instances int
	// Model is the health model; nil: healthmodel.Default().
	Model *healthmodel.Model
	// Release returns the release under way or the last one (nil when
	// none was ever run), for the dashboard's release section; the
	// release controller's Current. It is called once per snapshot, so it
	// should answer from memory. Nil: the dashboard shows no release.
	Release func(ctx context.Context) (*release.Record, error)
	// Scaling returns the autoscaler's status, for the dashboard's
	// scaling section; the scaler's Status. It is called once per
	// snapshot, so it should answer from memory. Nil, or a nil status:
	// the dashboard shows no scaling section.
	Scaling func() *autoscale.Status
	// Now is the plane's clock; nil: time.Now.
	Now    func() time.Time
	Logger *slog.Logger // nil: discard
}

// Plane is a running operations plane. Its methods are safe for concurrent
// use.
type Plane struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	in   *inputs
	eval *healthmodel.Evaluator

	mu       sync.Mutex // guards the fields below
	readAt   time.Time
	cached   map[signalKey]healthmodel.Reading
	leastRTT map[[2]string]float64
	queues   map[string]queueState

	// releaseFailing is set while Config.Release fails, so that the
	// snapshot logs when it starts and stops failing, not every time.
	releaseFailing atomic.Bool
}

// queueState is a work queue's backlog as last read.
type queueState struct {
	age     time.Duration
	pending uint64
	at      time.Time
}

// New builds a plane; Run starts reading.
func New(cfg Config) (*Plane, error) {
	if cfg.Conn == nil || cfg.Sink == nil {
		return nil, errors.New("operations plane: a store connection and a telemetry sink are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StampClient == nil {
		cfg.StampClient = &http.Client{}
	}
	if cfg.Model == nil {
		cfg.Model = healthmodel.Default()
	}
	p := &Plane{cfg: cfg, log: cfg.Logger, now: cfg.Now, in: newInputs(cfg.Now),
		leastRTT: map[[2]string]float64{}, queues: map[string]queueState{}}
	ev, err := healthmodel.NewEvaluator(healthmodel.EvaluatorConfig{Model: cfg.Model, Source: p, Regions: p.Regions, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("operations plane: %w", err)
	}
	p.eval = ev
	if err := p.registerGauges(); err != nil {
		return nil, err
	}
	return p, nil
}

// Regions are the regions the model judges now, sorted.
func (p *Plane) Regions() []string {
	if p.cfg.Regions != nil {
		return p.cfg.Regions()
	}
	set := map[string]bool{}
	for _, r := range p.cfg.Declared {
		set[r] = true
	}
	for _, r := range p.in.regionsSeen(forgetRegion) {
		set[r] = true
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// Run reads the deployment and evaluates the model until ctx is done. It
// hears the POPs at once; the registry and the queues once it has found
// the store's assets (it waits for them as long as ctx lasts: a plane may
// start before the deployment's first stamp).
func (p *Plane) Run(ctx context.Context) error {
	sub, err := p.cfg.Conn.Subscribe(edge.StatusSubject+".*", p.in.pop)
	if err != nil {
		return fmt.Errorf("operations plane: hear POPs: %w", err)
	}
	defer sub.Unsubscribe()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { p.eval.Run(ctx) })
	st, err := store.Open(ctx, store.Config{Conn: p.cfg.Conn, FindOnly: true, Logger: p.log})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("operations plane: %w", err)
	}
	wg.Go(func() { p.watchRegistry(ctx, st) })
	wg.Go(func() { p.every(ctx, time.Second, p.in.joined, func() { p.in.scrapeAll(ctx, p.cfg.StampClient) }) })
	wg.Go(func() { p.every(ctx, time.Second, nil, func() { p.readQueues(ctx, st) }) })
	return nil
}

// every runs fn at once, then every d and whenever kick is told (nil: never),
// until ctx is done.
func (p *Plane) every(ctx context.Context, d time.Duration, kick <-chan struct{}, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
	}
}

// watchRegistry follows the stamps registry, starting over when the watch
// breaks (its server went away), until ctx is done. Unlike the edge, the
// plane takes the registry's expiry of a stamp as its departure: the
// release controller pauses for a lost region once its stamps are gone,
// and a region cut off from the store keeps stamps that answer (unhealthy)
// but cannot heartbeat. Waiting for the plane's own clock (registryGone)
// let a release judge the cut-off region's failed checkouts first and roll
// back (release-region-outage).
func (p *Plane) watchRegistry(ctx context.Context, st *store.Store) {
	backoff.Policy{First: 250 * time.Millisecond, Max: 2 * time.Second}.Keep(ctx, func(ctx context.Context) error {
		return st.WatchRegistry(ctx, p.in.registry, nil)
	}, func(err error, wait time.Duration) {
		p.log.Warn("registry watch ended; starting over", "error", err, "retry_in", wait)
	})
}

// readQueues reads the work queues' backlog.
func (p *Plane) readQueues(ctx context.Context, st *store.Store) {
	for _, stream := range []string{store.StreamOrders, store.StreamWrites} {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		age, pending, err := st.QueueAge(qctx, stream)
		cancel()
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.queues[stream] = queueState{age: age, pending: pending, at: p.now()}
		p.mu.Unlock()
	}
}

// queue is a work queue's last read backlog; called with p.mu held.
func (p *Plane) queue(stream string) (queueState, bool) {
	q, ok := p.queues[stream]
	return q, ok
}

// Heard reports whether the plane has read a health report of a stamp in
// each of stamps' regions and heard the POP of each of pops' regions; the
// error names what it still misses.
func (p *Plane) Heard(stamps, pops []string) error {
	reported := map[string]bool{}
	for _, s := range p.in.stampList() {
		if s.report != nil {
			reported[s.region] = true
		}
	}
	heard := map[string]bool{}
	for _, ps := range p.in.popStatus() {
		heard[ps.Region] = true
	}
	var missing []string
	for _, r := range stamps {
		if !reported[r] {
			missing = append(missing, "a health report from "+r)
		}
	}
	for _, r := range pops {
		if !heard[r] {
			missing = append(missing, "the POP of "+r)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("operations plane has not heard %s yet", strings.Join(missing, ", "))
	}
	return nil
}

// Model is the health model's evaluator.
func (p *Plane) Model() *healthmodel.Evaluator { return p.eval }

// POPs is every POP's routing status, as last published.
func (p *Plane) POPs() []edge.POPStatus { return p.in.popStatus() }

// SLOs evaluates the SLOs over the telemetry.
func (p *Plane) SLOs() []slo.Status { return slo.Evaluate(p.cfg.Sink, slo.Default()) }

// Routes registers the plane's read-only operations routes on mux:
// GET /ops/health, /ops/slo, /ops/edge, /ops/regions and /ops/traces/{id}.
// The dashboard (ops.Dashboard over Snapshot) and /metrics are the
// caller's, as are the guards in front of them.
func (p *Plane) Routes(mux *http.ServeMux, withRegions bool) {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(p.log, f) }
	mux.Handle("GET /ops/health", p.eval.Handler())
	mux.Handle("GET /ops/slo", h(func(w http.ResponseWriter, r *http.Request) error {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"slos": p.SLOs()})
		return nil
	}))
	mux.Handle("GET /ops/edge", h(func(w http.ResponseWriter, r *http.Request) error {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"pops": p.POPs()})
		return nil
	}))
	mux.Handle("GET /ops/traces/{id}", p.cfg.Sink.TraceHandler())
	if withRegions {
		mux.Handle("GET /ops/regions", h(func(w http.ResponseWriter, r *http.Request) error {
			httpapi.WriteJSON(w, http.StatusOK, map[string]any{"regions": p.RegionsInfo()})
			return nil
		}))
	}
}

// RegionInfo is one region as the plane sees it over the network.
type RegionInfo struct {
	Name   string   `json:"name"`
	Stamps []string `json:"stamps"` // URLs of its stamp instances the registry announces
	POP    bool     `json:"pop"`    // a point of presence of it publishes its status
}

// RegionsInfo lists the judged regions with their stamps and POPs.
func (p *Plane) RegionsInfo() []RegionInfo {
	pops := map[string]bool{}
	for _, ps := range p.in.popStatus() {
		pops[ps.Region] = true
	}
	stamps := map[string][]string{}
	for _, s := range p.in.stampList() {
		if s.announced {
			stamps[s.region] = append(stamps[s.region], s.url)
		}
	}
	var out []RegionInfo
	for _, name := range p.Regions() {
		out = append(out, RegionInfo{Name: name, Stamps: append([]string{}, stamps[name]...), POP: pops[name]})
	}
	return out
}
