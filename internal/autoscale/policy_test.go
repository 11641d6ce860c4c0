package autoscale

import (
	"testing"
	"time"
)

// load is a region of n instances, all reporting, with capacity 10 each
// and inFlight requests in flight in all.
func load(n int, inFlight float64) Inputs {
	return Inputs{Instances: n, Reporting: n, InFlight: inFlight, Capacity: 10 * n, Requests: 100, Min: 1, Max: 8}
}

func TestRecommendFollowsUtilisationOverTarget(t *testing.T) {
	p := DefaultPolicy()
	tests := []struct {
		name string
		in   Inputs
		want int
	}{
		{"at target", load(2, 12), 2},
		{"within tolerance above", load(2, 13), 2},
		{"twice the target", load(2, 24), 4},
		{"a third of the target", load(3, 6), 1},
		{"idle", load(3, 0), 1},
		{"nobody reports", Inputs{Instances: 3, Min: 1, Max: 8}, 3},
		// Full, and as many requests shed as served: demand is twice the
		// capacity, so 2 × 2 / 0.6 = 6.67.
		{"shedding", Inputs{Instances: 2, Reporting: 2, InFlight: 20, Capacity: 20, Requests: 100, Shed: 100, Min: 1, Max: 8}, 7},
		// One of three still starting: it counts, not its missing load.
		{"starting counts", Inputs{Instances: 3, Reporting: 2, InFlight: 24, Capacity: 20, Requests: 100, Min: 1, Max: 8}, 5},
		{"starting, load low", Inputs{Instances: 3, Reporting: 2, InFlight: 1, Capacity: 20, Requests: 100, Min: 1, Max: 8}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Recommend(tt.in); got != tt.want {
				t.Errorf("Recommend(%+v) = %d (utilisation %.2f), want %d", tt.in, got, tt.in.Utilisation(), tt.want)
			}
		})
	}
}

// step is one evaluation of a timeline: at t seconds, these inputs, this
// count wanted.
type step struct {
	at   float64
	in   Inputs
	want int
}

func runSteps(t *testing.T, p Policy, steps []step) {
	t.Helper()
	var st State
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for _, s := range steps {
		d := p.Decide(&st, s.in, t0.Add(time.Duration(s.at*float64(time.Second))))
		if d.Want != s.want {
			t.Fatalf("at %.1fs with %d instances (utilisation %.2f, min %d, max %d): want %d, decided %d (%s)",
				s.at, s.in.Instances, s.in.Utilisation(), s.in.Min, s.in.Max, s.want, d.Want, d.Reason)
		}
	}
}

func TestDecideScalesOutFastAndInSlowly(t *testing.T) {
	p := Policy{Target: 0.6, Tolerance: 0.1, ScaleOutAfter: 2 * time.Second, ScaleInAfter: 10 * time.Second}
	runSteps(t, p, []step{
		{0, load(2, 10), 2}, // 50 %: within reach of the target
		{1, load(2, 18), 2}, // 90 %: above, the window starts
		{2, load(2, 18), 2}, // 1 s above
		{3, load(2, 18), 3}, // 2 s above: 2 × 0.9 / 0.6 = 3
		{4, load(3, 26), 3}, // 87 %: above again, a new window
		{5, load(3, 10), 3}, // 33 %: back under, the window resets
		{6, load(3, 26), 3}, // above: the window starts again
		{8, load(3, 26), 5}, // 2 s: 3 × 0.87 / 0.6 = 4.3 → 5
		{9, load(5, 5), 5},  // 10 %: but a change was made 1 s ago
		{18, load(5, 5), 5}, // 10 s after: the scale-out's own wish is still in the window
		{19, load(5, 5), 4}, // a whole window under: one at a time
		{20, load(4, 4), 4}, // the next one waits a window again
		{28, load(4, 4), 4}, // not yet
		{29, load(4, 4), 3}, // one more
		{39, load(3, 3), 2}, // and one more
		{49, load(2, 2), 1}, // down to min (1)
		{60, load(1, 1), 1}, // never under min
	})
}

func TestDecideScalesOutAtOnceWithoutAWindow(t *testing.T) {
	p := Policy{Target: 0.6, Tolerance: 0.1, ScaleInAfter: time.Minute}
	runSteps(t, p, []step{{0, load(1, 10), 2}})
}

func TestDecideNeverFlapsOnALoadAroundTheTarget(t *testing.T) {
	// A load that swings 20 % above and below the target every 2 s:
	// after the first scale-out the count stays, for a whole window and
	// more, whatever the swing.
	p := Policy{Target: 0.6, Tolerance: 0.1, ScaleOutAfter: 2 * time.Second, ScaleInAfter: 20 * time.Second}
	var st State
	t0 := time.Now()
	n, changes := 2, 0
	total := 12.0 * 2 // requests in flight at the target with 2 instances
	for i := range 120 {
		inFlight := total * 1.2
		if i/2%2 == 1 {
			inFlight = total * 0.8
		}
		d := p.Decide(&st, load(n, inFlight), t0.Add(time.Duration(i)*time.Second))
		if d.Want != n {
			changes++
			n = d.Want
		}
	}
	// 120 s is six windows: at most one change per window, and a swing
	// around the target should need far fewer.
	if changes > 2 {
		t.Fatalf("%d changes in 120 s of a load swinging ±20 %% around the target (ended at %d instances)", changes, n)
	}
}

func TestDecideHonoursTheBounds(t *testing.T) {
	p := Policy{Target: 0.6, Tolerance: 0.1, ScaleInAfter: 5 * time.Second}
	bounded := func(in Inputs, lo, hi int) Inputs { in.Min, in.Max = lo, hi; return in }
	t.Run("max caps a scale-out", func(t *testing.T) {
		runSteps(t, p, []step{{0, bounded(load(2, 60), 1, 3), 3}, {1, bounded(load(3, 90), 1, 3), 3}})
	})
	t.Run("above max goes down one at a time, at once", func(t *testing.T) {
		runSteps(t, p, []step{{0, bounded(load(5, 30), 1, 3), 4}, {1, bounded(load(4, 24), 1, 3), 3}})
	})
	t.Run("a raised min scales out at once", func(t *testing.T) {
		runSteps(t, p, []step{{0, bounded(load(2, 12), 2, 8), 2}, {1, bounded(load(2, 12), 4, 8), 4}})
	})
	t.Run("an instance lost below min is not replaced", func(t *testing.T) {
		runSteps(t, p, []step{{0, bounded(load(2, 12), 2, 8), 2}, {1, bounded(load(1, 6), 2, 8), 1}, {10, bounded(load(1, 6), 2, 8), 1}})
	})
	t.Run("no instance: nothing to scale", func(t *testing.T) {
		runSteps(t, p, []step{{0, Inputs{Min: 2, Max: 8}, 0}})
	})
	t.Run("nobody reports: no change", func(t *testing.T) {
		runSteps(t, p, []step{{0, Inputs{Instances: 3, Min: 1, Max: 8}, 3}, {10, Inputs{Instances: 3, Min: 1, Max: 8}, 3}})
	})
}

func TestPolicyValidate(t *testing.T) {
	good := DefaultPolicy()
	if err := good.Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	bad := []Policy{
		{Target: 0, Tolerance: 0.1, ScaleInAfter: time.Second},
		{Target: 0.99, Tolerance: 0.1, ScaleInAfter: time.Second},
		{Target: 0.6, Tolerance: -0.1, ScaleInAfter: time.Second},
		{Target: 0.6, Tolerance: 0.1, ScaleOutAfter: -time.Second, ScaleInAfter: time.Second},
		{Target: 0.6, Tolerance: 0.1, ScaleOutAfter: 2 * time.Minute, ScaleInAfter: time.Second},
		{Target: 0.6, Tolerance: 0.1, ScaleInAfter: 0},
		{Target: 0.6, Tolerance: 0.1, ScaleInAfter: 2 * time.Hour},
	}
	for _, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", p)
		}
	}
}
