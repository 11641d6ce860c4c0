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
