package release

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/health"
)

// FlowReading is one user flow's requests over a window.
type FlowReading struct {
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"` // answered 5xx
	P99      float64 `json:"p99"`    // seconds; 0 without requests
}

// ErrorRatio is Errors over Requests; 0 without requests.
func (f FlowReading) ErrorRatio() float64 {
	if f.Requests <= 0 {
		return 0
	}
	return f.Errors / f.Requests
}

// Reading is what one version's stamps in one region served over a window,
// by flow (browse, comment, checkout), with the worst health state among
// them.
type Reading struct {
	Flows  map[string]FlowReading `json:"flows"`
	Health health.Status          `json:"health"`
	// Instances is how many of the version's stamps the reading covers.
	Instances int `json:"instances"`
}

// Requests is the reading's requests over every flow.
func (r Reading) Requests() float64 {
	var n float64
	for _, f := range r.Flows {
		n += f.Requests
	}
	return n
}

// Gate is what a step must show before traffic moves on. Zero fields take
// the defaults shown.
type Gate struct {
	// MinHold is the least time a step is held; zero: 5 s.
	MinHold time.Duration `json:"minHold"`
	// MinRequests is how many requests the new version must have served in
	// the step's region before the step can pass; zero: 30.
	MinRequests int `json:"minRequests"`
	// MinFlowRequests is how many requests of one flow either version must
	// have served before that flow's p99 is compared; zero: 10.
	MinFlowRequests int `json:"minFlowRequests"`
	// ErrorTolerance is how far the new version's error ratio may exceed
	// the old one's in any flow; zero: 0.01 (one percentage point).
	ErrorTolerance float64 `json:"errorTolerance"`
	// Confidence is how sure the gate must be that the new version's error
	// ratio is above the old one's plus the tolerance before it fails the
	// step early; zero: 0.99.
	Confidence float64 `json:"confidence"`
	// LatencyFactor and LatencySlack: a flow fails when the new p99 is
	// above both LatencyFactor × the old p99 and the old p99 +
	// LatencySlack; zero: 2 and 100 ms.
	LatencyFactor float64       `json:"latencyFactor"`
	LatencySlack  time.Duration `json:"latencySlack"`
}

// WithDefaults returns g with its zero fields set to the defaults.
func (g Gate) WithDefaults() Gate {
	if g.MinHold <= 0 {
		g.MinHold = 5 * time.Second
	}
	if g.MinRequests <= 0 {
		g.MinRequests = 30
	}
	if g.MinFlowRequests <= 0 {
		g.MinFlowRequests = 10
	}
	if g.ErrorTolerance <= 0 {
		g.ErrorTolerance = 0.01
	}
	if g.Confidence <= 0 || g.Confidence >= 1 {
		g.Confidence = 0.99
	}
	if g.LatencyFactor <= 0 {
		g.LatencyFactor = 2
	}
	if g.LatencySlack <= 0 {
		g.LatencySlack = 100 * time.Millisecond
	}
	return g
}

// Verdict is what the gate decided about a step.
type Verdict int

const (
	Hold Verdict = iota // not enough seen yet: keep the step
	Pass                // the step may end; traffic moves on
	Fail                // roll back
)

func (v Verdict) String() string {
	switch v {
	case Pass:
		return "passed"
	case Fail:
		return "failed"
	}
	return "holding"
}

// Judge decides a step from the new version's reading, the old version's
// reading it is compared with, and how long the step has been held. It is
// a pure function; the rules, in order:
//
//  1. Fail when the new version's stamps are unhealthy while the old ones
//     are not (a region where both are unhealthy is an outage, not a bad
//     release: the controller pauses instead).
//  2. Fail early, whatever the hold, when a flow's errors on the new
//     version make it at least Confidence sure that its error ratio is
//     above the old one's plus ErrorTolerance (a one-sided binomial test:
//     the chance of seeing that many errors if the ratio were only
//     old+tolerance is below 1-Confidence).
//  3. Hold until MinHold has passed and the new version served
//     MinRequests.
//  4. Fail when a flow's error ratio is above the old one's plus
//     ErrorTolerance, or when its p99 is above both LatencyFactor × the
//     old p99 and the old p99 + LatencySlack (p99 compared only when both
//     versions served MinFlowRequests of the flow).
//  5. Otherwise pass.
//
// The reason says which rule decided, with the numbers.
func Judge(g Gate, cur, old Reading, held time.Duration) (Verdict, string) {
	g = g.WithDefaults()
	if cur.Health.AtLeast(health.Unhealthy) && !old.Health.AtLeast(health.Unhealthy) {
		return Fail, fmt.Sprintf("new stamps %s while the old ones are %s", cur.Health, old.Health)
	}
	flows := flowNames(cur, old)
	for _, name := range flows {
		n, o := cur.Flows[name], old.Flows[name]
		limit := math.Min(1, o.ErrorRatio()+g.ErrorTolerance)
		if n.Errors >= 1 && binomialTail(int(n.Requests), int(n.Errors), limit) < 1-g.Confidence {
			return Fail, fmt.Sprintf("%s errors: %.0f of %.0f (%.1f %%) on the new version, %.1f %% on the old: above the %.1f %% allowed with %.0f %% confidence",
				name, n.Errors, n.Requests, 100*n.ErrorRatio(), 100*o.ErrorRatio(), 100*limit, 100*g.Confidence)
		}
	}
	if held < g.MinHold {
		return Hold, fmt.Sprintf("held %s of %s", held.Round(100*time.Millisecond), g.MinHold)
	}
	if got := cur.Requests(); got < float64(g.MinRequests) {
		return Hold, fmt.Sprintf("%.0f of %d requests on the new version", got, g.MinRequests)
	}
	var notes []string
	for _, name := range flows {
		n, o := cur.Flows[name], old.Flows[name]
		if limit := o.ErrorRatio() + g.ErrorTolerance; n.ErrorRatio() > limit {
			return Fail, fmt.Sprintf("%s error ratio %.2f %% on the new version, %.2f %% on the old (tolerance %.1f points)",
				name, 100*n.ErrorRatio(), 100*o.ErrorRatio(), 100*g.ErrorTolerance)
		}
		if n.Requests < float64(g.MinFlowRequests) || o.Requests < float64(g.MinFlowRequests) {
			continue
		}
		limit := math.Max(g.LatencyFactor*o.P99, o.P99+g.LatencySlack.Seconds())
		if n.P99 > limit {
			return Fail, fmt.Sprintf("%s p99 %s on the new version, %s on the old (limit %s)",
				name, secs(n.P99), secs(o.P99), secs(limit))
		}
		notes = append(notes, fmt.Sprintf("%s p99 %s vs %s", name, secs(n.P99), secs(o.P99)))
	}
	reason := fmt.Sprintf("%.0f requests on the new version, errors within tolerance", cur.Requests())
	if len(notes) > 0 {
		reason += "; " + strings.Join(notes, ", ")
	}
	return Pass, reason
}

func flowNames(a, b Reading) []string {
	var names []string
	for n := range a.Flows {
		names = append(names, n)
	}
	for n := range b.Flows {
		if _, ok := a.Flows[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Microsecond).String()
}

// binomialTail is P(X >= k) for X ~ Binomial(n, p).
func binomialTail(n, k int, p float64) float64 {
	switch {
	case k <= 0:
		return 1
	case k > n:
		return 0
	case p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	// 1 - P(X <= k-1), summed in log space for stability.
	var below float64
	lp, lq := math.Log(p), math.Log1p(-p)
	for i := 0; i < k; i++ {
		lc := lgamma(n+1) - lgamma(i+1) - lgamma(n-i+1)
		below += math.Exp(lc + float64(i)*lp + float64(n-i)*lq)
	}
	return math.Max(0, 1-below)
}

func lgamma(x int) float64 {
	v, _ := math.Lgamma(float64(x))
	return v
}
