package edge_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/edge/edgetest"
	"github.com/contoso/shoes/internal/health"
)

// reportingHandler answers every request with code and body.
func reportingHandler(code int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	})
}

// memStamp serves h at addr on n, 1 ms away, and returns its URL.
func memStamp(t *testing.T, n *edgetest.Net, addr string, h http.Handler) string {
	t.Helper()
	n.SetLatency(addr, time.Millisecond)
	return n.Serve(t, addr, h)
}

// runLocalEdge runs an edge with cfg, one POP in westeurope and a probe
// every 50 ms, that reaches the given stamps directly on loopback, until
// the test ends.
func runLocalEdge(t *testing.T, cfg edge.Config, stamps ...edge.StampInfo) *edge.Edge {
	t.Helper()
	cfg.ProbeInterval = 50 * time.Millisecond
	return runEdge(t, nil, cfg, stamps...)
}

// waitStamps polls the POP's view until ok accepts it or the deadline
// passes, and returns the stamps by id with the POP's near set.
func waitStamps(t *testing.T, e *edge.Edge, within time.Duration, ok func(map[string]edge.StampStatus, []string) bool) (map[string]edge.StampStatus, []string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p := e.Status()[0]
		byID := map[string]edge.StampStatus{}
		for _, st := range p.Stamps {
			byID[st.ID] = st
		}
		if ok(byID, p.Near) {
			return byID, p.Near
		}
		if time.Now().After(deadline) {
			t.Fatalf("the POP did not reach the expected view within %s: %+v", within, p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The edge tells a drained stamp by the report's drained field: with it
// set, whatever the reason says, the stamp leaves rotation as drained; a
// report whose reason happens to read "drained" but whose field is false is
// an unhealthy stamp, not a drained one.
func TestEdgeReadsTheDrainedField(t *testing.T) {
	for _, tc := range []struct {
		id, body string
		code     int
		state    health.Status
		routing  string
	}{
		{"in-rotation", `{"status":"healthy","drained":false}`, http.StatusOK, health.Healthy, ""},
		{"drained-for-maintenance", `{"status":"unhealthy","reason":"maintenance window","drained":true}`, http.StatusServiceUnavailable, health.Drained, "drained"},
		{"drained-without-reason", `{"status":"unhealthy","drained":true}`, http.StatusServiceUnavailable, health.Drained, "drained"},
		{"reason-reads-drained", `{"status":"unhealthy","reason":"drained","drained":false}`, http.StatusServiceUnavailable, health.Unhealthy, "unhealthy"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := edgetest.NewNet()
				in := edge.StampInfo{ID: "westeurope.in", Region: "westeurope", URL: memStamp(t, n, "in.stamp:80", reportingHandler(http.StatusOK, `{"status":"healthy","drained":false}`))}
				probed := edge.StampInfo{ID: "westeurope." + tc.id, Region: "westeurope", URL: memStamp(t, n, "probed.stamp:80", reportingHandler(tc.code, tc.body))}
				e := runLocalEdge(t, edge.Config{DialContext: n.DialContext}, in, probed)
				// Both probed, and the routing decided since.
				stamps, near := waitStamps(t, e, 5*time.Second, func(s map[string]edge.StampStatus, _ []string) bool {
					return s[in.ID].Reached && s[probed.ID].Reached && !strings.HasPrefix(s[probed.ID].Routing, "unknown")
				})
				got := stamps[probed.ID]
				if got.State != tc.state || (tc.routing != "" && got.Routing != tc.routing) {
					t.Fatalf("stamp %s: state %s, routing %q; want %s, %q (last probe %q)", tc.id, got.State, got.Routing, tc.state, tc.routing, got.LastProbe)
				}
				if inNear := slices.Contains(near, probed.ID); inNear != tc.state.Routable() || !slices.Contains(near, in.ID) {
					t.Fatalf("near = %q; want %s in it: %v", near, probed.ID, tc.state.Routable())
				}
			})
		})
	}
}

// The tests below run in a testing/synctest bubble over a network in
// memory: routing by measured round trips does not depend on how busy
// the machine is.

// A real prober's drain reaches the edge through /health/stamp: the stamp
// leaves rotation as drained at the next probe and comes back when
// restored without the recovery probes a failure needs (Rise is set so
// high here that a recovery would outlast the test).
func TestEdgeFollowsAProberDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := edgetest.NewNet()
		p := health.NewProber(health.Config{Region: "westeurope", Interval: 50 * time.Millisecond, Checks: []health.Check{
			{Name: "ok", Run: func(context.Context) (string, error) { return "fine", nil }},
		}})
		ctx, stop := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		t.Cleanup(func() { stop(); <-done })
		stamp := edge.StampInfo{ID: "westeurope.1", Region: "westeurope", URL: memStamp(t, n, "one.stamp:80", p.StampHandler())}
		other := edge.StampInfo{ID: "westeurope.2", Region: "westeurope", URL: memStamp(t, n, "two.stamp:80", reportingHandler(http.StatusOK, `{"status":"healthy","drained":false}`))}
		e := runLocalEdge(t, edge.Config{Rise: 1000, DialContext: n.DialContext}, stamp, other)
		inRotation := func(s map[string]edge.StampStatus, near []string) bool {
			return s[stamp.ID].State == health.Healthy && len(near) == 2
		}
		waitStamps(t, e, 5*time.Second, inRotation)
		p.SetDrained(true)
		// The probe's verdict comes first, the decision at the end of its
		// round: wait for both.
		stamps, near := waitStamps(t, e, 5*time.Second, func(s map[string]edge.StampStatus, _ []string) bool {
			return s[stamp.ID].State == health.Drained && !strings.HasPrefix(s[stamp.ID].Routing, "within") && !strings.HasPrefix(s[stamp.ID].Routing, "nearest")
		})
		if got := stamps[stamp.ID]; got.Routing != "drained" || got.LastProbe != "drained by an operator" || len(near) != 1 || near[0] != other.ID {
			t.Fatalf("drained stamp: %+v, near %q; want it out of rotation as drained", got, near)
		}
		p.SetDrained(false)
		waitStamps(t, e, 5*time.Second, inRotation)
	})
}
