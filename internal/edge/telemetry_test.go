package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/telemetry"
)

// failingStamp passes its probes and answers every forwarded request 503.
func failingStamp(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health/stamp" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"healthy"}`))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The edge's telemetry names what an operator asks about: the POP's region
// (not "global") and the stamps' route templates on its requests, the
// called stamp's region on its dependency latency, and counters of its
// retries and ejections (with the ejected stamp's release, when it
// announced one). The ejection's log line carries the request's
// trace.
func TestEdgeTelemetryNamesPOPRouteAndStamp(t *testing.T) {
	tel, err := telemetry.New(context.Background(), telemetry.Config{Service: telemetry.ServiceEdge})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	var logs syncBuffer
	cfg := edge.Config{Telemetry: tel, EjectAfter: 1, ProbeInterval: 50 * time.Millisecond,
		Routes: []string{"GET /api/products/{id}", "POST /api/orders"},
		Logger: slog.New(telemetry.LogHandler(slog.NewJSONHandler(&logs, nil), tel.Sink()))}
	e := runEdge(t, nil, cfg,
		edge.StampInfo{ID: "westeurope.a", Region: "westeurope", URL: failingStamp(t), Release: "v7"},
		edge.StampInfo{ID: "northeurope.a", Region: "northeurope", URL: failingStamp(t)})
	deadline := time.Now().Add(5 * time.Second)
	for got, _ := near(e); !strings.Contains(got, ",") || len(e.Status()[0].Stamps) != 2; got, _ = near(e) {
		if time.Now().After(deadline) {
			t.Fatalf("POP routes to %q, want both stamps", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("GET %s = %d, want 503", path, resp.StatusCode)
		}
		rec := httptest.NewRecorder()
		tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Body.String()
	}
	// Both stamps fail the request: it is retried on the other, and each is
	// ejected (EjectAfter 1).
	metrics := get("/api/products/p1")
	for _, want := range []string{
		`http_server_request_duration_seconds_count{component="edge",flow="browse",http_request_method="GET",http_response_status_code="503",http_route="/api/products/{id}",region="westeurope"} 1`,
		`contoso_dependency_duration_seconds_count{dependency="stamp",dependency_region="westeurope",outcome="error",region="westeurope"} 1`,
		`contoso_dependency_duration_seconds_count{dependency="stamp",dependency_region="northeurope",outcome="error",region="westeurope"} 1`,
		`contoso_edge_retries_total{region="westeurope"} 1`,
		`contoso_edge_ejections_total{dependency_region="westeurope",dependency_release="v7",region="westeurope"} 1`,
		`contoso_edge_ejections_total{dependency_region="northeurope",region="westeurope"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grep(metrics, "_count"))
		}
	}
	// A path outside the stamps' routes is named by the edge's own template.
	metrics = get("/api/somewhere/else")
	want := `http_server_request_duration_seconds_count{component="edge",flow="",http_request_method="GET",http_response_status_code="503",http_route="/api/*",region="westeurope"} 1`
	if !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s:\n%s", want, grep(metrics, "http_server_request_duration_seconds_count"))
	}
	if strings.Contains(metrics, `"global"`) {
		t.Errorf("the edge still records region global:\n%s", grep(metrics, "global"))
	}

	// The client spans name the stamp called; the ejection's log lines the
	// trace.
	sums := tel.Sink().RecentTraces(0, false)
	var traceID string
	for _, s := range sums {
		if s.Root == "GET /api/products/{id}" {
			traceID = s.TraceID
		}
	}
	spans, _ := tel.Sink().Trace(traceID)
	instances := map[string]string{}
	for _, s := range spans {
		if s.Kind == "client" {
			instances[s.Attributes[telemetry.AttrDependencyInstance]] = s.Attributes[telemetry.AttrDependencyRegion]
		}
	}
	if instances["westeurope.a"] != "westeurope" || instances["northeurope.a"] != "northeurope" {
		t.Errorf("client spans of trace %s name %v, want both stamps with their regions", traceID, instances)
	}
	ejections := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "stamp ejected after consecutive failures" {
			ejections++
			if rec["trace_id"] != traceID || rec["span_id"] == nil {
				t.Errorf("ejection logged without the request's trace %s: %s", traceID, line)
			}
		}
	}
	if ejections != 2 {
		t.Errorf("%d ejections logged, want 2:\n%s", ejections, logs.String())
	}
}

func grep(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
