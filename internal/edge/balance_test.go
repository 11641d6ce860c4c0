package edge_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
)

// An instance busy with slow requests gets few new ones while another of
// its region and release is free: of two picks the edge sends each request
// to the one with fewer of its requests in flight. Stamp "slow" holds every
// API request until the test ends; with two instances a request reaches it
// only when both picks fall on it, a quarter of the time (50 of 200 on
// average, 80 is five standard deviations away), against half with one
// random pick. (Mutation tried: route with Pick instead of PickLessLoaded
// sends about 100 of 200 to "slow".)
func TestABusyInstanceGetsFewerRequests(t *testing.T) {
	release := make(chan struct{})
	var slowGot, fastGot atomic.Int64
	stampServer := func(name string, got *atomic.Int64, hold bool) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Path == "/health/stamp" {
				_, _ = w.Write([]byte(`{"status":"healthy"}`))
				return
			}
			got.Add(1)
			if hold {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
			_, _ = w.Write([]byte(name))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	slowURL, fastURL := stampServer("slow", &slowGot, true), stampServer("fast", &fastGot, false)
	var once sync.Once
	end := func() { once.Do(func() { close(release) }) }
	t.Cleanup(end) // before the servers close: no request left held

	cfg := edge.Config{ClientRate: 1e9, ClientBurst: 1 << 30, Timeout: time.Minute,
		Policy: edge.Policy{Sensitivity: time.Hour}} // RTT noise never takes a stamp out of the near set
	e := runLocalEdge(t, cfg,
		edge.StampInfo{ID: "westeurope.slow", Region: "westeurope", URL: slowURL, Release: "v1"},
		edge.StampInfo{ID: "westeurope.fast", Region: "westeurope", URL: fastURL, Release: "v1"})
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	waitStamps(t, e, 10*time.Second, func(_ map[string]edge.StampStatus, near []string) bool { return len(near) == 2 })

	const n = 200
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for i := range n {
		wg.Go(func() {
			resp, err := http.Get(front.URL + "/api/products")
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
		// The next request is sent once this one is in flight at "slow" or
		// answered by "fast", so that the edge counts it.
		deadline := time.Now().Add(10 * time.Second)
		for slowGot.Load()+fastGot.Load() < int64(i+1) {
			if time.Now().After(deadline) {
				t.Fatalf("request %d reached no stamp within 10 s", i+1)
			}
			time.Sleep(time.Millisecond)
		}
	}
	slow := slowGot.Load()
	end()
	wg.Wait()
	close(statuses)
	for code := range statuses {
		if code != http.StatusOK {
			t.Errorf("a request was answered %d", code)
		}
	}
	if slow >= 80 {
		t.Fatalf("the busy instance got %d of %d requests, want fewer than 80 (a quarter on average)", slow, n)
	}
	t.Logf("the busy instance got %d of %d requests", slow, n)
}
