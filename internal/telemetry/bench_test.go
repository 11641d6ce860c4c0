package telemetry

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkMiddleware measures what Middleware adds to a read: the same
// mux with and without it, with every trace kept and with none.
func BenchmarkMiddleware(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/products/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"contoso-air-1","name":"Contoso Air"}`))
	})
	tel := mustNew(b, Config{})
	off := mustNew(b, Config{Getenv: func(k string) string {
		return map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}[k]
	}})
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", mux},
		{"telemetry", tel.Middleware("stamp", "westeurope", flowOf)(mux)},
		{"telemetry-unsampled", off.Middleware("stamp", "westeurope", flowOf)(mux)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/api/products/contoso-air-1", nil)
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(httptest.NewRecorder(), r)
			}
		})
	}
}
