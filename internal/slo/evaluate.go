package slo

import (
	"math"
	"time"
)

// In-process names of the request duration histogram and its attributes:
// the OpenTelemetry instrument and attribute names, with dots, where
// Prometheus has underscores.
const (
	otelHistogram = "http.server.request.duration"
	otelStatus    = "http.response.status_code"
	otelComponent = "component"
	otelFlow      = "flow"
)

// Labels selects series by attribute: every key must equal the series'
// attribute value exactly, except that a value ending in "*" matches by
// prefix ("5*" matches "500" and "503").
type Labels = map[string]string

// Metrics is what Evaluate reads: the in-process metric history, keyed by
// OpenTelemetry instrument and attribute names. ok is false when the history
// cannot answer: nothing covers the window yet, or no series matches.
type Metrics interface {
	// Increase is, for a histogram, the increase of the observation count
	// over the window.
	Increase(metric string, match Labels, window time.Duration) (float64, bool)
	// CountAtMost is the number of histogram observations <= le over the
	// window; le is a bucket boundary.
	CountAtMost(metric string, match Labels, le float64, window time.Duration) (float64, bool)
}

// Source is Metrics with a label type of its own, such as a
// `type Labels map[string]string` declared by the history's package. Adapt
// turns one into Metrics.
type Source[L ~map[string]string] interface {
	Increase(metric string, match L, window time.Duration) (float64, bool)
	CountAtMost(metric string, match L, le float64, window time.Duration) (float64, bool)
}

// Adapt returns src as Metrics, converting the label maps; the type argument
// is inferred: slo.Evaluate(slo.Adapt(sink), slos).
func Adapt[L ~map[string]string](src Source[L]) Metrics {
	return adapted[L]{src}
}

type adapted[L ~map[string]string] struct{ src Source[L] }

func (a adapted[L]) Increase(metric string, match Labels, window time.Duration) (float64, bool) {
	return a.src.Increase(metric, L(match), window)
}

func (a adapted[L]) CountAtMost(metric string, match Labels, le float64, window time.Duration) (float64, bool) {
	return a.src.CountAtMost(metric, L(match), le, window)
}

// Status is one SLO as the dashboard shows it; the JSON field names are a
// contract.
type Status struct {
	SLO       string  `json:"slo"`
	Flow      string  `json:"flow"`
	Kind      string  `json:"kind"` // availability or latency
	Objective float64 `json:"objective"`
	// Windows are, in this order, 5m, 30m, 1h, 6h and 3d: always all five.
	Windows []WindowStatus `json:"windows"`
	// BudgetRemaining is 1 - burn rate over the longest window with data:
	// the share of the error budget that would be left at the end of the
	// period if the whole period went like that window. In process it is an
	// estimate from at most 3 d of history, not the budget actually left of
	// the 30 d period (read that from Prometheus). It is at most 1, negative
	// once the window burns faster than the budget allows, and 1 when no
	// window has data.
	BudgetRemaining float64 `json:"budgetRemaining"`
	// Alerts are the names of the burn-rate alerts that fire, by the rules
	// of Rules applied to the windows above, in the order fast, medium,
	// slow; never nil.
	Alerts []string `json:"alerts"`
	// Error says why the SLO was not evaluated (it does not validate);
	// empty otherwise.
	Error string `json:"error,omitempty"`
}

// WindowStatus is an SLO's error ratio over one window.
type WindowStatus struct {
	Window     string  `json:"window"` // "5m", "30m", "1h", "6h", "3d"
	Total      float64 `json:"total"`  // requests in the window
	Bad        float64 `json:"bad"`    // bad requests in the window
	ErrorRatio float64 `json:"errorRatio"`
	BurnRate   float64 `json:"burnRate"` // ErrorRatio / (1 - objective)
	// OK is false when the window has no data: the history cannot answer
	// it, or it holds no request. Its numbers are zero then.
	OK bool `json:"ok"`
}

// Evaluate computes the status of every SLO from the in-process history, in
// the order given. An SLO that does not validate comes back with Error set,
// no window OK and no alert.
//
// A window's bad count is, for availability, the increase of the 5xx
// observations (none when no 5xx series exists: the history answers "no
// series" then) and, for latency, the observations minus those at most the
// threshold. An alert fires when both of its windows are OK, the burn rate
// is above its threshold over both, and the long window averages at least
// the SLO's minimum request rate. The rate guard divides by the full
// window length, so a window the history covers only in part (shortly
// after start) can only make it stricter.
func Evaluate(m Metrics, slos []SLO) []Status {
	out := make([]Status, 0, len(slos))
	for _, s := range slos {
		out = append(out, evaluate(m, s.withDefaults()))
	}
	return out
}

func evaluate(m Metrics, s SLO) Status {
	st := Status{SLO: s.Name, Flow: s.Flow, Kind: string(s.Kind), Objective: s.Objective, BudgetRemaining: 1, Alerts: []string{}}
	err := s.validate()
	if err != nil {
		st.Error = err.Error()
		if math.IsNaN(s.Objective) || math.IsInf(s.Objective, 0) {
			st.Objective = 0 // JSON has no NaN or infinity
		}
	}
	byWindow := map[time.Duration]WindowStatus{}
	for _, w := range ruleWindows() { // the windows of the Prometheus rules
		ws := WindowStatus{Window: promDuration(w)}
		if err == nil {
			ws = window(m, s, w)
			byWindow[w] = ws
		}
		st.Windows = append(st.Windows, ws)
		if ws.OK {
			st.BudgetRemaining = min(1, 1-ws.BurnRate)
		}
	}
	for _, a := range burnAlerts() {
		long, short := byWindow[a.long], byWindow[a.short]
		thr := a.threshold(s.Period)
		if long.OK && short.OK && long.BurnRate > thr && short.BurnRate > thr &&
			long.Total/a.long.Seconds() >= s.MinRequestRate {
			st.Alerts = append(st.Alerts, a.name)
		}
	}
	return st
}

// window computes s over w.
func window(m Metrics, s SLO, w time.Duration) WindowStatus {
	ws := WindowStatus{Window: promDuration(w)}
	match := func(extra ...string) Labels {
		l := Labels{otelComponent: edgeComponent, otelFlow: s.Flow}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	total, ok := m.Increase(otelHistogram, match(), w)
	if !ok || !(total > 0) {
		return ws
	}
	var bad float64
	switch s.Kind {
	case Availability:
		// The total answered, so a bad count that does not means no 5xx
		// series exists yet: zero.
		if n, ok := m.Increase(otelHistogram, match(otelStatus, "5*"), w); ok {
			bad = n
		}
	case Latency:
		good, ok := m.CountAtMost(otelHistogram, match(), s.Threshold, w)
		if !ok {
			return ws
		}
		bad = total - good
	}
	// The two reads are not atomic; keep the ratio within [0, 1].
	bad = min(max(bad, 0), total)
	ws.Total, ws.Bad, ws.OK = total, bad, true
	ws.ErrorRatio = bad / total
	ws.BurnRate = ws.ErrorRatio / s.ErrorBudget()
	return ws
}
