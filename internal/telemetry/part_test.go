package telemetry

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/buildinfo"
)

// One process hosting several parts (contoso up): each part's spans and
// metrics carry its own service.name, cloud.region, service.instance.id
// and service.version: in the sink, over OTLP, and as labels at /metrics,
// where two instances of one service in one region stay apart. In the
// sink's history the instances of one release add up, and two releases
// of a stamp side by side stay apart.
func TestPartsOfOneProcessKeepTheirIdentity(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	rx := mustNew(t, Config{Service: "collector", Now: clock.Now})
	recv := httptest.NewServer(rx.Sink().OTLPHandler())
	t.Cleanup(recv.Close)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL, "OTEL_METRIC_EXPORT_INTERVAL": "60000"}
	ops, err := New(ctx, Config{Service: ServiceOps, Now: clock.Now, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ops.Shutdown(ctx) })
	edge := mustPart(t, ops, Identity{Service: ServiceEdge, Instance: "edge-1"})
	stamp1 := mustPart(t, ops, Identity{Service: ServiceStamp, Region: "westeurope", Instance: "stamp-1"})
	stamp2 := mustPart(t, ops, Identity{Service: ServiceStamp, Region: "westeurope", Instance: "stamp-2", Zone: "westeurope-2"})
	stamp3 := mustPart(t, ops, Identity{Service: ServiceStamp, Region: "westeurope", Instance: "stamp-3", Version: "v2"})
	worker := mustPart(t, stamp1, Identity{Service: ServiceWorker, Region: "westeurope", Instance: "stamp-1"})
	dev := buildinfo.Version()
	if got := stamp1.Identity(); got != (Identity{Service: ServiceStamp, Region: "westeurope", Instance: "stamp-1", Version: dev}) {
		t.Errorf("Identity = %+v", got)
	}
	// The same identity again is the same part (a second would repeat its
	// series at /metrics).
	if again := mustPart(t, worker, stamp1.Identity()); again != stamp1 {
		t.Error("a second part with stamp-1's identity was made")
	}

	// The baselines, before any request.
	mustCollect(t, ops.Sink())
	mustCollect(t, rx.Sink())
	clock.Advance(time.Second)

	serve := func(tel *Telemetry, component, region string, n int) string {
		h := tel.Middleware(component, region, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, span := tel.Tracer("test").Start(r.Context(), "inner")
			span.End()
		}))
		var traceID string
		for range n {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/products", nil))
			traceID = rec.Header().Get(HeaderTraceID)
		}
		return traceID
	}
	traces := map[*Telemetry]string{
		edge:   serve(edge, "edge", "northeurope", 1),
		stamp1: serve(stamp1, "stamp", "westeurope", 2),
		stamp2: serve(stamp2, "stamp", "westeurope", 3),
		stamp3: serve(stamp3, "stamp", "westeurope", 4),
		worker: serve(worker, "worker", "westeurope", 1),
	}
	c, _ := ops.Meter("test").Int64Counter("contoso.regions.healthy")
	c.Add(ctx, 1)

	// In the sink: every span with its part's identity.
	want := map[*Telemetry]map[string]string{
		edge:   {"service.name": ServiceEdge, "service.instance.id": "edge-1", "cloud.region": "", "service.version": dev},
		stamp1: {"service.name": ServiceStamp, "service.instance.id": "stamp-1", "cloud.region": "westeurope", "service.version": dev, "cloud.availability_zone": ""},
		stamp2: {"service.name": ServiceStamp, "service.instance.id": "stamp-2", "cloud.region": "westeurope", "service.version": dev, "cloud.availability_zone": "westeurope-2"},
		stamp3: {"service.name": ServiceStamp, "service.instance.id": "stamp-3", "cloud.region": "westeurope", "service.version": "v2"},
		worker: {"service.name": ServiceWorker, "service.instance.id": "stamp-1", "cloud.region": "westeurope", "service.version": dev},
	}
	checkSpans := func(where string, sink *Sink) {
		t.Helper()
		for part, id := range traces {
			spans, ok := sink.Trace(id)
			if !ok || len(spans) != 2 {
				t.Errorf("%s: trace of %s: %d spans (%v), want the server span and its child", where, part.id.Service, len(spans), ok)
				continue
			}
			for _, sp := range spans {
				for k, v := range want[part] {
					if got := sp.Attributes[k]; got != v {
						t.Errorf("%s: span %q of %s: %s = %q, want %q", where, sp.Name, part.id.Instance, k, got, v)
					}
				}
			}
		}
	}
	checkSpans("sink", ops.Sink())

	// In the sink's metric history: a part's series carry its service,
	// release and region; the instances of one release of one service in
	// one region add up, and the releases can be told apart.
	mustCollect(t, ops.Sink())
	for _, tc := range []struct {
		match Labels
		want  float64
	}{
		{Labels{"service.name": ServiceStamp, "cloud.region": "westeurope", "component": "stamp"}, 9},
		{Labels{"service.name": ServiceStamp, "cloud.region": "westeurope", "component": "stamp", "service.version": dev}, 5},
		{Labels{"component": "stamp", "region": "westeurope", "service.version": "v2"}, 4},
		{Labels{"service.name": ServiceEdge, "region": "northeurope"}, 1},
		{Labels{"service.name": ServiceWorker}, 1},
	} {
		if got, ok := ops.Sink().Increase(MetricHTTPServerDuration, tc.match, time.Hour); !ok || got != tc.want {
			t.Errorf("sink: requests of %v = %v (%v), want %v", tc.match, got, ok, tc.want)
		}
	}

	// At /metrics: the parts' series carry their identity as labels (the
	// two stamps' series stay apart); the process's own do not.
	_, samples := scrape(t, ops.MetricsHandler())
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"service_name": ServiceStamp, "service_instance_id": "stamp-1", "cloud_region": "westeurope", "component": "stamp"}, 2},
		{map[string]string{"service_name": ServiceStamp, "service_instance_id": "stamp-2", "cloud_region": "westeurope", "component": "stamp"}, 3},
		{map[string]string{"service_name": ServiceStamp, "service_version": "v2", "cloud_region": "westeurope", "component": "stamp"}, 4},
		{map[string]string{"service_name": ServiceWorker, "service_instance_id": "stamp-1", "cloud_region": "westeurope"}, 1},
		{map[string]string{"service_name": ServiceEdge, "service_instance_id": "edge-1"}, 1},
	} {
		got := find(samples, "http_server_request_duration_seconds_count", tc.labels)
		if len(got) != 1 || got[0].value != tc.want {
			t.Errorf("/metrics: request counts with %v: %+v, want one of %v", tc.labels, got, tc.want)
		}
	}
	if got := find(samples, "http_server_request_duration_seconds_count", map[string]string{"service_name": ServiceEdge}); len(got) == 1 {
		if _, ok := got[0].labels["cloud_region"]; ok {
			t.Errorf("/metrics: the global edge has a cloud_region: %v", got[0].labels)
		}
	}
	if got := find(samples, "contoso_regions_healthy_total", nil); len(got) != 1 || len(got[0].labels) != 0 {
		t.Errorf("/metrics: the process's own counter = %+v, want one sample without labels", got)
	}

	// Over OTLP: each part exports as its own resource.
	if err := ops.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	checkSpans("OTLP", rx.Sink())
	clock.Advance(time.Second)
	mustCollect(t, rx.Sink())
	for _, tc := range []struct {
		match Labels
		want  float64
	}{
		{Labels{"service.name": ServiceStamp, "service.instance.id": "stamp-1", "cloud.region": "westeurope"}, 2},
		{Labels{"service.name": ServiceStamp, "service.instance.id": "stamp-2", "cloud.region": "westeurope"}, 3},
		{Labels{"service.name": ServiceStamp, "service.version": "v2"}, 4},
		{Labels{"service.name": ServiceStamp, "service.version": dev}, 5},
		{Labels{"service.name": ServiceWorker, "service.instance.id": "stamp-1"}, 1},
		{Labels{"service.name": ServiceEdge, "service.instance.id": "edge-1", "cloud.region": ""}, 1},
	} {
		if got, ok := rx.Sink().Increase(MetricHTTPServerDuration, tc.match, time.Hour); !ok || got != tc.want {
			t.Errorf("OTLP: requests of %v = %v (%v), want %v", tc.match, got, ok, tc.want)
		}
	}
}

// OTEL_SERVICE_NAME names every part of the process.
func TestServiceNameVariableWinsForEveryPart(t *testing.T) {
	env := map[string]string{"OTEL_SERVICE_NAME": "shop-dev"}
	tel := mustNew(t, Config{Service: ServiceOps, Getenv: func(k string) string { return env[k] }})
	part := mustPart(t, tel, Identity{Service: ServiceStamp, Region: "eastus"})
	for _, p := range []*Telemetry{tel, part} {
		if got := p.Identity().Service; got != "shop-dev" {
			t.Errorf("service.name = %q, want shop-dev", got)
		}
	}
	if id := part.Identity(); id.Region != "eastus" || len(id.Instance) != 16 {
		t.Errorf("part identity = %+v, want eastus and a random instance id", id)
	}
	if _, err := tel.Part(Identity{Region: "eastus"}); err == nil {
		t.Error("a part without a service was made")
	}
	var off *Telemetry
	if p, err := off.Part(Identity{Service: ServiceStamp}); p != nil || err != nil {
		t.Errorf("nil.Part = %v, %v; want nil, nil", p, err)
	}
}

// Every /metrics also serves the standard Go runtime and process metrics.
func TestMetricsHandlerServesGoAndProcessMetrics(t *testing.T) {
	tel := mustNew(t, Config{})
	body, samples := scrape(t, tel.MetricsHandler())
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if len(find(samples, name, nil)) == 0 {
			t.Errorf("/metrics lacks %s:\n%.1500s", name, body)
		}
	}
	if strings.Contains(body, "service_name") {
		t.Errorf("a single-part process labels its series with its service:\n%.1500s", body)
	}
}

func mustPart(tb testing.TB, t *Telemetry, id Identity) *Telemetry {
	tb.Helper()
	p, err := t.Part(id)
	if err != nil {
		tb.Fatalf("Part(%+v): %v", id, err)
	}
	return p
}

// A part's service.version is the release it was given, else this
// binary's version: an identity without a Version and one with the
// binary's version are the same part.
func TestServiceVersionDefaultsToTheBinarysVersion(t *testing.T) {
	first := mustNew(t, Config{Service: ServiceStamp, Region: "eastus", Instance: "stamp-1"})
	if got := first.Identity().Version; got != buildinfo.Version() {
		t.Errorf("first part's version = %q, want the binary's %q", got, buildinfo.Version())
	}
	if again := mustPart(t, first, Identity{Service: ServiceStamp, Region: "eastus", Instance: "stamp-1", Version: buildinfo.Version()}); again != first {
		t.Error("the binary's version named explicitly made a second part")
	}
	next := mustPart(t, first, Identity{Service: ServiceStamp, Region: "eastus", Instance: "stamp-1", Version: "v2"})
	if next == first || next.Identity().Version != "v2" {
		t.Errorf("part of release v2 = %+v, want a part of its own", next.Identity())
	}
	released := mustNew(t, Config{Service: ServiceStamp, Version: "v3"})
	if got := released.Identity().Version; got != "v3" {
		t.Errorf("Config.Version v3 gave %q", got)
	}
}
