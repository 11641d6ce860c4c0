package slo

import (
	"strings"
	"testing"
	"time"
)

func TestLoadValidation(t *testing.T) {
	const avail = "  - {name: a, flow: browse, kind: availability, objective: 0.999}\n"
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; empty: valid
	}{
		{name: "valid availability", yaml: "slos:\n" + avail},
		{name: "valid latency", yaml: "slos:\n  - {name: l, flow: browse, kind: latency, objective: 0.99, threshold: 0.25}\n"},
		{name: "every bucket boundary is a threshold", yaml: "slos:\n  - {name: l, flow: f, kind: latency, objective: 0.9, threshold: 0.001}\n" +
			"  - {name: m, flow: f, kind: latency, objective: 0.9, threshold: 10}\n"},
		{name: "empty document", yaml: "", wantErr: "no SLOs"},
		{name: "empty list", yaml: "slos: []\n", wantErr: "no SLOs"},
		{name: "not yaml", yaml: "slos: [\n", wantErr: "load slos"},
		{name: "unknown field", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, objectiv: 1}\n", wantErr: "objectiv"},
		{name: "objective 1", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 1}\n", wantErr: "objective 1"},
		{name: "objective 0", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0}\n", wantErr: "objective 0"},
		{name: "objective missing", yaml: "slos:\n  - {name: a, flow: browse, kind: availability}\n", wantErr: "objective 0"},
		{name: "objective negative", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: -0.5}\n", wantErr: "objective -0.5"},
		{name: "objective as percent", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 99.9}\n", wantErr: "objective 99.9"},
		{name: "objective NaN", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: .nan}\n", wantErr: "objective NaN"},
		{name: "threshold not a boundary", yaml: "slos:\n  - {name: l, flow: browse, kind: latency, objective: 0.99, threshold: 0.3}\n", wantErr: "threshold 0.3: not a histogram bucket boundary"},
		{name: "latency without threshold", yaml: "slos:\n  - {name: l, flow: browse, kind: latency, objective: 0.99}\n", wantErr: "threshold 0: not a histogram bucket boundary"},
		{name: "availability with threshold", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, threshold: 1}\n", wantErr: "an availability SLO has none"},
		{name: "unknown kind", yaml: "slos:\n  - {name: a, flow: browse, kind: throughput, objective: 0.999}\n", wantErr: `kind "throughput"`},
		{name: "duplicate name", yaml: "slos:\n" + avail + avail, wantErr: `"a": duplicate name`},
		{name: "missing name", yaml: "slos:\n  - {flow: browse, kind: availability, objective: 0.999}\n", wantErr: `name ""`},
		{name: "name with quote", yaml: "slos:\n  - {name: 'a\"b', flow: browse, kind: availability, objective: 0.999}\n", wantErr: "want lower case"},
		{name: "upper case name", yaml: "slos:\n  - {name: Browse, flow: browse, kind: availability, objective: 0.999}\n", wantErr: "want lower case"},
		{name: "missing flow", yaml: "slos:\n  - {name: a, kind: availability, objective: 0.999}\n", wantErr: `flow ""`},
		{name: "period in weeks", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, period: 4w}\n"},
		{name: "period in hours", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, period: 720h}\n"},
		{name: "period shorter than the longest window", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, period: 2d}\n", wantErr: "at least 3d"},
		{name: "period not whole hours", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, period: 100h30m}\n", wantErr: "whole hours"},
		{name: "period without unit", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, period: 30}\n", wantErr: `period "30"`},
		{name: "period zero days", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, period: 0d}\n", wantErr: `period "0d"`},
		{name: "negative min rate", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, minRequestRate: -1}\n", wantErr: "minRequestRate -1"},
		{name: "infinite min rate", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, minRequestRate: .inf}\n", wantErr: "minRequestRate +Inf"},
		{name: "template in description", yaml: "slos:\n  - {name: a, flow: browse, kind: availability, objective: 0.999, description: 'x {{ y }}'}\n", wantErr: "must not contain {{"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slos, err := Load([]byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if len(slos) == 0 {
					t.Fatal("Load returned no SLOs and no error")
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded with %+v; want an error containing %q", slos, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	_, err := Load([]byte("slos:\n  - {name: a, flow: browse, kind: latency, objective: 2, threshold: 0.3}\n"))
	if err == nil {
		t.Fatal("Load succeeded")
	}
	for _, want := range []string{"objective 2", "threshold 0.3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestLoadDefaultsAndOrder(t *testing.T) {
	slos, err := Load([]byte(`slos:
  - name: z-first
    flow: browse
    kind: availability
    objective: 0.999
  - name: a-second
    flow: checkout
    kind: latency
    objective: 0.95
    threshold: 2.5
    period: 4w
    minRequestRate: 0.5
    description: "  Orders within 2.5 s.  "
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []SLO{
		{Name: "z-first", Flow: "browse", Kind: Availability, Objective: 0.999, Period: 30 * 24 * time.Hour, MinRequestRate: 0.1},
		{Name: "a-second", Flow: "checkout", Kind: Latency, Objective: 0.95, Threshold: 2.5, Period: 28 * 24 * time.Hour, MinRequestRate: 0.5, Description: "Orders within 2.5 s."},
	}
	if len(slos) != len(want) {
		t.Fatalf("got %d SLOs, want %d", len(slos), len(want))
	}
	for i := range want {
		if slos[i] != want[i] {
			t.Errorf("SLO %d:\n got %+v\nwant %+v", i, slos[i], want[i])
		}
	}
}

func TestDefault(t *testing.T) {
	slos := Default()
	type key struct {
		flow string
		kind Kind
	}
	want := map[key]struct {
		objective, threshold float64
	}{
		{"browse", Availability}:   {0.999, 0},
		{"browse", Latency}:        {0.99, 0.25},
		{"comment", Availability}:  {0.995, 0},
		{"comment", Latency}:       {0.99, 0.25},
		{"checkout", Availability}: {0.999, 0},
		{"checkout", Latency}:      {0.99, 1},
	}
	if len(slos) != len(want) {
		t.Fatalf("Default has %d SLOs, want %d", len(slos), len(want))
	}
	for _, s := range slos {
		w, ok := want[key{s.Flow, s.Kind}]
		if !ok {
			t.Errorf("unexpected SLO %+v", s)
			continue
		}
		delete(want, key{s.Flow, s.Kind})
		if s.Objective != w.objective || s.Threshold != w.threshold {
			t.Errorf("%s: objective %v threshold %v, want %v and %v", s.Name, s.Objective, s.Threshold, w.objective, w.threshold)
		}
		if s.Name != s.Flow+"-"+string(s.Kind) {
			t.Errorf("%s: want name %s-%s", s.Name, s.Flow, s.Kind)
		}
		if s.Period != 30*24*time.Hour {
			t.Errorf("%s: period %v, want 30 days", s.Name, s.Period)
		}
		if s.MinRequestRate <= 0 || s.Description == "" {
			t.Errorf("%s: min request rate %v, description %q", s.Name, s.MinRequestRate, s.Description)
		}
	}
}

func TestErrorBudget(t *testing.T) {
	for _, tt := range []struct {
		objective, want float64
	}{
		{0.999, 0.001}, {0.995, 0.005}, {0.99, 0.01}, {0.9999, 0.0001}, {0.5, 0.5},
	} {
		if got := (SLO{Objective: tt.objective}).ErrorBudget(); got != tt.want {
			t.Errorf("ErrorBudget(%v) = %v, want %v", tt.objective, got, tt.want)
		}
	}
}

func TestBurnThresholds(t *testing.T) {
	// The SRE workbook's thresholds for a 30 day period, and the same shares
	// of budget for 28 days.
	for _, tt := range []struct {
		period time.Duration
		want   map[string]float64
	}{
		{30 * 24 * time.Hour, map[string]float64{AlertFastBurn: 14.4, AlertMediumBurn: 6, AlertSlowBurn: 1}},
		{28 * 24 * time.Hour, map[string]float64{AlertFastBurn: 13.44, AlertMediumBurn: 5.6, AlertSlowBurn: 28.0 / 30}},
	} {
		for _, a := range burnAlerts() {
			if got := a.threshold(tt.period); got != tt.want[a.name] {
				t.Errorf("period %v, %s: threshold %v, want %v", tt.period, a.name, got, tt.want[a.name])
			}
		}
	}
}
