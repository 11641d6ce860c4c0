package edge_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/telemetry"
)

// benchBody is the size of GET /api/products/{id} for a seed product
// (1,610 bytes), the request the measurements in docs/performance.md
// make.
var benchBody = []byte(`{"id":"contoso-skyline-1-launch-edition","description":"` + strings.Repeat("light shoes ", 128) + `"}`)[:1610]

// benchStamp answers its probes healthy and every other request with
// benchBody and the headers a stamp sets.
func benchStamp(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		if r.URL.Path == "/health/stamp" {
			_, _ = w.Write([]byte(`{"status":"healthy"}`))
			return
		}
		h.Set(httpapi.HeaderServedRegion, "westeurope")
		h.Set(httpapi.HeaderRequestID, r.Header.Get(httpapi.HeaderRequestID))
		_, _ = w.Write(benchBody)
	}))
	srv.Config.ErrorLog = nil
	tb.Cleanup(srv.Close)
	return srv.URL
}

// benchEdge runs an edge with one POP before stampURL and waits until it
// routes there.
func benchEdge(tb testing.TB, stampURL string, tel *telemetry.Telemetry) *edge.Edge {
	tb.Helper()
	e := runEdge(tb, nil, edge.Config{Telemetry: tel, Credential: "bench-credential", ClientRate: 1e9, ClientBurst: 1 << 30,
		Routes: []string{"GET /api/products/{id}"}},
		edge.StampInfo{ID: "westeurope.a", Region: "westeurope", URL: stampURL})
	deadline := time.Now().Add(10 * time.Second)
	for got, _ := near(e); got != "westeurope.a"; got, _ = near(e) {
		if time.Now().After(deadline) {
			tb.Fatalf("POP routes to %q, want westeurope.a", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return e
}

// benchTelemetry is the edge's telemetry with the standard sampler
// variables env sets (nil: every trace kept).
func benchTelemetry(tb testing.TB, env map[string]string) *telemetry.Telemetry {
	tb.Helper()
	tel, err := telemetry.New(context.Background(), telemetry.Config{Service: telemetry.ServiceEdge, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// reverseProxy is the baseline: the standard library's reverse proxy to
// the same stamp, with the same connection pool size, adding the same
// credential.
func reverseProxy(tb testing.TB, stampURL string) http.Handler {
	tb.Helper()
	target, err := url.Parse(stampURL)
	if err != nil {
		tb.Fatal(err)
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(httpapi.HeaderEdgeCredential, "bench-credential")
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
	}
}

// benchClients is how many clients per core send at once over the
// network, as a load generator with many connections would.
const benchClients = 16

// benchClient keeps an idle connection per parallel client.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256,
	DialContext: (&net.Dialer{}).DialContext}}

func benchGet(b *testing.B, url string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set(edge.HeaderClientRegion, "westeurope")
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n != int64(len(benchBody)) {
		b.Fatalf("GET %s = %d with %d bytes", url, resp.StatusCode, n)
	}
}

// BenchmarkProxy measures GET /api/products/{id} through the edge over
// loopback, side by side with the same request straight to the stamp and
// through httputil.ReverseProxy: the ratios are the edge's cost over a
// bare proxy. The in-process cases serve one request at a time through
// the handler alone (no client connection), to count its allocations and
// to profile it (-cpuprofile) without the client's share.
func BenchmarkProxy(b *testing.B) {
	stamp := benchStamp(b)
	path := "/api/products/contoso-skyline-1-launch-edition"
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"reverseproxy", reverseProxy(b, stamp)},
		{"edge", benchEdge(b, stamp, nil).Handler()},
		{"edge-traced", benchEdge(b, stamp, benchTelemetry(b, nil)).Handler()},
		{"edge-sampled-1pct", benchEdge(b, stamp, benchTelemetry(b, map[string]string{
			"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"})).Handler()},
	}
	b.Run("network/direct", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(benchClients)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				benchGet(b, stamp+path)
			}
		})
	})
	for _, tc := range handlers {
		srv := httptest.NewServer(tc.h)
		b.Cleanup(srv.Close)
		b.Run("network/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(benchClients)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchGet(b, srv.URL+path)
				}
			})
		})
	}
	for _, tc := range handlers {
		b.Run("handler/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.RemoteAddr = "192.0.2.1:1234"
			req.Header.Set(edge.HeaderClientRegion, "westeurope")
			w := &discardWriter{h: http.Header{}}
			for b.Loop() {
				clear(w.h)
				w.code, w.n = 0, 0
				tc.h.ServeHTTP(w, req)
				if w.code != http.StatusOK || w.n != len(benchBody) {
					b.Fatalf("status %d, %d bytes", w.code, w.n)
				}
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps only the status and the
// length written: the cheapest client a handler can have.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
