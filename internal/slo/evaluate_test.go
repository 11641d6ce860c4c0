package slo

import (
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// history is a table of the answers a metric history gives; a query that is
// not in the table is not answered (ok false), as for a window the history
// does not cover or a series that does not exist.
type history map[query]float64

type query struct {
	method string // "Increase" or "CountAtMost"
	metric string
	match  string // canonical: k=v pairs sorted by key, comma separated
	le     float64
	window time.Duration
}

func canonical(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func (h history) Increase(metric string, match Labels, window time.Duration) (float64, bool) {
	v, ok := h[query{"Increase", metric, canonical(match), 0, window}]
	return v, ok
}

func (h history) CountAtMost(metric string, match Labels, le float64, window time.Duration) (float64, bool) {
	v, ok := h[query{"CountAtMost", metric, canonical(match), le, window}]
	return v, ok
}

var _ Metrics = history(nil)

// The in-process names: dots in the instrument and attribute names.
const (
	histogram  = "http.server.request.duration"
	unanswered = -1 // a row value that leaves the query out of the table
)

// requests records, for flow over w, the edge's requests and its 5xx answers.
func (h history) requests(flow string, w time.Duration, total, bad5xx float64) history {
	if total != unanswered {
		h[query{"Increase", histogram, "component=edge,flow=" + flow, 0, w}] = total
	}
	if bad5xx != unanswered {
		h[query{"Increase", histogram, "component=edge,flow=" + flow + ",http.response.status_code=5*", 0, w}] = bad5xx
	}
	return h
}

// within records, for flow over w, the edge's requests and those answered
// within le seconds.
func (h history) within(flow string, le float64, w time.Duration, total, fast float64) history {
	h.requests(flow, w, total, unanswered)
	if fast != unanswered {
		h[query{"CountAtMost", histogram, "component=edge,flow=" + flow, le, w}] = fast
	}
	return h
}

const (
	m5  = 5 * time.Minute
	m30 = 30 * time.Minute
	h1  = time.Hour
	h6  = 6 * time.Hour
	d3  = 3 * 24 * time.Hour
)

func TestEvaluate(t *testing.T) {
	browse := SLO{Name: "browse-availability", Flow: "browse", Kind: Availability, Objective: 0.999}
	checkout := SLO{Name: "checkout-latency", Flow: "checkout", Kind: Latency, Objective: 0.99, Threshold: 1}
	ok := func(w string, total, bad, ratio, burn float64) WindowStatus {
		return WindowStatus{Window: w, Total: total, Bad: bad, ErrorRatio: ratio, BurnRate: burn, OK: true}
	}
	tests := []struct {
		name        string
		slo         SLO
		history     history
		wantWindows []WindowStatus // only the OK ones; the others must be zero and not OK
		wantAlerts  []string
		wantBudget  float64
	}{
		{
			name:       "no data: no window, no alert, budget untouched",
			slo:        browse,
			history:    history{},
			wantAlerts: []string{},
			wantBudget: 1,
		},
		{
			name:        "2% errors over 1h and 5m: fast burn pages",
			slo:         browse,
			history:     history{}.requests("browse", m5, 3000, 60).requests("browse", h1, 36000, 720),
			wantWindows: []WindowStatus{ok("5m", 3000, 60, 0.02, 20), ok("1h", 36000, 720, 0.02, 20)},
			wantAlerts:  []string{AlertFastBurn},
			wantBudget:  -19,
		},
		{
			name:        "errors stopped: 1h still high but 5m clean, no page",
			slo:         browse,
			history:     history{}.requests("browse", m5, 3000, 0).requests("browse", h1, 36000, 720),
			wantWindows: []WindowStatus{ok("5m", 3000, 0, 0, 0), ok("1h", 36000, 720, 0.02, 20)},
			wantAlerts:  []string{},
			wantBudget:  -19,
		},
		{
			name:        "errors just started: 5m high but 1h at burn rate 1, no page",
			slo:         browse,
			history:     history{}.requests("browse", m5, 3000, 60).requests("browse", h1, 36000, 36),
			wantWindows: []WindowStatus{ok("5m", 3000, 60, 0.02, 20), ok("1h", 36000, 36, 0.001, 1)},
			wantAlerts:  []string{},
			wantBudget:  0,
		},
		{
			name: "1% everywhere: burn rate 10 pages medium, not fast",
			slo:  browse,
			history: history{}.requests("browse", m5, 3000, 30).requests("browse", m30, 18000, 180).
				requests("browse", h1, 36000, 360).requests("browse", h6, 216000, 2160),
			wantWindows: []WindowStatus{ok("5m", 3000, 30, 0.01, 10), ok("30m", 18000, 180, 0.01, 10),
				ok("1h", 36000, 360, 0.01, 10), ok("6h", 216000, 2160, 0.01, 10)},
			wantAlerts: []string{AlertMediumBurn},
			wantBudget: -9,
		},
		{
			name: "2% everywhere: both pages",
			slo:  browse,
			history: history{}.requests("browse", m5, 3000, 60).requests("browse", m30, 18000, 360).
				requests("browse", h1, 36000, 720).requests("browse", h6, 216000, 4320),
			wantWindows: []WindowStatus{ok("5m", 3000, 60, 0.02, 20), ok("30m", 18000, 360, 0.02, 20),
				ok("1h", 36000, 720, 0.02, 20), ok("6h", 216000, 4320, 0.02, 20)},
			wantAlerts: []string{AlertFastBurn, AlertMediumBurn},
			wantBudget: -19,
		},
		{
			name: "0.2% over 3d and 6h: burn rate 2 opens a ticket, pages nobody",
			slo:  browse,
			history: history{}.requests("browse", m5, 3000, 6).requests("browse", m30, 18000, 36).
				requests("browse", h1, 36000, 72).requests("browse", h6, 216000, 432).requests("browse", d3, 2592000, 5184),
			wantWindows: []WindowStatus{ok("5m", 3000, 6, 0.002, 2), ok("30m", 18000, 36, 0.002, 2),
				ok("1h", 36000, 72, 0.002, 2), ok("6h", 216000, 432, 0.002, 2), ok("3d", 2592000, 5184, 0.002, 2)},
			wantAlerts: []string{AlertSlowBurn},
			wantBudget: -1,
		},
		{
			name:        "0.2% over 3d but 6h clean: no ticket",
			slo:         browse,
			history:     history{}.requests("browse", h6, 216000, 0).requests("browse", d3, 2592000, 5184),
			wantWindows: []WindowStatus{ok("6h", 216000, 0, 0, 0), ok("3d", 2592000, 5184, 0.002, 2)},
			wantAlerts:  []string{},
			wantBudget:  -1,
		},
		{
			name:        "0.2% over 3d at 0.09 requests/s: guarded",
			slo:         browse,
			history:     history{}.requests("browse", h6, 1944, 3.888).requests("browse", d3, 23328, 46.656),
			wantWindows: []WindowStatus{ok("6h", 1944, 3.888, 0.002, 2), ok("3d", 23328, 46.656, 0.002, 2)},
			wantAlerts:  []string{},
			wantBudget:  -1,
		},
		{
			name: "6h not answered: medium cannot fire",
			slo:  browse,
			history: history{}.requests("browse", m5, 3000, 60).requests("browse", m30, 18000, 360).
				requests("browse", h1, 36000, 720),
			wantWindows: []WindowStatus{ok("5m", 3000, 60, 0.02, 20), ok("30m", 18000, 360, 0.02, 20), ok("1h", 36000, 720, 0.02, 20)},
			wantAlerts:  []string{AlertFastBurn},
			wantBudget:  -19,
		},
		{
			name:        "every request fails but under 0.1 requests/s over 1h: guarded",
			slo:         browse,
			history:     history{}.requests("browse", m5, 30, 30).requests("browse", h1, 359, 359),
			wantWindows: []WindowStatus{ok("5m", 30, 30, 1, 1000), ok("1h", 359, 359, 1, 1000)},
			wantAlerts:  []string{},
			wantBudget:  -999,
		},
		{
			name:        "exactly 0.1 requests/s over 1h: the guard lets it page",
			slo:         browse,
			history:     history{}.requests("browse", m5, 30, 30).requests("browse", h1, 360, 360),
			wantWindows: []WindowStatus{ok("5m", 30, 30, 1, 1000), ok("1h", 360, 360, 1, 1000)},
			wantAlerts:  []string{AlertFastBurn},
			wantBudget:  -999,
		},
		{
			name: "a per-SLO minimum of 1 request/s guards 0.5/s",
			slo: SLO{Name: "browse-availability", Flow: "browse", Kind: Availability, Objective: 0.999,
				MinRequestRate: 1},
			history:     history{}.requests("browse", m5, 150, 3).requests("browse", h1, 1800, 36),
			wantWindows: []WindowStatus{ok("5m", 150, 3, 0.02, 20), ok("1h", 1800, 36, 0.02, 20)},
			wantAlerts:  []string{},
			wantBudget:  -19,
		},
		{
			name:        "no 5xx series yet: no bad requests",
			slo:         browse,
			history:     history{}.requests("browse", m5, 3000, unanswered),
			wantWindows: []WindowStatus{ok("5m", 3000, 0, 0, 0)},
			wantAlerts:  []string{},
			wantBudget:  1,
		},
		{
			name:       "answered but no requests: no data",
			slo:        browse,
			history:    history{}.requests("browse", m5, 0, 0).requests("browse", h1, 0, unanswered),
			wantAlerts: []string{},
			wantBudget: 1,
		},
		{
			name: "another flow's errors do not count",
			slo:  browse,
			history: history{}.requests("browse", m5, 3000, 0).requests("browse", h1, 36000, 0).
				requests("checkout", m5, 3000, 3000).requests("checkout", h1, 36000, 36000),
			wantWindows: []WindowStatus{ok("5m", 3000, 0, 0, 0), ok("1h", 36000, 0, 0, 0)},
			wantAlerts:  []string{},
			wantBudget:  1,
		},
		{
			name:        "latency: 20% slower than 1 s pages fast",
			slo:         checkout,
			history:     history{}.within("checkout", 1, m5, 1000, 800).within("checkout", 1, h1, 12000, 9600),
			wantWindows: []WindowStatus{ok("5m", 1000, 200, 0.2, 20), ok("1h", 12000, 2400, 0.2, 20)},
			wantAlerts:  []string{AlertFastBurn},
			wantBudget:  -19,
		},
		{
			name:        "latency: a window without the bucket count has no data",
			slo:         checkout,
			history:     history{}.within("checkout", 1, m5, 1000, 800).within("checkout", 1, h1, 12000, unanswered),
			wantWindows: []WindowStatus{ok("5m", 1000, 200, 0.2, 20)},
			wantAlerts:  []string{},
			wantBudget:  -19,
		},
		{
			name:        "latency: only the threshold's bucket counts",
			slo:         checkout,
			history:     history{}.within("checkout", 0.25, m5, 1000, 10),
			wantWindows: nil,
			wantAlerts:  []string{},
			wantBudget:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.history, []SLO{tt.slo})
			if len(got) != 1 {
				t.Fatalf("got %d statuses, want 1", len(got))
			}
			st := got[0]
			if st.SLO != tt.slo.Name || st.Flow != tt.slo.Flow || st.Kind != string(tt.slo.Kind) || st.Objective != tt.slo.Objective {
				t.Errorf("identity %q %q %q %v, want %q %q %q %v", st.SLO, st.Flow, st.Kind, st.Objective,
					tt.slo.Name, tt.slo.Flow, tt.slo.Kind, tt.slo.Objective)
			}
			if st.Error != "" {
				t.Errorf("error %q", st.Error)
			}
			want := map[string]WindowStatus{}
			for _, w := range tt.wantWindows {
				want[w.Window] = w
			}
			var names []string
			for _, w := range st.Windows {
				names = append(names, w.Window)
				wantW, ok := want[w.Window]
				if !ok {
					wantW = WindowStatus{Window: w.Window}
				}
				if w != wantW {
					t.Errorf("window %s:\n got %+v\nwant %+v", w.Window, w, wantW)
				}
			}
			if !slices.Equal(names, []string{"5m", "30m", "1h", "6h", "3d"}) {
				t.Errorf("windows %v, want 5m 30m 1h 6h 3d", names)
			}
			if !slices.Equal(st.Alerts, tt.wantAlerts) || st.Alerts == nil {
				t.Errorf("alerts %#v, want %#v", st.Alerts, tt.wantAlerts)
			}
			if st.BudgetRemaining != tt.wantBudget {
				t.Errorf("budget remaining %v, want %v", st.BudgetRemaining, tt.wantBudget)
			}
		})
	}
}

func TestEvaluateSeveralSLOsInOrder(t *testing.T) {
	h := history{}.requests("browse", m5, 3000, 60).requests("browse", h1, 36000, 720).
		within("browse", 0.25, m5, 3000, 3000).within("browse", 0.25, h1, 36000, 36000)
	slos := Default()
	got := Evaluate(h, slos)
	if len(got) != len(slos) {
		t.Fatalf("got %d statuses for %d SLOs", len(got), len(slos))
	}
	for i, st := range got {
		if st.SLO != slos[i].Name {
			t.Errorf("status %d is %s, want %s", i, st.SLO, slos[i].Name)
		}
		wantAlerts := []string{}
		if st.SLO == "browse-availability" {
			wantAlerts = []string{AlertFastBurn}
		}
		if !slices.Equal(st.Alerts, wantAlerts) {
			t.Errorf("%s: alerts %v, want %v", st.SLO, st.Alerts, wantAlerts)
		}
	}
}

func TestEvaluateInvalidSLO(t *testing.T) {
	h := history{}.requests("browse", m5, 3000, 60).requests("browse", h1, 36000, 720)
	got := Evaluate(h, []SLO{{Name: "broken", Flow: "browse", Kind: Availability, Objective: 1}})
	st := got[0]
	if !strings.Contains(st.Error, "objective 1") {
		t.Errorf("error %q, want it to name the objective", st.Error)
	}
	if len(st.Windows) != 5 || len(st.Alerts) != 0 || st.Alerts == nil || st.BudgetRemaining != 1 {
		t.Errorf("invalid SLO evaluated: %+v", st)
	}
	for _, w := range st.Windows {
		if w.OK {
			t.Errorf("window %s OK for an invalid SLO", w.Window)
		}
	}
}

func TestEvaluateNaNObjectiveStillEncodes(t *testing.T) {
	got := Evaluate(history{}, []SLO{{Name: "nan", Flow: "browse", Kind: Availability, Objective: math.NaN()}})
	if got[0].Error == "" {
		t.Error("a NaN objective evaluated without error")
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("status does not encode: %v", err)
	}
}

func TestStatusJSON(t *testing.T) {
	got := Evaluate(history{}.requests("browse", m5, 3000, 60), []SLO{{Name: "browse-availability", Flow: "browse", Kind: Availability, Objective: 0.999}})
	b, err := json.Marshal(got[0])
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"slo", "flow", "kind", "objective", "windows", "budgetRemaining", "alerts"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON %s has no %q", b, k)
		}
	}
	if _, ok := doc["error"]; ok {
		t.Errorf("JSON %s has an error", b)
	}
	if a, ok := doc["alerts"].([]any); !ok || len(a) != 0 {
		t.Errorf("alerts %v, want []", doc["alerts"])
	}
	w := doc["windows"].([]any)[0].(map[string]any)
	for k, want := range map[string]any{"window": "5m", "total": 3000.0, "bad": 60.0, "errorRatio": 0.02, "burnRate": 20.0, "ok": true} {
		if w[k] != want {
			t.Errorf("window field %q = %v, want %v", k, w[k], want)
		}
	}
}

// ownLabels stands for a history whose package declares its own label map
// type, as a defined type rather than an alias.
type ownLabels map[string]string

type ownHistory struct{ h history }

func (o ownHistory) Increase(metric string, match ownLabels, window time.Duration) (float64, bool) {
	return o.h.Increase(metric, map[string]string(match), window)
}

func (o ownHistory) CountAtMost(metric string, match ownLabels, le float64, window time.Duration) (float64, bool) {
	return o.h.CountAtMost(metric, map[string]string(match), le, window)
}

func TestAdapt(t *testing.T) {
	src := ownHistory{history{}.requests("browse", m5, 3000, 60).requests("browse", h1, 36000, 720).
		within("checkout", 1, m5, 1000, 800)}
	got := Evaluate(Adapt(src), []SLO{
		{Name: "browse-availability", Flow: "browse", Kind: Availability, Objective: 0.999},
		{Name: "checkout-latency", Flow: "checkout", Kind: Latency, Objective: 0.99, Threshold: 1},
	})
	if !slices.Equal(got[0].Alerts, []string{AlertFastBurn}) {
		t.Errorf("browse alerts %v through Adapt, want %v", got[0].Alerts, []string{AlertFastBurn})
	}
	if w := got[1].Windows[0]; !w.OK || w.Bad != 200 {
		t.Errorf("checkout 5m through Adapt: %+v, want 200 bad", w)
	}
}
