package chaos

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// Fault names. They are a contract: operators, runbooks and experiment plans
// name faults by these strings.
const (
	FaultRegionOutage      = "region-outage"       // a region crashes: its links black-holed, then Target.KillRegion
	FaultStoreNodeLoss     = "store-node-loss"     // a region's store server crashes
	FaultLinkLatency       = "link-latency"        // an inter-region link gets slow (params latency, jitter)
	FaultPartition         = "partition"           // an inter-region link black-holes every byte
	FaultSecretStoreOutage = "secret-store-outage" // the secret store answers 503
	FaultPartnerOutage     = "partner-outage"      // the fulfilment partner resets connections
	FaultPartnerSlow       = "partner-slow"        // the fulfilment partner answers late (param delay)
	FaultStampDrain        = "stamp-drain"         // every stamp instance of a region is drained
	FaultInstanceKill      = "instance-kill"       // one stamp instance of a region crashes; the heal adds a replacement
	FaultZoneOutage        = "zone-outage"         // every stamp instance of one zone crashes (target "westeurope-2", or "*-2": zone 2 of every region); the heal restarts them
)

// EveryRegion is the region part of a zone-outage target that names the
// zone of that index in every region ("*-2"), as a datacenter-wide event
// would.
const EveryRegion = "*"

// GlobalTarget is the target of the faults of shared dependencies (the secret
// store, the partner). An empty target means it too.
const GlobalTarget = "global"

// Modes of Target.SetPartner.
const (
	PartnerUp      = "up"      // answers normally
	PartnerDown    = "down"    // resets every connection
	PartnerSlow    = "slow"    // answers after the given delay
	PartnerFailing = "failing" // answers 503
)

// Bounds of a fault's duration, both inclusive.
const (
	MinDuration = time.Second
	MaxDuration = time.Hour
)

// Spec asks for one fault. The HTTP API and DecodeSpec read it from JSON such
// as {"fault":"link-latency","target":"westeurope-eastus","duration":"30s",
// "params":{"latency":"300ms","jitter":"50ms"}}.
type Spec struct {
	Fault string `json:"fault"` // one of the Fault constants
	// Target is a region for region faults, two regions joined by "-" for
	// link faults ("westeurope-eastus", in either order), a zone for zone
	// faults (a region and the zone's index, "westeurope-2", or "*-2" for
	// that zone of every region), and GlobalTarget (or empty) for the
	// secret store and partner faults.
	Target   string   `json:"target"`
	Duration Duration `json:"duration"` // required, MinDuration..MaxDuration; the fault heals itself after it
	// Params are the fault's parameters, durations written like "300ms":
	// latency (default 200ms) and jitter (default 0s) of link-latency,
	// delay (default 3s) of partner-slow. Other faults take none.
	Params map[string]string `json:"params,omitempty"`
}

// Duration is a time.Duration written in JSON as a string like "30s".
type Duration time.Duration

// String returns the duration like time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a JSON string like "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a JSON string that time.ParseDuration accepts. A JSON
// null leaves the duration unchanged.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s is not a JSON string like \"30s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q is not a duration like \"30s\"", s)
	}
	*d = Duration(v)
	return nil
}

// Active is a fault as the API reports it: injected and not yet healed, or
// healed (HealedAt set).
type Active struct {
	ID     string `json:"id"`
	Fault  string `json:"fault"`
	Target string `json:"target"` // canonical: the region, "a-b", or "global"
	// Params are the parameters in effect, defaults included. An
	// instance-kill also records the killed instance under "instance".
	Params     map[string]string `json:"params,omitempty"`
	InjectedAt time.Time         `json:"injectedAt"`
	HealsAt    time.Time         `json:"healsAt"` // when the fault heals itself unless healed earlier
	// HealedAt is when the fault was healed, or its heal attempted; nil
	// while the fault is active.
	HealedAt *time.Time `json:"healedAt,omitempty"`
	// Error, when set, says why the heal failed: the deployment may still
	// carry the fault.
	Error string `json:"error,omitempty"`
}

// scope is the kind of target a fault takes.
type scope uint8

const (
	scopeRegion scope = iota // one region
	scopeLink                // the link between two regions
	scopeGlobal              // a shared dependency
	scopeZone                // one zone of a region, or of every region
)

// maxZone is the highest zone index a target may name.
const maxZone = 9

// splitZone splits a zone target, "westeurope-2" or "*-2", into its region
// (EveryRegion for every region) and index; ok is false when target is not
// shaped so.
func splitZone(target string) (region string, zone int, ok bool) {
	i := strings.LastIndexByte(target, '-')
	if i <= 0 || i != len(target)-2 {
		return "", 0, false
	}
	region, d := target[:i], target[i+1]
	if d < '1' || d > '0'+maxZone || (region != EveryRegion && !regionName.MatchString(region)) {
		return "", 0, false
	}
	return region, int(d - '0'), true
}

// param is a duration parameter of a fault, with its default and inclusive
// bounds.
type param struct {
	name     string
	def      time.Duration
	min, max time.Duration
}

// faultDef describes a fault.
type faultDef struct {
	scope  scope
	params []param
	// fights lists the faults that must not be active on the same target at
	// the same time because the heal of one would undo part of the other.
	fights []string
}

// faultDefs is the table of faults; read-only.
var faultDefs = map[string]faultDef{
	FaultRegionOutage:  {scope: scopeRegion, fights: []string{FaultStoreNodeLoss, FaultStampDrain, FaultInstanceKill}},
	FaultStoreNodeLoss: {scope: scopeRegion, fights: []string{FaultRegionOutage}},
	FaultLinkLatency: {scope: scopeLink, params: []param{
		{name: "latency", def: 200 * time.Millisecond, min: time.Millisecond, max: time.Minute},
		{name: "jitter", def: 0, min: 0, max: time.Minute},
	}},
	FaultPartition:         {scope: scopeLink},
	FaultSecretStoreOutage: {scope: scopeGlobal},
	FaultPartnerOutage:     {scope: scopeGlobal, fights: []string{FaultPartnerSlow}},
	FaultPartnerSlow: {scope: scopeGlobal, fights: []string{FaultPartnerOutage}, params: []param{
		{name: "delay", def: 3 * time.Second, min: time.Millisecond, max: time.Minute},
	}},
	// A replacement instance would come up undrained inside a drained region.
	FaultStampDrain:   {scope: scopeRegion, fights: []string{FaultRegionOutage, FaultInstanceKill}},
	FaultInstanceKill: {scope: scopeRegion, fights: []string{FaultRegionOutage, FaultStampDrain}},
	FaultZoneOutage:   {scope: scopeZone},
}

// Faults returns the names of every fault, sorted.
func Faults() []string { return slices.Sorted(maps.Keys(faultDefs)) }

// regionName is what a region name can look like; whether the region exists
// is the Target's to say.
var regionName = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// plan is a validated Spec.
type plan struct {
	fault  string
	def    faultDef
	target string // canonical: the region, "a-b" or GlobalTarget
	dur    time.Duration
	params map[string]string        // canonical, defaults included; nil when the fault takes none
	values map[string]time.Duration // the parsed params
	a, b   string                   // the link's regions, once resolved against the Target
}

// spec returns the canonical Spec of p.
func (p plan) spec() Spec {
	return Spec{Fault: p.fault, Target: p.target, Duration: Duration(p.dur), Params: maps.Clone(p.params)}
}

// parseSpec validates s on its own, without asking the deployment which
// regions exist.
func parseSpec(s Spec) (plan, error) {
	def, ok := faultDefs[s.Fault]
	switch {
	case s.Fault == "":
		return plan{}, shop.Invalid("fault", "a fault is required: one of %s", strings.Join(Faults(), ", "))
	case !ok:
		return plan{}, shop.Invalid("fault", "unknown fault %q: one of %s", s.Fault, strings.Join(Faults(), ", "))
	}
	p := plan{fault: s.Fault, def: def, target: s.Target, dur: time.Duration(s.Duration)}
	switch def.scope {
	case scopeRegion:
		if !regionName.MatchString(s.Target) {
			return plan{}, shop.Invalid("target", "%s takes a region name as its target, not %q", s.Fault, s.Target)
		}
	case scopeLink:
		if !linkShaped(s.Target) {
			return plan{}, shop.Invalid("target", "%s takes two different regions joined by \"-\" as its target (like \"westeurope-eastus\"), not %q", s.Fault, s.Target)
		}
	case scopeZone:
		if _, _, ok := splitZone(s.Target); !ok {
			return plan{}, shop.Invalid("target", "%s takes a zone as its target: a region and the zone's index 1 to %d (like \"westeurope-2\"), or \"*-2\" for that zone of every region, not %q", s.Fault, maxZone, s.Target)
		}
	case scopeGlobal:
		if s.Target != "" && s.Target != GlobalTarget {
			return plan{}, shop.Invalid("target", "%s takes the target %q, not %q", s.Fault, GlobalTarget, s.Target)
		}
		p.target = GlobalTarget
	}
	switch {
	case s.Duration == 0:
		return plan{}, shop.Invalid("duration", "a duration is required, like \"30s\" (%s to %s)", MinDuration, MaxDuration)
	case p.dur < MinDuration || p.dur > MaxDuration:
		return plan{}, shop.Invalid("duration", "must be between %s and %s, not %s", MinDuration, MaxDuration, p.dur)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Params)) {
		if !slices.ContainsFunc(def.params, func(q param) bool { return q.name == name }) {
			if len(def.params) == 0 {
				return plan{}, shop.Invalid("params."+name, "%s takes no parameters", s.Fault)
			}
			return plan{}, shop.Invalid("params."+name, "unknown parameter of %s: it takes %s", s.Fault, paramNames(def.params))
		}
	}
	if len(def.params) > 0 {
		p.params = make(map[string]string, len(def.params))
		p.values = make(map[string]time.Duration, len(def.params))
	}
	for _, q := range def.params {
		v := q.def
		if raw, ok := s.Params[q.name]; ok {
			d, err := time.ParseDuration(raw)
			if err != nil {
				return plan{}, shop.Invalid("params."+q.name, "%q is not a duration like \"300ms\"", raw)
			}
			if d < q.min || d > q.max {
				return plan{}, shop.Invalid("params."+q.name, "must be between %s and %s, not %s", q.min, q.max, d)
			}
			v = d
		}
		p.params[q.name], p.values[q.name] = v.String(), v
	}
	return p, nil
}

func paramNames(ps []param) string {
	names := make([]string, len(ps))
	for i, q := range ps {
		names[i] = q.name
	}
	return strings.Join(names, ", ")
}

// linkShaped reports whether target can be read as two different region
// names joined by "-". Region names may hold "-" themselves, so every split
// is tried.
func linkShaped(target string) bool {
	for i := range len(target) {
		if target[i] == '-' {
			a, b := target[:i], target[i+1:]
			if a != b && regionName.MatchString(a) && regionName.MatchString(b) {
				return true
			}
		}
	}
	return false
}

// splitLink reads target as two different regions of regions joined by "-".
func splitLink(target string, regions []string) (a, b string, err error) {
	var found [][2]string
	same := false
	for i := range len(target) {
		if target[i] != '-' {
			continue
		}
		x, y := target[:i], target[i+1:]
		if !slices.Contains(regions, x) || !slices.Contains(regions, y) {
			continue
		}
		if x == y {
			same = true
			continue
		}
		found = append(found, [2]string{x, y})
	}
	switch {
	case len(found) == 1:
		return found[0][0], found[0][1], nil
	case len(found) > 1:
		return "", "", shop.Invalid("target", "%q can be read as more than one pair of regions", target)
	case same:
		return "", "", shop.Invalid("target", "a link joins two different regions, not %q", target)
	}
	return "", "", shop.Invalid("target", "%q does not name two regions joined by \"-\"; regions: %s", target, strings.Join(regions, ", "))
}

// specWire is the JSON of a Spec as a client sends it, with the duration as
// a plain string so that a bad one is reported as a bad field.
type specWire struct {
	Fault    string            `json:"fault"`
	Target   string            `json:"target"`
	Duration string            `json:"duration"`
	Params   map[string]string `json:"params"`
}

func (w specWire) spec() (Spec, error) {
	var d time.Duration
	if w.Duration != "" {
		var err error
		if d, err = time.ParseDuration(w.Duration); err != nil {
			return Spec{}, shop.Invalid("duration", "%q is not a duration like \"30s\"", w.Duration)
		}
		if d == 0 {
			return Spec{}, shop.Invalid("duration", "must be between %s and %s, not %s", MinDuration, MaxDuration, d)
		}
	}
	p, err := parseSpec(Spec{Fault: w.Fault, Target: w.Target, Duration: Duration(d), Params: w.Params})
	if err != nil {
		return Spec{}, err
	}
	return p.spec(), nil
}

// DecodeSpec reads one JSON object as a Spec with the rules of the HTTP API
// (strict JSON, no unknown fields) and validates it, except for whether the
// regions it names exist. It returns the canonical Spec: the target of
// global faults spelled GlobalTarget and every parameter present, defaults
// included. Errors have kind shop.KindInvalid and name the offending field.
func DecodeSpec(body []byte) (Spec, error) {
	var w specWire
	if err := httpapi.Unmarshal(body, &w); err != nil {
		return Spec{}, err
	}
	return w.spec()
}
