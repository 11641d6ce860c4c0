package loadtest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// The tool's own bookkeeping calls ride out a stamp that sheds them (429,
// Retry-After: 1) and one that fails (5xx), but not a refusal of the
// request itself (another 4xx).
// Mutation: without the 429 case in call's retry test, "shed twice, then
// served" goes red with the 429 itself.
func TestBookkeepingCallsRetryShedAndFailedAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []int
		want    int // the status call ends with: 200, or the error's code
		calls   int
	}{
		{"shed twice, then served", []int{429, 429, 200}, 200, 3},
		{"failed, then served", []int{503, 200}, 200, 2},
		{"refused", []int{404}, 404, 1},
		{"shed every time", []int{429, 429, 429, 429, 429, 429}, 429, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				code := tc.answers[min(i, len(tc.answers)-1)]
				if code != 200 {
					w.Header().Set("Retry-After", "1")
					w.Header().Set("Content-Type", "application/problem+json")
					w.WriteHeader(code)
					_, _ = w.Write([]byte(`{"detail":"the stamp is at capacity; retry in a second"}`))
					return
				}
				_, _ = w.Write([]byte(`{"sku":"s","available":3,"held":0}`))
			}))
			defer srv.Close()
			r := &Runner{cfg: Config{Edge: srv.URL, Client: srv.Client(), Timeout: 2 * time.Second}}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var out stockView
			start := time.Now()
			err := r.call(ctx, http.MethodGet, "/api/inventory/s", "", "eastus", nil, &out)
			got := 200
			var se *statusError
			if errors.As(err, &se) {
				got = se.code
			} else if err != nil {
				t.Fatalf("call: %v", err)
			}
			if got != tc.want || int(n.Load()) != tc.calls {
				t.Fatalf("call ended with %d after %d calls (%v); want %d after %d", got, n.Load(), err, tc.want, tc.calls)
			}
			if tc.answers[0] == 429 && tc.calls > 1 && time.Since(start) < time.Second {
				t.Fatalf("retried a shed call after %s, before its Retry-After of a second", time.Since(start))
			}
		})
	}
}
