package slo

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Kind is what an SLO counts as a good event.
type Kind string

const (
	// Availability counts a response as good unless its status is 5xx.
	Availability Kind = "availability"
	// Latency counts a response as good when it took at most the SLO's
	// threshold, whatever its status.
	Latency Kind = "latency"
)

const (
	// DefaultPeriod is the error budget period when an SLO names none.
	DefaultPeriod = 30 * 24 * time.Hour
	// DefaultMinRequestRate is the minimum traffic, in requests per second
	// averaged over an alert's long window, below which no burn-rate alert
	// fires, when an SLO names none. At 0.1/s a single failed request cannot
	// page on its own: the fast-burn alert of a 99.9 % objective then needs
	// at least 6 failures among 360 requests in the hour.
	DefaultMinRequestRate = 0.1
)

// Buckets are the boundaries, in seconds, of the request duration histogram
// every component records. A latency SLO's threshold must be one of them:
// only there can good events be counted exactly.
func Buckets() []float64 {
	return []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

// SLO is one service level objective of one user flow, measured on the
// requests the edge answers for that flow.
type SLO struct {
	// Name identifies the SLO in rules, alerts and the dashboard: lower case
	// letters, digits and dashes, e.g. "browse-availability". Required.
	Name string
	// Flow is the value of the flow label of the requests that count, e.g.
	// "browse". Required.
	Flow string
	// Kind says what a good event is. Required.
	Kind Kind
	// Objective is the share of good events the SLO promises, strictly
	// between 0 and 1, e.g. 0.999. The error budget is 1 - Objective.
	Objective float64
	// Threshold is, for a latency SLO, the slowest good response in seconds;
	// it must be one of Buckets. It must be zero for an availability SLO.
	Threshold float64
	// Period is the error budget period; zero means DefaultPeriod. It must be
	// a whole number of hours and at least as long as the longest alert
	// window (3 days).
	Period time.Duration
	// MinRequestRate is the minimum traffic, in requests per second averaged
	// over an alert's long window, for a burn-rate alert to fire; zero means
	// DefaultMinRequestRate. Use a tiny positive value for almost no guard.
	MinRequestRate float64
	// Description says in one sentence what the customer gets; optional.
	Description string
}

// ErrorBudget is the share of events the SLO allows to be bad: 1 - Objective,
// rounded to 12 decimal places so that 1 - 0.999 is 0.001 and not
// 0.0010000000000000009.
func (s SLO) ErrorBudget() float64 {
	return math.Round((1-s.Objective)*1e12) / 1e12
}

// withDefaults returns s with its zero fields replaced by their defaults.
func (s SLO) withDefaults() SLO {
	if s.Period == 0 {
		s.Period = DefaultPeriod
	}
	if s.MinRequestRate == 0 {
		s.MinRequestRate = DefaultMinRequestRate
	}
	return s
}

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// validate reports what is wrong with s, after defaults are applied.
func (s SLO) validate() error {
	var errs []error
	if !namePattern.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("name %q: want lower case letters, digits and inner dashes", s.Name))
	}
	if !namePattern.MatchString(s.Flow) {
		errs = append(errs, fmt.Errorf("flow %q: want lower case letters, digits and inner dashes", s.Flow))
	}
	switch s.Kind {
	case Availability:
		if s.Threshold != 0 {
			errs = append(errs, fmt.Errorf("threshold %v: an availability SLO has none", s.Threshold))
		}
	case Latency:
		if !slices.Contains(Buckets(), s.Threshold) {
			errs = append(errs, fmt.Errorf("threshold %v: not a histogram bucket boundary %v", s.Threshold, Buckets()))
		}
	default:
		errs = append(errs, fmt.Errorf("kind %q: want %q or %q", s.Kind, Availability, Latency))
	}
	if !(s.Objective > 0 && s.Objective < 1) {
		errs = append(errs, fmt.Errorf("objective %v: want a value strictly between 0 and 1", s.Objective))
	}
	alerts := burnAlerts()
	if longest := alerts[len(alerts)-1].long; s.Period < longest || s.Period%time.Hour != 0 {
		errs = append(errs, fmt.Errorf("period %v: want whole hours, at least %s", s.Period, promDuration(longest)))
	}
	if !(s.MinRequestRate >= 0) || math.IsInf(s.MinRequestRate, 0) {
		errs = append(errs, fmt.Errorf("minRequestRate %v: want a finite value >= 0", s.MinRequestRate))
	}
	if strings.Contains(s.Description, "{{") || strings.Contains(s.Description, "}}") {
		errs = append(errs, errors.New("description: must not contain {{ or }} (it goes into alert templates)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("slo %q: %w", s.Name, err)
	}
	return nil
}

// validateAll applies defaults to every SLO and validates the set: each one
// on its own, and that names are unique.
func validateAll(slos []SLO) ([]SLO, error) {
	if len(slos) == 0 {
		return nil, errors.New("no SLOs")
	}
	out := make([]SLO, len(slos))
	seen := map[string]bool{}
	var errs []error
	for i, s := range slos {
		s = s.withDefaults()
		if err := s.validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("slo %q: duplicate name", s.Name))
		}
		seen[s.Name] = true
		out[i] = s
	}
	return out, errors.Join(errs...)
}

// file is the YAML form of the SLO definitions; see the package
// documentation.
type file struct {
	SLOs []struct {
		Name           string  `yaml:"name"`
		Flow           string  `yaml:"flow"`
		Kind           Kind    `yaml:"kind"`
		Objective      float64 `yaml:"objective"`
		Threshold      float64 `yaml:"threshold"`
		Period         string  `yaml:"period"`
		MinRequestRate float64 `yaml:"minRequestRate"`
		Description    string  `yaml:"description"`
	} `yaml:"slos"`
}

// Load parses SLO definitions in the YAML format of the package
// documentation, applies the defaults of absent fields and validates them.
// Unknown fields are an error. The SLOs come back in the order of the file.
func Load(data []byte) ([]SLO, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("load slos: %w", err)
	}
	slos := make([]SLO, 0, len(f.SLOs))
	var errs []error
	for _, y := range f.SLOs {
		s := SLO{
			Name: y.Name, Flow: y.Flow, Kind: y.Kind, Objective: y.Objective, Threshold: y.Threshold,
			MinRequestRate: y.MinRequestRate, Description: strings.TrimSpace(y.Description),
		}
		if y.Period != "" {
			p, err := parsePeriod(y.Period)
			if err != nil {
				errs = append(errs, fmt.Errorf("slo %q: %w", y.Name, err))
				continue
			}
			s.Period = p
		}
		slos = append(slos, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("load slos: %w", err)
	}
	slos, err := validateAll(slos)
	if err != nil {
		return nil, fmt.Errorf("load slos: %w", err)
	}
	return slos, nil
}

//go:embed slos.yaml
var defaultYAML []byte

// Default returns the SLOs of the shop, as declared in the embedded
// slos.yaml.
func Default() []SLO {
	slos, err := Load(defaultYAML)
	if err != nil {
		// The embedded file is tested; reaching this is a build defect.
		panic(err)
	}
	return slos
}

// parsePeriod parses a period such as "30d", "4w" or "720h".
func parsePeriod(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("period: empty")
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[s[len(s)-1]]
	if unit == 0 {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("period %q: want e.g. 30d, 4w or 720h", s)
		}
		return d, nil
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("period %q: want e.g. 30d, 4w or 720h", s)
	}
	return time.Duration(n) * unit, nil
}

// promDuration formats d the way Prometheus writes range durations: "5m",
// "1h", "3d".
func promDuration(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	default:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
}

// formatFloat writes f in the shortest form that reads back exactly.
func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}
