package opsplane

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/ops"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/telemetry"
)

// newPlane is a plane over a one-server store and a telemetry sink, with
// cfg's other fields, at the time now returns. It is not running: its
// snapshot shows what it was given.
func newPlane(t *testing.T, cfg Config, now func() time.Time) *Plane {
	t.Helper()
	c := storetest.NewCluster(t, "westeurope")
	nc, err := nats.Connect(c.Nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	tel, err := telemetry.New(t.Context(), telemetry.Config{Service: telemetry.ServiceOps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })
	cfg.Conn, cfg.Sink, cfg.Now, cfg.Declared = nc, tel.Sink(), now, []string{"eastus", "westeurope"}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSnapshotScalingSection: the autoscaler's status, read once per
// snapshot through Config.Scaling, reaches the dashboard's snapshot: the
// rules, the hold, every region with its limits, a pre-scale active or
// ended as of the plane's clock, and the last evaluation's inputs, and the
// 20 most recent events, newest first, with what each read. Without a
// scaler, or before it answers a status, there is no scaling section.
func TestSnapshotScalingSection(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	in := autoscale.Inputs{Instances: 2, Reporting: 2, InFlight: 16.4, Capacity: 20, Requests: 900, Shed: 12, Waiting: 3, P99Ms: 180, Min: 2, Max: 6}
	st := &autoscale.Status{
		Policy: autoscale.PolicyJSON{Target: 0.6, Tolerance: 0.1, ScaleOutAfterSeconds: 2, ScaleInAfterSeconds: 60},
		Held:   "release v2 under way",
		Regions: []autoscale.RegionStatus{
			{Region: "eastus", Limits: autoscale.Limits{Min: 1, Max: 4, PreScale: &autoscale.PreScale{Min: 3, Until: t0.Add(-time.Minute)}}, Want: 1, Inputs: autoscale.Inputs{Instances: 1, Min: 1, Max: 4}},
			{Region: "westeurope", Limits: autoscale.Limits{Min: 2, Max: 6, PreScale: &autoscale.PreScale{Min: 2, Until: t0.Add(time.Hour)}}, Want: 3, Reason: "above the target", Utilisation: 0.82, Inputs: in},
		},
		Events: []autoscale.Event{
			{At: t0, Region: "westeurope", Action: "serving", Instance: "we-3", ExceededAt: t0.Add(-4 * time.Second), ToTrafficMs: 3400},
			{At: t0.Add(-time.Second), Region: "westeurope", Action: "scale-out", From: 2, To: 3, Reason: "above the target", Inputs: &in, ExceededAt: t0.Add(-4 * time.Second)},
		},
	}
	for i := range 30 { // older than the two above: only 18 of them are shown
		st.Events = append(st.Events, autoscale.Event{At: t0.Add(-time.Duration(i+2) * time.Second), Action: "settings", Reason: fmt.Sprintf("change %d", i)})
	}
	current, calls := st, 0
	p := newPlane(t, Config{Scaling: func() *autoscale.Status { calls++; return current }}, func() time.Time { return t0 })

	snap, err := p.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("Config.Scaling called %d times for one snapshot, want 1", calls)
	}
	wantIn := ops.ScalingInputs{Instances: 2, Reporting: 2, InFlight: 16.4, Capacity: 20, Requests: 900, Shed: 12, Waiting: 3, P99Ms: 180, Min: 2, Max: 6}
	want := &ops.Scaling{
		Policy: ops.ScalingPolicy{Target: 0.6, Tolerance: 0.1, ScaleOutAfterSeconds: 2, ScaleInAfterSeconds: 60},
		Held:   "release v2 under way",
		Regions: []ops.ScalingRegion{
			{Region: "eastus", Min: 1, Max: 4, PreScale: &ops.ScalingPreScale{Min: 3, Until: t0.Add(-time.Minute), Active: false}, Want: 1, Inputs: ops.ScalingInputs{Instances: 1, Min: 1, Max: 4}},
			{Region: "westeurope", Min: 2, Max: 6, PreScale: &ops.ScalingPreScale{Min: 2, Until: t0.Add(time.Hour), Active: true}, Want: 3, Reason: "above the target", Utilisation: 0.82, Inputs: wantIn},
		},
		Events: []ops.ScalingEvent{
			{At: t0, Region: "westeurope", Action: "serving", Instance: "we-3", ExceededAt: t0.Add(-4 * time.Second), ToTrafficMs: 3400},
			{At: t0.Add(-time.Second), Region: "westeurope", Action: "scale-out", From: 2, To: 3, Reason: "above the target", Inputs: &wantIn, ExceededAt: t0.Add(-4 * time.Second)},
		},
	}
	for i := range 18 {
		want.Events = append(want.Events, ops.ScalingEvent{At: t0.Add(-time.Duration(i+2) * time.Second), Action: "settings", Reason: fmt.Sprintf("change %d", i)})
	}
	if !reflect.DeepEqual(snap.Scaling, want) {
		t.Fatalf("scaling section\n got %+v\nwant %+v", snap.Scaling, want)
	}
	// The section is the dashboard's own copy: the scaler's later changes
	// to its status do not reach a snapshot already taken.
	in.Shed = 99
	if snap.Scaling.Events[1].Inputs.Shed != 12 {
		t.Errorf("the snapshot shares the scaler's inputs: shed %d", snap.Scaling.Events[1].Inputs.Shed)
	}

	current = nil // a scaler with no status yet
	if snap, err = p.Snapshot(t.Context()); err != nil || snap.Scaling != nil {
		t.Errorf("without a status: scaling %+v (%v), want none", snap.Scaling, err)
	}

	without := newPlane(t, Config{}, func() time.Time { return t0 })
	snap, err = without.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Scaling != nil || strings.Contains(string(b), `"scaling"`) {
		t.Errorf("a plane without a scaler shows a scaling section: %s", b)
	}
}
