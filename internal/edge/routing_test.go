package edge

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/health"
)

const ms = time.Millisecond

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func stamp(id string, h health.Status, rtt time.Duration) Candidate {
	return Candidate{ID: id, Region: strings.Split(id, "/")[0], Health: h, RTT: rtt}
}

func ejectedUntil(c Candidate, until time.Time) Candidate {
	c.EjectedUntil = until
	return c
}

func weighted(c Candidate, w int) Candidate {
	c.Weight = w
	return c
}

// onStandby is c on standby, running release.
func onStandby(c Candidate, release string) Candidate {
	c.Standby, c.Release = true, release
	return c
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   Policy
		cands    []Candidate
		prev     []string
		near     []string
		fallback []string
		failOpen bool
		reasons  map[string]string // id -> required prefix of its reason
	}{
		{
			name:     "single nearest",
			cands:    []Candidate{stamp("c", health.Healthy, 80*ms), stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 50*ms)},
			near:     []string{"a"},
			fallback: []string{"b", "c"},
			reasons:  map[string]string{"a": "nearest", "b": "too far: +30ms (window +10ms)", "c": "too far: +60ms"},
		},
		{
			name:     "two within sensitivity share",
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 28*ms), stamp("c", health.Healthy, 60*ms)},
			near:     []string{"a", "b"},
			fallback: []string{"c"},
			reasons:  map[string]string{"a": "nearest", "b": "within sensitivity: +8ms"},
		},
		{
			name:     "exactly at the sensitivity edge is near",
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 30*ms)},
			near:     []string{"a", "b"},
			fallback: []string{},
			reasons:  map[string]string{"b": "within sensitivity: +10ms"},
		},
		{
			name:     "one just outside",
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 30*ms+time.Microsecond)},
			near:     []string{"a"},
			fallback: []string{"b"},
			reasons:  map[string]string{"b": "too far: +10.001ms (window +10ms)"},
		},
		{
			name:     "equal RTTs are both nearest",
			cands:    []Candidate{stamp("b", health.Healthy, 20*ms), stamp("a", health.Healthy, 20*ms)},
			near:     []string{"a", "b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "nearest", "b": "nearest"},
		},
		{
			name:     "hysteresis keeps a previous stamp that drifted slightly",
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 34*ms)},
			prev:     []string{"a", "b"},
			near:     []string{"a", "b"},
			fallback: []string{},
			reasons:  map[string]string{"b": "kept by hysteresis: +14ms"},
		},
		{
			name:     "hysteresis keeps up to its edge",
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 35*ms)},
			prev:     []string{"a", "b"},
			near:     []string{"a", "b"},
			fallback: []string{},
			reasons:  map[string]string{"b": "kept by hysteresis: +15ms"},
		},
		{
			name:     "hysteresis drops a stamp that drifted beyond it",
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 35*ms+time.Microsecond)},
			prev:     []string{"a", "b"},
			near:     []string{"a"},
			fallback: []string{"b"},
			reasons:  map[string]string{"b": "too far: +15.001ms (was near; hysteresis window +15ms)"},
		},
		{
			name:     "hysteresis does not admit a stamp that was not near",
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 34*ms)},
			prev:     []string{"a"},
			near:     []string{"a"},
			fallback: []string{"b"},
			reasons:  map[string]string{"b": "too far: +14ms (window +10ms)"},
		},
		{
			name:     "a stamp entering the window joins at once",
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 29*ms)},
			prev:     []string{"a"},
			near:     []string{"a", "b"},
			fallback: []string{},
			reasons:  map[string]string{"b": "within sensitivity: +9ms"},
		},
		{
			name:     "hysteresis keeps the old nearest when a new nearest appears",
			cands:    []Candidate{stamp("a", health.Healthy, 40*ms), stamp("b", health.Healthy, 28*ms)},
			prev:     []string{"a"},
			near:     []string{"a", "b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "kept by hysteresis: +12ms", "b": "nearest"},
		},
		{
			name:     "negative hysteresis disables it",
			policy:   Policy{Hysteresis: -1},
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 31*ms)},
			prev:     []string{"a", "b"},
			near:     []string{"a"},
			fallback: []string{"b"},
			reasons:  map[string]string{"b": "too far: +11ms (was near; hysteresis window +10ms)"},
		},
		{
			name:     "negative sensitivity shares exact ties only",
			policy:   Policy{Sensitivity: -1, Hysteresis: -1},
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 20*ms), stamp("c", health.Healthy, 20*ms+time.Microsecond)},
			near:     []string{"a", "b"},
			fallback: []string{"c"},
		},
		{
			name:     "custom sensitivity and hysteresis",
			policy:   Policy{Sensitivity: 30 * ms, Hysteresis: 20 * ms},
			cands:    []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 50*ms), stamp("c", health.Healthy, 70*ms), stamp("d", health.Healthy, 71*ms)},
			prev:     []string{"c", "d"},
			near:     []string{"a", "b", "c"},
			fallback: []string{"d"},
			reasons:  map[string]string{"b": "within sensitivity: +30ms", "c": "kept by hysteresis: +50ms", "d": "too far: +51ms (was near; hysteresis window +50ms)"},
		},
		{
			name:     "degraded stays routable",
			cands:    []Candidate{stamp("a", health.Degraded, 20*ms), stamp("b", health.Healthy, 25*ms), stamp("c", health.Degraded, 90*ms)},
			near:     []string{"a", "b"},
			fallback: []string{"c"},
			reasons:  map[string]string{"a": "nearest; degraded", "b": "within sensitivity: +5ms", "c": "too far: +70ms (window +10ms); degraded"},
		},
		{
			name:     "unhealthy and drained excluded",
			cands:    []Candidate{stamp("a", health.Unhealthy, 10*ms), stamp("b", health.Drained, 12*ms), stamp("c", health.Healthy, 40*ms), stamp("d", health.Healthy, 45*ms)},
			near:     []string{"c", "d"},
			fallback: []string{},
			reasons:  map[string]string{"a": "unhealthy", "b": "drained", "c": "nearest"},
		},
		{
			name:     "ejected excluded",
			cands:    []Candidate{ejectedUntil(stamp("a", health.Healthy, 10*ms), t0.Add(30*time.Second)), stamp("b", health.Healthy, 40*ms)},
			near:     []string{"b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "ejected until 2026-03-01T12:00:30Z (30s more)", "b": "nearest"},
		},
		{
			name:     "ejection expiring at now is routable",
			cands:    []Candidate{ejectedUntil(stamp("a", health.Healthy, 10*ms), t0), ejectedUntil(stamp("b", health.Healthy, 40*ms), t0.Add(-time.Second))},
			near:     []string{"a"},
			fallback: []string{"b"},
			reasons:  map[string]string{"a": "nearest"},
		},
		{
			name:     "ejected one nanosecond longer is excluded",
			cands:    []Candidate{ejectedUntil(stamp("a", health.Healthy, 10*ms), t0.Add(1)), stamp("b", health.Healthy, 40*ms)},
			near:     []string{"b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "ejected until"},
		},
		{
			name:     "unknown health is not routable while something is",
			cands:    []Candidate{stamp("a", health.Unknown, 0), stamp("b", health.Healthy, 40*ms), stamp("c", 0, 5*ms), stamp("d", health.Status(99), 5*ms)},
			near:     []string{"b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "unknown: never probed", "c": "unknown: never probed", "d": "unknown: health Status(99)"},
		},
		{
			name:     "unknown RTT is farther than every known one",
			cands:    []Candidate{stamp("a", health.Healthy, 0), stamp("b", health.Healthy, 40*ms), stamp("c", health.Healthy, 60*ms), stamp("d", health.Healthy, -5*ms)},
			near:     []string{"b"},
			fallback: []string{"c", "a", "d"},
			reasons:  map[string]string{"a": "rtt unknown: after every measured stamp", "b": "nearest"},
		},
		{
			name:     "unknown RTT is not kept by hysteresis",
			cands:    []Candidate{stamp("a", health.Healthy, 0), stamp("b", health.Healthy, 40*ms)},
			prev:     []string{"a", "b"},
			near:     []string{"b"},
			fallback: []string{"a"},
		},
		{
			name:     "no known RTT: every routable stamp is near",
			cands:    []Candidate{stamp("b", health.Healthy, 0), stamp("a", health.Degraded, 0), stamp("c", health.Unhealthy, 10*ms)},
			near:     []string{"a", "b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "rtt unknown for every stamp: all share; degraded", "b": "rtt unknown for every stamp: all share", "c": "unhealthy"},
		},
		{
			name:     "fallback ordered by RTT then id",
			cands:    []Candidate{stamp("x", health.Healthy, 10*ms), stamp("c", health.Healthy, 40*ms), stamp("b", health.Healthy, 40*ms), stamp("a", health.Healthy, 50*ms), stamp("z", health.Healthy, 0), stamp("y", health.Healthy, 0)},
			near:     []string{"x"},
			fallback: []string{"b", "c", "a", "y", "z"},
		},
		{
			name:     "prev ids that are not candidates are ignored",
			cands:    []Candidate{stamp("a", health.Healthy, 10*ms)},
			prev:     []string{"gone", "a", "gone"},
			near:     []string{"a"},
			fallback: []string{},
		},
		{
			name:     "a repeated id counts once, by its most routable entry",
			cands:    []Candidate{stamp("a", health.Unhealthy, 10*ms), stamp("b", health.Healthy, 15*ms), stamp("a", health.Healthy, 20*ms), stamp("a", health.Healthy, 90*ms)},
			near:     []string{"a", "b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "within sensitivity: +5ms"},
		},
		{
			name:     "all unhealthy: fail open to the nearest unhealthy",
			cands:    []Candidate{stamp("a", health.Unhealthy, 20*ms), stamp("b", health.Unhealthy, 25*ms), stamp("c", health.Unhealthy, 60*ms), stamp("d", health.Drained, 5*ms)},
			near:     []string{"a", "b"},
			fallback: []string{"c"},
			failOpen: true,
			reasons: map[string]string{
				"a": "fail open: least bad: unhealthy; nearest",
				"b": "fail open: least bad: unhealthy; within sensitivity: +5ms",
				"c": "fail open: least bad: unhealthy; too far: +40ms",
				"d": "drained",
			},
		},
		{
			name:     "fail open prefers ejected healthy or degraded",
			cands:    []Candidate{stamp("a", health.Unhealthy, 5*ms), stamp("b", health.Unknown, 0), ejectedUntil(stamp("c", health.Degraded, 50*ms), t0.Add(time.Minute)), stamp("d", health.Drained, 1*ms)},
			near:     []string{"c"},
			fallback: []string{},
			failOpen: true,
			reasons:  map[string]string{"a": "unhealthy", "b": "unknown", "c": "fail open: least bad: degraded; ejected until 2026-03-01T12:01:00Z (1m0s more); nearest"},
		},
		{
			name:     "fail open prefers unknown over unhealthy",
			cands:    []Candidate{stamp("a", health.Unhealthy, 5*ms), stamp("b", health.Unknown, 0), stamp("c", health.Unknown, 0), ejectedUntil(stamp("e", health.Unknown, 0), t0.Add(time.Minute))},
			near:     []string{"b", "c"},
			fallback: []string{},
			failOpen: true,
			reasons:  map[string]string{"b": "fail open: least bad: unknown: never probed; rtt unknown for every stamp: all share", "e": "unknown: never probed; ejected until"},
		},
		{
			name:     "fail open prefers unhealthy over ejected unhealthy",
			cands:    []Candidate{stamp("a", health.Unhealthy, 50*ms), ejectedUntil(stamp("b", health.Unhealthy, 5*ms), t0.Add(time.Minute))},
			near:     []string{"a"},
			fallback: []string{},
			failOpen: true,
			reasons:  map[string]string{"a": "fail open: least bad: unhealthy; nearest", "b": "unhealthy; ejected until"},
		},
		{
			name:     "fail open never picks drained while another stamp exists",
			cands:    []Candidate{stamp("a", health.Drained, 5*ms), ejectedUntil(stamp("b", health.Unhealthy, 90*ms), t0.Add(time.Minute))},
			near:     []string{"b"},
			fallback: []string{},
			failOpen: true,
			reasons:  map[string]string{"a": "drained"},
		},
		{
			name:     "fail open keeps hysteresis",
			cands:    []Candidate{stamp("a", health.Unhealthy, 20*ms), stamp("b", health.Unhealthy, 33*ms)},
			prev:     []string{"b"},
			near:     []string{"a", "b"},
			fallback: []string{},
			failOpen: true,
			reasons:  map[string]string{"b": "fail open: least bad: unhealthy; kept by hysteresis: +13ms"},
		},
		{
			name:     "all drained: still fail open",
			cands:    []Candidate{stamp("a", health.Drained, 30*ms), stamp("b", health.Drained, 20*ms), stamp("c", health.Drained, 80*ms)},
			near:     []string{"a", "b"},
			fallback: []string{"c"},
			failOpen: true,
			reasons:  map[string]string{"b": "fail open: every stamp is drained; nearest", "c": "fail open: every stamp is drained; too far: +60ms"},
		},
		{
			name:     "one candidate",
			cands:    []Candidate{stamp("a", health.Healthy, 0)},
			near:     []string{"a"},
			fallback: []string{},
		},
		{
			name:     "standby is never near, even nearest",
			cands:    []Candidate{onStandby(stamp("a", health.Healthy, 5*ms), "v2"), stamp("b", health.Healthy, 20*ms), stamp("c", health.Healthy, 22*ms)},
			near:     []string{"b", "c"},
			fallback: []string{},
			reasons:  map[string]string{"a": `standby: release "v2" takes no traffic`, "b": "nearest", "c": "within sensitivity: +2ms"},
		},
		{
			name:     "standby is never a fallback",
			cands:    []Candidate{stamp("a", health.Healthy, 10*ms), onStandby(stamp("b", health.Healthy, 40*ms), "v2"), stamp("c", health.Healthy, 70*ms)},
			near:     []string{"a"},
			fallback: []string{"c"},
			reasons:  map[string]string{"b": `standby: release "v2" takes no traffic`, "c": "too far: +60ms"},
		},
		{
			name:     "standby is not a fail-open choice beside an unhealthy stamp",
			cands:    []Candidate{stamp("a", health.Unhealthy, 30*ms), onStandby(stamp("b", health.Healthy, 5*ms), "v2")},
			near:     []string{"a"},
			fallback: []string{},
			failOpen: true,
			reasons:  map[string]string{"a": "fail open: least bad: unhealthy; nearest", "b": `standby: release "v2" takes no traffic`},
		},
		{
			name:     "standby is not a fail-open choice even beside drained and ejected stamps",
			cands:    []Candidate{ejectedUntil(stamp("a", health.Drained, 30*ms), t0.Add(time.Minute)), onStandby(stamp("b", health.Healthy, 5*ms), "v2")},
			near:     []string{"a"},
			fallback: []string{},
			failOpen: true,
			reasons:  map[string]string{"a": "fail open: every stamp is drained; ejected until"},
		},
		{
			name:     "a broken standby says so",
			cands:    []Candidate{stamp("a", health.Healthy, 30*ms), onStandby(stamp("b", health.Unhealthy, 5*ms), "v2"), ejectedUntil(onStandby(stamp("c", health.Healthy, 5*ms), ""), t0.Add(time.Second))},
			near:     []string{"a"},
			fallback: []string{},
			reasons:  map[string]string{"b": `standby: release "v2" takes no traffic; unhealthy`, "c": `standby: release "" takes no traffic; ejected until`},
		},
		{
			name:     "standby in prev is not kept by hysteresis",
			cands:    []Candidate{onStandby(stamp("a", health.Healthy, 20*ms), "v2"), stamp("b", health.Healthy, 22*ms)},
			prev:     []string{"a", "b"},
			near:     []string{"b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "standby", "b": "nearest"},
		},
		{
			name:     "every stamp on standby: fail open among them by the usual rules",
			cands:    []Candidate{onStandby(stamp("a", health.Healthy, 10*ms), "v1"), onStandby(stamp("b", health.Unhealthy, 5*ms), "v1"), onStandby(stamp("c", health.Healthy, 15*ms), "v1"), onStandby(stamp("d", health.Healthy, 60*ms), "v1")},
			near:     []string{"a", "c"},
			fallback: []string{"d"},
			failOpen: true,
			reasons:  map[string]string{"a": "fail open: every stamp is on standby; nearest", "b": "unhealthy", "d": "fail open: every stamp is on standby; too far"},
		},
		{
			name:     "every stamp on standby and unhealthy: the least bad of them",
			cands:    []Candidate{onStandby(stamp("a", health.Unhealthy, 10*ms), "v1"), onStandby(stamp("b", health.Drained, 5*ms), "v1")},
			near:     []string{"a"},
			fallback: []string{},
			failOpen: true,
			reasons:  map[string]string{"a": "fail open: every stamp is on standby; least bad: unhealthy; nearest", "b": "drained"},
		},
		{
			name:     "a repeated id counts by its entry not on standby",
			cands:    []Candidate{onStandby(stamp("a", health.Healthy, 10*ms), "v2"), stamp("a", health.Unhealthy, 10*ms), stamp("b", health.Healthy, 50*ms)},
			near:     []string{"b"},
			fallback: []string{},
			reasons:  map[string]string{"a": "unhealthy"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.policy, tc.cands, tc.prev, t0)
			if !slices.Equal(d.Near, tc.near) || !slices.Equal(d.Fallback, tc.fallback) || d.FailOpen != tc.failOpen {
				t.Fatalf("Decide = near %q fallback %q failOpen %v, want near %q fallback %q failOpen %v\nreasons %q",
					d.Near, d.Fallback, d.FailOpen, tc.near, tc.fallback, tc.failOpen, d.Reasons)
			}
			for _, c := range tc.cands {
				if d.Reasons[c.ID] == "" {
					t.Errorf("no reason for %q", c.ID)
				}
			}
			for id, want := range tc.reasons {
				if got := d.Reasons[id]; !strings.HasPrefix(got, want) {
					t.Errorf("reason[%q] = %q, want prefix %q", id, got, want)
				}
			}
		})
	}
}

func TestDecideEmpty(t *testing.T) {
	want := Decision{Near: []string{}, Fallback: []string{}, Spare: []string{}, Reasons: map[string]string{}}
	for _, cands := range [][]Candidate{nil, {}} {
		d := Decide(Policy{}, cands, []string{"a"}, t0)
		if !reflect.DeepEqual(d, want) {
			t.Fatalf("Decide(%#v) = %#v, want %#v", cands, d, want)
		}
		if p, r := Pick(d, cands, 0.5); p != "" || r != "" {
			t.Fatalf("Pick on empty decision = %q, %q", p, r)
		}
	}
}

func TestPolicyZeroValueIsDefaults(t *testing.T) {
	cands := []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 30*ms), stamp("c", health.Healthy, 35*ms), stamp("d", health.Healthy, 36*ms)}
	prev := []string{"c", "d"}
	zero := Decide(Policy{}, cands, prev, t0)
	explicit := Decide(Policy{Sensitivity: DefaultSensitivity, Hysteresis: DefaultHysteresis}, cands, prev, t0)
	if !reflect.DeepEqual(zero, explicit) {
		t.Fatalf("zero policy %+v != explicit defaults %+v", zero, explicit)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(zero.Near, want) {
		t.Fatalf("near = %q, want %q", zero.Near, want)
	}
}

func TestDecideIsDeterministic(t *testing.T) {
	cands := []Candidate{
		stamp("eastus/1", health.Healthy, 20*ms),
		stamp("eastus/2", health.Degraded, 24*ms),
		stamp("westus/1", health.Healthy, 33*ms),
		stamp("westus/2", health.Healthy, 33*ms),
		stamp("centralus/1", health.Healthy, 0),
		stamp("northeurope/1", health.Unhealthy, 5*ms),
		stamp("westeurope/1", health.Drained, 7*ms),
		stamp("japaneast/1", health.Unknown, 0),
		ejectedUntil(stamp("uksouth/1", health.Healthy, 8*ms), t0.Add(time.Second)),
		weighted(stamp("brazilsouth/1", health.Healthy, 90*ms), 7),
		stamp("eastus/1", health.Unhealthy, 1*ms), // repeated id
		onStandby(stamp("eastus/3", health.Healthy, 19*ms), "v2"),
		onStandby(stamp("westus/2", health.Healthy, 1*ms), "v2"), // repeated id, on standby
	}
	prev := []string{"westus/2", "eastus/1", "gone"}
	for _, p := range []Policy{{}, {Sensitivity: 15 * ms}, {Sensitivity: -1, Hysteresis: -1}} {
		want := Decide(p, cands, prev, t0)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range 200 {
			c, pr := slices.Clone(cands), slices.Clone(prev)
			rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
			rng.Shuffle(len(pr), func(i, j int) { pr[i], pr[j] = pr[j], pr[i] })
			if got := Decide(p, c, pr, t0); !reflect.DeepEqual(got, want) {
				t.Fatalf("policy %+v shuffle %d: got %+v, want %+v", p, i, got, want)
			}
		}
	}
	// All unhealthy exercises the fail-open path with the same guarantee.
	var down []Candidate
	for _, c := range cands {
		c.Health, c.EjectedUntil = health.Unhealthy, time.Time{}
		down = append(down, c)
	}
	want := Decide(Policy{}, down, prev, t0)
	slices.Reverse(down)
	if got := Decide(Policy{}, down, prev, t0); !reflect.DeepEqual(got, want) || !got.FailOpen {
		t.Fatalf("fail open reversed: got %+v, want %+v", got, want)
	}
}

func TestDecideDoesNotModifyInput(t *testing.T) {
	cands := []Candidate{stamp("b", health.Healthy, 30*ms), stamp("a", health.Healthy, 20*ms), stamp("a", health.Unhealthy, 10*ms)}
	prev := []string{"b", "a"}
	c0, p0 := slices.Clone(cands), slices.Clone(prev)
	Decide(Policy{}, cands, prev, t0)
	if !slices.Equal(cands, c0) || !slices.Equal(prev, p0) {
		t.Fatalf("Decide modified its input: %+v %q", cands, prev)
	}
}

// countNearChanges runs Decide over a sequence of RTT samples for a and b,
// carrying prev through, and returns the Near sets and how often Near
// changed from one decision to the next.
func countNearChanges(p Policy, aRTTs []time.Duration, bRTT time.Duration) (changes int, nears [][]string) {
	var prev []string
	for i, rtt := range aRTTs {
		d := Decide(p, []Candidate{stamp("a", health.Healthy, rtt), stamp("b", health.Healthy, bRTT)}, prev, t0.Add(time.Duration(i)*time.Second))
		if i > 0 && !slices.Equal(d.Near, prev) {
			changes++
		}
		nears = append(nears, d.Near)
		prev = d.Near
	}
	return changes, nears
}

func alternating(n int, x, y time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = x
		if i%2 == 1 {
			s[i] = y
		}
	}
	return s
}

func TestNoisyLinkDoesNotFlap(t *testing.T) {
	p := Policy{Sensitivity: 10 * ms, Hysteresis: 5 * ms}
	for _, tc := range []struct {
		name string
		a    []time.Duration
	}{
		{"30/42 against a steady 35", alternating(40, 30*ms, 42*ms)},
		// 47 ms is 12 ms behind b: outside Sensitivity, inside
		// Sensitivity+Hysteresis. Only hysteresis keeps a in Near.
		{"30/47 against a steady 35", alternating(40, 30*ms, 47*ms)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes, nears := countNearChanges(p, tc.a, 35*ms)
			if changes > 1 {
				t.Fatalf("Near changed %d times: %q", changes, nears)
			}
			if !slices.Equal(nears[len(nears)-1], []string{"a", "b"}) {
				t.Fatalf("final Near = %q, want both", nears[len(nears)-1])
			}
		})
	}
	// The control: without hysteresis the 30/47 link flaps at every sample,
	// so the test above is measuring hysteresis, not a lucky input.
	changes, nears := countNearChanges(Policy{Sensitivity: 10 * ms, Hysteresis: -1}, alternating(40, 30*ms, 47*ms), 35*ms)
	if changes != 39 {
		t.Fatalf("without hysteresis Near changed %d times, want 39: %q", changes, nears)
	}
}

func TestPickWeights(t *testing.T) {
	oneThree := []Candidate{weighted(stamp("a", health.Healthy, 20*ms), 1), weighted(stamp("b", health.Healthy, 22*ms), 3)}
	zeroHundred := []Candidate{weighted(stamp("a", health.Healthy, 20*ms), 0), weighted(stamp("b", health.Healthy, 22*ms), 100)}
	d := Decision{Near: []string{"a", "b"}}
	for _, tc := range []struct {
		name  string
		cands []Candidate
		r     float64
		want  string
	}{
		{"1:3 r=0", oneThree, 0, "a"},
		{"1:3 just below a's share", oneThree, 0.2499, "a"},
		{"1:3 at a's share boundary", oneThree, 0.25, "b"},
		{"1:3 r=0.99", oneThree, 0.99, "b"},
		{"1:3 r just below 1", oneThree, math.Nextafter(1, 0), "b"},
		{"0 means 100: below half", zeroHundred, 0.4999, "a"},
		{"0 means 100: at half", zeroHundred, 0.5, "b"},
		{"negative means 100", []Candidate{weighted(stamp("a", health.Healthy, 0), -5), weighted(stamp("b", health.Healthy, 0), 300)}, 0.2499, "a"},
		{"missing candidate means 100", []Candidate{weighted(stamp("b", health.Healthy, 0), 300)}, 0.25, "b"},
		{"r below 0 counts as 0", oneThree, -3, "a"},
		{"NaN counts as 0", oneThree, math.NaN(), "a"},
		{"r of 1 picks the last", oneThree, 1, "b"},
		{"r above 1 picks the last", oneThree, 7, "b"},
		{"repeated id uses its smallest weight", append(slices.Clone(oneThree), weighted(stamp("b", health.Healthy, 0), 1)), 0.4999, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := Pick(d, tc.cands, tc.r); got != tc.want {
				t.Fatalf("Pick(r=%v) = %q, want %q", tc.r, got, tc.want)
			}
		})
	}
}

func TestPickDistribution(t *testing.T) {
	d := Decision{Near: []string{"a", "b", "c"}}
	cands := []Candidate{weighted(stamp("a", health.Healthy, 0), 1), weighted(stamp("b", health.Healthy, 0), 3), weighted(stamp("c", health.Healthy, 0), 0)}
	counts := map[string]int{}
	const n = 1040 // total weight 104: a owns 1/104, b 3/104, c 100/104
	for i := range n {
		p, _ := Pick(d, cands, float64(i)/n)
		counts[p]++
	}
	if want := map[string]int{"a": 10, "b": 30, "c": 1000}; !reflect.DeepEqual(counts, want) {
		t.Fatalf("counts = %v, want %v", counts, want)
	}
	// Weight 0 is exactly weight 100 for every r.
	hundred := slices.Clone(cands)
	hundred[2].Weight = 100
	for i := range n {
		r := float64(i) / n
		p0, _ := Pick(d, cands, r)
		p100, _ := Pick(d, hundred, r)
		if p0 != p100 {
			t.Fatalf("r=%v: weight 0 picks %q, weight 100 picks %q", r, p0, p100)
		}
	}
}

// Spares (rule 5): the stamps outside Near and Fallback, least bad first,
// never a drained one nor one on standby beside others. With the one
// routable stamp gone, the retry goes to a stamp whose probes lapsed
// rather than nowhere. (Mutation tried: retryFor without its spares: a
// starved machine's POP answered 164 keyed requests 503 "no other stamp to
// retry on" when its only routable stamp crashed.)
func TestDecideSpares(t *testing.T) {
	d := Decide(Policy{}, []Candidate{
		{ID: "near", Health: health.Healthy, RTT: 2 * time.Millisecond},
		{ID: "lapsed-far", Health: health.Unhealthy, RTT: 80 * time.Millisecond},
		{ID: "lapsed-close", Health: health.Unhealthy, RTT: 10 * time.Millisecond},
		{ID: "ejected", Health: health.Healthy, RTT: 90 * time.Millisecond, EjectedUntil: t0.Add(time.Second)},
		{ID: "new", Health: health.Unknown},
		{ID: "drained", Health: health.Drained, RTT: time.Millisecond},
		{ID: "standby", Health: health.Healthy, RTT: time.Millisecond, Standby: true},
	}, nil, t0)
	if want := []string{"ejected", "new", "lapsed-close", "lapsed-far"}; !slices.Equal(d.Spare, want) {
		t.Fatalf("Spare = %q, want %q", d.Spare, want)
	}
	if p, r := Pick(d, nil, 0); p != "near" || r != "ejected" {
		t.Fatalf("Pick = %q, %q; want near, then the least bad spare", p, r)
	}
}

func TestPickRetry(t *testing.T) {
	for _, tc := range []struct {
		name          string
		d             Decision
		r             float64
		primary, want string
	}{
		{"first fallback", Decision{Near: []string{"a", "b"}, Fallback: []string{"c", "d"}}, 0.9, "b", "c"},
		{"no fallback: next near", Decision{Near: []string{"a", "b", "c"}}, 0.5, "b", "c"},
		{"no fallback: next near wraps", Decision{Near: []string{"a", "b", "c"}}, 0.9, "c", "a"},
		{"alone: none", Decision{Near: []string{"a"}, Fallback: []string{}}, 0, "a", ""},
		{"empty near: nothing", Decision{Fallback: []string{"c"}}, 0, "", ""},
		{"fallback equal to primary is skipped", Decision{Near: []string{"a"}, Fallback: []string{"a", "c"}}, 0, "a", "c"},
		{"repeated near id is skipped", Decision{Near: []string{"a", "a"}}, 0, "a", ""},
		{"alone: the first spare", Decision{Near: []string{"a"}, Spare: []string{"a", "s", "t"}}, 0, "a", "s"},
		{"a fallback before any spare", Decision{Near: []string{"a"}, Fallback: []string{"f"}, Spare: []string{"s"}}, 0, "a", "f"},
		{"another near before any spare", Decision{Near: []string{"a", "b"}, Spare: []string{"s"}}, 0, "a", "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, r := Pick(tc.d, nil, tc.r)
			if p != tc.primary || r != tc.want {
				t.Fatalf("Pick = %q, %q; want %q, %q", p, r, tc.primary, tc.want)
			}
		})
	}
}

// Of two picks, the second of the first's region and release, the less
// loaded wins, the first on a tie, so idle stamps split exactly by weight
// and a release's share never moves. (Mutations tried: keeping the first
// pick always fails "busy first pick"; a second pick among all of Near
// fails "another region is never weighed" and "another release is never
// weighed".)
func TestPickLessLoaded(t *testing.T) {
	cands := []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 21*ms), stamp("c", health.Healthy, 22*ms), stamp("d", health.Healthy, 22*ms)}
	for i, rr := range [][2]string{{"eastus", "v1"}, {"eastus", "v1"}, {"westus", "v1"}, {"eastus", "v2"}} {
		cands[i].Region, cands[i].Release = rr[0], rr[1]
	}
	// Equal weights: r1 below .25 picks a, .25 to .5 b, .5 to .75 c, d
	// above; among a's region and release r2 below .5 picks a, b above.
	d := Decision{Near: []string{"a", "b", "c", "d"}, Fallback: []string{"x"}}
	loads := func(m map[string]int) func(string) int { return func(id string) int { return m[id] } }
	for _, tc := range []struct {
		name          string
		d             Decision
		r1, r2        float64
		load          map[string]int
		primary, want string
	}{
		{"idle: first pick", d, 0.1, 0.9, nil, "a", "b"},
		{"busy first pick", d, 0.1, 0.9, map[string]int{"a": 1}, "b", "d"},
		{"busier second pick", d, 0.1, 0.9, map[string]int{"a": 1, "b": 2}, "a", "b"},
		{"tie: first pick", d, 0.3, 0.1, map[string]int{"a": 3, "b": 3}, "b", "d"},
		{"same stamp twice", d, 0.1, 0.1, map[string]int{"a": 5}, "a", "b"},
		{"another region is never weighed", d, 0.6, 0.9, map[string]int{"c": 9}, "c", "x"},
		{"another release is never weighed", d, 0.9, 0.1, map[string]int{"d": 9}, "d", "a"},
		{"alone: no second pick", Decision{Near: []string{"a"}, Fallback: []string{"b"}}, 0, 0.9, map[string]int{"a": 9}, "a", "b"},
		{"nothing near", Decision{Fallback: []string{"b"}}, 0, 0.9, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, r := PickLessLoaded(tc.d, cands, tc.r1, tc.r2, loads(tc.load))
			if p != tc.primary || r != tc.want {
				t.Fatalf("PickLessLoaded = %q, %q; want %q, %q", p, r, tc.primary, tc.want)
			}
		})
	}
	// Idle, every pair of draws picks what Pick picks with the first.
	w := []Candidate{weighted(cands[0], 1), weighted(cands[1], 3), cands[2]}
	for i := range 100 {
		for j := range 10 {
			r1, r2 := float64(i)/100, float64(j)/10
			p1, q1 := Pick(d, w, r1)
			if p, q := PickLessLoaded(d, w, r1, r2, loads(nil)); p != p1 || q != q1 {
				t.Fatalf("idle r1=%v r2=%v: %q, %q; Pick gives %q, %q", r1, r2, p, q, p1, q1)
			}
		}
	}
}

// A retry stays in the primary's region while another instance of it is
// routable (near, or even among the fallbacks), and leaves it only when
// none is: losing one instance never sends a request across an ocean.
// (Mutation tried: without the same-region loops in Pick, "another zone
// before the next region" retries on eastus/1.)
func TestPickRetriesInTheSameRegionFirst(t *testing.T) {
	cands := []Candidate{stamp("westeurope/1", health.Healthy, 2*ms), stamp("westeurope/2", health.Healthy, 3*ms),
		stamp("northeurope/1", health.Healthy, 9*ms), stamp("eastus/1", health.Healthy, 80*ms), stamp("westeurope/3", health.Healthy, 95*ms)}
	for _, tc := range []struct {
		name          string
		d             Decision
		r             float64
		primary, want string
	}{
		{"another zone before the next region", Decision{Near: []string{"northeurope/1", "westeurope/1", "westeurope/2"}, Fallback: []string{"eastus/1"}}, 0.5, "westeurope/1", "westeurope/2"},
		{"wraps within the region", Decision{Near: []string{"northeurope/1", "westeurope/1", "westeurope/2"}, Fallback: []string{"eastus/1"}}, 0.9, "westeurope/2", "westeurope/1"},
		{"a far instance of the region before another region", Decision{Near: []string{"westeurope/1"}, Fallback: []string{"eastus/1", "westeurope/3"}}, 0, "westeurope/1", "westeurope/3"},
		{"alone in its region: the nearest other", Decision{Near: []string{"northeurope/1", "westeurope/1"}, Fallback: []string{"eastus/1"}}, 0, "northeurope/1", "eastus/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, r := Pick(tc.d, cands, tc.r); p != tc.primary || r != tc.want {
				t.Fatalf("Pick = %q, %q; want %q, %q", p, r, tc.primary, tc.want)
			}
		})
	}
}

// Neither the primary nor the retry is ever a stamp on standby, whatever r
// and however near the standby stamps are: they are in neither Near nor
// Fallback while another stamp exists.
func TestPickNeverChoosesAStampOnStandby(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cands []Candidate
		retry string // for every r, "" to check only that it is not on standby
	}{
		{"standby nearer than every stamp", []Candidate{onStandby(stamp("s1", health.Healthy, 1*ms), "v2"), onStandby(stamp("s2", health.Healthy, 2*ms), "v2"),
			stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 25*ms)}, ""},
		{"the retry skips a nearer standby", []Candidate{stamp("a", health.Healthy, 10*ms), onStandby(stamp("s", health.Healthy, 12*ms), "v2"),
			stamp("c", health.Healthy, 60*ms)}, "c"},
		{"alone beside standby: no retry", []Candidate{stamp("a", health.Healthy, 10*ms), onStandby(stamp("s", health.Healthy, 12*ms), "v2")}, "-"},
		{"under fail open", []Candidate{stamp("a", health.Unhealthy, 10*ms), stamp("b", health.Unhealthy, 14*ms), onStandby(stamp("s", health.Healthy, 1*ms), "v2")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(Policy{}, tc.cands, nil, t0)
			standby := map[string]bool{}
			for _, c := range tc.cands {
				standby[c.ID] = c.Standby
			}
			for i := range 1000 {
				p, r := Pick(d, tc.cands, float64(i)/1000)
				if p == "" || standby[p] || standby[r] {
					t.Fatalf("r=%v: Pick = %q, %q; a stamp on standby (or none) chosen from %+v", float64(i)/1000, p, r, d)
				}
				switch tc.retry {
				case "":
				case "-":
					if r != "" {
						t.Fatalf("retry = %q, want none", r)
					}
				default:
					if r != tc.retry {
						t.Fatalf("retry = %q, want %q", r, tc.retry)
					}
				}
			}
		})
	}
}

func TestTrafficShares(t *testing.T) {
	we := func(id, release string) StampInfo { return StampInfo{ID: id, Region: "westeurope", Release: release} }
	ne := func(id, release string) StampInfo { return StampInfo{ID: id, Region: "northeurope", Release: release} }
	w := func(weight int) share { return share{weight: weight} }
	standby := share{standby: true}
	for _, tc := range []struct {
		name    string
		weights Weights
		stamps  []StampInfo
		want    map[string]share
	}{
		{"no table: default weights", nil, []StampInfo{we("a", "v1"), we("b", "v2")}, map[string]share{"a": {}, "b": {}}},
		{"a region not listed keeps default weights", Weights{"northeurope": {"v2": 100}}, []StampInfo{we("a", "v1"), ne("b", "v1"), ne("c", "v2")},
			map[string]share{"a": {}, "b": standby, "c": w(100)}},
		{"an empty entry counts as none", Weights{"westeurope": {}}, []StampInfo{we("a", "v1")}, map[string]share{"a": {}}},
		{"one instance each, 90/10", Weights{"westeurope": {"v1": 90, "v2": 10}}, []StampInfo{we("a", "v1"), we("b", "v2")},
			map[string]share{"a": w(180), "b": w(20)}},
		{"the percent is the release's, whatever its instances", Weights{"westeurope": {"v1": 90, "v2": 10}}, []StampInfo{we("a", "v1"), we("b", "v1"), we("c", "v1"), we("d", "v2")},
			map[string]share{"a": w(120), "b": w(120), "c": w(120), "d": w(40)}},
		{"50/50 over 3 and 1, rounded", Weights{"westeurope": {"v1": 50, "v2": 50}}, []StampInfo{we("a", "v1"), we("b", "v1"), we("c", "v1"), we("d", "v2")},
			map[string]share{"a": w(67), "b": w(67), "c": w(67), "d": w(200)}},
		{"0 % is standby, and the others keep a stamp's weight each", Weights{"westeurope": {"v1": 100, "v2": 0}}, []StampInfo{we("a", "v1"), we("b", "v1"), we("c", "v2"), we("d", "v2")},
			map[string]share{"a": w(100), "b": w(100), "c": standby, "d": standby}},
		{"a release not listed is standby, so is none announced", Weights{"westeurope": {"v2": 100}}, []StampInfo{we("a", "v1"), we("b", ""), we("c", "v2")},
			map[string]share{"a": standby, "b": standby, "c": w(100)}},
		{"negative is standby, above 100 counts as 100", Weights{"westeurope": {"v1": 150, "v2": -5}}, []StampInfo{we("a", "v1"), we("b", "v2")},
			map[string]share{"a": w(100), "b": standby}},
		{"1 % of eleven stamps", Weights{"westeurope": {"v1": 99, "v2": 1}}, []StampInfo{we("a0", "v1"), we("a1", "v1"), we("a2", "v1"), we("a3", "v1"), we("a4", "v1"),
			we("a5", "v1"), we("a6", "v1"), we("a7", "v1"), we("a8", "v1"), we("a9", "v1"), we("b", "v2")},
			map[string]share{"a0": w(109), "a1": w(109), "a2": w(109), "a3": w(109), "a4": w(109), "a5": w(109), "a6": w(109), "a7": w(109), "a8": w(109), "a9": w(109), "b": w(11)}},
		{"a listed release with no stamp takes nothing from the others", Weights{"westeurope": {"v1": 90, "v3": 10}}, []StampInfo{we("a", "v1")},
			map[string]share{"a": w(90)}},
		{"no stamps", Weights{"westeurope": {"v1": 100}}, nil, map[string]share{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := trafficShares(tc.weights, tc.stamps); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("trafficShares = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The shares a table makes, through Decide and Pick, split a region's
// traffic by release exactly, however many instances each release has,
// and leave the region's share beside equally near stamps of a region
// without a table as it was.
func TestTrafficSharesSplitTrafficByRelease(t *testing.T) {
	stamps := []StampInfo{
		{ID: "we1", Region: "westeurope", Release: "v1"}, {ID: "we2", Region: "westeurope", Release: "v1"},
		{ID: "we3", Region: "westeurope", Release: "v1"}, {ID: "we4", Region: "westeurope", Release: "v2"},
		{ID: "we5", Region: "westeurope", Release: "v3"},
		{ID: "ne1", Region: "northeurope", Release: "v1"}, {ID: "ne2", Region: "northeurope", Release: "v1"},
		{ID: "ne3", Region: "northeurope", Release: "v1"}, {ID: "ne4", Region: "northeurope", Release: "v1"},
	}
	shares := trafficShares(Weights{"westeurope": {"v1": 90, "v2": 10, "v3": 0}}, stamps)
	var cands []Candidate
	for i, s := range stamps {
		sh := shares[s.ID]
		cands = append(cands, Candidate{ID: s.ID, Region: s.Region, Release: s.Release, Health: health.Healthy,
			RTT: time.Duration(20+i) * ms, Weight: sh.weight, Standby: sh.standby})
	}
	d := Decide(Policy{}, cands, nil, t0)
	byRelease, byRegion := map[string]int{}, map[string]int{}
	const n = 8000 // total weight 800: westeurope's four stamps 400, northeurope's four 400
	for i := range n {
		p, _ := Pick(d, cands, float64(i)/n)
		for _, s := range stamps {
			if s.ID == p {
				byRegion[s.Region]++
				if s.Region == "westeurope" {
					byRelease[s.Release]++
				}
			}
		}
	}
	if want := map[string]int{"v1": 3600, "v2": 400}; !reflect.DeepEqual(byRelease, want) {
		t.Errorf("westeurope's traffic by release = %v, want %v (90 %% and 10 %% of its half, v3 none)", byRelease, want)
	}
	if want := map[string]int{"westeurope": 4000, "northeurope": 4000}; !reflect.DeepEqual(byRegion, want) {
		t.Errorf("traffic by region = %v, want %v: four serving stamps each", byRegion, want)
	}
}

func TestPickAfterDecide(t *testing.T) {
	// Normal: retry goes to the nearest stamp outside Near.
	cands := []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 25*ms), stamp("c", health.Healthy, 70*ms), stamp("d", health.Unhealthy, 1*ms)}
	if p, r := Pick(Decide(Policy{}, cands, nil, t0), cands, 0.7); p != "b" || r != "c" {
		t.Fatalf("Pick = %q, %q; want b, c", p, r)
	}
	// Fail open with two equally bad stamps: retry goes to the other one.
	down := []Candidate{stamp("a", health.Unhealthy, 20*ms), stamp("b", health.Unhealthy, 25*ms)}
	if p, r := Pick(Decide(Policy{}, down, nil, t0), down, 0.7); p != "b" || r != "a" {
		t.Fatalf("fail open Pick = %q, %q; want b, a", p, r)
	}
}

// A POP picks for every request: neither Pick nor the POP's route, which
// reads its last decision, allocates.
func TestPickAndRouteAllocateNothing(t *testing.T) {
	cands := []Candidate{stamp("a", health.Healthy, 20*ms), stamp("b", health.Healthy, 25*ms), stamp("c", health.Healthy, 70*ms), stamp("d", health.Unhealthy, 1*ms)}
	cands[1].Weight = 30
	// Sixteen equally near stamps: more than fits in a small stack frame.
	var many []Candidate
	for i := range 16 {
		many = append(many, stamp(fmt.Sprintf("s%02d", i), health.Healthy, 20*ms))
	}
	for _, cs := range [][]Candidate{cands, many} {
		d := Decide(Policy{}, cs, nil, t0)
		if n := testing.AllocsPerRun(100, func() { Pick(d, cs, 0.7) }); n != 0 {
			t.Errorf("Pick among %d allocates %v times", len(cs), n)
		}
	}
	p := newPOP("westeurope", nil)
	for _, c := range cands {
		p.state[c.ID] = &stampState{region: "westeurope", scheme: "http", addr: "127.0.0.1:1", health: c.Health, rtt: c.RTT, share: share{weight: c.Weight}}
	}
	p.decideLocked(Policy{}, t0)
	var primary, retry upstream
	if n := testing.AllocsPerRun(100, func() { primary, retry, _ = p.route() }); n != 0 {
		t.Errorf("route allocates %v times", n)
	}
	if primary.id != "a" && primary.id != "b" || retry.id == "" || primary.addr != "127.0.0.1:1" {
		t.Errorf("route = %+v, %+v; want a or b, and a retry", primary, retry)
	}
}

// FuzzDecide builds small candidate sets from the fuzz input: two policy
// bytes, one prev bitmask byte, then five bytes per candidate (id, health
// and standby, RTT, ejection, weight). Ids repeat on purpose.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{10, 5, 0b11, 0, 0, 20, 0, 0, 1, 0, 28, 0, 3})
	f.Add([]byte{0, 0, 0xff, 0, 2, 20, 0, 0, 1, 2, 25, 0, 0, 2, 4, 5, 0, 0})
	f.Add([]byte{0x80, 0x80, 0, 0, 3, 0, 0, 0, 0, 3, 0, 0, 0})
	f.Add([]byte{255, 255, 1, 0, 0, 0, 2, 0, 1, 1, 0, 3, 9})
	f.Add([]byte{10, 5, 0b11, 0, 0x80, 5, 0, 0, 1, 2, 20, 0, 3, 2, 0x82, 1, 0, 0})
	f.Add([]byte{})
	healths := []health.Status{health.Healthy, health.Degraded, health.Unhealthy, health.Drained, health.Unknown, health.Status(99)}
	f.Fuzz(func(t *testing.T, data []byte) {
		var policy Policy
		var prevMask byte
		if len(data) >= 3 {
			policy = Policy{
				Sensitivity: time.Duration(int8(data[0])) * ms,
				Hysteresis:  time.Duration(int8(data[1])) * ms,
			}
			prevMask = data[2]
			data = data[3:]
		}
		var cands []Candidate
		for len(data) >= 5 && len(cands) < 12 {
			c := Candidate{
				ID:      string(rune('a' + data[0]%8)),
				Health:  healths[int(data[1])%len(healths)],
				Standby: data[1]&0x80 != 0,
				RTT:     time.Duration(int8(data[2])) * ms / 2,
				Weight:  int(int8(data[4])),
			}
			switch data[3] % 4 {
			case 1:
				c.EjectedUntil = t0.Add(-time.Second)
			case 2:
				c.EjectedUntil = t0
			case 3:
				c.EjectedUntil = t0.Add(time.Duration(data[3]) * time.Second)
			}
			cands = append(cands, c)
			data = data[5:]
		}
		var prev []string
		for i := range 8 {
			if prevMask&(1<<i) != 0 {
				prev = append(prev, string(rune('a'+i)))
			}
		}

		d := Decide(policy, cands, prev, t0)

		ids := map[string]bool{}
		for _, c := range cands {
			ids[c.ID] = true
		}
		seen := map[string]bool{}
		for _, id := range slices.Concat(d.Near, d.Fallback) {
			if !ids[id] {
				t.Fatalf("id %q is not a candidate: %+v", id, d)
			}
			if seen[id] {
				t.Fatalf("id %q appears twice in Near+Fallback: %+v", id, d)
			}
			seen[id] = true
		}
		if (len(cands) > 0) != (len(d.Near) > 0) {
			t.Fatalf("%d candidates but Near = %q", len(cands), d.Near)
		}
		if !slices.IsSorted(d.Near) {
			t.Fatalf("Near not sorted: %q", d.Near)
		}
		if len(d.Reasons) != len(ids) {
			t.Fatalf("reasons for %d ids, want %d: %q", len(d.Reasons), len(ids), d.Reasons)
		}
		anyRoutable, anyActive := false, false
		for _, c := range cands {
			anyActive = anyActive || !c.Standby
			if (c.Health == health.Healthy || c.Health == health.Degraded) && !t0.Before(c.EjectedUntil) && !c.Standby {
				anyRoutable = true
			}
		}
		if len(cands) > 0 && d.FailOpen == anyRoutable {
			t.Fatalf("FailOpen = %v with routable = %v: %+v", d.FailOpen, anyRoutable, d)
		}
		// An id only ever on standby is never chosen while another stamp
		// is not on standby.
		onlyStandby := map[string]bool{}
		for _, c := range cands {
			onlyStandby[c.ID] = c.Standby && (onlyStandby[c.ID] || !slices.ContainsFunc(cands, func(o Candidate) bool { return o.ID == c.ID && !o.Standby }))
		}
		for _, id := range slices.Concat(d.Near, d.Fallback, d.Spare) {
			if anyActive && onlyStandby[id] {
				t.Fatalf("stamp %q on standby is routed to beside others: %+v", id, d)
			}
		}
		// Spares are neither near nor fallback, and never drained.
		for _, id := range d.Spare {
			if seen[id] {
				t.Fatalf("spare %q is also near or fallback: %+v", id, d)
			}
			if slices.ContainsFunc(cands, func(c Candidate) bool {
				return c.ID == id && c.Health.AtLeast(health.Drained) && !slices.ContainsFunc(cands, func(o Candidate) bool { return o.ID == id && !o.Health.AtLeast(health.Drained) })
			}) {
				t.Fatalf("drained stamp %q is a spare: %+v", id, d)
			}
		}
		// With distinct ids and something routable (rules 0 to 3): Near and
		// Fallback are exactly the routable stamps, and the nearest of
		// those with a known RTT is near.
		if len(ids) == len(cands) && !d.FailOpen && len(cands) > 0 {
			routable := map[string]bool{}
			var nearest *Candidate
			for i, c := range cands {
				if (c.Health != health.Healthy && c.Health != health.Degraded) || t0.Before(c.EjectedUntil) || (c.Standby && anyActive) {
					continue
				}
				routable[c.ID] = true
				if c.RTT > 0 && (nearest == nil || c.RTT < nearest.RTT) {
					nearest = &cands[i]
				}
			}
			if !maps.Equal(routable, seen) {
				t.Fatalf("Near+Fallback %q %q, want the routable stamps %v", d.Near, d.Fallback, routable)
			}
			if nearest != nil && !slices.Contains(d.Near, nearest.ID) {
				t.Fatalf("the nearest routable stamp %q (RTT %s) is not near: %+v", nearest.ID, nearest.RTT, d)
			}
		}
		reversed := slices.Clone(cands)
		slices.Reverse(reversed)
		if again := Decide(policy, reversed, prev, t0); !reflect.DeepEqual(again, d) {
			t.Fatalf("reversed input changed the decision:\n%+v\n%+v", d, again)
		}
		for _, r := range []float64{0, 0.5, math.Nextafter(1, 0)} {
			p, retry := Pick(d, cands, r)
			if len(cands) > 0 && !slices.Contains(d.Near, p) {
				t.Fatalf("Pick primary %q not in Near %q", p, d.Near)
			}
			// A spare only when no routable stamp but the primary is left:
			// the first spare other than the primary.
			others := slices.ContainsFunc(slices.Concat(d.Near, d.Fallback), func(id string) bool { return id != p })
			firstSpare := ""
			if i := slices.IndexFunc(d.Spare, func(id string) bool { return id != p }); i >= 0 {
				firstSpare = d.Spare[i]
			}
			if retry != "" && (retry == p || (!seen[retry] && (others || retry != firstSpare))) {
				t.Fatalf("Pick retry %q (primary %q) invalid for %+v", retry, p, d)
			}
			if len(cands) > 0 && retry == "" && !others && firstSpare != "" {
				t.Fatalf("Pick gave no retry, though spare %q is there: %+v", firstSpare, d)
			}
		}
	})
}
