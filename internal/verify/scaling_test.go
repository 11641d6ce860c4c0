package verify

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/autoscale"
)

func TestJudgeScaling(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	e := Experiment{Name: "x", Scaling: &Scaling{Min: 2, Max: 6, Expect: ScalingExpect{Region: "eastus", OutWithin: Duration(10 * time.Second),
		ReadP99: Duration(100 * time.Millisecond), BackToMin: Duration(time.Minute), NoFlapping: true, NoFailedRequests: true}}}
	good := []autoscale.Event{
		{At: at(1), Region: "eastus", Action: "scale-out", From: 2, To: 4, ExceededAt: at(0)},
		{At: at(6), Region: "eastus", Action: "serving", ExceededAt: at(0), ToTrafficMs: 6000},
		{At: at(40), Region: "eastus", Action: "scale-in", From: 4, To: 3},
		{At: at(61), Region: "eastus", Action: "scale-in", From: 3, To: 2},
	}
	load := LoadOutcome{Flows: map[string]FlowOutcome{"browse": {Requests: 100}, "product": {Requests: 100}},
		Seconds: []map[string]time.Duration{{"browse": 300 * time.Millisecond}, {"browse": 300 * time.Millisecond}, {"browse": 300 * time.Millisecond},
			{"browse": 300 * time.Millisecond}, {"browse": 300 * time.Millisecond}, {"browse": 300 * time.Millisecond},
			{"browse": 50 * time.Millisecond}, {"browse": 60 * time.Millisecond, "product": 40 * time.Millisecond}}}
	verdicts := func(events []autoscale.Event, load LoadOutcome, backOK bool) map[string]Verdict {
		out := map[string]Verdict{}
		for _, v := range judgeScaling(e, events, load, t0, t0, 20*time.Second, 30*time.Second, backOK) {
			out[strings.Fields(v.Expectation)[0]+" "+strings.Fields(v.Expectation)[1]] = v
		}
		return out
	}
	for name, v := range verdicts(good, load, true) {
		if !v.Pass {
			t.Errorf("%s failed on a good run: %s", name, v.Measured)
		}
	}
	tests := []struct {
		name   string
		events []autoscale.Event
		load   LoadOutcome
		backOK bool
		fails  string
	}{
		{"no scale-out", good[2:], load, true, "eastus scales"},
		{"too slow to traffic", []autoscale.Event{good[0], {At: at(12), Region: "eastus", Action: "serving", ExceededAt: at(0), ToTrafficMs: 12000}}, load, true, "a new"},
		{"an earlier experiment's instance", []autoscale.Event{good[0], {At: at(1), Region: "eastus", Action: "serving", ExceededAt: at(-100), ToTrafficMs: 3000}}, load, true, "a new"},
		{"slow reads after the new instance serves", good, LoadOutcome{Flows: load.Flows, Seconds: append(load.Seconds, map[string]time.Duration{"product": 150 * time.Millisecond})}, true, "read p99"},
		{"not back to min", good, load, false, "back to"},
		{"flapping", append(good[:2:2], autoscale.Event{At: at(10), Region: "eastus", Action: "scale-in"}, autoscale.Event{At: at(20), Region: "eastus", Action: "scale-out"}), load, true, "no count"},
		{"a shed request", good, LoadOutcome{Flows: map[string]FlowOutcome{"browse": {Requests: 100, TooMany: 1}}, Seconds: load.Seconds}, true, "no failed"},
		{"a failed request", good, LoadOutcome{Flows: map[string]FlowOutcome{"browse": {Requests: 100, Errors: 1}}, Seconds: load.Seconds}, true, "no failed"},
	}
	// A fixed deployment (max = min) must not scale out at all.
	fixed := e
	fixed.Scaling = &Scaling{Min: 2, Max: 2, Expect: ScalingExpect{Region: "eastus", NoFailedRequests: true}}
	for _, tc := range []struct {
		events []autoscale.Event
		pass   bool
	}{{nil, true}, {good[:1], false}} {
		vs := judgeScaling(fixed, tc.events, load, t0, t0, 20*time.Second, 0, true)
		if len(vs) != 2 || vs[0].Pass != tc.pass || !strings.Contains(vs[0].Expectation, "stays at 2") || !vs[1].Pass {
			t.Errorf("fixed deployment with %d events: %+v, want the count judged %t", len(tc.events), vs, tc.pass)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := verdicts(tt.events, tt.load, tt.backOK)
			v, ok := vs[tt.fails]
			if !ok {
				t.Fatalf("no verdict %q in %v", tt.fails, vs)
			}
			if v.Pass {
				t.Fatalf("%q passed: %s", tt.fails, v.Measured)
			}
			for name, other := range vs {
				if name != tt.fails && !other.Pass && tt.name != "no scale-out" && tt.name != "an earlier experiment's instance" && tt.name != "too slow to traffic" {
					t.Errorf("%q failed too: %s", name, other.Measured)
				}
			}
		})
	}
}

// bench/autoscale.yaml, the comparison of a fixed deployment with the
// autoscaler that bench/autoscale.sh runs, stays a valid experiments file:
// fixed ones never scale (max = min), autoscaled ones may.
func TestTheAutoscaleBenchParses(t *testing.T) {
	b, err := os.ReadFile("../../bench/autoscale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	exps, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	var fixed, auto int
	for _, e := range exps {
		switch {
		case e.Scaling == nil:
			t.Errorf("%s has no scaling block", e.Name)
		case e.Scaling.Max == e.Scaling.Min:
			fixed++
		default:
			auto++
		}
	}
	if fixed == 0 || auto == 0 {
		t.Fatalf("%d fixed and %d autoscaled experiments, want both", fixed, auto)
	}
}
