package release

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/health"
)

func flows(kv ...any) map[string]FlowReading {
	m := map[string]FlowReading{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(FlowReading)
	}
	return m
}

func TestJudge(t *testing.T) {
	healthy := health.Healthy
	ok := FlowReading{Requests: 400, P99: 0.020}
	okCheckout := FlowReading{Requests: 40, P99: 0.080}
	tests := []struct {
		name     string
		cur, old Reading
		held     time.Duration
		want     Verdict
		reason   string // a part of the reason
	}{
		{"too early", Reading{Health: healthy, Flows: flows("browse", ok)}, Reading{Health: healthy, Flows: flows("browse", ok)}, time.Second, Hold, "held 1s of 5s"},
		{"too few requests", Reading{Health: healthy, Flows: flows("browse", FlowReading{Requests: 12})}, Reading{Health: healthy, Flows: flows("browse", ok)}, time.Minute, Hold, "12 of 30 requests"},
		{"good", Reading{Health: healthy, Flows: flows("browse", ok, "checkout", okCheckout)}, Reading{Health: healthy, Flows: flows("browse", ok, "checkout", okCheckout)}, 6 * time.Second, Pass, "browse p99 20ms vs 20ms"},
		{"degraded on both is fine", Reading{Health: health.Degraded, Flows: flows("browse", ok)}, Reading{Health: health.Degraded, Flows: flows("browse", ok)}, 6 * time.Second, Pass, ""},
		{"unhealthy new, healthy old", Reading{Health: health.Unhealthy, Flows: flows("browse", ok)}, Reading{Health: healthy, Flows: flows("browse", ok)}, time.Second, Fail, "new stamps unhealthy while the old ones are healthy"},
		{"unhealthy on both is not the release's", Reading{Health: health.Unhealthy, Flows: flows("browse", ok)}, Reading{Health: health.Unhealthy, Flows: flows("browse", ok)}, 6 * time.Second, Pass, ""},
		{"errors certain early", Reading{Health: healthy, Flows: flows("checkout", FlowReading{Requests: 20, Errors: 3})}, Reading{Health: healthy, Flows: flows("checkout", okCheckout)}, time.Second, Fail, "checkout errors: 3 of 20"},
		{"one error is not yet certain", Reading{Health: healthy, Flows: flows("checkout", FlowReading{Requests: 20, Errors: 1})}, Reading{Health: healthy, Flows: flows("checkout", okCheckout)}, time.Second, Hold, "held"},
		{"error ratio above tolerance at the end", Reading{Health: healthy, Flows: flows("checkout", FlowReading{Requests: 40, Errors: 1})}, Reading{Health: healthy, Flows: flows("checkout", okCheckout)}, 6 * time.Second, Fail, "checkout error ratio 2.50 %"},
		{"errors on both within tolerance", Reading{Health: healthy, Flows: flows("browse", FlowReading{Requests: 400, Errors: 8})}, Reading{Health: healthy, Flows: flows("browse", FlowReading{Requests: 4000, Errors: 80})}, 6 * time.Second, Pass, ""},
		{"slow", Reading{Health: healthy, Flows: flows("browse", FlowReading{Requests: 400, P99: 0.350})}, Reading{Health: healthy, Flows: flows("browse", ok)}, 6 * time.Second, Fail, "browse p99 350ms on the new version, 20ms on the old (limit 120ms)"},
		{"slower but within slack", Reading{Health: healthy, Flows: flows("browse", FlowReading{Requests: 400, P99: 0.110})}, Reading{Health: healthy, Flows: flows("browse", ok)}, 6 * time.Second, Pass, ""},
		{"p99 not judged on few requests", Reading{Health: healthy, Flows: flows("browse", ok, "comment", FlowReading{Requests: 3, P99: 2})}, Reading{Health: healthy, Flows: flows("browse", ok, "comment", FlowReading{Requests: 3, P99: 0.01})}, 6 * time.Second, Pass, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := Judge(Gate{}, tt.cur, tt.old, tt.held)
			if got != tt.want || !strings.Contains(why, tt.reason) {
				t.Fatalf("Judge = %s %q, want %s containing %q", got, why, tt.want, tt.reason)
			}
		})
	}
}

func TestBinomialTail(t *testing.T) {
	tests := []struct {
		n, k int
		p    float64
		want float64
	}{
		{10, 0, 0.3, 1},
		{10, 11, 0.3, 0},
		{1, 1, 0.5, 0.5},
		{2, 1, 0.5, 0.75},
		{20, 2, 0.01, 1 - math.Pow(0.99, 20) - 20*0.01*math.Pow(0.99, 19)},
		{5, 2, 0, 0},
		{5, 2, 1, 1},
	}
	for _, tt := range tests {
		if got := binomialTail(tt.n, tt.k, tt.p); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("binomialTail(%d, %d, %g) = %g, want %g", tt.n, tt.k, tt.p, got, tt.want)
		}
	}
}

func TestBuildPlan(t *testing.T) {
	plan, err := BuildPlan([]string{"eastus", "westeurope"}, []int{10, 100})
	if err != nil {
		t.Fatal(err)
	}
	want := []Stage{{"eastus", 10}, {"westeurope", 10}, {"eastus", 100}, {"westeurope", 100}}
	if len(plan) != len(want) {
		t.Fatalf("plan = %v, want %v", plan, want)
	}
	for i := range want {
		if plan[i] != want[i] {
			t.Fatalf("plan = %v, want %v", plan, want)
		}
	}
	for _, bad := range []struct {
		regions []string
		steps   []int
	}{
		{nil, []int{100}},
		{[]string{"a"}, nil},
		{[]string{"a"}, []int{10, 50}},
		{[]string{"a"}, []int{50, 10, 100}},
		{[]string{"a"}, []int{0, 100}},
		{[]string{"a"}, []int{10, 100, 100}},
		{[]string{"a"}, []int{-5, 100}},
		{[]string{"a", "a"}, []int{100}},
		{[]string{""}, []int{100}},
	} {
		if _, err := BuildPlan(bad.regions, bad.steps); err == nil {
			t.Errorf("BuildPlan(%v, %v) accepted", bad.regions, bad.steps)
		}
	}
}

func TestARecordOfANewerSchemaIsRefused(t *testing.T) {
	if _, err := decodeRecord([]byte(`{"schema":2,"id":"x"}`)); err == nil || !strings.Contains(err.Error(), "schema 2") {
		t.Fatalf("decodeRecord(schema 2) = %v", err)
	}
	r, err := decodeRecord([]byte(`{"schema":1,"id":"x","phase":"done","unknownLater":true}`))
	if err != nil || r.ID != "x" || r.Phase != PhaseDone {
		t.Fatalf("decodeRecord(schema 1 with an unknown field) = %+v, %v", r, err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"schema":1,"id":"20261203T170501Z-v2","phase":"shifting","plan":[{"region":"eastus","percent":10}],"stage":0}`))
	f.Add([]byte(`{"schema":9}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err != nil {
			return
		}
		if r.Schema > Schema {
			t.Fatalf("accepted schema %d", r.Schema)
		}
		_ = r.clone()
		_ = r.current()
	})
}
