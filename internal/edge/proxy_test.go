package edge_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// The proxy path allocates what net/http needs and little more: no copy
// buffer per answer (they are pooled), no routing table per request. A
// 32 KiB buffer made per request, as io.Copy makes one, would alone be
// twice the bound (the race detector's own allocations aside).
func TestProxyAllocatesLittlePerRequest(t *testing.T) {
	stamp := benchStamp(t)
	h := benchEdge(t, stamp, nil).Handler()
	req := httptest.NewRequest(http.MethodGet, "/api/products/contoso-skyline-1-launch-edition", nil)
	req.RemoteAddr = "192.0.2.1:1234"
	serve := func() {
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n != len(benchBody) {
			t.Fatalf("status %d, %d bytes", w.code, w.n)
		}
	}
	for range 20 { // connections and pools warm
		serve()
	}
	const n = 300
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		serve()
	}
	runtime.ReadMemStats(&after)
	perRequest := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d bytes allocated per request (the stamp stand-in's and the client's share included)", perRequest)
	bound := uint64(16 << 10)
	if raceEnabled {
		bound = 28 << 10
	}
	if perRequest > bound {
		t.Fatalf("%d bytes allocated per request, want at most %d", perRequest, bound)
	}
}
