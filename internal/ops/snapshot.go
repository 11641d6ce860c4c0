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
