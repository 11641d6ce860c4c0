package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/contoso/shoes/internal/buildinfo"
)

// scopeName is the instrumentation scope of what this package records itself
// (the HTTP server and client spans and histograms).
const scopeName = "github.com/contoso/shoes/internal/telemetry"

// Metric names this package records.
const (
	// MetricHTTPServerDuration is the server request duration histogram
	// (seconds) that Middleware records.
	MetricHTTPServerDuration = "http.server.request.duration"
	// MetricDependencyDuration is the outbound call duration histogram
	// (seconds) that Transport records.
	MetricDependencyDuration = "contoso.dependency.duration"
	// MetricThrottled counts the requests Middleware saw answered 429 Too
	// Many Requests (contoso_requests_throttled_total).
	MetricThrottled = "contoso.requests.throttled"
)

// durationBuckets are the explicit bucket boundaries (seconds) of both
// duration histograms. The SLO thresholds at 0.25 s and 1 s need those two
// boundaries to exist.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// DurationBuckets returns the bucket boundaries, in seconds, of the duration
// histograms this package records. Components recording their own latency
// histograms pass them to metric.WithExplicitBucketBoundaries so that the
// same SLO thresholds can be queried.
func DurationBuckets() []float64 {
	return append([]float64(nil), durationBuckets...)
}

// Tier is one resolution of the sink's metric history.
type Tier struct {
	// Resolution is the spacing of kept snapshots: the tier keeps the first
	// snapshot collected in each Resolution-aligned interval.
	Resolution time.Duration
	// Retention is how far back the tier reaches. It holds
	// ceil(Retention/Resolution)+2 snapshots, so that its oldest snapshot is
	// at least Retention older than its newest even when collections do not
	// fall on interval boundaries.
	Retention time.Duration
}

// DefaultTiers are the metric history tiers used when Config.Tiers is nil:
// every second for five minutes, every minute for six hours, every hour for
// three days (the longest window an SLO alert reads).
func DefaultTiers() []Tier {
	return []Tier{
		{Resolution: time.Second, Retention: 5 * time.Minute},
		{Resolution: time.Minute, Retention: 6 * time.Hour},
		{Resolution: time.Hour, Retention: 3 * 24 * time.Hour},
	}
}

// Config configures a Telemetry.
type Config struct {
	// Service is the service.name resource attribute of the process's
	// first part (one of the Service constants), unless the standard
	// OTEL_SERVICE_NAME (read through Getenv) names another, which then
	// names every part of the process. Required.
	Service string
	// Region is the cloud.region resource attribute: the region the
	// part runs in; empty: none (a global part).
	Region string
	// Instance is the service.instance.id resource attribute, which tells
	// two instances of one service apart (at an OTLP receiver, their series
	// never mix); empty: a random id.
	Instance string
	// Version is the service.version resource attribute: the release the
	// part runs; empty: this binary's version (buildinfo.Version).
	Version string
	// Zone is cloud.availability_zone (Identity.Zone); empty: none.
	Zone string
	// Getenv reads the standard OTLP variables. OTLP export of traces is on
	// when it returns a non-empty OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used
	// as is) or OTEL_EXPORTER_OTLP_ENDPOINT (with /v1/traces appended), and
	// OTEL_TRACES_EXPORTER is not "none"; of metrics likewise (the
	// _METRICS_ forms, /v1/metrics, OTEL_METRICS_EXPORTER), every
	// OTEL_METRIC_EXPORT_INTERVAL milliseconds (default 2000). The headers, timeout and
	// compression variables (general and _TRACES_ forms) are read through
	// Getenv too; the certificate variables are left to the exporter's own
	// environment handling. Nil: no OTLP.
	Getenv func(string) string
	// TraceCapacity is how many traces the sink keeps; the oldest trace is
	// evicted whole. Zero: 500.
	TraceCapacity int
	// LogCapacity is how many log records the sink keeps; zero: 500.
	LogCapacity int
	// Now is the sink's clock: it stamps metric snapshots and is "now" for
	// metric window queries. Nil: time.Now.
	Now func() time.Time
	// Tiers are the resolutions and retentions of the sink's metric history,
	// finest first. Nil: DefaultTiers (1 s kept 5 min, 1 min kept 6 h, 1 h
	// kept 3 d).
	Tiers []Tier
	// MaxSeries bounds the metric series the sink's history tracks; series
	// first seen beyond it are left out of the history (they still reach
	// Prometheus and OTLP). Zero: 5000.
	MaxSeries int
	// Logger receives errors of the background collection in Run. Nil:
	// discard.
	Logger *slog.Logger
}

// cardinalityLimit caps the attribute sets one instrument aggregates; the
// SDK folds further sets into one overflow series. Together with
// Config.MaxSeries it bounds the sink's metric memory.
const cardinalityLimit = 2000

// Telemetry holds the trace and meter providers of one part of the system
// (a service.name, in a region), their exporters and the sink its process
// shares. New makes the process's first part; Part adds the others that
// run in the same process. A nil *Telemetry is telemetry off (see the
// package documentation).
type Telemetry struct {
	p     *process
	id    Identity
	attrs []attribute.KeyValue // id as resource attributes
	tp    *sdktrace.TracerProvider
	mp    *sdkmetric.MeterProvider

	tracer     trace.Tracer
	serverHist metric.Float64Histogram
	clientHist metric.Float64Histogram
	throttled  metric.Int64Counter

	// The metric options of the server recordings, per labels.
	serverOptions    optionCache[serverKey]
	throttledOptions optionCache[throttledKey]
}

// process is what every part of one process shares: the configuration,
// the span processors, the Prometheus registry and the sink.
type process struct {
	cfg     Config
	sampler sdktrace.Sampler
	spans   []sdktrace.SpanProcessor // the sink's recorder, and the OTLP batcher when OTLP is on
	prop    propagation.TextMapPropagator
	reg     *prometheus.Registry
	metrics http.Handler
	sink    *Sink
	otlp    bool // whether an OTLP trace exporter was created

	mu    sync.Mutex   // guards parts
	parts []*Telemetry // every part, New's first

	// scratch holds *[]attribute.KeyValue that spans are given their
	// attributes through: SetAttributes copies them, so that one slice
	// serves every span in turn instead of one made per span.
	scratch sync.Pool

	shutdownOne sync.Once
	shutdownErr error // set once by Shutdown
}

// New builds the process's telemetry: its first part (Config.Service in
// Config.Region) with its providers and exporters, and the sink that every
// part of the process shares. It starts nothing in the background: call
// Run to feed the sink's metric history, and Shutdown to flush.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	if strings.TrimSpace(cfg.Service) == "" {
		return nil, errors.New("telemetry: Service is required")
	}
	if cfg.TraceCapacity < 0 || cfg.LogCapacity < 0 || cfg.MaxSeries < 0 {
		return nil, errors.New("telemetry: capacities must not be negative")
	}
	if cfg.TraceCapacity == 0 {
		cfg.TraceCapacity = 500
	}
	if cfg.LogCapacity == 0 {
		cfg.LogCapacity = 500
	}
	if cfg.MaxSeries == 0 {
		cfg.MaxSeries = 5000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tiers == nil {
		cfg.Tiers = DefaultTiers()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sink, err := newSink(cfg)
	if err != nil {
		return nil, err
	}
	// The metric exporters are made per part; their settings are checked
	// once, here.
	if _, on, err := readOTLPSettings(cfg.Getenv, "METRICS"); err != nil {
		return nil, err
	} else if on {
		if _, err := metricInterval(cfg.Getenv); err != nil {
			return nil, err
		}
	}
	p := &process{
		cfg:     cfg,
		sampler: samplerFrom(cfg.Getenv, cfg.Logger),
		spans:   []sdktrace.SpanProcessor{spanRecorder{s: sink}},
		prop:    propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		reg:     prometheus.NewRegistry(),
		sink:    sink,
		scratch: sync.Pool{New: func() any { s := make([]attribute.KeyValue, 0, 16); return &s }},
	}
	exp, err := newOTLPExporter(ctx, cfg.Getenv)
	if err != nil {
		return nil, err
	}
	if exp != nil {
		p.spans = append(p.spans, sdktrace.NewBatchSpanProcessor(exp))
		p.otlp = true
	}
	// The standard go_* and process_* metrics, on every /metrics.
	if err := p.reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("telemetry: Go collector: %w", err)
	}
	if err := p.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: process collector: %w", err)
	}
	p.metrics = promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{})
	t, err := p.newPart(ctx, Identity{Service: cfg.Service, Region: cfg.Region, Instance: cfg.Instance, Version: cfg.Version, Zone: cfg.Zone}, false)
	if err != nil {
		_ = p.shutdown(ctx)
		return nil, err
	}
	return t, nil
}

// newPart builds the providers of one part of p. Its metrics reach the
// process's Prometheus registry with the part's identity as labels when
// labelled (every part but the first: a scrape of the process names the
// process, not the parts it hosts).
func (p *process) newPart(ctx context.Context, id Identity, labelled bool) (*Telemetry, error) {
	if p.cfg.Getenv != nil {
		if name := strings.TrimSpace(p.cfg.Getenv("OTEL_SERVICE_NAME")); name != "" {
			id.Service = name
		}
	}
	if id.Version == "" {
		id.Version = buildinfo.Version()
	}
	if id.Instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id.Instance = hex.EncodeToString(b[:])
	}
	// One identity is one part: a second would repeat its series.
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.existingLocked(id); t != nil {
		return t, nil
	}
	attrs := id.attributes()
	res := resource.NewSchemaless(attrs...)
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(p.sampler)}
	for _, sp := range p.spans {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}

	promOpts := []otelprom.Option{otelprom.WithRegisterer(p.reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo()}
	if labelled {
		promOpts = append(promOpts, otelprom.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter(identityAttributeKeys...)))
	}
	promExp, err := otelprom.New(promOpts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	local := sdkmetric.NewManualReader()
	mpOpts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(promExp),
		sdkmetric.WithReader(local),
		sdkmetric.WithCardinalityLimit(cardinalityLimit),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
	}
	otlpReader, err := newOTLPMetricReader(ctx, p.cfg.Getenv)
	if err != nil {
		return nil, err
	}
	if otlpReader != nil {
		mpOpts = append(mpOpts, sdkmetric.WithReader(otlpReader))
	}
	t := &Telemetry{
		p: p, id: id, attrs: attrs,
		tp: sdktrace.NewTracerProvider(tpOpts...),
		mp: sdkmetric.NewMeterProvider(mpOpts...),
	}
	t.tracer = t.tp.Tracer(scopeName)
	if err := t.instruments(); err != nil {
		_ = t.mp.Shutdown(ctx)
		return nil, err
	}
	p.sink.addReader(local, id.sinkAttributes())
	p.parts = append(p.parts, t)
	return t, nil
}

// instruments makes the instruments this package records with.
func (t *Telemetry) instruments() error {
	meter := t.mp.Meter(scopeName)
	var err error
	t.serverHist, err = meter.Float64Histogram(MetricHTTPServerDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP server requests."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return fmt.Errorf("telemetry: %s: %w", MetricHTTPServerDuration, err)
	}
	t.clientHist, err = meter.Float64Histogram(MetricDependencyDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of outbound calls to a dependency."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return fmt.Errorf("telemetry: %s: %w", MetricDependencyDuration, err)
	}
	t.throttled, err = meter.Int64Counter(MetricThrottled,
		metric.WithUnit("{request}"),
		metric.WithDescription("Requests answered 429 Too Many Requests."))
	if err != nil {
		return fmt.Errorf("telemetry: %s: %w", MetricThrottled, err)
	}
	return nil
}

// samplerFrom reads the standard OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG: always_on, always_off, traceidratio and their
// parentbased_ forms, the ratio in [0, 1] (default 1). Unset:
// parentbased_always_on, every trace kept. As the specification asks, an
// unknown sampler or a bad ratio is logged and the default used. A trace not
// sampled still has its id (X-Trace-Id, trace_id in logs) but no spans, in
// the sink or at a collector; metrics are not sampled.
func samplerFrom(getenv func(string) string, log *slog.Logger) sdktrace.Sampler {
	def := sdktrace.ParentBased(sdktrace.AlwaysSample())
	if getenv == nil {
		return def
	}
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	if name == "" {
		return def
	}
	ratio := 1.0
	if arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")); arg != "" && strings.HasSuffix(name, "traceidratio") {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			log.Warn("OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1; keeping every trace", "value", arg)
			return def
		}
		ratio = r
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio)
	case "parentbased_always_on":
		return def
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	}
	log.Warn("unknown OTEL_TRACES_SAMPLER; keeping every trace", "value", name)
	return def
}

// Tracer returns a tracer of the given instrumentation scope; on a nil
// *Telemetry, a no-op tracer.
func (t *Telemetry) Tracer(name string) trace.Tracer {
	if t == nil {
		return tracenoop.NewTracerProvider().Tracer(name)
	}
	return t.tp.Tracer(name)
}

// Meter returns a meter of the given instrumentation scope; on a nil
// *Telemetry, a no-op meter.
func (t *Telemetry) Meter(name string) metric.Meter {
	if t == nil {
		return metricnoop.NewMeterProvider().Meter(name)
	}
	return t.mp.Meter(name)
}

// Propagator returns the W3C trace context and baggage propagator (also on a
// nil *Telemetry).
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil {
		return defaultPropagator
	}
	return t.p.prop
}

var defaultPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// MetricsHandler serves the metrics of every part of this Telemetry's
// process in the Prometheus text format, from a registry of its own (never
// the global one), with the standard go_* and process_* metrics. Names are
// the instrument names with dots as underscores, the unit as a suffix and
// _total on counters (http.server.request.duration in seconds becomes
// http_server_request_duration_seconds_bucket, _sum and _count); attribute
// keys become labels the same way (http.route: http_route). The series of
// a part made with Part also carry its identity (service_name,
// service_instance_id, cloud_region, service_version), which tells apart the parts one
// process hosts; those of the process's first part do not, as the scraped
// address names the process. There are no otel_scope_* labels and no
// target_info. On a nil *Telemetry it answers 404.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return t.p.metrics
}

// Sink returns the in-process sink every part of the process shares; nil
// on a nil *Telemetry.
func (t *Telemetry) Sink() *Sink {
	if t == nil {
		return nil
	}
	return t.p.sink
}

// Run collects a metric snapshot of every part of the process into the
// sink at once and then every second until ctx is done. On a nil
// *Telemetry it returns at once.
func (t *Telemetry) Run(ctx context.Context) {
	if t == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := t.p.sink.Collect(ctx); err != nil && ctx.Err() == nil {
			t.p.cfg.Logger.WarnContext(ctx, "telemetry: collect metrics", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Start is New, then Run in the background. stop ends the collection and
// flushes the exporters (Shutdown), waiting at most 5 s for the flush.
func Start(ctx context.Context, cfg Config) (t *Telemetry, stop func() error, err error) {
	t, err = New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { t.Run(runCtx); close(done) }()
	return t, func() error {
		cancel()
		<-done
		flushCtx, cancelFlush := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelFlush()
		return t.Shutdown(flushCtx)
	}, nil
}

// Shutdown flushes the exporters of every part of the process (pending
// spans and metrics reach OTLP) and stops the providers; later recordings
// are dropped. Any part of the process shuts all of them down. It is safe
// to call more than once; later calls return the first call's result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.p.shutdown(ctx)
}

func (p *process) shutdown(ctx context.Context) error {
	p.shutdownOne.Do(func() {
		p.mu.Lock()
		parts := slices.Clone(p.parts)
		p.mu.Unlock()
		var errs []error
		for _, t := range parts {
			// The span processors are shared: the first provider's shutdown
			// flushes and stops them for every part.
			if err := t.tp.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("telemetry: shut down traces of %s: %w", t.id.Service, err))
			}
			if err := t.mp.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("telemetry: shut down metrics of %s: %w", t.id.Service, err))
			}
		}
		if len(parts) == 0 {
			for _, sp := range p.spans {
				if err := sp.Shutdown(ctx); err != nil {
					errs = append(errs, fmt.Errorf("telemetry: shut down traces: %w", err))
				}
			}
		}
		p.shutdownErr = errors.Join(errs...)
	})
	return p.shutdownErr
}
