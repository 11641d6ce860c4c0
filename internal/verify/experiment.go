// Package verify runs experiments against a deployment and judges them:
// each experiment puts a launch-day load on the edge, injects one fault
// through the operations API at a set time, watches the health model and
// the edge's routing meanwhile, and then checks expectations: SLO gates per
// flow (percentiles and error ratios, never averages), which health entity
// reaches which state within how long and which must never turn
// unhealthy, how fast the faulted region leaves rotation, and what the data
// must look like after the heal (no failed idempotent request, every
// accepted order final, nothing oversold); and every experiment, that
// every unit of stock its checkouts touched is still available, held or
// sold to one of its confirmed orders. An experiment may also run a
// release of the deployment under the load, with or without a fault, and
// judge how it ends: its final phase, its steps, the share of failed
// requests, how fast a bad version was rolled back, that a version never
// ready served nothing, and that the losing version's stamps are gone. The
// verdicts are rows of experiment, expectation, measured value and pass
// or fail.
package verify

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/loadtest"
)

// Experiment is one fault under load with its expectations.
type Experiment struct {
	Name     string   `yaml:"name" json:"name"`
	Profiles []string `yaml:"profiles" json:"profiles"`
	Load     Load     `yaml:"load" json:"load"`
	Fault    Fault    `yaml:"fault,omitempty" json:"fault,omitzero"`
	Expect   Expect   `yaml:"expect" json:"expect"`
	// Release, when set, starts a release of the deployment during the
	// load and judges how it ends. An experiment with a release may have
	// no fault; with one, the fault hits the release under way.
	Release *Release `yaml:"release,omitempty" json:"release,omitempty"`
	// Scaling, when set, gives the autoscaler and every instance the
	// experiment's rules and capacity, and judges what the autoscaler
	// did. An experiment with scaling may have no fault.
	Scaling *Scaling `yaml:"scaling,omitempty" json:"scaling,omitempty"`
}

// Release is a release started After the load starts, with its plan and
// gate, and what must come of it. Zero fields take the controller's
// defaults (steps 10, 50, 100; hold 5 s; 30 requests; tolerance 0.01).
type Release struct {
	// Version is the version's prefix: the runner releases
	// "<version>-<unix time>", since a version already running is
	// refused.
	Version string `yaml:"version" json:"version"`
	// Fault is a defect the new stamps carry (error=R[,route=...],
	// latency=D, crash-on-start, never-ready); empty: none.
	Fault          string   `yaml:"fault,omitempty" json:"fault,omitempty"`
	Steps          []int    `yaml:"steps,omitempty" json:"steps,omitempty"`
	Hold           Duration `yaml:"hold,omitempty" json:"hold,omitempty"`
	MinRequests    int      `yaml:"min_requests,omitempty" json:"minRequests,omitempty"`
	ErrorTolerance float64  `yaml:"error_tolerance,omitempty" json:"errorTolerance,omitempty"`
	// LatencyFactor is how many times the old version's p99 the new one's
	// may reach (and 100 ms more) before a step fails; zero: the gate's (2).
	LatencyFactor float64 `yaml:"latency_factor,omitempty" json:"latencyFactor,omitempty"`
	// StartTimeout bounds the wait for the new stamps to be ready; zero:
	// the deployment's (90 s).
	StartTimeout Duration      `yaml:"start_timeout,omitempty" json:"startTimeout,omitempty"`
	After        Duration      `yaml:"after" json:"after"`
	Expect       ReleaseExpect `yaml:"expect" json:"expect"`
}

// Outcomes a release can end in: its final phases.
var outcomes = []string{"done", "rolled-back", "failed"}

// ReleaseExpect is what must come of a release.
type ReleaseExpect struct {
	// Outcome is the final phase: done, rolled-back or failed. Required.
	Outcome string `yaml:"outcome" json:"outcome"`
	// Within bounds the release from its start to its end. Required.
	Within Duration `yaml:"within" json:"within"`
	// MaxErrorShare bounds the failed requests (5xx and transport errors)
	// over all requests of the load; nil: not checked.
	MaxErrorShare *float64 `yaml:"max_error_share,omitempty" json:"maxErrorShare,omitempty"`
	// RollbackWithin bounds the time from when the gate had enough
	// requests to judge the failing step to the rollback (the time from
	// the first bad request is reported beside it); zero: not checked.
	RollbackWithin Duration `yaml:"rollback_within,omitempty" json:"rollbackWithin,omitempty"`
	// NoTraffic: no answer of the load came from the new version and the
	// release took no step (a version that never became ready).
	NoTraffic bool `yaml:"no_traffic,omitempty" json:"noTraffic,omitempty"`
	// PausedByFault: the experiment's fault (a region outage) pauses the
	// release ("region lost") while it lasts; once the fault healed and
	// the region is healthy again the runner resumes it.
	PausedByFault bool `yaml:"paused_by_fault,omitempty" json:"pausedByFault,omitempty"`
}

// Load is the experiment's load profile: 0 to Rate requests/s over Ramp,
// then Rate for Hold, of the flows weighed by Mix; then, when Spike is
// set, the launch: SpikeRate requests/s for Spike of product pages, carts
// and checkouts of the launch shoes only (loadtest.DefaultSpikeMix).
type Load struct {
	Rate  float64  `yaml:"rate" json:"rate"`
	Ramp  Duration `yaml:"ramp" json:"ramp"`
	Hold  Duration `yaml:"hold" json:"hold"`
	Spike Duration `yaml:"spike,omitempty" json:"spike,omitempty"`
	// SpikeRate is the rate of the spike; zero: twice Rate.
	SpikeRate float64 `yaml:"spike_rate,omitempty" json:"spikeRate,omitempty"`
	// Stock, when positive, is what every launch SKU's stock is set to
	// before the load: few units for many buyers. Zero: as it is.
	Stock int `yaml:"stock,omitempty" json:"stock,omitempty"`
	// Mix weighs the flows; nil: the load tool's launch mix.
	Mix *Mix `yaml:"mix,omitempty" json:"mix,omitempty"`
	// Regions are where the clients are; empty: as the runner's load
	// has them (every region).
	Regions []string `yaml:"regions,omitempty" json:"regions,omitempty"`
	// Windows are the stretches of the load whose answers the judge reads
	// apart (SurvivorsGate): set by the runner, never by the file.
	Windows []loadtest.Window `yaml:"-" json:"-"`
}

// length is how long the load's schedule lasts.
func (l Load) length() time.Duration { return l.Ramp.D() + l.Hold.D() + l.Spike.D() }

// Mix weighs the load's flows (relative weights, not percents): browse
// (catalog listings), product (product pages), comment, cart (not
// idempotent) and checkout (orders with an Idempotency-Key).
type Mix struct {
	Browse   float64 `yaml:"browse,omitempty" json:"browse,omitempty"`
	Product  float64 `yaml:"product,omitempty" json:"product,omitempty"`
	Comment  float64 `yaml:"comment,omitempty" json:"comment,omitempty"`
	Cart     float64 `yaml:"cart,omitempty" json:"cart,omitempty"`
	Checkout float64 `yaml:"checkout,omitempty" json:"checkout,omitempty"`
}

// Fault is the fault and its timing: injected After the load starts,
// healed by itself after Duration. Target is what the fault hits, as
// chaos takes it; for instance-kill, stamp-drain and region-outage it may
// also be ServingTarget followed by a region (serving:westeurope): the
// region that the POP of that region's clients sends them to at the
// moment of injection, whichever that is.
type Fault struct {
	Fault    string            `yaml:"fault" json:"fault"`
	Target   string            `yaml:"target" json:"target"`
	Params   map[string]string `yaml:"params,omitempty" json:"params,omitempty"`
	After    Duration          `yaml:"after" json:"after"`
	Duration Duration          `yaml:"duration" json:"duration"`
}

// ServingTarget prefixes a fault's target that names a region of clients
// in place of the region to hit (Fault).
const ServingTarget = "serving:"

// servingFaults are the faults whose target may be ServingTarget: those
// that hit a region's stamps.
var servingFaults = []string{chaos.FaultInstanceKill, chaos.FaultStampDrain, chaos.FaultRegionOutage}

// Expect lists what must hold.
type Expect struct {
	SLO     []SLOGate    `yaml:"slo,omitempty" json:"slo,omitempty"`
	Health  []HealthGate `yaml:"health,omitempty" json:"health,omitempty"`
	Routing *RoutingGate `yaml:"routing,omitempty" json:"routing,omitempty"`
	Data    *DataGate    `yaml:"data,omitempty" json:"data,omitempty"`
	// Survivors judges what the clients of the regions the fault spares
	// felt: the p99 of each flow while the fault lasts against before it.
	Survivors *SurvivorsGate `yaml:"survivors,omitempty" json:"survivors,omitempty"`
}

// SurvivorsGate: in every client region but the fault's target, each of
// Flows keeps its p99 while the fault lasts (the requests sent from the
// injection to the heal) within P99Ratio times its p99 before it (the
// requests sent from the end of the ramp, or Before ahead of the
// injection if that is later, and answered before the injection: those
// it caught in flight felt the fault). Both figures are reported with
// the ratio. A p99 during the fault no more than Slack above the one
// before passes whatever the ratio: a flow answered in 2 ms doubles with
// a garbage collection, while waiting on another region costs at least
// one inter-region round trip (20 ms here at the shortest).
type SurvivorsGate struct {
	Flows    []string `yaml:"flows" json:"flows"`
	P99Ratio float64  `yaml:"p99_ratio" json:"p99Ratio"`
	Before   Duration `yaml:"before,omitempty" json:"before,omitempty"`
	Slack    Duration `yaml:"slack,omitempty" json:"slack,omitempty"`
}

// Names of the load windows a SurvivorsGate reads.
const (
	windowBefore = "before the fault"
	windowDuring = "during the fault"
)

// windows are the stretches of e's load the gate compares.
func (g *SurvivorsGate) windows(e Experiment) []loadtest.Window {
	at, from := e.Fault.After.D(), e.Load.Ramp.D()
	if g.Before > 0 {
		from = max(from, at-g.Before.D())
	}
	return []loadtest.Window{
		{Name: windowBefore, From: from, To: at, Answered: true},
		{Name: windowDuring, From: at, To: at + e.Fault.Duration.D()},
	}
}

// check says what the gate lacks.
func (g *SurvivorsGate) check(where string, e Experiment) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: survivors: "+format, append([]any{where}, args...)...))
	}
	if len(g.Flows) == 0 {
		bad("name the flows to judge")
	}
	for _, f := range g.Flows {
		if !slices.Contains(loadtest.Flows(), loadtest.Flow(f)) {
			bad("unknown flow %q", f)
		}
	}
	if !(g.P99Ratio >= 1) || math.IsInf(g.P99Ratio, 0) {
		bad("p99_ratio must be a finite number >= 1, got %v", g.P99Ratio)
	}
	if g.Slack < 0 {
		bad("slack must not be negative, got %s", g.Slack.D())
	}
	if e.Fault.Fault == "" || e.Fault.Target == "" {
		bad("needs a fault with a target region")
	} else if ws := g.windows(e); ws[0].From >= ws[0].To {
		bad("the fault must come after the ramp, so there is a before to compare with")
	}
	return errs
}

// SLOGate bounds one flow's percentiles and error ratio over the whole run
// (zero fields are not checked; Errors is checked when set, 0 included).
// With Region, only that client region's requests of the flow count, and
// only P99 is judged (the load report keeps no p95 per region, and counts
// every non-2xx answer there, 429s included, as failed).
type SLOGate struct {
	Flow   string   `yaml:"flow" json:"flow"`
	Region string   `yaml:"region,omitempty" json:"region,omitempty"`
	P95    Duration `yaml:"p95,omitempty" json:"p95,omitempty"`
	P99    Duration `yaml:"p99,omitempty" json:"p99,omitempty"`
	Errors *float64 `yaml:"errors,omitempty" json:"errors,omitempty"`
}

// HealthGate is a health model expectation: Entity reaches State (for
// degraded, or unhealthy) with Reason in its reason, within Within of the
// injection; or Entity is Never in the named state during the experiment.
type HealthGate struct {
	Entity string   `yaml:"entity" json:"entity"`
	State  string   `yaml:"state,omitempty" json:"state,omitempty"`
	Within Duration `yaml:"within,omitempty" json:"within,omitempty"`
	Reason string   `yaml:"reason,omitempty" json:"reason,omitempty"`
	Never  string   `yaml:"never,omitempty" json:"never,omitempty"`
}

// RoutingGate: no POP routes to a stamp of OutOfRotation within Within of
// the injection; some POP routes to a stamp of InRotation at every look
// from the injection on (losing part of a region does not take it out);
// with StaysHome, every client region's answers came from its own region
// for the whole load.
type RoutingGate struct {
	OutOfRotation string   `yaml:"out_of_rotation,omitempty" json:"outOfRotation,omitempty"`
	Within        Duration `yaml:"within,omitempty" json:"within,omitempty"`
	InRotation    string   `yaml:"in_rotation,omitempty" json:"inRotation,omitempty"`
	StaysHome     bool     `yaml:"stays_home,omitempty" json:"staysHome,omitempty"`
}

// DataGate: what the data must look like once the fault has healed.
type DataGate struct {
	IdempotentFailures *int  `yaml:"idempotent_failures,omitempty" json:"idempotentFailures,omitempty"`
	OrdersFinal        bool  `yaml:"orders_final,omitempty" json:"ordersFinal,omitempty"`
	Oversell           *bool `yaml:"oversell,omitempty" json:"oversell,omitempty"`
}

// check says what a release block lacks.
func (r *Release) check(where string, e Experiment) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: release: "+format, append([]any{where}, args...)...))
	}
	x := r.Expect
	if r.Version == "" || len(r.Version) > 48 {
		bad("a version of 1 to 48 characters is required (the runner appends the time)")
	}
	if r.After.D() < 0 || r.After.D() >= e.Load.length() {
		bad("after must fall within the load")
	}
	if r.Hold.D() < 0 || r.MinRequests < 0 || r.ErrorTolerance < 0 || r.ErrorTolerance > 1 || r.LatencyFactor < 0 {
		bad("hold, min_requests, error_tolerance and latency_factor must not be negative (error_tolerance at most 1)")
	}
	if !slices.Contains(outcomes, x.Outcome) {
		bad("expect.outcome %q: want one of %s", x.Outcome, strings.Join(outcomes, ", "))
	}
	if x.Within.D() <= 0 {
		bad("expect.within must be positive")
	}
	if x.MaxErrorShare != nil && (*x.MaxErrorShare < 0 || *x.MaxErrorShare > 1) {
		bad("expect.max_error_share must be in [0, 1]")
	}
	if x.RollbackWithin.D() < 0 {
		bad("expect.rollback_within must not be negative")
	}
	if x.PausedByFault && e.Fault.Fault == "" {
		bad("expect.paused_by_fault needs the experiment's fault")
	}
	return errs
}

// Duration is a time.Duration written as "5s" in the file.
type Duration time.Duration

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes a duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

//go:embed experiments.yaml
var defaultFile []byte

// Default returns the experiments shipped with the binary.
func Default() []Experiment {
	e, err := Parse(defaultFile)
	if err != nil {
		panic("verify: the embedded experiments.yaml is invalid: " + err.Error())
	}
	return e
}

var states = []string{"healthy", "degraded", "unhealthy", "unknown"}

// Parse reads and validates an experiments file.
func Parse(b []byte) ([]Experiment, error) {
	var f struct {
		Experiments []Experiment `yaml:"experiments"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("experiments: %w", err)
	}
	var errs []error
	seen := map[string]bool{}
	for i, e := range f.Experiments {
		where := fmt.Sprintf("experiment %d (%q)", i+1, e.Name)
		switch {
		case e.Name == "" || seen[e.Name]:
			errs = append(errs, fmt.Errorf("%s: a unique name is required", where))
		case e.Load.Rate <= 0 || e.Load.Rate > 100_000:
			errs = append(errs, fmt.Errorf("%s: load rate must be in (0, 100000]", where))
		case e.Load.Hold.D() <= 0:
			errs = append(errs, fmt.Errorf("%s: load hold must be positive", where))
		case e.Load.Spike.D() < 0 || e.Load.SpikeRate < 0 || e.Load.SpikeRate > 100_000 || e.Load.Stock < 0 || e.Load.Stock > 1_000_000:
			errs = append(errs, fmt.Errorf("%s: load spike, spike_rate and stock must not be negative (spike_rate at most 100000, stock at most 1000000)", where))
		case e.Load.Mix != nil && (min(e.Load.Mix.Browse, e.Load.Mix.Product, e.Load.Mix.Comment, e.Load.Mix.Cart, e.Load.Mix.Checkout) < 0 ||
			*e.Load.Mix == Mix{}):
			errs = append(errs, fmt.Errorf("%s: a load mix needs a positive weight and no negative one", where))
		case e.Release == nil && e.Scaling == nil && (e.Fault.Fault == "" || e.Fault.Duration.D() <= 0):
			errs = append(errs, fmt.Errorf("%s: a fault with a positive duration is required", where))
		case e.Fault.Fault != "" && e.Fault.Duration.D() <= 0:
			errs = append(errs, fmt.Errorf("%s: the fault needs a positive duration", where))
		case e.Fault.After.D()+e.Fault.Duration.D() > e.Load.length():
			errs = append(errs, fmt.Errorf("%s: the fault must heal before the load ends", where))
		}
		if clients, ok := strings.CutPrefix(e.Fault.Target, ServingTarget); ok &&
			(clients == "" || !slices.Contains(servingFaults, e.Fault.Fault) || e.Release != nil) {
			errs = append(errs, fmt.Errorf("%s: target %q: %sREGION names a region of clients, for %s only, and not in an experiment with a release",
				where, e.Fault.Target, ServingTarget, strings.Join(servingFaults, ", ")))
		}
		seen[e.Name] = true
		if r := e.Release; r != nil {
			errs = append(errs, r.check(where, e)...)
		}
		if sc := e.Scaling; sc != nil {
			errs = append(errs, sc.check(where)...)
		}
		for _, g := range e.Expect.Health {
			ok := g.Entity != "" && ((g.State != "" && g.Within > 0 && slices.Contains(states, g.State) && g.Never == "") ||
				(g.Never != "" && slices.Contains(states, g.Never) && g.State == ""))
			if !ok {
				errs = append(errs, fmt.Errorf("%s: health expectation %+v: want entity with state and within, or never", where, g))
			}
		}
		for _, g := range e.Expect.SLO {
			if g.Flow == "" {
				errs = append(errs, fmt.Errorf("%s: an SLO gate needs a flow", where))
			}
			if g.Region != "" && (g.P95 > 0 || g.Errors != nil) {
				errs = append(errs, fmt.Errorf("%s: the SLO gate of %s in %s: only p99 is judged per region", where, g.Flow, g.Region))
			}
		}
		if g := e.Expect.Survivors; g != nil {
			errs = append(errs, g.check(where, e)...)
		}
		if r := e.Expect.Routing; r != nil && ((r.OutOfRotation == "") != (r.Within <= 0) || (r.OutOfRotation == "" && r.InRotation == "" && !r.StaysHome)) {
			errs = append(errs, fmt.Errorf("%s: routing wants out_of_rotation with within, in_rotation, or stays_home", where))
		}
	}
	if len(f.Experiments) == 0 {
		errs = append(errs, errors.New("experiments: none"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f.Experiments, nil
}

// Select keeps the experiments of a profile ("" or "all": every one).
func Select(exps []Experiment, profile string) []Experiment {
	if profile == "" || profile == "all" {
		return exps
	}
	var out []Experiment
	for _, e := range exps {
		if slices.Contains(e.Profiles, profile) {
			out = append(out, e)
		}
	}
	return out
}

// Match keeps the experiments whose name the regular expression run
// matches ("": every one), then leaves out those that skip matches ("":
// none), in the order given.
func Match(exps []Experiment, run, skip string) ([]Experiment, error) {
	out := slices.Clone(exps)
	for _, f := range []struct {
		flag, expr string
		keep       bool
	}{{"run", run, true}, {"skip", skip, false}} {
		if f.expr == "" {
			continue
		}
		re, err := regexp.Compile(f.expr)
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", f.flag, err)
		}
		out = slices.DeleteFunc(out, func(e Experiment) bool { return re.MatchString(e.Name) != f.keep })
	}
	return out, nil
}
