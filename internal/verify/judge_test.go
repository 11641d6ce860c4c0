package verify

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/loadtest"
)

func TestDefaultExperimentsLoad(t *testing.T) {
	all := Default()
	ci := Select(all, "ci")
	if len(ci) == 0 || len(ci) >= len(all) {
		t.Fatalf("ci profile has %d of %d experiments", len(ci), len(all))
	}
	faults := map[string]bool{}
	for _, e := range Select(all, "full") {
		faults[e.Fault.Fault] = true
	}
	for _, f := range []string{"region-outage", "store-node-loss", "link-latency", "partition", "secret-store-outage",
		"partner-outage", "partner-slow", "stamp-drain", "instance-kill"} {
		if !faults[f] {
			t.Errorf("the full profile does not cover %s", f)
		}
	}
}

func TestParseRejectsBadExperiments(t *testing.T) {
	good := `experiments:
  - name: x
    load: {rate: 10, hold: 10s}
    fault: {fault: stamp-drain, target: eastus, after: 2s, duration: 3s}
`
	for _, ok := range []string{good, strings.Replace(good, "target: eastus", "target: serving:westeurope", 1)} {
		if _, err := Parse([]byte(ok)); err != nil {
			t.Fatalf("good file: %v\n%s", err, ok)
		}
	}
	for name, bad := range map[string]string{
		"serving nobody":       strings.Replace(good, "target: eastus", "target: 'serving:'", 1),
		"serving in a release": strings.Replace(good, "target: eastus", "target: serving:eastus", 1) + "    release: {version: v-x, after: 1s, expect: {outcome: done, within: 60s}}\n",
		"serving a partner":    strings.Replace(strings.Replace(good, "target: eastus", "target: serving:eastus", 1), "stamp-drain", "partner-outage", 1),
		"empty":                `experiments: []`,
		"unknown field":        strings.Replace(good, "rate: 10", "rate: 10, rps: 3", 1),
		"no rate":              strings.Replace(good, "rate: 10", "rate: 0", 1),
		"bad duration":         strings.Replace(good, "hold: 10s", "hold: ten", 1),
		"fault outlasts":       strings.Replace(good, "duration: 3s", "duration: 30s", 1),
		"no fault":             strings.Replace(good, "fault: stamp-drain", "fault: ''", 1),
		"health no within":     good + "    expect: {health: [{entity: system, state: degraded}]}\n",
		"health bad state":     good + "    expect: {health: [{entity: system, never: purple}]}\n",
		"routing no when":      good + "    expect: {routing: {out_of_rotation: eastus}}\n",
		"routing nothing":      good + "    expect: {routing: {within: 2s}}\n",
		"routing empty":        good + "    expect: {routing: {}}\n",
		"region p95":           good + "    expect: {slo: [{flow: browse, region: eastus, p95: 1s}]}\n",
		"region errors":        good + "    expect: {slo: [{flow: browse, region: eastus, errors: 0}]}\n",
		"duplicate name":       good + strings.TrimPrefix(good, "experiments:\n"),
		"survivors no flow":    good + "    expect: {survivors: {p99_ratio: 2}}\n",
		"survivors bad flow":   good + "    expect: {survivors: {flows: [shopping], p99_ratio: 2}}\n",
		"survivors ratio":      good + "    expect: {survivors: {flows: [product], p99_ratio: 0.5}}\n",
		"survivors slack":      good + "    expect: {survivors: {flows: [product], p99_ratio: 2, slack: -1ms}}\n",
		"survivors no ramp":    strings.Replace(good, "after: 2s", "after: 0s", 1) + "    expect: {survivors: {flows: [product], p99_ratio: 2}}\n",
		"not yaml":             "{{{",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The judge passes what holds and fails what does not, with the measured
// value in every row.
func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration, states map[string]entityState, routed ...string) sample {
		s := sample{At: t0.Add(d), States: states, Routed: map[string]bool{}}
		for _, r := range routed {
			s.Routed[r] = true
		}
		return s
	}
	zero, one := 0, 0.001
	no := false
	exp := Experiment{Name: "e", Expect: Expect{
		SLO: []SLOGate{{Flow: "browse", P99: Duration(time.Second), Errors: &one}, {Flow: "checkout", Errors: new(float64)},
			{Flow: "checkout", Region: "westeurope", P99: Duration(15 * time.Second)},
			{Flow: "checkout", Region: "northeurope", P99: Duration(15 * time.Second)},
			{Flow: "browse", Region: "eastus", P99: Duration(time.Second)}},
		Health: []HealthGate{
			{Entity: "region.eastus", State: "unhealthy", Within: Duration(5 * time.Second)},
			{Entity: "regions", State: "degraded", Within: Duration(5 * time.Second), Reason: "redundancy lost"},
			{Entity: "system", Never: "unhealthy"},
			{Entity: "flow.browse", Never: "unhealthy"},
		},
		Routing: &RoutingGate{OutOfRotation: "eastus", Within: Duration(2 * time.Second)},
		Data:    &DataGate{IdempotentFailures: &zero, OrdersFinal: true, Oversell: &no},
	}}
	h := func(kv ...string) map[string]entityState {
		m := map[string]entityState{}
		for i := 0; i+2 < len(kv)+1; i += 3 {
			m[kv[i]] = entityState{kv[i+1], kv[i+2]}
		}
		return m
	}
	failing := at(4*time.Second, h("region.eastus", "unhealthy", "x", "regions", "degraded", "redundancy lost: 2 of 3", "system", "degraded", "", "flow.browse", "unhealthy", "boom"), "westeurope")
	failing.FailOpen = []string{"northeurope"}
	r := run{exp: exp, injected: t0, samples: []sample{
		at(-time.Second, h("region.eastus", "healthy", "", "regions", "healthy", "", "system", "healthy", ""), "eastus", "westeurope"),
		at(500*time.Millisecond, h("region.eastus", "healthy", "", "regions", "healthy", "", "system", "healthy", ""), "westeurope"),
		failing,
	}, load: LoadOutcome{
		Flows: map[string]FlowOutcome{
			"browse":   {Requests: 1000, Errors: 0, P99: 800 * time.Millisecond},
			"checkout": {Requests: 100, Errors: 1, P99: 2 * time.Second},
		},
		Cells: map[string]FlowOutcome{
			cellKey("checkout", "westeurope"):  {Requests: 40, P99: 9 * time.Second},
			cellKey("checkout", "northeurope"): {Requests: 40, P99: 16 * time.Second},
		},
		IdempotentFailures: 0, OrdersAccepted: 50, OrdersUnsettled: 0,
		Stock: []StockCount{{SKU: "a-42", Initial: 5, Sold: 2, Available: 2, Held: 1}},
	}}
	got := map[string]Verdict{}
	for _, v := range judge(r) {
		got[v.Expectation] = v
	}
	for expect, pass := range map[string]bool{
		"browse p99 <= 1s":                               true,
		"browse error ratio <= 0.001":                    true,
		"checkout in westeurope p99 <= 15s":              true,
		"checkout in northeurope p99 <= 15s":             false,
		"browse in eastus has traffic":                   false,
		"checkout error ratio <= 0":                      false,
		"region.eastus unhealthy within 5s":              true,
		`regions degraded within 5s ("redundancy lost")`: true,
		"system never unhealthy":                         true,
		"flow.browse never unhealthy":                    false,
		"eastus out of rotation within 2s":               true,
		"failed idempotent requests <= 0":                true,
		"every accepted order final after the heal":      true,
		"no oversell":                                    true,
		expectConservation:                               true,
	} {
		v, ok := got[expect]
		if !ok {
			t.Errorf("no verdict %q (have %v)", expect, got)
			continue
		}
		if v.Pass != pass || v.Measured == "" {
			t.Errorf("%q: pass %v (measured %q), want %v", expect, v.Pass, v.Measured, pass)
		}
	}
	if m := got["flow.browse never unhealthy"].Measured; m != "1 times, first at +4s (flow.browse: boom; POPs failing open: northeurope)" {
		t.Errorf("flow.browse never unhealthy: measured %q, want the root cause and the POPs failing open", m)
	}
	if got["eastus out of rotation within 2s"].Measured != "500ms" {
		t.Errorf("routing measured %q", got["eastus out of rotation within 2s"].Measured)
	}
	// Broken guarantees fail.
	r.load.IdempotentFailures, r.load.OrdersUnsettled, r.load.Oversold = 3, 2, true
	r.load.Stock[0].Available = 0
	r.samples = r.samples[:1]
	for _, v := range judge(r) {
		switch v.Expectation {
		case "failed idempotent requests <= 0", "every accepted order final after the heal", "no oversell",
			"eastus out of rotation within 2s", "region.eastus unhealthy within 5s", expectConservation:
			if v.Pass {
				t.Errorf("%q passed with broken data: %q", v.Expectation, v.Measured)
			}
		}
	}
	if !Failed(judge(r)) {
		t.Fatal("Failed = false")
	}
}

// Losing part of a region: it must stay in rotation at every look after
// the injection, and every client region's answers come from its own
// region (requests that got no answer are judged elsewhere).
func TestJudgeInRotationAndStaysHome(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	look := func(d time.Duration, routed ...string) sample {
		s := sample{At: t0.Add(d), States: map[string]entityState{}, Routed: map[string]bool{}}
		for _, r := range routed {
			s.Routed[r] = true
		}
		return s
	}
	verdicts := func(samples []sample, byClient map[string]map[string]int64) map[string]Verdict {
		r := run{exp: Experiment{Name: "e", Expect: Expect{Routing: &RoutingGate{InRotation: "eastus", StaysHome: true}}},
			injected: t0, samples: samples, load: LoadOutcome{ServedByClient: byClient}}
		out := map[string]Verdict{}
		for _, v := range judge(r) {
			out[v.Expectation] = v
		}
		return out
	}
	home := map[string]map[string]int64{"eastus": {"eastus": 40, loadtest.NotServed: 1}, "westeurope": {"westeurope": 50}}
	got := verdicts([]sample{look(-time.Second), look(time.Second, "eastus"), look(2*time.Second, "eastus", "westeurope")}, home)
	if v := got["eastus stays in rotation"]; !v.Pass || v.Measured != "routed at every one of 2 looks" {
		t.Errorf("in rotation: %+v", v)
	}
	if v := got["every client region served by its own region"]; !v.Pass {
		t.Errorf("stays home: %+v", v)
	}
	away := map[string]map[string]int64{"eastus": {"eastus": 40, "westeurope": 3}}
	got = verdicts([]sample{look(time.Second, "eastus"), look(1500*time.Millisecond, "westeurope"), look(2*time.Second, "eastus")}, away)
	if v := got["eastus stays in rotation"]; v.Pass || v.Measured != "out of rotation 1.5s after the injection" {
		t.Errorf("out of rotation for one look: %+v", v)
	}
	if v := got["every client region served by its own region"]; v.Pass || v.Measured != "3 of eastus's answers from westeurope" {
		t.Errorf("answers from another region: %+v", v)
	}
	// Nothing looked at, nothing answered: no pass on an empty record.
	got = verdicts(nil, nil)
	if got["eastus stays in rotation"].Pass || got["every client region served by its own region"].Pass {
		t.Errorf("passed on nothing: %+v", got)
	}
}

// The clients of the regions a fault spares: each flow's p99 while the
// fault lasts against before it, in every client region but the target;
// an empty window is no pass.
func TestJudgeSurvivors(t *testing.T) {
	file := `experiments:
  - name: x
    load: {rate: 10, ramp: 2s, hold: 20s}
    fault: {fault: region-outage, target: eastus, after: 10s, duration: 6s}
    expect: {survivors: {flows: [product, checkout, cart], p99_ratio: 2, before: 5s, slack: 10ms}}
`
	exps, err := Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	e := exps[0]
	want := []loadtest.Window{{Name: windowBefore, From: 5 * time.Second, To: 10 * time.Second, Answered: true},
		{Name: windowDuring, From: 10 * time.Second, To: 16 * time.Second}}
	if got := e.Expect.Survivors.windows(e); !slices.Equal(got, want) {
		t.Errorf("windows = %+v, want %+v", got, want)
	}
	cell := func(n int64, p99 time.Duration) FlowOutcome { return FlowOutcome{Requests: n, P99: p99} }
	load := LoadOutcome{Regions: []string{"westeurope", "eastus", "northeurope"}, Windows: map[string]map[string]FlowOutcome{
		windowBefore: {
			cellKey("product", "westeurope"): cell(50, 20*time.Millisecond), cellKey("checkout", "westeurope"): cell(40, 100*time.Millisecond),
			cellKey("product", "northeurope"): cell(50, 30*time.Millisecond), cellKey("checkout", "northeurope"): cell(40, 100*time.Millisecond),
			cellKey("product", "eastus"):  cell(50, 30*time.Millisecond),
			cellKey("cart", "westeurope"): cell(20, 2*time.Millisecond), cellKey("cart", "northeurope"): cell(20, 2*time.Millisecond),
		},
		windowDuring: {
			cellKey("product", "westeurope"): cell(60, 40*time.Millisecond), cellKey("checkout", "westeurope"): cell(45, 6*time.Second),
			cellKey("product", "northeurope"): cell(60, 25*time.Millisecond),
			cellKey("product", "eastus"):      cell(60, 9*time.Second), // the target: not judged
			cellKey("cart", "westeurope"):     cell(20, 12*time.Millisecond),
			cellKey("cart", "northeurope"):    cell(20, 13*time.Millisecond),
		},
	}}
	got := map[string]Verdict{}
	for _, v := range judge(run{exp: e, load: load}) {
		got[v.Expectation] = v
	}
	for expect, pass := range map[string]bool{
		"product in westeurope: p99 during the fault <= 2× before":   true, // exactly twice
		"checkout in westeurope: p99 during the fault <= 2× before":  false,
		"product in northeurope: p99 during the fault <= 2× before":  true,
		"checkout in northeurope: p99 during the fault <= 2× before": false, // nothing during: no pass
		"cart in westeurope: p99 during the fault <= 2× before":      true,  // 6×, but 10 ms more
		"cart in northeurope: p99 during the fault <= 2× before":     false, // 11 ms more
	} {
		if v, ok := got[expect]; !ok || v.Pass != pass {
			t.Errorf("%s: %+v (judged: %v), want pass %v", expect, v, ok, pass)
		}
	}
	if v := got["checkout in westeurope: p99 during the fault <= 2× before"]; v.Measured != "100ms before (40 requests), 6s during (45): 60.0×" {
		t.Errorf("measured = %q", v.Measured)
	}
	if v := got["cart in westeurope: p99 during the fault <= 2× before"]; v.Measured != "2ms before (20 requests), 12ms during (20): 6.0×, within 10ms of before" {
		t.Errorf("measured = %q", v.Measured)
	}
	for expect := range got {
		if strings.Contains(expect, "eastus") {
			t.Errorf("the fault's target is judged: %s", expect)
		}
	}
}

// Conservation passes when every unit is available, held or sold, and
// fails with the SKU and the units when some are missing or made up;
// units that orders of unknown fate may hold excuse that many missing.
func TestConservation(t *testing.T) {
	ok := StockCount{SKU: "ok-42", Initial: 5, Sold: 2, Available: 2, Held: 1}
	for _, tt := range []struct {
		name     string
		stock    []StockCount
		pass     bool
		measured string
	}{
		{"not measured", nil, false, "not measured: the load read no stock back"},
		{"no SKU", []StockCount{}, true, "no checkout named a SKU"},
		{"conserved", []StockCount{ok, {SKU: "b-40", Initial: 25, Available: 25}}, true, "2 SKUs, every unit accounted for"},
		{"leak", []StockCount{ok, {SKU: "x-42", Initial: 5, Sold: 2, Available: 0}}, false,
			"3 units unaccounted on SKU x-42 (initial 5, available 0, held 0, sold 2)"},
		{"made up", []StockCount{{SKU: "x-42", Initial: 2, Sold: 2, Available: 1}}, false,
			"1 unit more than the stock on SKU x-42 (initial 2, available 1, held 0, sold 2)"},
		{"a confirmed order's hold counted as sold too", []StockCount{{SKU: "x-42", Initial: 2, Sold: 1, Available: 1, Held: 1}}, false,
			"1 unit more than the stock on SKU x-42 (initial 2, available 1, held 1, sold 1)"},
		{"orders of unknown fate", []StockCount{ok, {SKU: "x-42", Initial: 5, Sold: 1, Available: 2, Uncertain: 2}}, true,
			"2 SKUs accounted for, but 2 units on 1 SKU may be held by orders of unknown fate"},
		{"more missing than unknown", []StockCount{{SKU: "x-42", Initial: 5, Sold: 1, Available: 1, Uncertain: 2}}, false,
			"3 units unaccounted on SKU x-42 (initial 5, available 1, held 0, sold 1, 2 of unknown fate)"},
		{"not read", []StockCount{ok, {SKU: "x-42", ReadError: "GET /api/inventory/x-42: 503"}}, false,
			"the stock of SKU x-42 was not read: GET /api/inventory/x-42: 503"},
		{"several off", []StockCount{{SKU: "x-42", Initial: 1}, ok, {SKU: "y-42", Initial: 1}}, false,
			"1 unit unaccounted on SKU x-42 (initial 1, available 0, held 0, sold 0); 1 more SKU off"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			measured, pass := conservation(tt.stock)
			if pass != tt.pass || measured != tt.measured {
				t.Errorf("conservation = %q, %v; want %q, %v", measured, pass, tt.measured, tt.pass)
			}
		})
	}
}

// Match keeps what -run matches, then leaves out what -skip matches, in
// the order given; a bad expression is an error naming its flag.
func TestMatchSelectsByRunThenSkip(t *testing.T) {
	exps := []Experiment{{Name: "region-outage"}, {Name: "release-good"}, {Name: "release-bad"}, {Name: "stamp-drain"}}
	names := func(es []Experiment) string {
		var out []string
		for _, e := range es {
			out = append(out, e.Name)
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct{ run, skip, want string }{
		{"", "", "region-outage,release-good,release-bad,stamp-drain"},
		{"^release-", "", "release-good,release-bad"},
		{"", "^release-", "region-outage,stamp-drain"},
		{"^release-", "bad$", "release-good"},
		{"^release-", "^release-", ""},
		{"outage|drain", "", "region-outage,stamp-drain"},
	} {
		got, err := Match(exps, c.run, c.skip)
		if err != nil || names(got) != c.want {
			t.Errorf("Match(run %q, skip %q) = %q, %v; want %q", c.run, c.skip, names(got), err, c.want)
		}
	}
	if names(exps) != "region-outage,release-good,release-bad,stamp-drain" {
		t.Errorf("Match changed its argument: %s", names(exps))
	}
	for flag, args := range map[string][2]string{"-run": {"(", ""}, "-skip": {"", "["}} {
		if _, err := Match(exps, args[0], args[1]); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("Match(%q, %q) = %v, want an error naming %s", args[0], args[1], err, flag)
		}
	}
}
