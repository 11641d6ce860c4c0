package verify

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/loadtest"
)

// Verdict is one expectation of one experiment, judged.
type Verdict struct {
	Experiment  string `json:"experiment"`
	Expectation string `json:"expectation"`
	Measured    string `json:"measured"`
	Pass        bool   `json:"pass"`
	// Numbers are the measurements behind a release verdict, by name
	// (release_seconds, to_100_seconds, rollback_seconds, error_share,
	// paused_after_injection_seconds); nil for the other verdicts.
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// FlowOutcome is one user flow's results over a load run.
type FlowOutcome struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"` // 5xx and transport errors
	// TooMany counts 429s: requests shed by an admission limit (not
	// errors to the SLO gates, failed requests to a scaling gate).
	TooMany int64         `json:"tooMany"`
	P95     time.Duration `json:"p95"`
	P99     time.Duration `json:"p99"`
}

// ErrorRatio is Errors over Requests (0 without requests).
func (f FlowOutcome) ErrorRatio() float64 {
	if f.Requests == 0 {
		return 0
	}
	return float64(f.Errors) / float64(f.Requests)
}

// LoadOutcome is what an experiment needs from its load run.
type LoadOutcome struct {
	Flows map[string]FlowOutcome `json:"flows"`
	// Cells are each flow's results for the clients of one region, by
	// cellKey: Requests, Errors (every non-2xx answer) and P99 only.
	Cells map[string]FlowOutcome `json:"cells"`
	// Windows are the cells of each window of the load (Load.Windows), by
	// window name.
	Windows map[string]map[string]FlowOutcome `json:"windows,omitempty"`
	// Regions are the load's client regions.
	Regions            []string `json:"regions,omitempty"`
	IdempotentFailures int64    `json:"idempotentFailures"` // GET, HEAD or keyed requests that failed
	// Failures are the first few of those: when, what, and why.
	Failures        []loadtest.FailureSample `json:"failures,omitempty"`
	OrdersAccepted  int                      `json:"ordersAccepted"`
	OrdersUnsettled int                      `json:"ordersUnsettled"` // accepted but not confirmed or rejected by the deadline
	Oversold        bool                     `json:"oversold"`
	Served          map[string]int64         `json:"served"` // answers by the region that served them
	// ServedByClient is, by client region, its answers by the region
	// that served them ("" for no answer).
	ServedByClient map[string]map[string]int64 `json:"servedByClient,omitempty"`
	ServedReleases map[string]int64            `json:"releases"` // answers by the release that served them
	// Stock is every SKU a checkout of the run named, as read back after
	// the orders settled; nil: the load did not read the stock back.
	Stock []StockCount `json:"stock"`
	// Seconds are each flow's p99 by second of the load's schedule (the
	// second a request was sent in); zero where no answer of the second
	// was measured.
	Seconds []map[string]time.Duration `json:"seconds,omitempty"`
}

// StockCount is one SKU's units: its stock before the load (available
// and held), the units of the run's confirmed orders, and its stock read
// back once the orders settled.
type StockCount struct {
	SKU       string `json:"sku"`
	Initial   int    `json:"initial"` // available + held before the load
	Sold      int    `json:"sold"`
	Available int    `json:"available"`
	Held      int    `json:"held"`
	// Uncertain is the units of the run's checkouts of the SKU whose fate
	// the load does not know: orders not final, checkouts without a
	// usable answer. They may be sold without counting in Sold.
	Uncertain int    `json:"uncertain,omitempty"`
	ReadError string `json:"readError,omitempty"` // why the stock was not read, before or after
}

// Missing is the units of the SKU neither in stock, held nor sold:
// negative when there are more than there were.
func (c StockCount) Missing() int { return c.Initial - c.Sold - c.Available - c.Held }

// String sums the outcome up for the progress log: each flow's requests,
// errors and p99, by flow name, then the idempotent failures, the orders
// and which regions served the answers.
func (o LoadOutcome) String() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(o.Flows)) {
		f := o.Flows[name]
		fmt.Fprintf(&b, "%s %d (%d errors, p99 %s); ", name, f.Requests, f.Errors, f.P99.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "%d idempotent failures, %d orders accepted, %d not final; served by", o.IdempotentFailures, o.OrdersAccepted, o.OrdersUnsettled)
	for _, region := range slices.Sorted(maps.Keys(o.Served)) {
		fmt.Fprintf(&b, " %s %d", region, o.Served[region])
	}
	if len(o.ServedReleases) > 0 {
		b.WriteString("; by release")
		for _, rel := range slices.Sorted(maps.Keys(o.ServedReleases)) {
			fmt.Fprintf(&b, " %s %d", rel, o.ServedReleases[rel])
		}
	}
	return b.String()
}

// cellKey names one flow's cell for the clients of one region.
func cellKey(flow, region string) string { return flow + "@" + region }

// run is what one experiment produced.
type run struct {
	exp      Experiment
	injected time.Time
	samples  []sample
	load     LoadOutcome
}

// judge checks every expectation of one run.
func judge(r run) []Verdict {
	var out []Verdict
	add := func(expect, measured string, pass bool) {
		out = append(out, Verdict{Experiment: r.exp.Name, Expectation: expect, Measured: measured, Pass: pass})
	}
	for _, g := range r.exp.Expect.SLO {
		name, f, ok := g.Flow, r.load.Flows[g.Flow], false
		if g.Region != "" {
			name = g.Flow + " in " + g.Region
			f, ok = r.load.Cells[cellKey(g.Flow, g.Region)]
		} else {
			_, ok = r.load.Flows[g.Flow]
		}
		if !ok || f.Requests == 0 {
			add(fmt.Sprintf("%s has traffic", name), "no requests", false)
			continue
		}
		if g.P95 > 0 {
			add(fmt.Sprintf("%s p95 <= %s", name, g.P95.D()), f.P95.Round(time.Millisecond).String(), f.P95 <= g.P95.D())
		}
		if g.P99 > 0 {
			add(fmt.Sprintf("%s p99 <= %s", name, g.P99.D()), f.P99.Round(time.Millisecond).String(), f.P99 <= g.P99.D())
		}
		if g.Errors != nil {
			add(fmt.Sprintf("%s error ratio <= %g", name, *g.Errors),
				fmt.Sprintf("%.4f (%d of %d)", f.ErrorRatio(), f.Errors, f.Requests), f.ErrorRatio() <= *g.Errors)
		}
	}
	for _, g := range r.exp.Expect.Health {
		if g.Never != "" {
			var when []string
			for _, s := range r.samples {
				if st, ok := s.States[g.Entity]; ok && st.State == g.Never {
					cause := rootCause(s.States, g.Entity)
					if len(s.FailOpen) > 0 {
						// Routing's own view at that look: a POP with no
						// stamp routable explains many a region's state.
						cause += "; POPs failing open: " + strings.Join(s.FailOpen, ", ")
					}
					when = append(when, fmt.Sprintf("+%s (%s)", s.At.Sub(r.injected).Round(100*time.Millisecond), cause))
				}
			}
			measured := "never"
			if len(when) > 0 {
				measured = fmt.Sprintf("%d times, first at %s", len(when), when[0])
			}
			add(fmt.Sprintf("%s never %s", g.Entity, g.Never), measured, len(when) == 0)
			continue
		}
		expect := fmt.Sprintf("%s %s within %s", g.Entity, g.State, g.Within.D())
		if g.Reason != "" {
			expect += fmt.Sprintf(" (%q)", g.Reason)
		}
		measured, pass := "not reached", false
		for _, s := range r.samples {
			st, ok := s.States[g.Entity]
			if s.At.Before(r.injected) || !ok || !atLeast(st.State, g.State) || !strings.Contains(st.Reason, g.Reason) {
				continue
			}
			took := s.At.Sub(r.injected)
			measured, pass = took.Round(100*time.Millisecond).String(), took <= g.Within.D()
			break
		}
		add(expect, measured, pass)
	}
	if g := r.exp.Expect.Routing; g != nil && g.OutOfRotation != "" {
		measured, pass := "still routed", false
		for _, s := range r.samples {
			if s.At.Before(r.injected) || s.Err != nil || s.Routed[g.OutOfRotation] {
				continue
			}
			took := s.At.Sub(r.injected)
			measured, pass = took.Round(10*time.Millisecond).String(), took <= g.Within.D()
			break
		}
		add(fmt.Sprintf("%s out of rotation within %s", g.OutOfRotation, g.Within.D()), measured, pass)
	}
	if g := r.exp.Expect.Routing; g != nil && g.InRotation != "" {
		looks, out := 0, ""
		for _, s := range r.samples {
			if s.At.Before(r.injected) || s.Err != nil {
				continue
			}
			looks++
			if !s.Routed[g.InRotation] && out == "" {
				out = fmt.Sprintf("out of rotation %s after the injection", s.At.Sub(r.injected).Round(10*time.Millisecond))
			}
		}
		measured := cmp.Or(out, fmt.Sprintf("routed at every one of %d looks", looks))
		add(fmt.Sprintf("%s stays in rotation", g.InRotation), measured, out == "" && looks > 0)
	}
	if g := r.exp.Expect.Routing; g != nil && g.StaysHome {
		measured, pass := staysHome(r.load.ServedByClient)
		add("every client region served by its own region", measured, pass)
	}
	if g := r.exp.Expect.Data; g != nil {
		if g.IdempotentFailures != nil {
			add(fmt.Sprintf("failed idempotent requests <= %d", *g.IdempotentFailures),
				fmt.Sprint(r.load.IdempotentFailures), r.load.IdempotentFailures <= int64(*g.IdempotentFailures))
		}
		if g.OrdersFinal {
			add("every accepted order final after the heal",
				fmt.Sprintf("%d accepted, %d not final", r.load.OrdersAccepted, r.load.OrdersUnsettled),
				r.load.OrdersAccepted > 0 && r.load.OrdersUnsettled == 0)
		}
		if g.Oversell != nil {
			add("no oversell", map[bool]string{true: "oversold", false: "none"}[r.load.Oversold], r.load.Oversold == *g.Oversell)
		}
	}
	if g := r.exp.Expect.Survivors; g != nil {
		for _, v := range survivors(g, r.exp.Fault.Target, r.load) {
			add(v.Expectation, v.Measured, v.Pass)
		}
	}
	measured, pass := conservation(r.load.Stock)
	add(expectConservation, measured, pass)
	return out
}

// survivors judges g: for every client region but target and every flow
// of g, the p99 of the requests sent while the fault lasted against the
// p99 of those sent before it.
func survivors(g *SurvivorsGate, target string, load LoadOutcome) []Verdict {
	var out []Verdict
	before, during := load.Windows[windowBefore], load.Windows[windowDuring]
	for _, region := range load.Regions {
		if region == target {
			continue
		}
		for _, flow := range g.Flows {
			b, d := before[cellKey(flow, region)], during[cellKey(flow, region)]
			v := Verdict{Expectation: fmt.Sprintf("%s in %s: p99 during the fault <= %g× before", flow, region, g.P99Ratio)}
			switch {
			case b.Requests == 0 || d.Requests == 0:
				v.Measured = fmt.Sprintf("%d requests before, %d during: nothing to compare", b.Requests, d.Requests)
			default:
				ratio := float64(d.P99) / float64(max(b.P99, time.Microsecond))
				v.Measured = fmt.Sprintf("%s before (%d requests), %s during (%d): %.1f×",
					b.P99.Round(time.Millisecond), b.Requests, d.P99.Round(time.Millisecond), d.Requests, ratio)
				v.Pass = ratio <= g.P99Ratio
				if !v.Pass && d.P99-b.P99 <= g.Slack.D() {
					v.Measured += fmt.Sprintf(", within %s of before", g.Slack.D())
					v.Pass = true
				}
			}
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		out = append(out, Verdict{Expectation: "a client region the fault spares", Measured: fmt.Sprintf("client regions %v, fault on %s", load.Regions, target)})
	}
	return out
}

// staysHome reports whether every client region's answers came from its
// own region, with what came from elsewhere; requests without an answer
// (loadtest.NotServed) are the failure expectations' to judge.
func staysHome(byClient map[string]map[string]int64) (string, bool) {
	var away []string
	total := int64(0)
	for _, client := range slices.Sorted(maps.Keys(byClient)) {
		for _, served := range slices.Sorted(maps.Keys(byClient[client])) {
			n := byClient[client][served]
			total += n
			if served != client && served != "" && served != loadtest.NotServed && n > 0 {
				away = append(away, fmt.Sprintf("%d of %s's answers from %s", n, client, served))
			}
		}
	}
	if total == 0 {
		return "no answers", false
	}
	if len(away) > 0 {
		return strings.Join(away, ", "), false
	}
	return fmt.Sprintf("%d answers, each from its client's region", total), true
}

// expectConservation is the expectation every experiment gets.
const expectConservation = "stock conserved: available + held + sold = initial"

// conservation judges the stock the load read back after the orders
// settled: for every SKU a checkout of the run named, the units available,
// held and sold to the run's confirmed orders must add up to its stock
// before the load. A SKU short of units lost them (a hold never given
// back, a lost write); one with units to spare made them up (a lost
// decrement). Units of orders whose fate the run does not know may be
// sold without counting as such, so a SKU short of at most that many
// loses nothing for sure: it passes, and the measured value says so (the
// orders-final expectation judges those orders). nil stock was not
// measured, and fails.
func conservation(stock []StockCount) (measured string, pass bool) {
	if stock == nil {
		return "not measured: the load read no stock back", false
	}
	var bad []string
	unsure, unsureSKUs := 0, 0
	for _, c := range stock {
		m := c.Missing()
		numbers := fmt.Sprintf("initial %d, available %d, held %d, sold %d", c.Initial, c.Available, c.Held, c.Sold)
		if c.Uncertain > 0 {
			numbers += fmt.Sprintf(", %d of unknown fate", c.Uncertain)
		}
		switch {
		case c.ReadError != "":
			bad = append(bad, fmt.Sprintf("the stock of SKU %s was not read: %s", c.SKU, c.ReadError))
		case m < 0:
			bad = append(bad, fmt.Sprintf("%s more than the stock on SKU %s (%s)", count(-m, "unit"), c.SKU, numbers))
		case m > c.Uncertain:
			bad = append(bad, fmt.Sprintf("%s unaccounted on SKU %s (%s)", count(m, "unit"), c.SKU, numbers))
		case m > 0:
			unsure, unsureSKUs = unsure+m, unsureSKUs+1
		}
	}
	switch {
	case len(bad) == 1:
		return bad[0], false
	case len(bad) > 1:
		return fmt.Sprintf("%s; %s off", bad[0], count(len(bad)-1, "more SKU")), false
	case len(stock) == 0:
		return "no checkout named a SKU", true
	}
	measured = fmt.Sprintf("%s, every unit accounted for", count(len(stock), "SKU"))
	if unsure > 0 {
		measured = fmt.Sprintf("%s accounted for, but %s on %s may be held by orders of unknown fate",
			count(len(stock), "SKU"), count(unsure, "unit"), count(unsureSKUs, "SKU"))
	}
	return measured, true
}

// count is n things: "1 unit", "3 units".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// rootCause follows the "caused by" reasons from id down to the first
// entity that names no cause: "a -> b -> c: c's reason".
func rootCause(states map[string]entityState, id string) string {
	path := []string{id}
	for range 16 {
		st := states[id]
		_, causes, ok := strings.Cut(st.Reason, "caused by ")
		if !ok {
			return strings.Join(path, " -> ") + ": " + st.Reason
		}
		next, _, _ := strings.Cut(causes, ",")
		next, _, _ = strings.Cut(strings.TrimSpace(next), " ")
		if _, known := states[next]; !known || next == id {
			return strings.Join(path, " -> ") + ": " + st.Reason
		}
		path, id = append(path, next), next
	}
	return strings.Join(path, " -> ")
}

// atLeast reports whether state is want or, for a degraded expectation,
// worse: a dependency expected to degrade may also fail outright.
func atLeast(state, want string) bool {
	if want == "degraded" {
		return state == "degraded" || state == "unhealthy"
	}
	return state == want
}

// Failed reports whether any verdict failed.
func Failed(vs []Verdict) bool {
	return slices.ContainsFunc(vs, func(v Verdict) bool { return !v.Pass })
}
