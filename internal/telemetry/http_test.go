package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

func flowOf(pattern string) string {
	switch pattern {
	case "GET /api/products/{id}":
		return "browse"
	case "POST /api/orders":
		return "checkout"
	}
	return ""
}

// TestHTTPTraceLogsAndMetrics sends requests through Transport to a server
// wrapped in Middleware and checks the three signals agree.
func TestHTTPTraceLogsAndMetrics(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := newFakeClock(t0)
	tel := mustNew(t, Config{Now: clock.Now})
	sink := tel.Sink()
	mustCollect(t, sink) // the baseline snapshot, before any request

	var logs lockedBuffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&logs, nil), sink)).With("region", "westeurope", "component", "stamp")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/products/{id}", func(w http.ResponseWriter, r *http.Request) {
		log.InfoContext(r.Context(), "product read", "id", r.PathValue("id"))
		w.Write([]byte(`{"id":"x"}`))
	})
	mux.HandleFunc("POST /api/orders", func(w http.ResponseWriter, r *http.Request) {
		log.WarnContext(r.Context(), "order store unavailable", "request_id", "req-1")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(tel.Middleware("stamp", "westeurope", flowOf)(mux))
	defer srv.Close()
	client := &http.Client{Transport: tel.Transport(nil, "stamp", "edge-westeurope")}

	do := func(method, path string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if req.Header.Get("traceparent") != "" {
			t.Errorf("Transport modified the caller's request headers")
		}
		return resp
	}
	for range 3 {
		do(http.MethodGet, "/api/products/contoso-air-1")
	}
	do(http.MethodPost, "/api/orders")
	do(http.MethodGet, "/nowhere")

	// Traces: each request is one trace of a client span and its child
	// server span.
	var traces []TraceSummary
	eventually(t, "five two-span traces", func() bool {
		traces = sink.RecentTraces(0, false)
		if len(traces) != 5 {
			return false
		}
		for _, tr := range traces {
			if tr.Spans != 2 {
				return false
			}
		}
		return true
	})
	byRoot := map[string][]TraceSummary{}
	for _, tr := range traces {
		byRoot[tr.Root] = append(byRoot[tr.Root], tr)
	}
	if len(byRoot["stamp GET"]) != 4 || len(byRoot["stamp POST"]) != 1 {
		t.Fatalf("trace roots = %v, want 4 \"stamp GET\" and 1 \"stamp POST\"", byRoot)
	}
	failed := byRoot["stamp POST"][0]
	if !failed.Error || failed.Region != "edge-westeurope" {
		t.Errorf("failed trace summary = %+v, want error in region edge-westeurope", failed)
	}
	spans, ok := sink.Trace(failed.TraceID)
	if !ok || len(spans) != 2 {
		t.Fatalf("Trace(%s) = %v, %v", failed.TraceID, spans, ok)
	}
	cs, ss := spans[0], spans[1]
	if cs.Kind != "client" || ss.Kind != "server" {
		t.Fatalf("span kinds = %s, %s; want client, server", cs.Kind, ss.Kind)
	}
	if ss.ParentID != cs.SpanID || cs.ParentID != "" {
		t.Errorf("server parent %q, client span %q (client parent %q): want the server span to be the client span's child", ss.ParentID, cs.SpanID, cs.ParentID)
	}
	if ss.Name != "POST /api/orders" || cs.Name != "stamp POST" {
		t.Errorf("span names = %q, %q", cs.Name, ss.Name)
	}
	for k, want := range map[string]string{
		AttrRoute: "/api/orders", AttrStatusCode: "503", AttrRegion: "westeurope",
		AttrComponent: "stamp", AttrFlow: "checkout", AttrMethod: "POST",
	} {
		if got := ss.Attributes[k]; got != want {
			t.Errorf("server span attribute %s = %q, want %q", k, got, want)
		}
	}
	if ss.Status != "error" || cs.Status != "error" || cs.Attributes[AttrOutcome] != "error" {
		t.Errorf("statuses = client %q (outcome %q), server %q; want error for a 503", cs.Status, cs.Attributes[AttrOutcome], ss.Status)
	}
	unmatched, _ := sink.Trace(byRootWithRoute(t, sink, byRoot["stamp GET"], RouteUnmatched))
	if len(unmatched) != 2 || unmatched[1].Name != "GET" {
		t.Errorf("unmatched request spans = %+v, want server span named GET", unmatched)
	}

	// Logs: the handler's log lines carry its server span's trace id; the
	// warning reached the sink with the logger's attributes.
	traceIDs := map[string]bool{}
	for _, tr := range traces {
		traceIDs[tr.TraceID] = true
	}
	lines := logs.Lines()
	if len(lines) != 4 {
		t.Fatalf("log lines = %d, want 4:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		id, _ := rec[LogTraceID].(string)
		if !traceIDs[id] || rec[LogSpanID] == "" || rec[LogSpanID] == nil {
			t.Errorf("log line %s: trace_id %q is not one of the requests' traces", line, id)
		}
	}
	warns := sink.RecentLogs(0, slog.LevelWarn)
	if len(warns) != 1 {
		t.Fatalf("sink logs = %+v, want the one warning", warns)
	}
	w := warns[0]
	if w.TraceID != failed.TraceID || w.SpanID != ss.SpanID || w.Level != "WARN" || w.Message != "order store unavailable" ||
		w.Attrs["region"] != "westeurope" || w.Attrs["component"] != "stamp" || w.Attrs["request_id"] != "req-1" {
		t.Errorf("sink log = %+v, want the warning with trace %s span %s and its attributes", w, failed.TraceID, ss.SpanID)
	}

	// Metrics: Prometheus text has the route and status labels...
	_, samples := scrape(t, tel.MetricsHandler())
	browse := map[string]string{
		"http_route": "/api/products/{id}", "http_response_status_code": "200", "http_request_method": "GET",
		"region": "westeurope", "component": "stamp", "flow": "browse",
	}
	if got := find(samples, "http_server_request_duration_seconds_count", browse); len(got) != 1 || got[0].value != 3 {
		t.Errorf("browse request count samples = %+v, want one with value 3", got)
	}
	// ... and the sink answers after a Collect.
	clock.Advance(time.Second)
	mustCollect(t, sink)
	for _, tc := range []struct {
		name   string
		metric string
		match  Labels
		want   float64
	}{
		{"browse route", MetricHTTPServerDuration, Labels{AttrRoute: "/api/products/{id}", AttrStatusCode: "200"}, 3},
		{"by flow", MetricHTTPServerDuration, Labels{AttrFlow: "checkout", AttrRegion: "westeurope"}, 1},
		{"5xx", MetricHTTPServerDuration, Labels{AttrStatusCode: "5*"}, 1},
		{"unmatched", MetricHTTPServerDuration, Labels{AttrRoute: RouteUnmatched, AttrStatusCode: "404"}, 1},
		{"all requests", MetricHTTPServerDuration, nil, 5},
		{"dependency errors", MetricDependencyDuration, Labels{AttrDependency: "stamp", AttrOutcome: "error"}, 1},
		{"dependency ok", MetricDependencyDuration, Labels{AttrRegion: "edge-westeurope", AttrOutcome: "ok"}, 4},
	} {
		got, ok := sink.Increase(tc.metric, tc.match, time.Second)
		if !ok || got != tc.want {
			t.Errorf("%s: Increase = %v, %v; want %v", tc.name, got, ok, tc.want)
		}
	}
}

// byRootWithRoute returns the id of the trace among traces whose server
// span has the given route.
func byRootWithRoute(t *testing.T, sink *Sink, traces []TraceSummary, route string) string {
	t.Helper()
	for _, tr := range traces {
		spans, _ := sink.Trace(tr.TraceID)
		for _, sp := range spans {
			if sp.Kind == "server" && sp.Attributes[AttrRoute] == route {
				return tr.TraceID
			}
		}
	}
	t.Fatalf("no trace with route %q", route)
	return ""
}

// TestPrometheusNames pins the names and labels the Prometheus exporter
// emits for the two duration histograms.
func TestPrometheusNames(t *testing.T) {
	tel := mustNew(t, Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/products/{id}", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewServer(tel.Middleware("stamp", "westeurope", flowOf)(mux))
	defer srv.Close()
	resp, err := (&http.Client{Transport: tel.Transport(nil, "stamp", "westeurope")}).Get(srv.URL + "/api/products/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	body, samples := scrape(t, tel.MetricsHandler())
	server := map[string]string{
		"http_route": "/api/products/{id}", "http_response_status_code": "200", "http_request_method": "GET",
		"region": "westeurope", "component": "stamp", "flow": "browse",
	}
	client := map[string]string{"dependency": "stamp", "region": "westeurope", "outcome": "ok"}
	for _, tc := range []struct {
		family string
		labels map[string]string
	}{
		{"http_server_request_duration_seconds", server},
		{"contoso_dependency_duration_seconds", client},
	} {
		for _, suffix := range []string{"_count", "_sum"} {
			got := find(samples, tc.family+suffix, tc.labels)
			if len(got) != 1 || len(got[0].labels) != len(tc.labels) {
				t.Errorf("%s%s: samples %+v, want one with exactly the labels %v", tc.family, suffix, got, tc.labels)
			}
		}
		buckets := find(samples, tc.family+"_bucket", tc.labels)
		les := map[string]bool{}
		for _, b := range buckets {
			les[b.labels["le"]] = true
		}
		for _, le := range []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"} {
			if !les[le] {
				t.Errorf("%s_bucket: no le=%q bucket (have %v)", tc.family, le, les)
			}
		}
		if len(buckets) != 14 {
			t.Errorf("%s_bucket: %d buckets, want 14", tc.family, len(buckets))
		}
	}
	for _, unwanted := range []string{"otel_scope_", "target_info"} {
		if strings.Contains(body, unwanted) {
			t.Errorf("metrics output contains %q:\n%s", unwanted, body)
		}
	}
}

func TestMiddlewareContinuesRemoteTrace(t *testing.T) {
	tel := mustNew(t, Config{})
	var got trace.SpanContext
	h := tel.Middleware("edge", "global", nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = trace.SpanContextFromContext(r.Context())
	}))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("traceparent", parent)
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !got.IsValid() || got.SpanID().String() == "00f067aa0ba902b7" {
		t.Fatalf("handler span context = %v, want a new span in the caller's trace", got)
	}
	spans, ok := tel.Sink().Trace("4bf92f3577b34da6a3ce929d0e0e4736")
	if !ok || len(spans) != 1 || spans[0].ParentID != "00f067aa0ba902b7" {
		t.Fatalf("server span = %+v, want the remote span as parent", spans)
	}
	if sum := tel.Sink().RecentTraces(1, false); len(sum) != 1 || sum[0].Root != "GET" {
		t.Errorf("summary = %+v, want the server span (remote parent) as root", sum)
	}
}

func TestMiddlewareRecordsPanicAsServerError(t *testing.T) {
	tel := mustNew(t, Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	h := tel.Middleware("stamp", "eastus", nil)(mux)
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the handler's panic re-raised", v)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/boom", nil))
	}()
	_, samples := scrape(t, tel.MetricsHandler())
	if got := find(samples, "http_server_request_duration_seconds_count", map[string]string{"http_route": "/boom", "http_response_status_code": "500"}); len(got) != 1 {
		t.Errorf("panic not recorded as a 500: %+v", got)
	}
	if errs := tel.Sink().RecentTraces(0, true); len(errs) != 1 {
		t.Errorf("error traces = %+v, want the panicking request", errs)
	}
}

func TestTransportRecordsTransportErrors(t *testing.T) {
	tel := mustNew(t, Config{})
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	client := &http.Client{Transport: tel.Transport(nil, "partner", "westeurope")}
	if _, err := client.Get(url + "/v1/shipments"); err == nil {
		t.Fatal("request to a closed server succeeded")
	}
	_, samples := scrape(t, tel.MetricsHandler())
	if got := find(samples, "contoso_dependency_duration_seconds_count", map[string]string{"dependency": "partner", "outcome": "error"}); len(got) != 1 || got[0].value != 1 {
		t.Errorf("transport error not recorded: %+v", got)
	}
	errs := tel.Sink().RecentTraces(0, true)
	if len(errs) != 1 || errs[0].Root != "partner GET" {
		t.Errorf("error traces = %+v, want the failed call", errs)
	}
}

func TestRouteOf(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"", RouteUnmatched},
		{"/", "/"},
		{"GET /api/products/{id}", "/api/products/{id}"},
		{"POST  /api/orders", "/api/orders"},
		{"example.com/api/x", "/api/x"},
		{"GET example.com/api/{rest...}", "/api/{rest...}"},
	} {
		if got := routeOf(tc.pattern); got != tc.want {
			t.Errorf("routeOf(%q) = %q, want %q", tc.pattern, got, tc.want)
		}
	}
}

func TestNilTelemetryIsOff(t *testing.T) {
	var tel *Telemetry
	ctx, span := tel.Tracer("x").Start(context.Background(), "op")
	span.End()
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("nil telemetry tracer made a recording span")
	}
	if c, err := tel.Meter("x").Int64Counter("c"); err != nil {
		t.Errorf("nil telemetry meter: %v", err)
	} else {
		c.Add(context.Background(), 1)
	}
	called := false
	h := tel.Middleware("c", "r", nil)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if !called {
		t.Error("nil telemetry middleware did not call the handler")
	}
	if tel.Transport(nil, "d", "r") != http.DefaultTransport {
		t.Error("nil telemetry transport is not the base")
	}
	if tel.Propagator() == nil {
		t.Error("nil telemetry has no propagator")
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil telemetry metrics answered %d", rec.Code)
	}
	sink := tel.Sink()
	if sink != nil {
		t.Fatal("nil telemetry has a sink")
	}
	if _, ok := sink.Increase(MetricHTTPServerDuration, nil, time.Minute); ok {
		t.Error("nil sink answered Increase")
	}
	if _, _, ok := sink.Last("x", nil); ok {
		t.Error("nil sink answered Last")
	}
	if sink.Collect(context.Background()) != nil || sink.RecentTraces(1, false) != nil || sink.RecentLogs(1, slog.LevelWarn) != nil {
		t.Error("nil sink is not empty")
	}
	tel.Run(context.Background()) // returns at once
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("nil Shutdown: %v", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no service", Config{}},
		{"negative trace capacity", Config{Service: "s", TraceCapacity: -1}},
		{"negative log capacity", Config{Service: "s", LogCapacity: -1}},
		{"empty tiers", Config{Service: "s", Tiers: []Tier{}}},
		{"zero resolution", Config{Service: "s", Tiers: []Tier{{Retention: time.Minute}}}},
		{"retention below resolution", Config{Service: "s", Tiers: []Tier{{Resolution: time.Minute, Retention: time.Second}}}},
		{"coarse before fine", Config{Service: "s", Tiers: []Tier{{time.Minute, time.Hour}, {time.Second, time.Minute}}}},
		{"too many snapshots", Config{Service: "s", Tiers: []Tier{{time.Millisecond, time.Hour}}}},
		{"OTLP endpoint not a URL", Config{Service: "s", Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"})}},
		{"OTLP bad timeout", Config{Service: "s", Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"})}},
		{"OTLP bad compression", Config{Service: "s", Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"})}},
		{"OTLP bad headers", Config{Service: "s", Getenv: env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tel, err := New(context.Background(), tc.cfg)
			if err == nil {
				tel.Shutdown(context.Background())
				t.Fatal("New accepted the config")
			}
			if errors.Is(err, context.Canceled) {
				t.Fatalf("unexpected error %v", err)
			}
		})
	}
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// Middleware outside middleware that replaces the request (so that the
// lines that middleware logs carry the trace) learns the route from
// SetRoute; a proxy names a template and its region with SetRoute and
// SetRegion. Flows come from the pattern when it names a method, from the
// method and path otherwise.
func TestSetRouteAndRegionNameTheRequest(t *testing.T) {
	tel := mustNew(t, Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/products/{id}", func(w http.ResponseWriter, r *http.Request) {})
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		SetRoute(r.Context(), r.Pattern)
	})
	replacing := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), struct{}{}, 1)))
		})
	}
	flow := func(p string) string {
		if strings.HasPrefix(p, "GET /api/products") {
			return "browse"
		}
		return ""
	}
	stamp := tel.Middleware("stamp", "westeurope", flow)(replacing(inner))
	proxy := tel.Middleware("edge", "global", flow)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetRegion(r.Context(), "northeurope")
		SetRoute(r.Context(), "/api/*")
	}))
	for _, h := range []http.Handler{stamp, proxy} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api/products/p1", nil))
	}
	SetRoute(context.Background(), "/ignored") // no Middleware: nothing happens
	SetRegion(context.Background(), "ignored")

	_, samples := scrape(t, tel.MetricsHandler())
	for _, labels := range []map[string]string{
		{"component": "stamp", "http_route": "/api/products/{id}", "region": "westeurope", "flow": "browse"},
		{"component": "edge", "http_route": "/api/*", "region": "northeurope", "flow": "browse"},
	} {
		if got := find(samples, "http_server_request_duration_seconds_count", labels); len(got) != 1 {
			t.Errorf("no request recorded with %v: %+v", labels, find(samples, "http_server_request_duration_seconds_count", nil))
		}
	}
	names := map[string]string{}
	for _, sum := range tel.Sink().RecentTraces(0, false) {
		names[sum.Root] = sum.Region
	}
	if names["GET /api/products/{id}"] != "westeurope" || names["GET /api/*"] != "northeurope" {
		t.Errorf("server spans (name: region) = %v", names)
	}
}

// Every 429 answer is counted, by component, region, route and flow.
func TestMiddlewareCountsThrottledRequests(t *testing.T) {
	tel := mustNew(t, Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/orders", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
	})
	mux.HandleFunc("GET /api/orders", func(w http.ResponseWriter, r *http.Request) {})
	h := tel.Middleware("stamp", "eastus", flowOf)(mux)
	for _, m := range []string{http.MethodPost, http.MethodPost, http.MethodGet} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(m, "/api/orders", nil))
	}
	_, samples := scrape(t, tel.MetricsHandler())
	got := find(samples, "contoso_requests_throttled_total", nil)
	want := map[string]string{"component": "stamp", "region": "eastus", "http_route": "/api/orders", "flow": "checkout"}
	if len(got) != 1 || got[0].value != 2 || len(got[0].labels) != len(want) {
		t.Fatalf("throttled = %+v, want 2 with exactly %v", got, want)
	}
	for k, v := range want {
		if got[0].labels[k] != v {
			t.Errorf("throttled label %s = %q, want %q", k, got[0].labels[k], v)
		}
	}
}

// A call that names its caller's region and the instance it goes to is
// recorded with both: the region called as a label, the instance on the
// span only.
func TestTransportRecordsTheCallee(t *testing.T) {
	tel := mustNew(t, Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	client := &http.Client{Transport: tel.Transport(nil, "stamp", "global")}
	req, _ := http.NewRequestWithContext(WithCall(context.Background(), Call{From: "northeurope", Region: "westeurope", Instance: "westeurope-1"}), http.MethodGet, srv.URL+"/api/products", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, samples := scrape(t, tel.MetricsHandler())
	want := map[string]string{"dependency": "stamp", "region": "northeurope", "dependency_region": "westeurope", "outcome": "ok"}
	if got := find(samples, "contoso_dependency_duration_seconds_count", want); len(got) != 1 || len(got[0].labels) != len(want) {
		t.Errorf("dependency durations = %+v, want one with exactly %v", find(samples, "contoso_dependency_duration_seconds_count", nil), want)
	}
	sums := tel.Sink().RecentTraces(1, false)
	if len(sums) != 1 {
		t.Fatalf("traces = %+v", sums)
	}
	spans, _ := tel.Sink().Trace(sums[0].TraceID)
	if len(spans) != 1 || spans[0].Attributes[AttrDependencyInstance] != "westeurope-1" ||
		spans[0].Attributes[AttrDependencyRegion] != "westeurope" || spans[0].Attributes[AttrRegion] != "northeurope" {
		t.Errorf("client span = %+v", spans)
	}
}
