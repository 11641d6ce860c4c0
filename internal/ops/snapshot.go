package ops

import (
	"time"

	"github.com/contoso/shoes/internal/health"
)

// The states of regions, stamps, health nodes and signals are health.Status
// values, in the system's one vocabulary; the page gets their names
// ("healthy", ...) and colours them green (healthy), amber (degraded), red
// (unhealthy, drained) and grey (unknown, or anything it does not
// recognise). Only stamps are ever drained: taken out of rotation by an
// operator. A zero state is unknown.

// Snapshot is everything the page shows, built by the caller at one moment.
// Its JSON form is the contract between the server and the page; nil slices
// are shown as empty.
type Snapshot struct {
	// Time is when the snapshot was taken; a zero Time is set to the time
	// the dashboard received it.
	Time    time.Time    `json:"time"`
	Regions []Region     `json:"regions"` // shown in this order
	POPs    []POP        `json:"pops"`
	Health  *HealthNode  `json:"health"` // the health model tree; its root is the system, its children the user flows; nil: unknown
	SLOs    []SLOStatus  `json:"slos"`
	Errors  []ErrorEntry `json:"errors"` // recent error logs, newest first
	// Release is the release under way, or the last one; nil when no
	// release was ever run.
	Release *Release `json:"release"`
	// ReleaseProblem says why Release is missing when the release could
	// not be read; empty otherwise.
	ReleaseProblem string `json:"releaseProblem,omitempty"`
	// Scaling is the autoscaler's state; nil when the deployment runs
	// none (the page then shows no scaling section).
	Scaling *Scaling `json:"scaling,omitempty"`
}

// Region is one region with its stamps and its traffic.
type Region struct {
	Name       string        `json:"name"`
	State      health.Status `json:"state"` // healthy, degraded, unhealthy or unknown
	Reason     string        `json:"reason"`
	Stamps     []Stamp       `json:"stamps"`
	RPS        float64       `json:"rps"`
	ErrorRatio float64       `json:"errorRatio"` // 0..1
	P99Ms      float64       `json:"p99Ms"`
}

// Stamp is one deployment stamp of a region.
type Stamp struct {
	ID     string        `json:"id"`
	State  health.Status `json:"state"` // healthy, degraded, unhealthy, drained or unknown
	Reason string        `json:"reason"`
	URL    string        `json:"url"`
	// Release is the release the stamp announces; empty: none.
	Release string `json:"release"`
	// Zone is the failure domain the stamp runs in inside its region, as
	// it announces it; empty: not announced.
	Zone string `json:"zone,omitempty"`
}

// POP is a point of presence of the global edge and where it sends its
// clients now.
type POP struct {
	Region   string   `json:"region"`
	Routes   []string `json:"routes"`   // the regions its clients go to now, preferred first
	FailOpen bool     `json:"failOpen"` // no stamp was healthy and the POP sends traffic anyway
}

// HealthNode is one entity of the layered health model: the system, a user
// flow, a component or a dependency.
type HealthNode struct {
	ID       string        `json:"id"`
	Name     string        `json:"name"`
	Kind     string        `json:"kind"` // system, flow, component, dependency
	Region   string        `json:"region,omitempty"`
	State    health.Status `json:"state"` // healthy, degraded, unhealthy or unknown
	Score    float64       `json:"score"` // 0..1, 1 is fully healthy
	Reason   string        `json:"reason"`
	Impact   string        `json:"impact,omitempty"` // what the node's state does to its parent
	Signals  []Signal      `json:"signals,omitempty"`
	Children []*HealthNode `json:"children,omitempty"`
}

// Signal is one measured input of a health node with its thresholds.
type Signal struct {
	Name      string        `json:"name"`
	Value     float64       `json:"value"`
	State     health.Status `json:"state"`
	Degraded  float64       `json:"degraded"`  // the value from which the signal is degraded
	Unhealthy float64       `json:"unhealthy"` // the value from which the signal is unhealthy
	Reason    string        `json:"reason"`
}

// SLOStatus is one service level objective with its error budget and the
// burn rate over each alerting window.
type SLOStatus struct {
	SLO             string      `json:"slo"`
	Flow            string      `json:"flow"`
	Kind            string      `json:"kind"`      // e.g. availability, latency
	Objective       float64     `json:"objective"` // 0..1, e.g. 0.999
	Windows         []SLOWindow `json:"windows"`
	BudgetRemaining float64     `json:"budgetRemaining"` // share of the error budget left, 1 is untouched, below 0 is overspent
	Alerts          []string    `json:"alerts"`          // alerts firing now
}

// SLOWindow is an SLO measured over one window.
type SLOWindow struct {
	Window     string  `json:"window"` // e.g. "5m", "1h"
	Total      float64 `json:"total"`
	Bad        float64 `json:"bad"`
	ErrorRatio float64 `json:"errorRatio"`
	BurnRate   float64 `json:"burnRate"` // 1 spends the budget exactly over the SLO period
	OK         bool    `json:"ok"`
}

// ErrorEntry is one recent error log record.
type ErrorEntry struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Region  string            `json:"region"`
	TraceID string            `json:"traceId"` // empty: no trace; otherwise the page links to /ops/traces/{id}
	Attrs   map[string]string `json:"attrs"`
}

// Release is one release: what it runs, its plan, each step with what the
// gate read and decided, and how the POPs split each region's traffic now.
type Release struct {
	ID      string `json:"id"`
	Version string `json:"version"` // the release the new stamps announce
	Image   string `json:"image"`   // REF@sha256:...; empty: versions in process
	Env     string `json:"env"`     // dev or prod
	// From is each region's release before this one: the old side of its
	// split.
	From map[string]string `json:"from"`
	// Phase is starting, shifting, finishing, rolling-back, done,
	// rolled-back or failed; the last three are final.
	Phase  string         `json:"phase"`
	Paused bool           `json:"paused"`
	Reason string         `json:"reason"` // why it paused, rolled back or failed
	By     string         `json:"by"`
	Plan   []ReleaseStage `json:"plan"`
	// Stage is the index in Plan of the step under way; -1 before the
	// first.
	Stage     int           `json:"stage"`
	Steps     []ReleaseStep `json:"steps"` // the steps so far, in order; the last may be under way
	StartedAt time.Time     `json:"startedAt"`
	EndedAt   time.Time     `json:"endedAt,omitzero"` // zero while under way
	// FirstBadAt is when the gate first saw an error on the new release;
	// RollbackAt when the rollback began. Zero: not (yet).
	FirstBadAt time.Time `json:"firstBadAt,omitzero"`
	RollbackAt time.Time `json:"rollbackAt,omitzero"`
	// Split is each region's traffic as the POPs apply it now, in the
	// order of Snapshot.Regions.
	Split []RegionSplit `json:"split"`
}

// ReleaseStage is one step of a release's plan: a region's share of the
// new release.
type ReleaseStage struct {
	Region  string `json:"region"`
	Percent int    `json:"percent"`
}

// ReleaseStep is a stage as it happened.
type ReleaseStep struct {
	Region    string    `json:"region"`
	Percent   int       `json:"percent"`
	StartedAt time.Time `json:"startedAt"`
	EndedAt   time.Time `json:"endedAt,omitzero"` // zero while the step is under way
	// Verdict is "holding" while the gate waits, then "passed",
	// "promoted" (an operator skipped the gate) or "failed".
	Verdict string      `json:"verdict"`
	Reason  string      `json:"reason"`
	New     GateReading `json:"new"` // the new release's stamps in the step's region
	Old     GateReading `json:"old"` // the old release's stamps they are compared with
}

// GateReading is what one release's stamps served over a step's window.
type GateReading struct {
	Health    health.Status `json:"health"` // the worst among its stamps
	Instances int           `json:"instances"`
	Flows     []FlowReading `json:"flows"` // by flow name
}

// FlowReading is one user flow's traffic in a GateReading.
type FlowReading struct {
	Flow       string  `json:"flow"` // browse, comment, checkout
	Requests   float64 `json:"requests"`
	ErrorRatio float64 `json:"errorRatio"` // 0..1: answered 5xx over requests
	P99Ms      float64 `json:"p99Ms"`
}

// RegionSplit is one region's traffic split between releases, as the POPs
// apply it.
type RegionSplit struct {
	Region string `json:"region"`
	// Percents maps a release to its share of the region's traffic; empty
	// when no POP applies a table for the region (every stamp takes its
	// default weight, as when no release is under way).
	Percents map[string]int `json:"percents"`
	// Settled is false while the POPs do not all apply the same split (a
	// table change on its way); Percents is then the split of the first
	// POP in region order.
	Settled bool `json:"settled"`
}

// Scaling is the autoscaler as of its last evaluation: its rules, each
// region's count and the load behind it, and its recent events.
type Scaling struct {
	Policy ScalingPolicy `json:"policy"`
	// Held says why the scaler holds every change (a release under way);
	// empty: it does not.
	Held    string          `json:"held,omitempty"`
	Regions []ScalingRegion `json:"regions"` // by name
	Events  []ScalingEvent  `json:"events"`  // the most recent, newest first
}

// ScalingPolicy is how the scaler damps its decisions.
type ScalingPolicy struct {
	Target               float64 `json:"target"`    // the utilisation it steers to, 0..1
	Tolerance            float64 `json:"tolerance"` // how far from Target, as a fraction of it, counts as on target
	ScaleOutAfterSeconds float64 `json:"scaleOutAfterSeconds"`
	ScaleInAfterSeconds  float64 `json:"scaleInAfterSeconds"`
}

// ScalingRegion is one region's scaling: its limits and what the last
// evaluation read and wanted.
type ScalingRegion struct {
	Region string `json:"region"`
	Min    int    `json:"min"`
	Max    int    `json:"max"`
	// PreScale raises Min until a time (capacity warmed for a known
	// launch); nil: none. One whose time has passed stays until an
	// operator removes it, inactive.
	PreScale *ScalingPreScale `json:"preScale,omitempty"`
	// Want is the count the last evaluation wanted; Reason, why.
	Want        int           `json:"want"`
	Reason      string        `json:"reason,omitempty"`
	Utilisation float64       `json:"utilisation"` // demand over capacity, 0..1 and beyond
	Inputs      ScalingInputs `json:"inputs"`
}

// ScalingPreScale is a temporary minimum.
type ScalingPreScale struct {
	Min   int       `json:"min"`
	Until time.Time `json:"until"`
	// Active is set while it raises Min: Until is after the snapshot's
	// Time.
	Active bool `json:"active"`
}

// ScalingInputs is what one evaluation knew of a region.
type ScalingInputs struct {
	Instances int     `json:"instances"` // running, and starting on the scaler's word
	Reporting int     `json:"reporting"` // instances whose fresh report carries a load; the sums are over them
	InFlight  float64 `json:"inFlight"`  // mean requests in flight
	Capacity  int     `json:"capacity"`  // requests they take at once
	Requests  int64   `json:"requests"`  // answered in their last window
	Shed      int64   `json:"shed"`      // refused for want of a slot in their last window
	Waiting   int     `json:"waiting"`   // waiting for a slot
	P99Ms     float64 `json:"p99Ms"`     // the highest p99 of their handlers
	Min       int     `json:"min"`       // the bounds in force: Min raised by a pre-scale under way
	Max       int     `json:"max"`
	// The orders accepted and not yet processed: held by their processors
	// now, and the shared order queue's backlog and its oldest order's
	// wait, as last read. Shown, not steered on.
	OrdersInProcess int    `json:"ordersInProcess"`
	OrdersQueued    uint64 `json:"ordersQueued"`
	OrdersOldestMs  int64  `json:"ordersOldestMs"`
}

// ScalingEvent is one thing the scaler did or saw.
type ScalingEvent struct {
	At     time.Time `json:"at"`
	Region string    `json:"region,omitempty"` // empty: every region (held, resumed, settings)
	// Action is scale-out or scale-in (a decision), started, stopped or
	// failed (an instance's start or drain ended), serving (a started
	// instance took its first request), held or resumed, or settings (an
	// operator changed the rules).
	Action   string         `json:"action"`
	From     int            `json:"from,omitempty"`
	To       int            `json:"to,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Inputs   *ScalingInputs `json:"inputs,omitempty"` // what a decision read; nil for other events
	Instance string         `json:"instance,omitempty"`
	// ExceededAt is when the load first exceeded the target, for a
	// scale-out on load and the serving events it led to; zero otherwise.
	ExceededAt time.Time `json:"exceededAt,omitzero"`
	// ToTrafficMs is, for a serving event, the time from ExceededAt to
	// the instance's first request.
	ToTrafficMs int64 `json:"toTrafficMs,omitempty"`
}
