package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// hostileMessage is an error message that would run script if the page
// inserted it as markup.
const hostileMessage = `checkout failed: <img src=x onerror="window.pwned=1"> & <b>bold</b>`

const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

var fixtureTime = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fixture is a snapshot of a system with three regions: one healthy, one
// degraded, one with its only stamp drained.
func fixture() *Snapshot {
	return &Snapshot{
		Time: fixtureTime,
		Regions: []Region{
			{
				Name: "westeurope", State: health.Healthy, Reason: "all stamps healthy",
				Stamps: []Stamp{
					{ID: "we-1", State: health.Healthy, URL: "http://127.0.0.1:41001", Release: "v1"},
					{ID: "we-2", State: health.Healthy, URL: "http://127.0.0.1:41002", Release: "v2"},
				},
				RPS: 120.5, ErrorRatio: 0.001, P99Ms: 85,
			},
			{
				Name: "northeurope", State: health.Degraded, Reason: "ne-2 degraded: p99 above 400 ms",
				Stamps: []Stamp{
					{ID: "ne-1", State: health.Healthy, URL: "http://127.0.0.1:42001", Release: "v1"},
					{ID: "ne-2", State: health.Degraded, Reason: "p99 612 ms", URL: "http://127.0.0.1:42002", Release: "v2"},
				},
				RPS: 80, ErrorRatio: 0.02, P99Ms: 612,
			},
			{
				Name: "eastus", State: health.Unhealthy, Reason: "no stamp in rotation",
				Stamps: []Stamp{
					{ID: "eus-1", State: health.Drained, Reason: "drained by an operator", URL: "http://127.0.0.1:43001", Release: "v1"},
				},
				RPS: 0, ErrorRatio: 0, P99Ms: 0,
			},
		},
		POPs: []POP{
			{Region: "westeurope", Routes: []string{"westeurope"}},
			{Region: "northeurope", Routes: []string{"northeurope", "westeurope"}},
			{Region: "eastus", Routes: []string{"westeurope"}, FailOpen: true},
		},
		Health: &HealthNode{
			ID: "system", Name: "Contoso Shoes", Kind: "system", State: health.Degraded, Score: 0.8,
			Reason: "checkout degraded in northeurope",
			Children: []*HealthNode{
				{
					ID: "flow:browse", Name: "Browse products", Kind: "flow", State: health.Healthy, Score: 1, Reason: "ok",
					Children: []*HealthNode{
						{ID: "component:catalog", Name: "Catalog", Kind: "component", State: health.Healthy, Score: 1, Reason: "ok",
							Signals: []Signal{{Name: "p99 ms", Value: 85, State: health.Healthy, Degraded: 400, Unhealthy: 1000, Reason: "below 400"}}},
					},
				},
				{
					ID: "flow:checkout", Name: "Check out", Kind: "flow", State: health.Degraded, Score: 0.6, Reason: "orders degraded",
					Children: []*HealthNode{
						{
							ID: "component:orders", Name: "Orders", Kind: "component", Region: "northeurope", State: health.Degraded, Score: 0.6,
							Reason: "error ratio 2%", Impact: "degrades checkout",
							Signals: []Signal{
								{Name: "error ratio", Value: 0.02, State: health.Degraded, Degraded: 0.01, Unhealthy: 0.05, Reason: "above 1%"},
								{Name: "p99 ms", Value: 612, State: health.Degraded, Degraded: 400, Unhealthy: 1000, Reason: "above 400"},
							},
							Children: []*HealthNode{
								{ID: "dependency:payments", Name: "Payments partner", Kind: "dependency", State: health.Unknown, Reason: "no probe yet"},
							},
						},
					},
				},
			},
		},
		SLOs: []SLOStatus{
			{
				SLO: "checkout-availability", Flow: "flow:checkout", Kind: "availability", Objective: 0.999,
				Windows: []SLOWindow{
					{Window: "5m", Total: 1000, Bad: 20, ErrorRatio: 0.02, BurnRate: 20, OK: false},
					{Window: "1h", Total: 12000, Bad: 60, ErrorRatio: 0.005, BurnRate: 5, OK: true},
				},
				BudgetRemaining: 0.2, Alerts: []string{"checkout-availability fast burn"},
			},
			{
				SLO: "browse-latency", Flow: "flow:browse", Kind: "latency", Objective: 0.99,
				Windows:         []SLOWindow{{Window: "5m", Total: 5000, Bad: 5, ErrorRatio: 0.001, BurnRate: 0.1, OK: true}},
				BudgetRemaining: 0.97, Alerts: []string{},
			},
		},
		Errors: []ErrorEntry{
			{Time: fixtureTime.Add(-2 * time.Second), Level: "ERROR", Message: hostileMessage, Region: "northeurope", TraceID: traceID,
				Attrs: map[string]string{"stamp": "ne-2", "route": "POST /api/orders"}},
			{Time: fixtureTime.Add(-5 * time.Second), Level: "ERROR", Message: "inventory cache miss storm", Region: "westeurope"},
		},
		Release: fixtureRelease(),
		Scaling: fixtureScaling(),
	}
}

// hostileScaleReason is a scaling reason that would be italic if the page
// inserted it as markup.
const hostileScaleReason = `utilisation <i>82%</i> above the target & rising`

// fixtureScaling is an autoscaler steering to 60 %: westeurope runs 2
// instances at 82 % and shedding, so it scaled out to 3 and the new
// instance took traffic 3.4 s after the load exceeded the target;
// northeurope is held at 4 by a pre-scale; eastus's pre-scale has ended.
func fixtureScaling() *Scaling {
	exceeded := fixtureTime.Add(-8 * time.Second)
	we := ScalingInputs{Instances: 2, Reporting: 2, InFlight: 16.4, Capacity: 20, Requests: 900, Shed: 12, Waiting: 3, P99Ms: 180, Min: 2, Max: 6,
		OrdersInProcess: 5, OrdersQueued: 40, OrdersOldestMs: 1200}
	return &Scaling{
		Policy: ScalingPolicy{Target: 0.6, Tolerance: 0.1, ScaleOutAfterSeconds: 2, ScaleInAfterSeconds: 60},
		Regions: []ScalingRegion{
			{Region: "eastus", Min: 1, Max: 4, PreScale: &ScalingPreScale{Min: 3, Until: fixtureTime.Add(-time.Hour)},
				Want: 1, Utilisation: 0, Inputs: ScalingInputs{Instances: 1, Min: 1, Max: 4}},
			{Region: "northeurope", Min: 2, Max: 8, PreScale: &ScalingPreScale{Min: 4, Until: fixtureTime.Add(2 * time.Hour), Active: true},
				Want: 4, Reason: "pre-scale: at least 4", Utilisation: 0.35,
				Inputs: ScalingInputs{Instances: 4, Reporting: 4, InFlight: 14, Capacity: 40, Requests: 1500, P99Ms: 95, Min: 4, Max: 8}},
			{Region: "westeurope", Min: 2, Max: 6, Want: 3, Reason: hostileScaleReason, Utilisation: 0.82, Inputs: we},
		},
		Events: []ScalingEvent{
			{At: fixtureTime.Add(-4600 * time.Millisecond), Region: "westeurope", Action: "serving", Instance: "we-3", ExceededAt: exceeded, ToTrafficMs: 3400},
			{At: fixtureTime.Add(-5 * time.Second), Region: "westeurope", Action: "started", Instance: "we-3"},
			{At: fixtureTime.Add(-6 * time.Second), Region: "westeurope", Action: "scale-out", From: 2, To: 3, Reason: hostileScaleReason, Inputs: &we, ExceededAt: exceeded},
			{At: fixtureTime.Add(-time.Minute), Action: "settings", Reason: `{"regions":{"northeurope":{"preScale":{"min":4}}}}`},
		},
	}
}

// hostileReason is a gate reason that would be bold if the page inserted
// it as markup.
const hostileReason = `p99 <b>612 ms</b> & rising`

// fixtureRelease is v2 replacing v1 in 50 % steps: westeurope's first step
// passed, northeurope's is holding, so both POP-applied splits are at 50 %
// and eastus's still at 0 %.
func fixtureRelease() *Release {
	t0 := fixtureTime.Add(-time.Minute)
	reading := func(h health.Status, n int, browse, checkout FlowReading) GateReading {
		return GateReading{Health: h, Instances: n, Flows: []FlowReading{browse, checkout}}
	}
	return &Release{
		ID: "20260501T115900Z-v2", Version: "v2", Env: "dev", By: "ops@contoso",
		From:  map[string]string{"westeurope": "v1", "northeurope": "v1", "eastus": "v1"},
		Phase: "shifting",
		Plan: []ReleaseStage{
			{Region: "westeurope", Percent: 50}, {Region: "northeurope", Percent: 50}, {Region: "eastus", Percent: 50},
			{Region: "westeurope", Percent: 100}, {Region: "northeurope", Percent: 100}, {Region: "eastus", Percent: 100},
		},
		Stage: 1,
		Steps: []ReleaseStep{
			{
				Region: "westeurope", Percent: 50, StartedAt: t0.Add(20 * time.Second), EndedAt: t0.Add(30 * time.Second), Verdict: "passed",
				New: reading(health.Healthy, 1, FlowReading{Flow: "browse", Requests: 412, P99Ms: 31}, FlowReading{Flow: "checkout", Requests: 40, ErrorRatio: 0.025, P99Ms: 88}),
				Old: reading(health.Healthy, 1, FlowReading{Flow: "browse", Requests: 398, P99Ms: 29}, FlowReading{Flow: "checkout", Requests: 38, ErrorRatio: 0.026, P99Ms: 90}),
			},
			{
				Region: "northeurope", Percent: 50, StartedAt: t0.Add(30 * time.Second), Verdict: "holding", Reason: hostileReason,
				New: reading(health.Degraded, 1, FlowReading{Flow: "browse", Requests: 12, P99Ms: 612}, FlowReading{Flow: "checkout", Requests: 1, P99Ms: 140}),
				Old: reading(health.Healthy, 1, FlowReading{Flow: "browse", Requests: 15, P99Ms: 35}, FlowReading{Flow: "checkout", Requests: 2, P99Ms: 95}),
			},
		},
		StartedAt: t0,
		Split: []RegionSplit{
			{Region: "westeurope", Percents: map[string]int{"v1": 50, "v2": 50}, Settled: true},
			{Region: "northeurope", Percents: map[string]int{"v1": 50, "v2": 50}, Settled: true},
			{Region: "eastus", Percents: map[string]int{"v1": 100, "v2": 0}, Settled: true},
		},
	}
}

// healthIDs returns every node of the tree under (and without) the root,
// with its state.
func healthIDs(n *HealthNode) map[string]string {
	ids := map[string]string{}
	var walk func(*HealthNode)
	walk = func(n *HealthNode) {
		for _, c := range n.Children {
			ids[c.ID] = c.State.String()
			walk(c)
		}
	}
	walk(n)
	return ids
}

// traceSpan is a span as GET /ops/traces/{id} answers it.
type traceSpan struct {
	TraceID       string            `json:"traceId"`
	SpanID        string            `json:"spanId"`
	ParentID      string            `json:"parentId"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Start         time.Time         `json:"start"`
	End           time.Time         `json:"end"`
	DurationMs    float64           `json:"durationMs"`
	Status        string            `json:"status"`
	StatusMessage string            `json:"statusMessage"`
	Attributes    map[string]string `json:"attributes"`
}

// fixtureTrace is the trace of the first error of the fixture: 200 ms, the
// payment call failing from 100 to 180 ms. Spans are listed out of order.
func fixtureTrace() []traceSpan {
	t0 := fixtureTime.Add(-2 * time.Second)
	span := func(id, parent, name, kind string, from, to time.Duration, status, region string) traceSpan {
		return traceSpan{
			TraceID: traceID, SpanID: id, ParentID: parent, Name: name, Kind: kind,
			Start: t0.Add(from), End: t0.Add(to), DurationMs: float64(to-from) / float64(time.Millisecond),
			Status: status, Attributes: map[string]string{"region": region},
		}
	}
	charge := span("s4", "s2", "charge payment", "client", 100*time.Millisecond, 180*time.Millisecond, "error", "northeurope")
	charge.StatusMessage = "payment declined"
	return []traceSpan{
		span("s3", "s2", "reserve inventory", "internal", 20*time.Millisecond, 60*time.Millisecond, "ok", "northeurope"),
		charge,
		span("s1", "", "POST /api/orders", "server", 0, 200*time.Millisecond, "error", "westeurope"),
		span("s2", "s1", "proxy to northeurope", "client", 10*time.Millisecond, 190*time.Millisecond, "", "westeurope"),
	}
}

// liveSnapshot is a snapshot a test changes while the dashboard serves it.
type liveSnapshot struct {
	mu  sync.Mutex
	s   *Snapshot // never changed once published: update replaces it
	err error     // when set, get fails with it
}

func newLiveSnapshot() *liveSnapshot { return &liveSnapshot{s: fixture()} }

func (l *liveSnapshot) get(context.Context) (*Snapshot, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	return l.s, nil
}

// fail makes get fail with err; nil makes it succeed again.
func (l *liveSnapshot) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

// update publishes a changed deep copy of the snapshot.
func (l *liveSnapshot) update(tb testing.TB, change func(*Snapshot)) {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := json.Marshal(l.s)
	if err != nil {
		tb.Fatal(err)
	}
	var c Snapshot
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatal(err)
	}
	change(&c)
	l.s = &c
}

// newTestServer serves the dashboard over live, and the fixture trace at
// GET /ops/traces/{id} as the tracing component does.
func newTestServer(tb testing.TB, live *liveSnapshot, interval time.Duration) *httptest.Server {
	tb.Helper()
	d, err := NewDashboard(Config{Snapshot: live.get, Interval: interval})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	d.Routes(mux)
	mux.Handle("GET /ops/traces/{id}", httpapi.Handle(nil, func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		if id != traceID {
			return shop.NotFound("trace", id)
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"traceId": id, "spans": fixtureTrace()})
		return nil
	}))
	ts := httptest.NewServer(mux)
	tb.Cleanup(ts.Close)
	tb.Cleanup(d.Close) // runs first: ends the event streams ts.Close would wait for
	return ts
}
