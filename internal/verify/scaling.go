package verify

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/autoscale"
)

// Scaling sets the autoscaler's rules and every stamp instance's capacity
// for one experiment, and says what must come of it. The runner sets them
// before the steady state is checked and restores the earlier ones after
// the experiment.
type Scaling struct {
	// Capacity and Work are every instance's capacity (API requests at
	// once) and simulated work per request during the experiment: what
	// one instance holds on one machine, whose instances share its cores.
	Capacity int      `yaml:"capacity" json:"capacity"`
	Work     Duration `yaml:"work" json:"work"`
	// Min and Max bound every region; Max at least Min.
	Min int `yaml:"min" json:"min"`
	Max int `yaml:"max" json:"max"`
	// Target, ScaleOutAfter and ScaleInAfter are the policy's; zero: as
	// the deployment has them.
	Target        float64       `yaml:"target,omitempty" json:"target,omitempty"`
	ScaleOutAfter Duration      `yaml:"scale_out_after,omitempty" json:"scaleOutAfter,omitempty"`
	ScaleInAfter  Duration      `yaml:"scale_in_after,omitempty" json:"scaleInAfter,omitempty"`
	Expect        ScalingExpect `yaml:"expect" json:"expect"`
}

// ScalingExpect is what the autoscaler must have done.
type ScalingExpect struct {
	// Region must scale out during the load, the first new instance taking
	// traffic within OutWithin of the load first exceeding the target.
	Region    string   `yaml:"region" json:"region"`
	OutWithin Duration `yaml:"out_within" json:"outWithin"`
	// BackToMin: every region runs Min instances again within this long
	// after the load ends (scale-ins drained while the load's tail ran);
	// zero: not judged.
	BackToMin Duration `yaml:"back_to_min,omitempty" json:"backToMin,omitempty"`
	// NoFlapping: no region reverses its count (an instance added then
	// one removed, or the other way) within one stabilisation window.
	NoFlapping bool `yaml:"no_flapping,omitempty" json:"noFlapping,omitempty"`
	// ReadP99 bounds every second's p99 of the read flows (browse and
	// product pages) from the second after the first new instance took
	// traffic to the load's end; zero: not judged.
	ReadP99 Duration `yaml:"read_p99,omitempty" json:"readP99,omitempty"`
	// NoFailedRequests: no request of the load failed, 429s (shed for
	// want of capacity) included.
	NoFailedRequests bool `yaml:"no_failed_requests,omitempty" json:"noFailedRequests,omitempty"`
}

// check says what a scaling block lacks.
func (s *Scaling) check(where string) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: scaling: "+format, append([]any{where}, args...)...))
	}
	if s.Capacity < 1 || s.Capacity > 100_000 || s.Work.D() < 0 || s.Work.D() > 10*time.Second {
		bad("capacity must be in [1, 100000] and work in [0, 10s]")
	}
	if s.Min < 1 || s.Max < s.Min || s.Max > autoscale.MaxInstances {
		bad("want 1 <= min <= max <= %d", autoscale.MaxInstances)
	}
	if s.Expect.Region == "" || (s.Max > s.Min && s.Expect.OutWithin.D() <= 0) {
		bad("expect needs the region that scales out and, unless max = min (a fixed deployment), out_within")
	}
	if s.Expect.BackToMin.D() < 0 || s.Expect.ReadP99.D() < 0 {
		bad("back_to_min and read_p99 must not be negative")
	}
	return errs
}

// scalingRun applies an experiment's scaling, and reads what came of it.
type scalingRun struct {
	spec   *Scaling
	log    io.Writer
	client *autoscale.Client
	before autoscale.Status
	began  time.Time
}

// startScaling reads the rules as they are and sets the experiment's.
func startScaling(ctx context.Context, cfg Config, s *Scaling) (*scalingRun, error) {
	sr := &scalingRun{spec: s, log: cfg.Log, client: &autoscale.Client{BaseURL: cfg.Ops, Token: cfg.AdminToken, HTTP: cfg.HTTP}, began: time.Now()}
	before, err := sr.client.Status(ctx)
	if err != nil {
		return nil, err
	}
	sr.before = before
	u := autoscale.Update{Regions: map[string]autoscale.RegionUpdate{}}
	for _, r := range before.Regions {
		u.Regions[r.Region] = autoscale.RegionUpdate{Min: &s.Min, Max: &s.Max, CancelPreScale: r.PreScale != nil}
	}
	if s.Target > 0 {
		u.Target = &s.Target
	}
	if s.ScaleOutAfter > 0 {
		v := s.ScaleOutAfter.D().Seconds()
		u.ScaleOutAfterSeconds = &v
	}
	if s.ScaleInAfter > 0 {
		v := s.ScaleInAfter.D().Seconds()
		u.ScaleInAfterSeconds = &v
	}
	if _, err := sr.client.Apply(ctx, u); err != nil {
		return nil, err
	}
	return sr, nil
}

// applyInstances gives every instance the experiment's capacity and work,
// and starts the experiment's clock: events before it (the load's own
// reads of the stock) are not judged. A failure is logged and judged by
// what follows (no scale-out).
func (sr *scalingRun) applyInstances(ctx context.Context) {
	sr.began = time.Now()
	is := autoscale.InstanceSettings{Capacity: sr.spec.Capacity, WorkMs: int(sr.spec.Work.D().Milliseconds())}
	if _, err := sr.client.Apply(ctx, autoscale.Update{Instance: &is}); err != nil {
		fmt.Fprintf(sr.log, "   set the instances' capacity: %v\n", err)
	}
}

// waitMin waits up to d for every region to run min instances, and
// returns how long it took, or false.
func (sr *scalingRun) waitMin(ctx context.Context, min int, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		st, err := sr.client.Status(ctx)
		if err == nil && len(st.Regions) > 0 && !slices.ContainsFunc(st.Regions, func(r autoscale.RegionStatus) bool { return r.Inputs.Instances != min || r.Want != min }) {
			return time.Since(start), true
		}
		if time.Since(start) > d || ctx.Err() != nil {
			return time.Since(start), false
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// restore puts the rules back as they were before the experiment.
func (sr *scalingRun) restore(ctx context.Context) error {
	b := sr.before
	target, out, in := b.Policy.Target, b.Policy.ScaleOutAfterSeconds, b.Policy.ScaleInAfterSeconds
	// Instances without settings before go back to their own
	// configuration.
	u := autoscale.Update{Target: &target, ScaleOutAfterSeconds: &out, ScaleInAfterSeconds: &in, Regions: map[string]autoscale.RegionUpdate{},
		Instance: b.Instances, ResetInstance: b.Instances == nil}
	for _, r := range b.Regions {
		lo, hi := r.Min, r.Max
		u.Regions[r.Region] = autoscale.RegionUpdate{Min: &lo, Max: &hi}
	}
	_, err := sr.client.Apply(ctx, u)
	return err
}

// events are the scaler's events since the experiment began, oldest
// first.
func (sr *scalingRun) events(ctx context.Context) ([]autoscale.Event, error) {
	st, err := sr.client.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []autoscale.Event
	for _, e := range slices.Backward(st.Events) {
		if !e.At.Before(sr.began) {
			out = append(out, e)
		}
	}
	return out, nil
}

// judgeScaling checks an experiment's scaling expectations against the
// scaler's events and the load's outcome.
func judgeScaling(e Experiment, events []autoscale.Event, load LoadOutcome, began, loadStart time.Time, window time.Duration, backAfter time.Duration, backOK bool) []Verdict {
	s := e.Scaling
	x := s.Expect
	v := func(expectation, measured string, pass bool) Verdict {
		return Verdict{Experiment: e.Name, Expectation: expectation, Measured: measured, Pass: pass}
	}
	var out []Verdict

	// Scale-out on load in the region, and its first instance serving.
	outs, serving := 0, time.Duration(-1)
	var servingAt time.Time
	for _, ev := range events {
		if ev.Region != x.Region {
			continue
		}
		switch ev.Action {
		case "scale-out":
			outs++
		case "serving":
			// An instance started in an earlier experiment may take its
			// first request only now: only this one's scale-outs count.
			if serving < 0 && ev.ToTrafficMs > 0 && !ev.ExceededAt.Before(began) {
				serving, servingAt = time.Duration(ev.ToTrafficMs)*time.Millisecond, ev.At
			}
		}
	}
	switch {
	case s.Max == s.Min:
		// A fixed deployment, the baseline autoscaled runs are compared
		// with: it must not have grown.
		out = append(out, v(fmt.Sprintf("%s stays at %d (max = min)", x.Region, s.Min), fmt.Sprintf("%d scale-outs", outs), outs == 0))
	case outs == 0:
		out = append(out, v(fmt.Sprintf("%s scales out on load", x.Region), "no scale-out", false))
	case serving < 0:
		out = append(out, v(fmt.Sprintf("a new %s instance takes traffic within %s of the target exceeded", x.Region, x.OutWithin.D()), fmt.Sprintf("%d scale-outs, no new instance served", outs), false))
	default:
		out = append(out, v(fmt.Sprintf("a new %s instance takes traffic within %s of the target exceeded", x.Region, x.OutWithin.D()),
			fmt.Sprintf("%s (%d scale-outs)", serving.Round(100*time.Millisecond), outs), serving <= x.OutWithin.D()))
	}
	if x.ReadP99 > 0 {
		out = append(out, judgeReadP99(e.Name, x.ReadP99.D(), load.Seconds, loadStart, servingAt))
	}
	if x.BackToMin > 0 {
		m := fmt.Sprintf("every region at %d after %s", s.Min, backAfter.Round(100*time.Millisecond))
		if !backOK {
			m = fmt.Sprintf("not every region at %d after %s", s.Min, backAfter.Round(100*time.Millisecond))
		}
		out = append(out, v(fmt.Sprintf("back to min (%d) within %s of the load's end", s.Min, x.BackToMin.D()), m, backOK))
	}
	if x.NoFlapping {
		flaps, where := reversals(events, window)
		m := "none"
		if flaps > 0 {
			m = fmt.Sprintf("%d (%s)", flaps, where)
		}
		out = append(out, v(fmt.Sprintf("no count reversed within a %s window", window), m, flaps == 0))
	}
	if x.NoFailedRequests {
		var failed, total int64
		var by []string
		for _, name := range slices.Sorted(maps.Keys(load.Flows)) {
			f := load.Flows[name]
			total += f.Requests
			if n := f.Errors + f.TooMany; n > 0 {
				failed += n
				by = append(by, fmt.Sprintf("%s %d", name, n))
			}
		}
		m := fmt.Sprintf("%d of %d", failed, total)
		if len(by) > 0 {
			m += " (" + strings.Join(by, ", ") + ")"
		}
		out = append(out, v("no failed request, 429s included", m, failed == 0 && total > 0))
	}
	return out
}

// judgeReadP99 checks every second's p99 of the read flows from the
// second after servingAt (the first new instance's first request) on.
func judgeReadP99(name string, bound time.Duration, seconds []map[string]time.Duration, loadStart, servingAt time.Time) Verdict {
	v := Verdict{Experiment: name, Expectation: fmt.Sprintf("read p99 <= %s every second once a new instance serves", bound)}
	if servingAt.IsZero() {
		v.Measured = "no new instance served"
		return v
	}
	from := int(servingAt.Sub(loadStart)/time.Second) + 1
	worst, at, over, judged := time.Duration(0), 0, 0, 0
	for i := max(from, 0); i < len(seconds); i++ {
		for _, flow := range []string{"browse", "product"} {
			p := seconds[i][flow]
			if p == 0 {
				continue
			}
			judged++
			if p > worst {
				worst, at = p, i
			}
			if p > bound {
				over++
			}
		}
	}
	v.Measured = fmt.Sprintf("worst %s at second %d, %d of %d second-flows over, from second %d", worst.Round(time.Millisecond), at, over, judged, from)
	v.Pass = judged > 0 && over == 0
	return v
}

// reversals counts, over every region, a change whose direction is the
// opposite of the region's previous change made less than window before
// (an instance added, then one removed, or the other way): flapping. It
// names the first region that flapped.
func reversals(events []autoscale.Event, window time.Duration) (int, string) {
	type change struct {
		at  time.Time
		out bool
	}
	last := map[string]change{}
	n, where := 0, ""
	for _, ev := range events {
		if ev.Action != "scale-out" && ev.Action != "scale-in" {
			continue
		}
		c := change{at: ev.At, out: ev.Action == "scale-out"}
		if p, ok := last[ev.Region]; ok && p.out != c.out && c.at.Sub(p.at) < window {
			n++
			where = cmp.Or(where, ev.Region)
		}
		last[ev.Region] = c
	}
	return n, where
}

// judge waits for the regions to come back to min, if expected, then
// judges the experiment's scaling.
func (sr *scalingRun) judge(ctx context.Context, e Experiment, load LoadOutcome, loadStart time.Time) []Verdict {
	s := e.Scaling
	var back time.Duration
	backOK := true
	if s.Expect.BackToMin > 0 {
		back, backOK = sr.waitMin(ctx, s.Min, s.Expect.BackToMin.D())
	}
	events, err := sr.events(ctx)
	if err != nil {
		return []Verdict{{Experiment: e.Name, Expectation: "the scaler's events are read", Measured: err.Error()}}
	}
	for _, ev := range events {
		if ev.Action == "settings" {
			continue
		}
		line := fmt.Sprintf("   scaler +%s %s %s", ev.At.Sub(sr.began).Round(100*time.Millisecond), ev.Region, ev.Action)
		switch {
		case ev.To > 0:
			line += fmt.Sprintf(" %d -> %d: %s", ev.From, ev.To, ev.Reason)
		case ev.ToTrafficMs > 0:
			line += fmt.Sprintf(" %s, %d ms after the target was exceeded", ev.Instance, ev.ToTrafficMs)
		case ev.Instance != "" || ev.Reason != "":
			line += " " + strings.TrimSpace(ev.Instance+" "+ev.Reason)
		}
		fmt.Fprintln(sr.log, line)
	}
	window := s.ScaleInAfter.D()
	if window <= 0 {
		window = time.Duration(sr.before.Policy.ScaleInAfterSeconds * float64(time.Second))
	}
	return judgeScaling(e, events, load, sr.began, loadStart, window, back, backOK)
}
