package stamp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/telemetry"
)

type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lineBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// A stamp's telemetry: every line its middleware logs for a request (the
// access log, a refused credential) carries the request's trace, the
// request is named by its route pattern, an accepted order is counted, and
// the store's work inside POST /api/orders shows as child spans.
func TestStampRequestsAreTracedLoggedAndCounted(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	iss, verifier := testIssuer(t)
	tel, err := telemetry.New(t.Context(), telemetry.Config{Service: telemetry.ServiceStamp, Region: "westeurope"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	var logs lineBuffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}), tel.Sink()))
	const credential = "edge-credential"
	s, err := stamp.New(stamp.Config{Region: "westeurope", Store: st, Verifier: verifier, Seed: true, ProbeInterval: 100 * time.Millisecond,
		EdgeCredential: credential, Telemetry: tel, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { stop(); <-served })
	base := "http://" + ln.Addr().String()
	send := func(method, path, token string, body string, cred bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if cred {
			req.Header.Set(httpapi.HeaderEdgeCredential, credential)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "order-1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	deadline := time.Now().Add(30 * time.Second)
	for send(http.MethodGet, "/health/ready", "", "", false).StatusCode != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the stamp is not ready within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	product := shop.SeedCatalog()[0]
	traces := map[string]string{} // what -> trace id
	if r := send(http.MethodGet, "/api/products/"+product.ID, "", "", true); r.StatusCode != http.StatusOK {
		t.Fatalf("GET product = %d", r.StatusCode)
	} else {
		traces["product"] = r.Header.Get(telemetry.HeaderTraceID)
	}
	if r := send(http.MethodGet, "/api/products", "", "", false); r.StatusCode != http.StatusForbidden {
		t.Fatalf("GET without the edge credential = %d", r.StatusCode)
	} else {
		traces["forbidden"] = r.Header.Get(telemetry.HeaderTraceID)
	}
	token, err := iss.Mint("buyer", false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	order := `{"items":[{"sku":"` + shop.SKU(product.ID, product.Sizes[0]) + `","quantity":1}]}`
	if r := send(http.MethodPost, "/api/orders", token, order, true); r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST order = %d", r.StatusCode)
	} else {
		traces["order"] = r.Header.Get(telemetry.HeaderTraceID)
	}

	// The lines logged for each request carry its trace.
	logged := map[string]bool{}
	for _, line := range logs.lines() {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["request_id"] == nil {
			continue
		}
		id, _ := rec["trace_id"].(string)
		if id == "" || rec["span_id"] == nil {
			t.Errorf("a request's line without its trace: %s", line)
		}
		for what, tid := range traces {
			if id == tid {
				logged[what] = true
			}
		}
	}
	for what := range traces {
		if !logged[what] {
			t.Errorf("no line logged with the trace of the %s request", what)
		}
	}

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	metrics := rec.Body.String()
	for _, want := range []string{
		`http_server_request_duration_seconds_count{component="stamp",flow="browse",http_request_method="GET",http_response_status_code="200",http_route="/api/products/{id}",region="westeurope"} 1`,
		`http_server_request_duration_seconds_count{component="stamp",flow="browse",http_request_method="GET",http_response_status_code="403",http_route="unmatched",region="westeurope"} 1`,
		`contoso_orders_accepted_total{region="westeurope"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	spans, _ := tel.Sink().Trace(traces["order"])
	var names []string
	for _, sp := range spans {
		names = append(names, sp.Name)
	}
	for _, want := range []string{"POST /api/orders", "get idempotency", "publish orders.new"} {
		if !slices.Contains(names, want) {
			t.Errorf("the order's trace has spans %q, want %q among them", names, want)
		}
	}
}

// The edge names the requests it forwards by the stamp's API routes: every
// one of them, and only routes under /api/.
func TestAPIRoutesAreThePublicRoutes(t *testing.T) {
	routes := stamp.APIRoutes()
	if len(routes) < 10 || !slices.Contains(routes, "POST /api/orders") || !slices.Contains(routes, "GET /api/products/{id}") {
		t.Fatalf("APIRoutes = %q", routes)
	}
	for _, r := range routes {
		if _, path, _ := strings.Cut(r, " "); !strings.HasPrefix(path, "/api/") {
			t.Errorf("APIRoutes has %q, outside /api/", r)
		}
	}
}
