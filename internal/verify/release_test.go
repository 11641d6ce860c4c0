package verify

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/release"
)

func TestDefaultExperimentsRelease(t *testing.T) {
	want := map[string]struct {
		outcome  string
		profiles string
	}{
		"release-good":          {"done", "ci full"},
		"release-bad":           {"rolled-back", "ci full"},
		"release-never-ready":   {"failed", "ci full"},
		"release-region-outage": {"done", "ci full"},
	}
	for _, e := range Default() {
		w, ok := want[e.Name]
		if !ok {
			continue
		}
		delete(want, e.Name)
		if e.Release == nil || e.Release.Expect.Outcome != w.outcome || strings.Join(e.Profiles, " ") != w.profiles {
			t.Errorf("%s: release %+v in %v; want outcome %s in %s", e.Name, e.Release, e.Profiles, w.outcome, w.profiles)
		}
	}
	for name := range want {
		t.Errorf("no experiment %s", name)
	}
}

func TestParseReleaseBlocks(t *testing.T) {
	good := `experiments:
  - name: r
    load: {rate: 10, hold: 20s, mix: {product: 1, checkout: 1}}
    release: {version: v-next, fault: "error=0.05,route=checkout", steps: [50, 100], hold: 1s, min_requests: 10, error_tolerance: 1, after: 3s,
              expect: {outcome: rolled-back, within: 90s, max_error_share: 0.01, rollback_within: 15s}}
`
	exps, err := Parse([]byte(good))
	if err != nil {
		t.Fatalf("good file: %v", err)
	}
	r := exps[0].Release
	req := r.request("v-next-1")
	if req.Version != "v-next-1" || req.Fault != "error=0.05,route=checkout" || req.Gate.MinHold != time.Second ||
		req.Gate.MinRequests != 10 || req.Gate.ErrorTolerance != 1 || len(req.Steps) != 2 || *r.Expect.MaxErrorShare != 0.01 {
		t.Fatalf("request %+v from %+v", req, r)
	}
	withFault := strings.Replace(good, "    release:", "    fault: {fault: region-outage, target: eastus, after: 5s, duration: 5s}\n    release:", 1)
	if _, err := Parse([]byte(strings.Replace(withFault, "rollback_within: 15s", "paused_by_fault: true", 1))); err != nil {
		t.Fatalf("a release with a fault: %v", err)
	}
	for name, bad := range map[string]string{
		"no version":             strings.Replace(good, "version: v-next", "version: ''", 1),
		"bad outcome":            strings.Replace(good, "outcome: rolled-back", "outcome: finished", 1),
		"no within":              strings.Replace(good, "within: 90s,", "", 1),
		"after the load":         strings.Replace(good, "after: 3s", "after: 30s", 1),
		"share above one":        strings.Replace(good, "max_error_share: 0.01", "max_error_share: 2", 1),
		"tolerance above one":    strings.Replace(good, "error_tolerance: 1", "error_tolerance: 1.5", 1),
		"unknown field":          strings.Replace(good, "hold: 1s", "hold: 1s, colour: red", 1),
		"paused without a fault": strings.Replace(good, "rollback_within: 15s", "paused_by_fault: true", 1),
		"empty mix":              strings.Replace(good, "mix: {product: 1, checkout: 1}", "mix: {}", 1),
		"negative mix":           strings.Replace(good, "checkout: 1}", "checkout: -1}", 1),
		"no fault, no release":   strings.Replace(good, "    release:", "    rel:", 1),
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The release verdicts pass what holds and fail what does not, with the
// numbers behind them.
func TestJudgeRelease(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	share := 0.001 // the load below failed 0.005
	exp := func(x ReleaseExpect) Experiment {
		return Experiment{Name: "r", Fault: Fault{Fault: "region-outage", Target: "eastus"}, Release: &Release{Version: "v", Expect: x}}
	}
	steps := func(verdicts ...string) []release.Step {
		var out []release.Step
		for i, v := range verdicts {
			out = append(out, release.Step{Stage: release.Stage{Region: "westeurope", Percent: 50 * (i + 1)},
				StartedAt: t0.Add(time.Duration(5+2*i) * time.Second), EndedAt: t0.Add(time.Duration(7+2*i) * time.Second), Verdict: v})
		}
		return out
	}
	plan := []release.Stage{{Region: "westeurope", Percent: 50}, {Region: "westeurope", Percent: 100}}
	load := LoadOutcome{
		Flows:          map[string]FlowOutcome{"browse": {Requests: 900}, "checkout": {Requests: 100, Errors: 5}},
		ServedReleases: map[string]int64{"v0": 990, "v-1": 10},
	}
	tests := []struct {
		name    string
		x       ReleaseExpect
		rr      releaseRun
		load    *LoadOutcome    // nil: load
		pass    map[string]bool // by the start of the expectation
		numbers map[string]float64
	}{{
		name: "done",
		x:    ReleaseExpect{Outcome: "done", Within: Duration(time.Minute), MaxErrorShare: &share},
		rr: releaseRun{Version: "v-1", GoneOf: []string{"v0"}, GoneAfter: time.Second, Record: &release.Record{
			Version: "v-1", Phase: release.PhaseDone, Plan: plan, Steps: steps("passed", "passed"), StartedAt: t0, EndedAt: t0.Add(12 * time.Second)}},
		pass:    map[string]bool{"release.outcome": true, "release.steps": true, "release.error_share": false, "release.old_gone": true},
		numbers: map[string]float64{"release_seconds": 12, "to_100_seconds": 4, "error_share": 0.005},
	}, {
		name: "done, a step promoted and the old stamps still listed",
		x:    ReleaseExpect{Outcome: "done", Within: Duration(time.Minute)},
		rr: releaseRun{Version: "v-1", GoneOf: []string{"v0"}, Gone: []string{"westeurope-1"}, GoneAfter: 10 * time.Second, Record: &release.Record{
			Version: "v-1", Phase: release.PhaseDone, Plan: plan, Steps: steps("promoted", "passed"), StartedAt: t0, EndedAt: t0.Add(12 * time.Second)}},
		pass: map[string]bool{"release.outcome": true, "release.steps": false, "release.old_gone": false},
	}, {
		name: "rolled back when done was expected",
		x:    ReleaseExpect{Outcome: "done", Within: Duration(time.Minute)},
		rr: releaseRun{Version: "v-1", GoneOf: []string{"v-1"}, Record: &release.Record{Version: "v-1", Phase: release.PhaseRolledBack,
			Reason: "gate failed", Plan: plan, Steps: steps("failed"), StartedAt: t0, EndedAt: t0.Add(9 * time.Second)}},
		pass: map[string]bool{"release.outcome": false, "release.steps": false, "release.new_gone": true},
	}, {
		name: "rolled back in time",
		x:    ReleaseExpect{Outcome: "rolled-back", Within: Duration(time.Minute), RollbackWithin: Duration(15 * time.Second)},
		rr: releaseRun{Version: "v-1", GoneOf: []string{"v-1"}, Record: &release.Record{Version: "v-1", Phase: release.PhaseRolledBack,
			Plan: plan, Steps: steps("failed"), StartedAt: t0, FirstBadAt: t0.Add(6 * time.Second), RollbackAt: t0.Add(8 * time.Second), EndedAt: t0.Add(9 * time.Second)}},
		pass:    map[string]bool{"release.outcome": true, "release.rollback": true, "release.new_gone": true},
		numbers: map[string]float64{"rollback_seconds": 1, "first_bad_to_rollback_seconds": 2, "release_seconds": 9},
	}, {
		name: "rolled back too late",
		x:    ReleaseExpect{Outcome: "rolled-back", Within: Duration(time.Minute), RollbackWithin: Duration(time.Second)},
		rr: releaseRun{Version: "v-1", Record: &release.Record{Version: "v-1", Phase: release.PhaseRolledBack,
			Steps:     []release.Step{{Stage: plan[0], StartedAt: t0.Add(4 * time.Second), EnoughAt: t0.Add(5 * time.Second), EndedAt: t0.Add(8 * time.Second), Verdict: "failed"}},
			StartedAt: t0, FirstBadAt: t0.Add(6 * time.Second), RollbackAt: t0.Add(8 * time.Second), EndedAt: t0.Add(9 * time.Second)}},
		pass: map[string]bool{"release.outcome": true, "release.rollback": false},
	}, {
		name: "no bad request seen",
		x:    ReleaseExpect{Outcome: "rolled-back", Within: Duration(time.Minute), RollbackWithin: Duration(time.Second)},
		rr:   releaseRun{Version: "v-1", Record: &release.Record{Version: "v-1", Phase: release.PhaseDone, StartedAt: t0, EndedAt: t0.Add(9 * time.Second)}},
		pass: map[string]bool{"release.outcome": false, "release.rollback": false},
	}, {
		name: "never ready, yet it served",
		x:    ReleaseExpect{Outcome: "failed", Within: Duration(2 * time.Minute), NoTraffic: true},
		rr: releaseRun{Version: "v-1", Record: &release.Record{Version: "v-1", Phase: release.PhaseFailed,
			StartedAt: t0, EndedAt: t0.Add(91 * time.Second)}},
		pass: map[string]bool{"release.outcome": true, "release.no_traffic": false},
	}, {
		name: "never ready, served nothing",
		x:    ReleaseExpect{Outcome: "failed", Within: Duration(2 * time.Minute), NoTraffic: true},
		rr: releaseRun{Version: "v-2", Record: &release.Record{Version: "v-2", Phase: release.PhaseFailed,
			StartedAt: t0, EndedAt: t0.Add(91 * time.Second)}},
		pass: map[string]bool{"release.outcome": true, "release.no_traffic": true},
	}, {
		name: "never ready, and no answer named its release",
		x:    ReleaseExpect{Outcome: "failed", Within: Duration(2 * time.Minute), NoTraffic: true},
		rr: releaseRun{Version: "v-2", Record: &release.Record{Version: "v-2", Phase: release.PhaseFailed,
			StartedAt: t0, EndedAt: t0.Add(91 * time.Second)}},
		load: &LoadOutcome{Flows: load.Flows, ServedReleases: map[string]int64{"none": 1000}},
		pass: map[string]bool{"release.outcome": true, "release.no_traffic": false},
	}, {
		name: "timed out, rolled back by the runner, its stamps left running",
		x:    ReleaseExpect{Outcome: "done", Within: Duration(time.Minute)},
		rr: releaseRun{Version: "v-1", TimedOut: true, GoneOf: []string{"v-1"}, Gone: []string{"eastus.a"}, GoneAfter: 10 * time.Second,
			Record: &release.Record{Version: "v-1", Phase: release.PhaseRolledBack, StartedAt: t0, EndedAt: t0.Add(70 * time.Second)}},
		pass: map[string]bool{"release.outcome": false, "release.steps": false, "release.new_gone": false},
	}, {
		name: "not started",
		x:    ReleaseExpect{Outcome: "done", Within: Duration(time.Minute)},
		rr:   releaseRun{Err: errors.New("region eastus already runs v")},
		pass: map[string]bool{"release.outcome": false},
	}, {
		name: "paused by the fault and resumed",
		x:    ReleaseExpect{Outcome: "done", Within: Duration(time.Minute), PausedByFault: true},
		rr: releaseRun{Version: "v-1", FaultFrom: t0.Add(5 * time.Second), FaultTo: t0.Add(15 * time.Second),
			PausedAt: t0.Add(6 * time.Second), PausedWhy: "region lost: eastus", ResumedAt: t0.Add(20 * time.Second),
			GoneOf: []string{"v0"}, Record: &release.Record{Version: "v-1", Phase: release.PhaseDone, Plan: plan, Steps: steps("passed", "passed"),
				StartedAt: t0, EndedAt: t0.Add(30 * time.Second)}},
		pass:    map[string]bool{"release.outcome": true, "release.paused_by_fault": true},
		numbers: map[string]float64{"paused_after_injection_seconds": 1},
	}, {
		name: "never paused",
		x:    ReleaseExpect{Outcome: "done", Within: Duration(time.Minute), PausedByFault: true},
		rr: releaseRun{Version: "v-1", FaultFrom: t0.Add(5 * time.Second), FaultTo: t0.Add(15 * time.Second),
			Record: &release.Record{Version: "v-1", Phase: release.PhaseDone, StartedAt: t0, EndedAt: t0.Add(30 * time.Second)}},
		pass: map[string]bool{"release.paused_by_fault": false},
	}, {
		name: "paused, never resumed",
		x:    ReleaseExpect{Outcome: "done", Within: Duration(time.Minute), PausedByFault: true},
		rr: releaseRun{Version: "v-1", FaultFrom: t0.Add(5 * time.Second), FaultTo: t0.Add(15 * time.Second), PausedAt: t0.Add(6 * time.Second),
			ResumeErr: errors.New("cannot resume (HTTP 409)"), TimedOut: true,
			Record: &release.Record{Version: "v-1", Phase: release.PhaseRolledBack, StartedAt: t0, EndedAt: t0.Add(70 * time.Second)}},
		pass: map[string]bool{"release.outcome": false, "release.paused_by_fault": false},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := load
			if tt.load != nil {
				l = *tt.load
			}
			vs := judgeRelease(exp(tt.x), tt.rr, l)
			numbers := map[string]float64{}
			for prefix, pass := range tt.pass {
				var found *Verdict
				for i := range vs {
					if strings.HasPrefix(vs[i].Expectation, prefix) {
						found = &vs[i]
					}
				}
				if found == nil {
					t.Errorf("no verdict %s in %+v", prefix, vs)
					continue
				}
				if found.Pass != pass || found.Measured == "" {
					t.Errorf("%s: pass %v (measured %q), want %v", found.Expectation, found.Pass, found.Measured, pass)
				}
			}
			for _, v := range vs {
				for k, x := range v.Numbers {
					numbers[k] = x
				}
			}
			for k, want := range tt.numbers {
				if got, ok := numbers[k]; !ok || got < want-1e-9 || got > want+1e-9 {
					t.Errorf("number %s = %v (%v), want %v", k, got, ok, want)
				}
			}
		})
	}
}

func TestPrintTableShowsTheReleaseNumbers(t *testing.T) {
	var b bytes.Buffer
	PrintTable(&b, []Verdict{
		{Experiment: "release-bad", Expectation: "release.outcome: rolled-back within 1m30s", Measured: "rolled-back after 20s", Pass: true,
			Numbers: map[string]float64{"release_seconds": 20.04}},
		{Experiment: "release-bad", Expectation: "release.rollback: within 15s of the first bad request", Measured: "1.2s", Pass: true,
			Numbers: map[string]float64{"rollback_seconds": 1.23}},
		{Experiment: "release-bad", Expectation: "release.error_share <= 0.01", Measured: "0.0020", Pass: true,
			Numbers: map[string]float64{"error_share": 0.002}},
		{Experiment: "stamp-drain", Expectation: "no oversell", Measured: "none", Pass: true},
	})
	want := "release numbers:\n  release-bad: release 20.0 s, rollback 1.2 s, error share 0.0020\n"
	if !strings.HasSuffix(b.String(), want) {
		t.Fatalf("table:\n%s\nwant it to end with\n%s", b.String(), want)
	}
}

// A release that outlives its bound is reported as it stood at the bound,
// with its reason, not as the runner's rollback left it.
func TestJudgeReleaseSaysWhereATimedOutReleaseStood(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	e := Experiment{Name: "r", Release: &Release{Version: "v", Expect: ReleaseExpect{Outcome: "done", Within: Duration(90 * time.Second)}}}
	rr := releaseRun{Version: "v-1", TimedOut: true, GoneOf: []string{"v-1"},
		AtBound: &release.Record{Version: "v-1", Phase: release.PhaseShifting, Paused: true, Reason: "region eastus unhealthy on both versions", StartedAt: t0},
		Record: &release.Record{Version: "v-1", Phase: release.PhaseRolledBack, Reason: "rolled back by verify", StartedAt: t0,
			RollbackAt: t0.Add(90 * time.Second), EndedAt: t0.Add(95 * time.Second)}}
	for _, v := range judgeRelease(e, rr, LoadOutcome{}) {
		if !strings.HasPrefix(v.Expectation, "release.outcome") {
			continue
		}
		want := "still shifting after 1m30s (region eastus unhealthy on both versions) (then rolled back by the runner: rolled-back)"
		if v.Pass || !strings.HasPrefix(v.Measured, want) {
			t.Fatalf("outcome = %+v; want a fail measured %q…", v, want)
		}
		return
	}
	t.Fatal("no release.outcome verdict")
}
