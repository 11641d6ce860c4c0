package telemetry

import (
	"bytes"
	"compress/gzip"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// One process (a "stamp") exports its traces and metrics over OTLP/HTTP with
// the real SDK exporters to another process's sink (the operations plane):
// its spans are kept with their service and region, and its request
// histogram answers the same window queries as local metrics do.
func TestOTLPReceiverKeepsAnotherProcesssSpansAndMetrics(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	rx, err := New(ctx, Config{Service: "contoso-ops", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	recv := httptest.NewServer(rx.Sink().OTLPHandler())
	t.Cleanup(recv.Close)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL, "OTEL_METRIC_EXPORT_INTERVAL": "60000",
		"OTEL_SERVICE_NAME": "contoso-stamp"}
	tx, err := New(ctx, Config{Service: "ignored-for-OTEL_SERVICE_NAME", Region: "westeurope", Instance: "stamp-1",
		Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	app := tx.Middleware("stamp", "westeurope", func(string) string { return "browse" })(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	var traceID string
	for range 3 {
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/products", nil))
		traceID = rec.Header().Get(HeaderTraceID)
	}
	if err := rx.Sink().Collect(ctx); err != nil { // before anything arrived
		t.Fatal(err)
	}
	if err := tx.Shutdown(ctx); err != nil { // flushes both exporters
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if err := rx.Sink().Collect(ctx); err != nil {
		t.Fatal(err)
	}

	spans, ok := rx.Sink().Trace(traceID)
	if !ok || len(spans) == 0 {
		t.Fatalf("trace %s not received", traceID)
	}
	if got := spans[0].Attributes["service.name"]; got != "contoso-stamp" {
		t.Errorf("span's service.name = %q, want contoso-stamp (OTEL_SERVICE_NAME)", got)
	}
	if got := spans[0].Attributes["cloud.region"]; got != "westeurope" {
		t.Errorf("span's cloud.region = %q", got)
	}
	if spans[0].Kind != "server" {
		t.Errorf("span kind %q, want server", spans[0].Kind)
	}
	match := Labels{"component": "stamp", "region": "westeurope", "service.instance.id": "stamp-1"}
	n, ok := rx.Sink().Increase(MetricHTTPServerDuration, match, time.Minute)
	if !ok || n != 3 {
		t.Fatalf("received requests = %v (ok %v), want 3", n, ok)
	}
	if q, ok := rx.Sink().Quantile(MetricHTTPServerDuration, match, 0.99, time.Minute); !ok || q <= 0 {
		t.Errorf("p99 of the received histogram = %v (ok %v)", q, ok)
	}
	// Series of another instance of the same service stay apart.
	if _, ok := rx.Sink().Increase(MetricHTTPServerDuration, Labels{"service.instance.id": "stamp-2"}, time.Minute); ok {
		t.Error("a series of an instance that never exported matched")
	}
}

// Received series leave the history once their sender stops exporting.
func TestOTLPReceivedSeriesExpire(t *testing.T) {
	clock := newFakeClock(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	rx, err := New(t.Context(), Config{Service: "contoso-ops", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rx.Sink().OTLPHandler())
	t.Cleanup(srv.Close)
	post(t, srv.URL+OTLPMetricsPath, "application/x-protobuf", "", gaugeRequest("queue.depth", 7), http.StatusOK)
	if err := rx.Sink().Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v, _, ok := rx.Sink().Last("queue.depth", nil); !ok || v != 7 {
		t.Fatalf("received gauge = %v (ok %v), want 7", v, ok)
	}
	clock.Advance(remoteTTL + time.Second)
	if err := rx.Sink().Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v, _, ok := rx.Sink().Last("queue.depth", nil); ok {
		t.Fatalf("a gauge not exported for %s is still %v", remoteTTL, v)
	}
}

func gaugeRequest(name string, v float64) []byte {
	req := &colmetricpb.ExportMetricsServiceRequest{ResourceMetrics: []*metricpb.ResourceMetrics{{
		ScopeMetrics: []*metricpb.ScopeMetrics{{Metrics: []*metricpb.Metric{{
			Name: name,
			Data: &metricpb.Metric_Gauge{Gauge: &metricpb.Gauge{DataPoints: []*metricpb.NumberDataPoint{{
				Attributes: []*commonpb.KeyValue{{Key: "stream", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "orders"}}}},
				Value:      &metricpb.NumberDataPoint_AsDouble{AsDouble: v},
			}}}},
		}}}},
	}}}
	b, _ := proto.Marshal(req)
	return b
}

func post(t *testing.T, url, contentType, encoding string, body []byte, want int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Errorf("POST %s (%s, %q) = %d, want %d", url, contentType, encoding, resp.StatusCode, want)
	}
	if want >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("POST %s: a %d that is not problem+json", url, resp.StatusCode)
	}
}

func TestOTLPReceiverRefusesBadRequests(t *testing.T) {
	rx, err := New(t.Context(), Config{Service: "contoso-ops"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rx.Sink().OTLPHandler())
	t.Cleanup(srv.Close)
	good := gaugeRequest("x", 1)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(good)
	_ = zw.Close()
	var bomb bytes.Buffer // decompresses to more than the limit
	zw = gzip.NewWriter(&bomb)
	_, _ = zw.Write(make([]byte, maxOTLPBytes+1))
	_ = zw.Close()
	for _, c := range []struct {
		name, path, ct, enc string
		body                []byte
		want                int
	}{
		{"protobuf", OTLPMetricsPath, "application/x-protobuf", "", good, http.StatusOK},
		{"gzip protobuf", OTLPMetricsPath, "application/x-protobuf", "gzip", gz.Bytes(), http.StatusOK},
		{"traces, empty request", OTLPTracesPath, "application/x-protobuf", "", nil, http.StatusOK},
		{"JSON encoding", OTLPMetricsPath, "application/json", "", []byte(`{}`), http.StatusUnsupportedMediaType},
		{"no content type", OTLPMetricsPath, "", "", good, http.StatusUnsupportedMediaType},
		{"not protobuf", OTLPMetricsPath, "application/x-protobuf", "", []byte("\xff\xff\xff garbage"), http.StatusBadRequest},
		{"bad gzip", OTLPMetricsPath, "application/x-protobuf", "gzip", good, http.StatusBadRequest},
		{"unknown encoding", OTLPMetricsPath, "application/x-protobuf", "br", good, http.StatusUnsupportedMediaType},
		{"gzip bomb", OTLPMetricsPath, "application/x-protobuf", "gzip", bomb.Bytes(), http.StatusRequestEntityTooLarge},
		{"too large", OTLPTracesPath, "application/x-protobuf", "", make([]byte, maxOTLPBytes+1), http.StatusRequestEntityTooLarge},
		{"unknown path", "/v1/logs", "application/x-protobuf", "", good, http.StatusNotFound},
	} {
		t.Run(c.name, func(t *testing.T) { post(t, srv.URL+c.path, c.ct, c.enc, c.body, c.want) })
	}
}

// FuzzOTLPMetrics feeds arbitrary bytes to the metrics receiver: it never
// panics, it answers 200 exactly when the body is an OTLP metrics request
// (as the protobuf package itself decodes it) and 400 otherwise, whatever
// it accepts the history can collect, and a request of one gauge with one
// point can be read back with its value.
func FuzzOTLPMetrics(f *testing.F) {
	f.Add(gaugeRequest("x", 1))
	f.Add(gaugeRequest("queue.depth", -2.5))
	f.Add([]byte{})
	f.Add([]byte("\xff\xff\xff garbage"))
	f.Fuzz(func(t *testing.T, body []byte) {
		rx, err := New(t.Context(), Config{Service: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		var want colmetricpb.ExportMetricsServiceRequest
		decodes := proto.Unmarshal(body, &want) == nil
		req := httptest.NewRequest(http.MethodPost, OTLPMetricsPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		rec := httptest.NewRecorder()
		rx.Sink().OTLPHandler().ServeHTTP(rec, req)
		if decodes && rec.Code != http.StatusOK || !decodes && rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d for %d bytes that decode: %v", rec.Code, len(body), decodes)
		}
		if err := rx.Sink().Collect(t.Context()); err != nil {
			t.Fatal(err)
		}
		name, v, ok := onlyGaugePoint(&want)
		if !decodes || !ok {
			return
		}
		got, _, found := rx.Sink().Last(name, nil)
		if !found || got != v && !(math.IsNaN(got) && math.IsNaN(v)) {
			t.Fatalf("the one gauge %q = %v was received; Last = %v (found %v)", name, v, got, found)
		}
	})
}

// onlyGaugePoint is the name and value of the one data point of req when
// req holds one metric, a gauge with one point.
func onlyGaugePoint(req *colmetricpb.ExportMetricsServiceRequest) (name string, v float64, ok bool) {
	var metrics []*metricpb.Metric
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			metrics = append(metrics, sm.GetMetrics()...)
		}
	}
	if len(metrics) != 1 || len(metrics[0].GetGauge().GetDataPoints()) != 1 {
		return "", 0, false
	}
	dp := metrics[0].GetGauge().GetDataPoints()[0]
	if i, isInt := dp.GetValue().(*metricpb.NumberDataPoint_AsInt); isInt {
		return metrics[0].GetName(), float64(i.AsInt), true
	}
	return metrics[0].GetName(), dp.GetAsDouble(), true
}
