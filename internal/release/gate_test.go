package release

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
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

// FuzzDecodeRecord: decodeRecord never panics; what it accepts is of this
// schema or older, re-encodes, and decodes again to a record that encodes
// the same; its clone is equal to it and shares nothing with it. A record
// the controller writes decodes to itself, and the invalid seeds are
// refused.
func FuzzDecodeRecord(f *testing.F) {
	at := time.Date(2026, 12, 3, 17, 5, 1, 0, time.UTC)
	full := &Record{
		Schema: Schema, ID: "20261203T170501Z-v2", Version: "v2", Image: "127.0.0.1:5000/contoso/shoes@sha256:" + strings.Repeat("ab", 32),
		Env: "dev", From: map[string]string{"eastus": "v1"}, Fault: "error=0.1", Forced: true,
		Plan: []Stage{{"eastus", 10}, {"eastus", 100}}, Gate: Gate{MinHold: time.Second, MinRequests: 5, ErrorTolerance: 0.01, Confidence: 0.99},
		Stage: 1, Phase: PhaseShifting, Paused: true, Reason: "held", By: "fuzz",
		Steps: []Step{{Stage: Stage{"eastus", 10}, StartedAt: at, EndedAt: at.Add(time.Minute), Verdict: "passed", EnoughAt: at.Add(time.Second),
			New: Reading{Flows: flows("browse", FlowReading{Requests: 40, Errors: 1, P99: 0.25}), Health: health.Healthy, Instances: 2},
			Old: Reading{Health: health.Degraded, Instances: 3}}},
		Desired:   map[string]map[string]int{"eastus": {"v1": 1, "v2": 2}},
		Traffic:   map[string]map[string]int{"eastus": {"v1": 90, "v2": 10}},
		StartedAt: at, UpdatedAt: at.Add(time.Hour), ReadyAt: at.Add(time.Second),
		FirstBadAt: at.Add(2 * time.Second), RollbackAt: at.Add(3 * time.Second), EndedAt: at.Add(4 * time.Second),
	}
	written, err := json.Marshal(full)
	if err != nil {
		f.Fatal(err)
	}
	if r, err := decodeRecord(written); err != nil || !reflect.DeepEqual(r, full) {
		f.Fatalf("a written record decodes as %+v, %v; want %+v", r, err, full)
	}
	f.Add(written)
	for _, s := range []string{
		`{"schema":1,"id":"20261203T170501Z-v2","phase":"shifting","plan":[{"region":"eastus","percent":10}],"stage":0}`,
		`{"id":"x"}`,
	} {
		if _, err := decodeRecord([]byte(s)); err != nil {
			f.Fatalf("valid seed %s refused: %v", s, err)
		}
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"schema":9}`, `[]`, `{"stage":"x"}`, `{"steps":[{"new":{"health":"fine"}}]}`, ``} {
		if _, err := decodeRecord([]byte(s)); err == nil {
			f.Fatalf("invalid seed %s accepted", s)
		}
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err != nil {
			return
		}
		if r.Schema > Schema {
			t.Fatalf("accepted schema %d", r.Schema)
		}
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("%q decodes to a record that does not encode: %v", data, err)
		}
		r2, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("%q re-encoded as %s does not decode: %v", data, enc, err)
		}
		if enc2, err := json.Marshal(r2); err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("%q: encoded %s, decoded and encoded again %s, %v", data, enc, enc2, err)
		}
		c := r.clone()
		if !reflect.DeepEqual(c, r) {
			t.Fatalf("clone %+v of %+v differs", c, r)
		}
		for k := range c.Desired {
			c.Desired[k] = nil
		}
		for i := range c.Steps {
			c.Steps[i].Verdict += "x"
			if c.Steps[i].New.Flows != nil {
				c.Steps[i].New.Flows["x"] = FlowReading{Requests: 1}
			}
			clear(c.Steps[i].Old.Flows)
		}
		clear(c.From)
		clear(c.Traffic)
		if again, _ := json.Marshal(r); !bytes.Equal(again, enc) {
			t.Fatalf("changing the clone changed the record: %s, was %s", again, enc)
		}
		if cur := r.current(); (cur == nil) != (len(r.Steps) == 0) || cur != nil && cur != &r.Steps[len(r.Steps)-1] {
			t.Fatalf("current() = %v with %d steps", cur, len(r.Steps))
		}
	})
}
