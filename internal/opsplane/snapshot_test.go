package opsplane

import (
	"reflect"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/ops"
	"github.com/contoso/shoes/internal/release"
)

// TestReleaseView: the dashboard's release is the record in its own terms
// (plan, steps, gate readings in milliseconds and ratios, flows by name)
// with each region's split taken from the POPs: the first POP's, settled
// only when every POP applies the same; regions in the snapshot's order,
// then any other the plan or a POP names.
func TestReleaseView(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rec := &release.Record{
		ID: "20260501T120000Z-v2", Version: "v2", Image: "r/contoso@sha256:ab", Env: "dev", By: "ops",
		From:  map[string]string{"westeurope": "v1", "eastus": "v1", "brazilsouth": "v1"},
		Phase: release.PhaseShifting, Paused: true, Reason: "paused by ops",
		Plan:  []release.Stage{{Region: "westeurope", Percent: 50}, {Region: "brazilsouth", Percent: 50}},
		Stage: 0,
		Steps: []release.Step{{
			Stage: release.Stage{Region: "westeurope", Percent: 50}, StartedAt: t0, Verdict: "holding", Reason: "held 2s of 5s",
			New: release.Reading{Health: health.Healthy, Instances: 1, Flows: map[string]release.FlowReading{
				"checkout": {Requests: 40, Errors: 2, P99: 0.25}, "browse": {Requests: 100, P99: 0.03}}},
			Old: release.Reading{Health: health.Degraded, Instances: 2},
		}},
		StartedAt: t0, FirstBadAt: t0.Add(time.Second),
	}
	pops := []edge.POPStatus{
		{Region: "eastus", Split: map[string]map[string]int{"westeurope": {"v1": 50, "v2": 50}, "eastus": {"v1": 100, "v2": 0}, "brazilsouth": {"v1": 100, "v2": 0}}},
		{Region: "westeurope", Split: map[string]map[string]int{"westeurope": {"v1": 50, "v2": 50}, "eastus": {"v1": 100, "v2": 0}}},
	}
	got := releaseView(rec, []string{"westeurope", "eastus"}, pops)
	want := &ops.Release{
		ID: rec.ID, Version: "v2", Image: rec.Image, Env: "dev", By: "ops", From: rec.From,
		Phase: "shifting", Paused: true, Reason: "paused by ops",
		Plan:  []ops.ReleaseStage{{Region: "westeurope", Percent: 50}, {Region: "brazilsouth", Percent: 50}},
		Stage: 0,
		Steps: []ops.ReleaseStep{{
			Region: "westeurope", Percent: 50, StartedAt: t0, Verdict: "holding", Reason: "held 2s of 5s",
			New: ops.GateReading{Health: health.Healthy, Instances: 1, Flows: []ops.FlowReading{
				{Flow: "browse", Requests: 100, P99Ms: 30}, {Flow: "checkout", Requests: 40, ErrorRatio: 0.05, P99Ms: 250}}},
			Old: ops.GateReading{Health: health.Degraded, Instances: 2, Flows: []ops.FlowReading{}},
		}},
		StartedAt: t0, FirstBadAt: t0.Add(time.Second),
		Split: []ops.RegionSplit{
			{Region: "westeurope", Percents: map[string]int{"v1": 50, "v2": 50}, Settled: true},
			{Region: "eastus", Percents: map[string]int{"v1": 100, "v2": 0}, Settled: true},
			// The westeurope POP has not applied brazilsouth's table yet.
			{Region: "brazilsouth", Percents: map[string]int{"v1": 100, "v2": 0}, Settled: false},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("release view\n got %+v\nwant %+v", got, want)
	}

	// No POP applies a table: every region is at its default weights.
	got = releaseView(&release.Record{Phase: release.PhaseDone, Stage: -1}, []string{"westeurope"}, pops[:0])
	if w := []ops.RegionSplit{{Region: "westeurope", Percents: map[string]int{}, Settled: true}}; !reflect.DeepEqual(got.Split, w) {
		t.Errorf("split without a table: %+v, want %+v", got.Split, w)
	}
}
