package health

import (
	"encoding/json"
	"testing"
)

// all lists every status, best first: the one order.
var all = []Status{Healthy, Degraded, Unknown, Unhealthy, Drained}

// invalid is a value outside the constants.
const invalid = Status(200)

func TestStatusOrder(t *testing.T) {
	for i, s := range all {
		if got := s.Rank(); got != i {
			t.Errorf("%s.Rank() = %d, want %d", s, got, i)
		}
		for j, o := range all {
			want := s
			if j > i {
				want = o
			}
			if got := Worse(s, o); got != want {
				t.Errorf("Worse(%s, %s) = %s, want %s", s, o, got, want)
			}
			if got := s.AtLeast(o); got != (i >= j) {
				t.Errorf("%s.AtLeast(%s) = %v, want %v", s, o, got, i >= j)
			}
		}
	}
	if got := invalid.Rank(); got != Unknown.Rank() {
		t.Errorf("%s.Rank() = %d, want Unknown's %d", invalid, got, Unknown.Rank())
	}
	if got := Worse(invalid, Degraded); got != invalid {
		t.Errorf("Worse(%s, degraded) = %s, want the invalid value (it ranks as unknown)", invalid, got)
	}
	if got := Worse(Unhealthy, invalid); got != Unhealthy {
		t.Errorf("Worse(unhealthy, %s) = %s, want unhealthy", invalid, got)
	}
}

func TestStatusUses(t *testing.T) {
	for _, tc := range []struct {
		s        Status
		rollUp   Status // what a parent in the health model sees
		routable bool   // the edge sends traffic to it
		capped   Status // CappedAt(Degraded): a limited impact
		text     string
	}{
		{Healthy, Healthy, true, Healthy, "healthy"},
		{Degraded, Degraded, true, Degraded, "degraded"},
		{Unknown, Degraded, false, Degraded, "unknown"},
		{Unhealthy, Unhealthy, false, Degraded, "unhealthy"},
		{Drained, Unhealthy, false, Degraded, "drained"},
		{invalid, Degraded, false, Degraded, "Status(200)"},
	} {
		if got := tc.s.RollUp(); got != tc.rollUp {
			t.Errorf("%s.RollUp() = %s, want %s", tc.s, got, tc.rollUp)
		}
		if got := tc.s.Routable(); got != tc.routable {
			t.Errorf("%s.Routable() = %v, want %v", tc.s, got, tc.routable)
		}
		if got := tc.s.CappedAt(Degraded); got != tc.capped {
			t.Errorf("%s.CappedAt(degraded) = %s, want %s", tc.s, got, tc.capped)
		}
		if got := tc.s.String(); got != tc.text {
			t.Errorf("String() = %q, want %q", got, tc.text)
		}
	}
	var zero Status
	if zero != Unknown || zero.Routable() || zero.RollUp() != Degraded {
		t.Errorf("the zero Status is %s, want unknown (never taken for healthy)", zero)
	}
}

// The wire keeps today's strings: /health/stamp, /ops/health, /ops/edge and
// the dashboard's snapshot all carry these values.
func TestStatusText(t *testing.T) {
	for _, s := range all {
		b, err := json.Marshal(map[string]Status{"state": s})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"state":"` + s.String() + `"}`; string(b) != want {
			t.Errorf("JSON of %s = %s, want %s", s, b, want)
		}
		var back map[string]Status
		if err := json.Unmarshal(b, &back); err != nil || back["state"] != s {
			t.Errorf("round trip of %s = %s, %v", s, back["state"], err)
		}
		if p, err := ParseStatus(s.String()); err != nil || p != s {
			t.Errorf("ParseStatus(%q) = %s, %v", s.String(), p, err)
		}
	}
	for _, text := range []string{"", "Healthy", "ok", "green", "Status(200)"} {
		if s, err := ParseStatus(text); err == nil {
			t.Errorf("ParseStatus(%q) = %s, want an error", text, s)
		}
		s := Degraded
		if err := s.UnmarshalText([]byte(text)); err == nil || s != Degraded {
			t.Errorf("UnmarshalText(%q) = %s, %v; want an error and the value unchanged", text, s, err)
		}
	}
	if _, err := json.Marshal(invalid); err == nil {
		t.Errorf("json.Marshal(%s) succeeded, want an error", invalid)
	}
}
