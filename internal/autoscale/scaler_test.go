package autoscale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/shop"
)

// machine stands for the hosts the scaler starts instances on and for
// what the operations plane reads of them: instances start at once, each
// with the load the test gives its region, shared equally.
type machine struct {
	mu      sync.Mutex
	next    int
	running []release.Instance
	zone    map[string]string
	load    map[string]float64 // region -> requests in flight over all its ready instances
	stopped []string
}

func newMachine(counts map[string]int) *machine {
	m := &machine{zone: map[string]string{}, load: map[string]float64{}}
	for region, n := range counts {
		for range n {
			_, _ = m.Start(context.Background(), release.Spec{Region: region})
		}
	}
	return m
}

func (m *machine) Start(_ context.Context, spec release.Spec) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next++
	id := fmt.Sprintf("%s-%02d", spec.Region, m.next)
	m.running = append(m.running, release.Instance{ID: id, Region: spec.Region, Release: "v1"})
	m.zone[id] = fmt.Sprintf("%s-%d", spec.Region, 1+m.next%2)
	return id, nil
}

func (m *machine) Stop(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running = slices.DeleteFunc(m.running, func(in release.Instance) bool { return in.ID == id })
	m.stopped = append(m.stopped, id)
	return nil
}

func (m *machine) Running() []release.Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.running)
}

func (m *machine) Loads() []InstanceLoad {
	m.mu.Lock()
	defer m.mu.Unlock()
	per := map[string]int{}
	for _, in := range m.running {
		per[in.Region]++
	}
	var out []InstanceLoad
	for _, in := range m.running {
		out = append(out, InstanceLoad{ID: in.ID, Region: in.Region, Zone: m.zone[in.ID], Release: in.Release, Ready: true, Requests: 1,
			Load: &Load{InFlight: m.load[in.Region] / float64(per[in.Region]), Capacity: 10, Requests: 100}})
	}
	return out
}

func (m *machine) count(region string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, in := range m.running {
		if in.Region == region {
			n++
		}
	}
	return n
}

func (m *machine) setLoad(region string, inFlight float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.load[region] = inFlight
}

// clock is a test's clock, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newScaler(t *testing.T, m *machine, c *clock, hold func(context.Context) string) *Scaler {
	t.Helper()
	s, err := New(Config{Launcher: m, Observer: m, Regions: func() []string { return []string{"eastus", "westeurope"} },
		Hold: hold, Default: Limits{Min: 2, Max: 6},
		Policy: Policy{Target: 0.6, Tolerance: 0.1, ScaleOutAfter: 2 * time.Second, ScaleInAfter: 10 * time.Second},
		Now:    c.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// evaluate runs one evaluation every second for secs seconds and waits
// for the starts and drains it began.
func evaluate(s *Scaler, c *clock, secs int) {
	for range secs {
		s.Evaluate(context.Background())
		s.wg.Wait()
		c.add(time.Second)
	}
}

func TestScalerAddsOnLoadAndDrainsOneAtATime(t *testing.T) {
	m := newMachine(map[string]int{"eastus": 2, "westeurope": 2})
	c := &clock{t: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)}
	s := newScaler(t, m, c, nil)

	m.setLoad("eastus", 30) // 150 % of 2 × 10: five instances at 60 %
	evaluate(s, c, 4)
	if got := m.count("eastus"); got != 5 {
		t.Fatalf("eastus runs %d instances after 4 s at 150 %%, want 5", got)
	}
	if got := m.count("westeurope"); got != 2 {
		t.Fatalf("westeurope (idle) runs %d instances, want its min 2", got)
	}
	st := s.Status()
	out := findEvent(st.Events, "scale-out")
	if out == nil || out.Region != "eastus" || out.From != 2 || out.To != 5 || out.Inputs == nil || out.ExceededAt.IsZero() {
		t.Fatalf("scale-out event: %+v", out)
	}
	if ev := findEvent(st.Events, "serving"); ev == nil || ev.ToTrafficMs <= 0 {
		t.Fatalf("no serving event with a time to traffic: %+v", st.Events)
	}

	m.setLoad("eastus", 0)
	counts := []int{}
	for range 40 {
		evaluate(s, c, 1)
		counts = append(counts, m.count("eastus"))
	}
	if got := m.count("eastus"); got != 2 {
		t.Fatalf("eastus runs %d instances 40 s after the load ended, want min 2 (counts %v)", got, counts)
	}
	// One at a time, each a stabilisation window after the last change.
	for i := 1; i < len(counts); i++ {
		if counts[i-1]-counts[i] > 1 {
			t.Fatalf("scale-in removed %d at once: %v", counts[i-1]-counts[i], counts)
		}
	}
	var ins []time.Time
	for _, e := range s.Status().Events {
		if e.Action == "scale-in" {
			ins = append(ins, e.At)
		}
	}
	if len(ins) != 3 {
		t.Fatalf("%d scale-ins, want 3", len(ins))
	}
	for i := 1; i < len(ins); i++ {
		if gap := ins[i-1].Sub(ins[i]); gap < 10*time.Second {
			t.Fatalf("two scale-ins %s apart, within the 10 s window", gap)
		}
	}
}

func TestScalerHoldsWhileAReleaseIsUnderWay(t *testing.T) {
	m := newMachine(map[string]int{"eastus": 2, "westeurope": 2})
	c := &clock{t: time.Now()}
	var mu sync.Mutex
	reason := "release r1 is under way"
	s := newScaler(t, m, c, func(context.Context) string { mu.Lock(); defer mu.Unlock(); return reason })
	m.setLoad("eastus", 40)
	evaluate(s, c, 5)
	if got := m.count("eastus"); got != 2 {
		t.Fatalf("eastus runs %d instances during a release, want 2: the scaler holds", got)
	}
	if st := s.Status(); st.Held != reason || !strings.HasPrefix(st.Regions[0].Reason, "held: ") {
		t.Fatalf("status during the hold: held %q, region reason %q", st.Held, st.Regions[0].Reason)
	}
	mu.Lock()
	reason = ""
	mu.Unlock()
	evaluate(s, c, 4)
	if got := m.count("eastus"); got <= 2 {
		t.Fatalf("eastus runs %d instances after the release, want a scale-out", got)
	}
	if findEvent(s.Status().Events, "resumed") == nil {
		t.Fatal("no resumed event")
	}
}

func TestAPreScaleWarmsARegionUntilItsTime(t *testing.T) {
	m := newMachine(map[string]int{"eastus": 2, "westeurope": 2})
	c := &clock{t: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)}
	s := newScaler(t, m, c, nil)
	evaluate(s, c, 1)
	four := 4
	if _, err := s.Apply(Update{Regions: map[string]RegionUpdate{"eastus": {Max: &four, PreScale: &PreScale{Min: 4, Until: c.now().Add(30 * time.Second)}}}}); err != nil {
		t.Fatal(err)
	}
	evaluate(s, c, 1)
	if got := m.count("eastus"); got != 4 {
		t.Fatalf("eastus runs %d instances after a pre-scale to 4, want 4", got)
	}
	evaluate(s, c, 25)
	if got := m.count("eastus"); got != 4 {
		t.Fatalf("eastus runs %d instances within its pre-scale, want 4", got)
	}
	evaluate(s, c, 40)
	if got := m.count("eastus"); got != 2 {
		t.Fatalf("eastus runs %d instances after its pre-scale ended, want min 2", got)
	}
}

func findEvent(events []Event, action string) *Event {
	for i := range events {
		if events[i].Action == action {
			return &events[i]
		}
	}
	return nil
}

func TestScalingAPIRefusesBadInput(t *testing.T) {
	m := newMachine(map[string]int{"eastus": 2})
	c := &clock{t: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)}
	s := newScaler(t, m, c, nil)
	mux := http.NewServeMux()
	s.Routes(mux, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	past := c.now().Add(-time.Hour).Format(time.RFC3339)
	far := c.now().Add(30 * 24 * time.Hour).Format(time.RFC3339)
	tests := []struct {
		name, body, ctype string
		status            int
		detail            string
	}{
		{"not json", `{`, "application/json", 400, ""},
		{"unknown field", `{"targetz": 0.5}`, "application/json", 400, ""},
		{"wrong type", `{"target": "high"}`, "application/json", 400, ""},
		{"media type", `{"target": 0.5}`, "text/plain", 415, ""},
		{"oversized", `{"target": 0.5, "x": "` + strings.Repeat("a", 2<<20) + `"}`, "application/json", 413, ""},
		{"target too low", `{"target": 0.01}`, "application/json", 400, "target"},
		{"target too high", `{"target": 1.5}`, "application/json", 400, "target"},
		{"negative window", `{"scaleInAfterSeconds": -1}`, "application/json", 400, "scaleInAfterSeconds"},
		{"window too long", `{"scaleOutAfterSeconds": 86400}`, "application/json", 400, "scaleOutAfterSeconds"},
		{"unknown region", `{"regions": {"mars": {"min": 1}}}`, "application/json", 400, "mars"},
		{"min zero", `{"regions": {"eastus": {"min": 0}}}`, "application/json", 400, "min"},
		{"max under min", `{"regions": {"eastus": {"min": 3, "max": 2}}}`, "application/json", 400, "max"},
		{"max too high", `{"regions": {"eastus": {"max": 1000}}}`, "application/json", 400, "max"},
		{"pre-scale in the past", `{"regions": {"eastus": {"preScale": {"min": 3, "until": "` + past + `"}}}}`, "application/json", 400, "pre-scale"},
		{"pre-scale too far", `{"regions": {"eastus": {"preScale": {"min": 3, "until": "` + far + `"}}}}`, "application/json", 400, "pre-scale"},
		{"pre-scale above max", `{"regions": {"eastus": {"preScale": {"min": 9, "until": "` + c.now().Add(time.Hour).Format(time.RFC3339) + `"}}}}`, "application/json", 400, "above max"},
		{"instance settings not here", `{"instance": {"capacity": 4}}`, "application/json", 409, "configuration"},
	}
	before := s.Status()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, srv.URL+"/ops/scaling", bytes.NewBufferString(tt.body))
			req.Header.Set("Content-Type", tt.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p struct {
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatalf("decode problem: %v", err)
			}
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/problem+json" || p.Status != tt.status {
				t.Fatalf("status %d (%s), problem %+v; want %d problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), p, tt.status)
			}
			if !strings.Contains(p.Detail, tt.detail) {
				t.Fatalf("detail %q does not name %q", p.Detail, tt.detail)
			}
		})
	}
	after := s.Status()
	if after.Policy != before.Policy || len(after.Events) != len(before.Events) {
		t.Fatalf("a refused change changed the rules: %+v -> %+v", before.Policy, after.Policy)
	}

	// A good change is applied whole and answered with the new status.
	body := `{"target": 0.5, "scaleInAfterSeconds": 30, "regions": {"eastus": {"min": 1, "max": 4}}}`
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/ops/scaling", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("good change: %d %v", resp.StatusCode, err)
	}
	if st.Policy.Target != 0.5 || st.Policy.ScaleInAfterSeconds != 30 || st.Events[0].Action != "settings" {
		t.Fatalf("status after a good change: %+v", st)
	}
	cl := &Client{BaseURL: srv.URL}
	got, err := cl.Status(context.Background())
	if err != nil || got.Policy.Target != 0.5 {
		t.Fatalf("client status: %+v %v", got.Policy, err)
	}
}

// A region's inputs sum the orders its ready instances process and take
// the order queue's backlog from the freshest reading (the queue is
// shared: summing it would count it once per instance); an instance that
// is not ready counts for nothing. The recommendation does not read them.
// (Mutation tried: the backlog summed: 55 queued.)
func TestInputsCarryTheFreshestOrderQueueReading(t *testing.T) {
	c := &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	s := newScaler(t, newMachine(nil), c, nil)
	loads := map[string]InstanceLoad{
		"a": {Ready: true, Load: &Load{InFlight: 8, Capacity: 10, Requests: 100, Orders: &Orders{InProcess: 2, Queued: 30, OldestMs: 900, ReadAgoMs: 700}}},
		"b": {Ready: true, Load: &Load{InFlight: 8, Capacity: 10, Requests: 100, Orders: &Orders{InProcess: 3, Queued: 25, OldestMs: 400, ReadAgoMs: 100}}},
		"c": {Ready: true, Load: &Load{InFlight: 8, Capacity: 10, Requests: 100}},
		"d": {Load: &Load{Orders: &Orders{InProcess: 9, Queued: 99}}},
	}
	s.mu.Lock()
	in := s.inputs("eastus", []string{"a", "b", "c", "d"}, loads, c.now())
	s.mu.Unlock()
	if in.Reporting != 3 || in.OrdersInProcess != 5 || in.OrdersQueued != 25 || in.OrdersOldestMs != 400 {
		t.Fatalf("inputs = %+v; want 3 reporting, 5 orders in process, 25 queued, the oldest 400 ms", in)
	}
	without := in
	without.OrdersInProcess, without.OrdersQueued, without.OrdersOldestMs = 0, 0, 0
	p := DefaultPolicy()
	if got, want := p.Recommend(in), p.Recommend(without); got != want {
		t.Fatalf("Recommend with orders = %d, without = %d; want the same", got, want)
	}
}

// settingsControl keeps the instance settings the scaler gives it, as the
// operations plane's store-backed control does; refuse, when set, is its
// answer to settings with work (the prod environment's).
type settingsControl struct {
	mu     sync.Mutex
	cur    *InstanceSettings
	refuse error
}

func (c *settingsControl) InstanceSettings() (InstanceSettings, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return InstanceSettings{}, false
	}
	return *c.cur, true
}

func (c *settingsControl) SetInstanceSettings(is *InstanceSettings) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if is != nil && is.WorkMs > 0 && c.refuse != nil {
		return c.refuse
	}
	c.cur = is
	return nil
}

// PUT /ops/scaling sets every instance's settings (instance) or puts them
// back on their own configuration (resetInstance); GET shows them only
// while they are in force. Settings out of range, both fields at once,
// and what the control refuses are problems that change nothing.
func TestScalingAPISetsAndResetsTheInstanceSettings(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)}
	ctl := &settingsControl{}
	s, err := New(Config{Launcher: newMachine(nil), Observer: newMachine(nil), Regions: func() []string { return []string{"eastus"} },
		Default: Limits{Min: 2, Max: 6}, Instances: ctl, Now: c.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Routes(mux, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cl := &Client{BaseURL: srv.URL}
	ctx := t.Context()

	if st, err := cl.Status(ctx); err != nil || st.Instances != nil {
		t.Fatalf("status before any settings: instance %+v, %v; want none", st.Instances, err)
	}
	st, err := cl.Apply(ctx, Update{Instance: &InstanceSettings{Capacity: 3, WorkMs: 20}})
	if err != nil || st.Instances == nil || *st.Instances != (InstanceSettings{Capacity: 3, WorkMs: 20}) {
		t.Fatalf("set: instance %+v, %v; want capacity 3, work 20 ms", st.Instances, err)
	}

	ctl.refuse = shop.Errorf(shop.KindForbidden, "", "simulated work is refused in the prod environment")
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"capacity zero", `{"instance": {"capacity": 0}}`, 400},
		{"capacity too high", `{"instance": {"capacity": 100001}}`, 400},
		{"negative work", `{"instance": {"capacity": 1, "workMs": -1}}`, 400},
		{"work too long", `{"instance": {"capacity": 1, "workMs": 10001}}`, 400},
		{"both", `{"instance": {"capacity": 1}, "resetInstance": true}`, 400},
		{"reset not a boolean", `{"resetInstance": "yes"}`, 400},
		{"refused by the control", `{"instance": {"capacity": 1, "workMs": 5}}`, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, srv.URL+"/ops/scaling", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d (%s), want %d problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), tc.status)
			}
			if is, ok := ctl.InstanceSettings(); !ok || is != (InstanceSettings{Capacity: 3, WorkMs: 20}) {
				t.Fatalf("a refused change left the settings at %+v (%v)", is, ok)
			}
		})
	}

	if st, err := cl.Apply(ctx, Update{ResetInstance: true}); err != nil || st.Instances != nil {
		t.Fatalf("reset: instance %+v, %v; want none", st.Instances, err)
	}
	if _, ok := ctl.InstanceSettings(); ok {
		t.Fatal("after a reset the control still has settings")
	}
}
