package health

import (
	"fmt"
	"strconv"
)

// Status is a health state. It is the one vocabulary of the system: the
// prober's checks and report, the health model's entities and signals
// (internal/healthmodel), the edge's routing candidates and the operations
// dashboard all use it, in one order, worst last:
//
//	Healthy < Degraded < Unknown < Unhealthy < Drained
//
// Unknown means stale or missing data. Its place in the order is the same
// everywhere; what each part does with it is a method of the type:
//
//   - The prober's checks never produce it: a check that cannot tell is
//     unhealthy.
//   - The health model ranks an unknown signal between degraded and
//     unhealthy when it combines signals and applies hysteresis (Worse,
//     AtLeast), and a parent sees an unknown child as degraded (RollUp).
//   - The edge treats an unknown stamp as not yet probed: not Routable, but
//     preferred to unhealthy and drained ones when it has to fail open.
//
// Drained is a stamp an operator took out of rotation. It is a state the
// edge routes on and the dashboard shows, never the verdict of a check or
// of the model: a drained stamp's report says Unhealthy (so /health/stamp
// answers 503 and every reader of the status alone takes it out) and sets
// Report.Drained, which the edge reads.
//
// The zero value is Unknown, so a status nobody set is never taken for
// healthy. A value outside the constants ranks, rolls up and routes as
// Unknown; it has no text form (String gives Status(n), MarshalText an
// error). Text and JSON use the names below.
//
// The type lives in this package, beside the prober that produces the
// stamps' verdicts, because this package imports nothing of ours: the
// model, the edge and the dashboard import it for the vocabulary without
// taking on any other dependency, and without a cycle.
type Status uint8

const (
	Unknown   Status = iota // "unknown": no data, or data too old to judge
	Healthy                 // "healthy"
	Degraded                // "degraded": slow or partly failing, still serving
	Unhealthy               // "unhealthy": failing
	Drained                 // "drained": taken out of rotation by an operator
)

// names are the text forms, by value.
var names = [...]string{Unknown: "unknown", Healthy: "healthy", Degraded: "degraded", Unhealthy: "unhealthy", Drained: "drained"}

// ranks are the positions in the order, by value.
var ranks = [...]int{Healthy: 0, Degraded: 1, Unknown: 2, Unhealthy: 3, Drained: 4}

// Valid reports whether s is one of the constants.
func (s Status) Valid() bool { return int(s) < len(names) }

// Rank is s's position in the order, from 0 (Healthy) to 4 (Drained); a
// value that is not Valid ranks as Unknown.
func (s Status) Rank() int {
	if !s.Valid() {
		return ranks[Unknown]
	}
	return ranks[s]
}

// AtLeast reports whether s is as bad as t or worse.
func (s Status) AtLeast(t Status) bool { return s.Rank() >= t.Rank() }

// Worse returns the worse of a and b; a when they rank the same.
func Worse(a, b Status) Status {
	if b.Rank() > a.Rank() {
		return b
	}
	return a
}

// CappedAt returns s, or limit when s is worse than limit: a dependency
// whose impact is limited to degraded passes at most that on.
func (s Status) CappedAt(limit Status) Status {
	if s.Rank() > limit.Rank() {
		return limit
	}
	return s
}

// RollUp is s as a parent in the health model sees it: Unknown (and any
// value that is not Valid) counts as Degraded, Drained as Unhealthy; the
// others pass unchanged.
func (s Status) RollUp() Status {
	switch {
	case s == Drained:
		return Unhealthy
	case s.Rank() == Unknown.Rank():
		return Degraded
	}
	return s
}

// Routable reports whether the edge may send traffic to a stamp in state s:
// Healthy or Degraded (a degraded stamp is slow or partly failing, but it
// serves).
func (s Status) Routable() bool { return s == Healthy || s == Degraded }

// String returns the text form, or Status(n) for a value that is not Valid.
func (s Status) String() string {
	if !s.Valid() {
		return "Status(" + strconv.Itoa(int(s)) + ")"
	}
	return names[s]
}

// ParseStatus returns the status named by text ("healthy", "degraded",
// "unhealthy", "unknown" or "drained").
func ParseStatus(text string) (Status, error) {
	for s, name := range names {
		if name == text {
			return Status(s), nil
		}
	}
	return Unknown, fmt.Errorf("health status %q is not one of healthy, degraded, unhealthy, unknown, drained", text)
}

// MarshalText implements encoding.TextMarshaler (and so JSON).
func (s Status) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("marshal health status: %s is not a status", s)
	}
	return []byte(names[s]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler (and so JSON). Text that
// names no status is an error and leaves s unchanged.
func (s *Status) UnmarshalText(text []byte) error {
	v, err := ParseStatus(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
