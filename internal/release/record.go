package release

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/contoso/shoes/internal/health"
)

// Schema is the schema version of a Record. A reader refuses a record of a
// higher version rather than misreading it.
const Schema = 1

// Phase is where a release is.
type Phase string

// The phases, in the order a release goes through them. Done, RolledBack
// and Failed are final.
const (
	PhaseStarting    Phase = "starting"     // new stamps starting and prewarming; no user traffic reaches them
	PhaseShifting    Phase = "shifting"     // traffic moves step by step, each step gated
	PhaseFinishing   Phase = "finishing"    // every step passed; old stamps draining
	PhaseRollingBack Phase = "rolling-back" // traffic back on the old stamps; new ones draining
	PhaseDone        Phase = "done"         // the new version serves everything; old stamps gone
	PhaseRolledBack  Phase = "rolled-back"  // the old version serves everything; new stamps gone
	PhaseFailed      Phase = "failed"       // ended without a rollback to do (nothing had shifted)
)

// Final reports whether the release has ended.
func (p Phase) Final() bool {
	return p == PhaseDone || p == PhaseRolledBack || p == PhaseFailed
}

// Stage is one step of the plan: region's share of the new version.
type Stage struct {
	Region  string `json:"region"`
	Percent int    `json:"percent"`
}

// Step is a stage as it happened: when, what the gate read and what it
// decided.
type Step struct {
	Stage
	StartedAt time.Time `json:"startedAt"`
	EndedAt   time.Time `json:"endedAt,omitzero"`
	// Verdict: "holding" while the gate waits, then "passed", "promoted"
	// (an operator skipped the gate) or "failed".
	Verdict string `json:"verdict"`
	// EnoughAt is when the new version had served the gate's MinRequests
	// in the step: from then on the gate has enough to judge. Zero while
	// it has not (a gate that fails early, on certain errors, judged
	// before).
	EnoughAt time.Time `json:"enoughAt,omitzero"`
	Reason   string    `json:"reason,omitempty"`
	New      Reading   `json:"new"` // the new version's stamps in the stage's region, over the step's window
	Old      Reading   `json:"old"` // the old version's stamps it is compared with
}

// Record is one release: what it runs, its plan, where it is and what
// happened. It is kept in the replicated store and shown on the dashboard.
type Record struct {
	Schema  int    `json:"schema"`
	ID      string `json:"id"`
	Version string `json:"version"`         // the release the new stamps announce
	Image   string `json:"image,omitempty"` // REF@sha256:... when the new stamps run an artifact; empty in process
	Env     string `json:"env"`             // the environment released to: dev or prod
	// From is each region's version before the release.
	From map[string]string `json:"from"`
	// Fault is an injected defect the new stamps carry (experiments only;
	// refused in prod).
	Fault  string `json:"fault,omitempty"`
	Forced bool   `json:"forced,omitempty"` // started in prod without a passing verification
	// StartTimeout bounds the wait for the new stamps; zero: the
	// controller's.
	StartTimeout time.Duration `json:"startTimeout,omitempty"`
	Plan         []Stage       `json:"plan"`
	Gate         Gate          `json:"gate"`
	// Stage is the index in Plan of the step under way; -1 before the
	// first.
	Stage  int    `json:"stage"`
	Phase  Phase  `json:"phase"`
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"` // why it paused, rolled back or failed
	// Outage is the region whose outage (both versions unhealthy) paused
	// the release: such a pause ends by itself once the region reads
	// healthy again. Empty for every other pause, which an operator ends.
	Outage string `json:"outage,omitempty"`
	By     string `json:"by,omitempty"`
	Steps  []Step `json:"steps"`
	// Desired is how many instances of each version every region should
	// run: what the agents make true.
	Desired map[string]map[string]int `json:"desired"`
	// Traffic is each region's split, as written to the traffic table.
	Traffic   map[string]map[string]int `json:"traffic"`
	StartedAt time.Time                 `json:"startedAt"`
	UpdatedAt time.Time                 `json:"updatedAt"`
	// ReadyAt is when every new stamp was ready and prewarmed.
	ReadyAt time.Time `json:"readyAt,omitzero"`
	// FirstBadAt is when the gate first saw an error on the new version;
	// RollbackAt when the rollback began; EndedAt when the release ended.
	FirstBadAt time.Time `json:"firstBadAt,omitzero"`
	RollbackAt time.Time `json:"rollbackAt,omitzero"`
	EndedAt    time.Time `json:"endedAt,omitzero"`
}

// decodeRecord reads a stored record, refusing one written by a newer
// schema.
func decodeRecord(data []byte) (*Record, error) {
	var head struct {
		Schema int `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("decode release record: %w", err)
	}
	if head.Schema > Schema {
		return nil, fmt.Errorf("decode release record: written with schema %d, this release reads up to %d", head.Schema, Schema)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode release record: %w", err)
	}
	return &r, nil
}

// clone is a deep copy of r, safe to hand out.
func (r *Record) clone() *Record {
	c := *r
	c.From = cloneMap(r.From)
	c.Plan = slices.Clone(r.Plan)
	c.Steps = slices.Clone(r.Steps)
	for i := range c.Steps {
		c.Steps[i].New.Flows = cloneMap(c.Steps[i].New.Flows)
		c.Steps[i].Old.Flows = cloneMap(c.Steps[i].Old.Flows)
	}
	c.Desired = cloneSplit(r.Desired)
	c.Traffic = cloneSplit(r.Traffic)
	return &c
}

func cloneMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cloneSplit(m map[string]map[string]int) map[string]map[string]int {
	if m == nil {
		return nil
	}
	out := make(map[string]map[string]int, len(m))
	for k, v := range m {
		out[k] = cloneMap(v)
	}
	return out
}

// current is the step under way, nil before the first.
func (r *Record) current() *Step {
	if len(r.Steps) == 0 {
		return nil
	}
	return &r.Steps[len(r.Steps)-1]
}

// BuildPlan is the default plan: for each percent, each region in order.
// Percents must rise strictly and end at 100.
func BuildPlan(regions []string, percents []int) ([]Stage, error) {
	if len(regions) == 0 {
		return nil, fmt.Errorf("a plan needs at least one region")
	}
	if len(percents) == 0 || percents[len(percents)-1] != 100 {
		return nil, fmt.Errorf("steps %v: the last step must be 100", percents)
	}
	for i, p := range percents {
		if p <= 0 || p > 100 || (i > 0 && p <= percents[i-1]) {
			return nil, fmt.Errorf("steps %v: each step is a percent in 1..100, rising", percents)
		}
	}
	seen := map[string]bool{}
	for _, r := range regions {
		if r == "" || seen[r] {
			return nil, fmt.Errorf("regions %v: each region once, none empty", regions)
		}
		seen[r] = true
	}
	var plan []Stage
	for _, p := range percents {
		for _, r := range regions {
			plan = append(plan, Stage{Region: r, Percent: p})
		}
	}
	return plan, nil
}

// Instance is one stamp instance as the operations plane sees it.
type Instance struct {
	ID      string        `json:"id"`
	Region  string        `json:"region"`
	Release string        `json:"release"`
	Health  health.Status `json:"health"` // its last health report; Unknown before the first
	Reason  string        `json:"reason,omitempty"`
	// Silent: its last health read failed (it may be dying, or its
	// region going down) while its last report may still look fresh.
	Silent bool `json:"silent,omitempty"`
	// SilentSince is when the reads that failed since its last answer
	// began; zero: its last read was answered.
	SilentSince time.Time `json:"silentSince,omitzero"`
}
