package healthmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/health"
)

// clock is an injected clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// readings is the map behind the tests' SourceFunc. A reading set without
// At is taken as measured just now; one that is not set is missing.
type readings struct {
	clock *clock
	mu    sync.Mutex
	m     map[string]Reading
}

func newReadings(c *clock) *readings { return &readings{clock: c, m: map[string]Reading{}} }

// key names a signal instance: "name" or "name{k=v,...}" with sorted keys.
func key(name string, scope Scope) string {
	if len(scope) == 0 {
		return name
	}
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(scope)) {
		kv = append(kv, k+"="+scope[k])
	}
	return name + "{" + strings.Join(kv, ",") + "}"
}

func (r *readings) set(k string, rd Reading) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[k] = rd
}

func (r *readings) value(k string, v float64) { r.set(k, Reading{Value: v, Traffic: 100}) }

func (r *readings) remove(k string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, k)
}

// removeIf removes the readings whose keys match.
func (r *readings) removeIf(match func(key string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	maps.DeleteFunc(r.m, func(k string, _ Reading) bool { return match(k) })
}

func (r *readings) source() SourceFunc {
	return func(name string, scope Scope) (Reading, bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		rd, ok := r.m[key(name, scope)]
		if ok && rd.At.IsZero() {
			rd.At = r.clock.Now()
		}
		return rd, ok
	}
}

func mustModel(t *testing.T, y string) *Model {
	t.Helper()
	m, err := Load([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustEvaluator(t *testing.T, m *Model, r *readings, regions func() []string) *Evaluator {
	t.Helper()
	e, err := NewEvaluator(EvaluatorConfig{Model: m, Source: r.source(), Regions: regions, Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustFind(t *testing.T, root *Node, id string) *Node {
	t.Helper()
	n := root.Find(id)
	if n == nil {
		t.Fatalf("no node %q in the tree", id)
	}
	return n
}

const oneLeafModel = `
evaluation: {interval: 1s, trip: 1, recover: 1}
entities:
  - id: root
    kind: system
    children: [{ref: leaf}]
  - id: leaf
    kind: dependency
    signals:
      - %s
`

func TestSignalThresholds(t *testing.T) {
	const (
		plain   = "{name: s, unit: s, degraded: 10, unhealthy: 20, max_age: 5s}"
		below   = "{name: s, below: true, degraded: 2, unhealthy: 0, max_age: 5s, reason: no POP routes here}"
		onlyU   = "{name: s, unhealthy: 1, max_age: 5s, reason: drained}"
		traffic = "{name: s, degraded: 0.01, unhealthy: 0.05, min_traffic: 5, max_age: 5s}"
	)
	for _, tc := range []struct {
		name    string
		signal  string
		reading *Reading // nil: no reading; its At is set to now minus age
		age     time.Duration
		want    health.Status
		reason  string
	}{
		{"under degraded", plain, &Reading{Value: 9.999}, 0, health.Healthy, "s 9.999s < 10s"},
		{"exactly degraded", plain, &Reading{Value: 10}, 0, health.Degraded, "s 10s >= 10s"},
		{"between", plain, &Reading{Value: 15}, 0, health.Degraded, "s 15s >= 10s"},
		{"exactly unhealthy", plain, &Reading{Value: 20}, 0, health.Unhealthy, "s 20s >= 20s"},
		{"over unhealthy", plain, &Reading{Value: 1e6}, 0, health.Unhealthy, "s 1000000s >= 20s"},
		{"below: above degraded", below, &Reading{Value: 3}, 0, health.Healthy, "s 3 > 2"},
		{"below: exactly degraded", below, &Reading{Value: 2}, 0, health.Degraded, "no POP routes here (s 2 <= 2)"},
		{"below: between", below, &Reading{Value: 1}, 0, health.Degraded, "no POP routes here (s 1 <= 2)"},
		{"below: exactly unhealthy", below, &Reading{Value: 0}, 0, health.Unhealthy, "no POP routes here (s 0 <= 0)"},
		{"below: under unhealthy", below, &Reading{Value: -1}, 0, health.Unhealthy, "no POP routes here (s -1 <= 0)"},
		{"unhealthy only: under", onlyU, &Reading{Value: 0.999}, 0, health.Healthy, "s 0.999 < 1"},
		{"unhealthy only: at", onlyU, &Reading{Value: 1}, 0, health.Unhealthy, "drained (s 1 >= 1)"},
		{"too little traffic", traffic, &Reading{Value: 0.5, Traffic: 4.9}, 0, health.Healthy, "too little traffic to judge s (4.9 < 5)"},
		{"exactly min traffic", traffic, &Reading{Value: 0.5, Traffic: 5}, 0, health.Unhealthy, "s 0.5 >= 0.05"},
		{"no reading", plain, nil, 0, health.Unknown, "no reading of s"},
		{"exactly max_age old", plain, &Reading{Value: 10}, 5 * time.Second, health.Degraded, "s 10s >= 10s"},
		{"older than max_age", plain, &Reading{Value: 0}, 5*time.Second + time.Millisecond, health.Unknown, "stale: s last read 5.001s ago, max_age 5s"},
		{"from the future", plain, &Reading{Value: 0}, -time.Minute, health.Healthy, "s 0s < 10s"},
		{"not a number", plain, &Reading{Value: math.NaN()}, 0, health.Unknown, "s reading is not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := newReadings(c)
			if tc.reading != nil {
				rd := *tc.reading
				rd.At = c.Now().Add(-tc.age)
				r.set("s", rd)
			}
			root := mustEvaluator(t, mustModel(t, fmt.Sprintf(oneLeafModel, tc.signal)), r, nil).Evaluate()
			leaf := mustFind(t, root, "leaf")
			sv := leaf.Signals[0]
			if sv.State != tc.want || leaf.State != tc.want {
				t.Fatalf("signal %s, leaf %s, want %s (%+v)", sv.State, leaf.State, tc.want, sv)
			}
			if sv.Reason != tc.reason {
				t.Errorf("signal reason %q, want %q", sv.Reason, tc.reason)
			}
			if tc.want != health.Healthy && leaf.Reason != sv.Reason {
				t.Errorf("leaf reason %q, want the signal's %q", leaf.Reason, sv.Reason)
			}
			if wantAge := max(tc.age, 0).Seconds() * 1000; tc.reading != nil && sv.AgeMs != wantAge {
				t.Errorf("ageMs = %g, want %g", sv.AgeMs, wantAge)
			}
			// Unknown shows on the leaf but rolls up as degraded.
			wantRoot := tc.want
			if wantRoot == health.Unknown {
				wantRoot = health.Degraded
			}
			if root.State != wantRoot || root.Score != Score(wantRoot) || leaf.Score != Score(tc.want) {
				t.Errorf("root %s score %g, leaf score %g; want root %s", root.State, root.Score, leaf.Score, wantRoot)
			}
		})
	}
}

func TestScores(t *testing.T) {
	for s, want := range map[health.Status]float64{health.Healthy: 1, health.Degraded: 0.75, health.Unknown: 0.75, health.Unhealthy: 0.5} {
		if got := Score(s); got != want {
			t.Errorf("Score(%s) = %g, want %g", s, got, want)
		}
	}
}

func TestUnknownRollsUpAsDegraded(t *testing.T) {
	c := newClock()
	root := mustEvaluator(t, mustModel(t, fmt.Sprintf(oneLeafModel, "{name: s, unhealthy: 1, max_age: 5s}")), newReadings(c), nil).Evaluate()
	leaf := mustFind(t, root, "leaf")
	if leaf.State != health.Unknown || root.State != health.Degraded {
		t.Fatalf("leaf %s root %s, want unknown and degraded", leaf.State, root.State)
	}
	if root.Reason != "caused by leaf (unknown)" {
		t.Fatalf("root reason %q", root.Reason)
	}
}

// TestHysteresis drives one signal through sequences of raw states: H, D and
// U set the value, "-" removes the reading. trip is 2 and recover 3.
func TestHysteresis(t *testing.T) {
	const model = `
evaluation: {interval: 1s, trip: 2, recover: 3}
entities:
  - id: root
    kind: system
    children: [{ref: leaf}]
  - id: leaf
    kind: dependency
    signals: [{name: s, degraded: 1, unhealthy: 2, max_age: 5s}]
`
	for _, tc := range []struct {
		name      string
		raw, want string // one letter per evaluation; "?" is unknown
	}{
		{"first evaluation reports the raw state", "U", "U"},
		{"trip after exactly two", "HUU", "HHU"},
		{"one bad evaluation does not flap", "HUHUHDH", "HHHHHHH"},
		{"recover after exactly three", "UHHH", "UUUH"},
		{"interrupted recovery starts again", "UHHUHHH", "UUUUUUH"},
		{"trip to the least bad state of the streak", "HDUU", "HHDU"},
		{"recover to the worst state of the streak", "UHDHH", "UUUDD"},
		{"recover continues from a partial recovery", "UHDHHH", "UUUDDH"},
		{"degraded then unhealthy streak", "DUUHHH", "DDUUUH"},
		{"missing readings trip to unknown", "H--", "HH?"},
		{"unknown recovers like any state", "-HHH", "???H"},
		{"unhealthy is worse than unknown", "-UU", "??U"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := newReadings(c)
			e := mustEvaluator(t, mustModel(t, model), r, nil)
			var since time.Time
			var prev health.Status
			for i, ch := range tc.raw {
				switch ch {
				case 'H':
					r.value("s", 0)
				case 'D':
					r.value("s", 1)
				case 'U':
					r.value("s", 2)
				case '-':
					r.remove("s")
				}
				leaf := mustFind(t, e.Evaluate(), "leaf")
				want := map[byte]health.Status{'H': health.Healthy, 'D': health.Degraded, 'U': health.Unhealthy, '?': health.Unknown}[tc.want[i]]
				if leaf.State != want {
					t.Fatalf("evaluation %d (raw %c): state %s, want %s; reason %q", i+1, ch, leaf.State, want, leaf.Reason)
				}
				if i == 0 || leaf.State != prev {
					since, prev = c.Now(), leaf.State
				}
				if !leaf.Since.Equal(since) {
					t.Fatalf("evaluation %d: since %s, want %s (when the state last changed)", i+1, leaf.Since, since)
				}
				c.Advance(time.Second)
			}
		})
	}
}

func TestHysteresisReasons(t *testing.T) {
	const model = `
evaluation: {interval: 1s, trip: 2, recover: 3}
entities:
  - id: leaf
    kind: dependency
    signals: [{name: s, degraded: 1, unhealthy: 2, max_age: 5s}]
`
	c := newClock()
	r := newReadings(c)
	e := mustEvaluator(t, mustModel(t, model), r, nil)
	r.value("s", 0)
	e.Evaluate()
	r.value("s", 2)
	if got := e.Evaluate().Reason; got != "not yet unhealthy: s 2 >= 2 (1 of 2 evaluations)" {
		t.Fatalf("pending trip reason %q", got)
	}
	if got := e.Evaluate(); got.State != health.Unhealthy || got.Reason != "s 2 >= 2" {
		t.Fatalf("after trip: %s %q", got.State, got.Reason)
	}
	r.value("s", 0)
	if got := e.Evaluate().Reason; got != "s 2 >= 2 (recovering: healthy for 1 of 3 evaluations)" {
		t.Fatalf("recovering reason %q", got)
	}
}

func TestKOfN(t *testing.T) {
	const model = `
evaluation: {interval: 1s, trip: 1, recover: 1}
entities:
  - id: root
    kind: system
    children: [{ref: at-least-2}, {ref: tolerate-1}]
  - id: at-least-2
    kind: group
    rollup: {k_of_n: {healthy_at_least: 2, reason: redundancy lost}}
    children: [{each: region, ref: "r.{region}"}]
  - id: tolerate-1
    kind: group
    rollup: {k_of_n: {tolerate: 1}}
    children: [{each: region, ref: "r.{region}"}]
  - id: "r.{region}"
    kind: region
    per: region
    signals: [{name: s, degraded: 1, unhealthy: 2, max_age: 5s}]
`
	for _, tc := range []struct {
		name       string
		values     map[string]float64 // by region; -1: no reading
		atLeast    health.Status
		tolerate   health.Status
		reasonLeft string // at-least-2's reason
	}{
		{"all healthy", map[string]float64{"a": 0, "b": 0, "c": 0}, health.Healthy, health.Healthy, "all 3 regions healthy"},
		{"one of three unhealthy", map[string]float64{"a": 0, "b": 0, "c": 2}, health.Degraded, health.Degraded, "redundancy lost: 2 of 3 regions healthy; caused by r.c"},
		{"two of three unhealthy", map[string]float64{"a": 2, "b": 0, "c": 2}, health.Unhealthy, health.Unhealthy, "1 of 3 regions healthy, 2 needed; caused by r.a, r.c"},
		{"all unhealthy", map[string]float64{"a": 2, "b": 2, "c": 2}, health.Unhealthy, health.Unhealthy, "0 of 3 regions healthy, 2 needed"},
		{"one degraded, none lost", map[string]float64{"a": 0, "b": 1, "c": 0}, health.Degraded, health.Degraded, "caused by r.b"},
		{"one unknown counts as degraded", map[string]float64{"a": 0, "b": -1, "c": 0}, health.Degraded, health.Degraded, "caused by r.b (unknown)"},
		{"one degraded, one unhealthy", map[string]float64{"a": 1, "b": 0, "c": 2}, health.Degraded, health.Degraded, "redundancy lost: 2 of 3 regions healthy or degraded; caused by r.c"},
		{"five regions, two lost", map[string]float64{"a": 2, "b": 0, "c": 2, "d": 0, "e": 0}, health.Degraded, health.Unhealthy, "redundancy lost: 3 of 5 regions healthy"},
		{"one region, healthy", map[string]float64{"a": 0}, health.Healthy, health.Healthy, "all 1 regions healthy"},
		{"one region, degraded", map[string]float64{"a": 1}, health.Degraded, health.Degraded, "caused by r.a"},
		{"one region, lost", map[string]float64{"a": 2}, health.Unhealthy, health.Unhealthy, "0 of 1 regions healthy, 1 needed"},
		{"no regions", map[string]float64{}, health.Unhealthy, health.Unhealthy, "no regions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReadings(newClock())
			for reg, v := range tc.values {
				if v >= 0 {
					r.value(key("s", Scope{"region": reg}), v)
				}
			}
			regions := slices.Collect(maps.Keys(tc.values))
			root := mustEvaluator(t, mustModel(t, model), r, func() []string { return regions }).Evaluate()
			left, right := mustFind(t, root, "at-least-2"), mustFind(t, root, "tolerate-1")
			if left.State != tc.atLeast || right.State != tc.tolerate {
				t.Fatalf("healthy_at_least 2: %s (%q), tolerate 1: %s (%q); want %s, %s", left.State, left.Reason, right.State, right.Reason, tc.atLeast, tc.tolerate)
			}
			if left.Reason != tc.reasonLeft && !strings.HasPrefix(left.Reason, tc.reasonLeft) {
				t.Errorf("reason %q, want %q", left.Reason, tc.reasonLeft)
			}
			if len(left.Children) != len(tc.values) {
				t.Errorf("%d children, want one per region (%d)", len(left.Children), len(tc.values))
			}
		})
	}
}

func TestImpacts(t *testing.T) {
	m := mustModel(t, `
evaluation: {interval: 1s, trip: 1, recover: 1}
entities:
  - id: root
    kind: system
    children: [{ref: std}, {ref: lim, impact: limited}, {ref: sup, impact: suppressed}, {ref: group}]
  - id: group
    kind: group
    rollup: {k_of_n: {healthy_at_least: 2}}
    children: [{ref: std}, {ref: lim, impact: limited}, {ref: sup, impact: suppressed}]
  - id: std
    kind: dependency
    signals: [{name: std, degraded: 1, unhealthy: 2, max_age: 5s}]
  - id: lim
    kind: dependency
    signals: [{name: lim, degraded: 1, unhealthy: 2, max_age: 5s}]
  - id: sup
    kind: dependency
    signals: [{name: sup, degraded: 1, unhealthy: 2, max_age: 5s}]
`)
	for _, tc := range []struct {
		name          string
		std, lim, sup float64 // -1: no reading
		want          health.Status
		reason        string
		group         health.Status // k-of-n of std and lim; sup is not counted
	}{
		{"all healthy", 0, 0, 0, health.Healthy, "all children healthy", health.Healthy},
		{"limited caps at degraded", 0, 2, 0, health.Degraded, "caused by lim (unhealthy, limited impact), group", health.Degraded},
		{"limited passes degraded", 0, 1, 0, health.Degraded, "caused by lim, group", health.Degraded},
		{"limited unknown", 0, -1, 0, health.Degraded, "caused by lim (unknown, limited impact), group", health.Degraded},
		{"suppressed is ignored", 0, 0, 2, health.Healthy, "healthy, ignoring sup (unhealthy, suppressed impact)", health.Healthy},
		{"standard passes unhealthy", 2, 0, 0, health.Unhealthy, "caused by std, group", health.Unhealthy},
		{"all unhealthy", 2, 2, 2, health.Unhealthy, "caused by std, group", health.Unhealthy},
		{"worst children named", 1, 2, 0, health.Degraded, "caused by std, lim (unhealthy, limited impact), group", health.Degraded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReadings(newClock())
			for name, v := range map[string]float64{"std": tc.std, "lim": tc.lim, "sup": tc.sup} {
				if v >= 0 {
					r.value(name, v)
				}
			}
			root := mustEvaluator(t, m, r, nil).Evaluate()
			if root.State != tc.want || root.Reason != tc.reason {
				t.Fatalf("root %s %q, want %s %q", root.State, root.Reason, tc.want, tc.reason)
			}
			if g := mustFind(t, root, "group"); g.State != tc.group {
				t.Errorf("k-of-n group %s (%q), want %s", g.State, g.Reason, tc.group)
			}
			impacts := map[string]string{}
			for _, c := range root.Children {
				impacts[c.ID] = c.Impact
			}
			want := map[string]string{"std": ImpactStandard, "lim": ImpactLimited, "sup": ImpactSuppressed, "group": ImpactStandard}
			if !maps.Equal(impacts, want) {
				t.Errorf("children impacts %v, want %v (suppressed children are still shown)", impacts, want)
			}
			if root.Impact != "" {
				t.Errorf("root impact %q, want none", root.Impact)
			}
		})
	}
}

func TestRegionsComeAndGo(t *testing.T) {
	const model = `
evaluation: {interval: 1s, trip: 3, recover: 1}
entities:
  - id: root
    kind: system
    children: [{ref: regions}, {ref: links, impact: limited}]
  - id: regions
    kind: group
    rollup: {k_of_n: {tolerate: 1}}
    children: [{each: region, ref: "r.{region}"}]
  - id: links
    kind: group
    children: [{each: link, ref: "link.{a}.{b}"}]
  - id: "r.{region}"
    name: "Region {region}"
    kind: region
    per: region
    signals: [{name: s, degraded: 1, unhealthy: 2, max_age: 5s}]
  - id: "link.{a}.{b}"
    name: "{a} to {b}"
    kind: dependency
    per: link
    signals: [{name: rtt, degraded: 50, unhealthy: 500, max_age: 5s}]
`
	c := newClock()
	r := newReadings(c)
	for _, reg := range []string{"a", "b", "c"} {
		r.value(key("s", Scope{"region": reg}), 0)
	}
	for _, l := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}} {
		r.value(key("rtt", Scope{"a": l[0], "b": l[1]}), 0)
	}
	var current []string
	e := mustEvaluator(t, mustModel(t, model), r, func() []string { return current })
	ids := func(n *Node) []string {
		var out []string
		for _, ch := range n.Children {
			out = append(out, ch.ID)
		}
		return out
	}

	current = []string{"b", "a"}
	root := e.Evaluate()
	if got := ids(mustFind(t, root, "regions")); !slices.Equal(got, []string{"r.a", "r.b"}) {
		t.Fatalf("regions children %v", got)
	}
	if got := ids(mustFind(t, root, "links")); !slices.Equal(got, []string{"link.a.b"}) {
		t.Fatalf("links children %v", got)
	}
	if n := mustFind(t, root, "r.b"); n.Name != "Region b" || n.Region != "b" {
		t.Fatalf("r.b name %q region %q", n.Name, n.Region)
	}
	if n := mustFind(t, root, "link.a.b"); n.Name != "a to b" || n.Region != "" {
		t.Fatalf("link name %q region %q", n.Name, n.Region)
	}

	// b goes bad for one evaluation (trip is 3, so it still reads healthy),
	// then b is removed: its entities vanish with their hysteresis.
	c.Advance(time.Second)
	r.value(key("s", Scope{"region": "b"}), 2)
	if n := mustFind(t, e.Evaluate(), "r.b"); n.State != health.Healthy {
		t.Fatalf("r.b after one bad evaluation: %s, want healthy until trip", n.State)
	}
	c.Advance(time.Second)
	current = []string{"a"}
	root = e.Evaluate()
	for _, id := range []string{"r.b", "link.a.b"} {
		if root.Find(id) != nil {
			t.Errorf("%s still in the tree after b was removed", id)
		}
		if e.leaves[id] != nil || e.states[id] != nil {
			t.Errorf("%s still has hysteresis state after b was removed", id)
		}
	}
	if got := mustFind(t, root, "regions"); got.State != health.Healthy || len(got.Children) != 1 {
		t.Fatalf("regions with a alone: %s with %d children", got.State, len(got.Children))
	}

	// b comes back (with c, a duplicate and an empty name): it starts afresh,
	// so its first evaluation reports the raw state.
	c.Advance(time.Second)
	current = []string{"c", "b", "a", "a", ""}
	root = e.Evaluate()
	if got := ids(mustFind(t, root, "regions")); !slices.Equal(got, []string{"r.a", "r.b", "r.c"}) {
		t.Fatalf("regions children %v", got)
	}
	if got := ids(mustFind(t, root, "links")); !slices.Equal(got, []string{"link.a.b", "link.a.c", "link.b.c"}) {
		t.Fatalf("links children %v", got)
	}
	rb := mustFind(t, root, "r.b")
	if rb.State != health.Unhealthy || !rb.Since.Equal(c.Now()) {
		t.Fatalf("re-added r.b: %s since %s, want unhealthy at once (fresh hysteresis) since now", rb.State, rb.Since)
	}
	if g := mustFind(t, root, "regions"); g.State != health.Degraded || !strings.HasPrefix(g.Reason, "redundancy lost: 2 of 3 regions healthy") {
		t.Fatalf("regions %s %q", g.State, g.Reason)
	}
	if rc := mustFind(t, root, "r.c"); rc.State != health.Healthy || rc.Region != "c" {
		t.Fatalf("new region c: %s region %q", rc.State, rc.Region)
	}
}

func TestSourceScopes(t *testing.T) {
	const model = `
evaluation: {interval: 1s, trip: 1, recover: 1}
entities:
  - id: root
    kind: system
    children: [{ref: global}, {each: region, ref: "r.{region}"}, {each: link, ref: "l.{a}.{b}"}]
  - id: global
    kind: dependency
    signals: [{name: queue.age, scope: {stream: orders}, unhealthy: 1, max_age: 5s}]
  - id: "r.{region}"
    kind: region
    per: region
    signals: [{name: s, scope: {zone: "{region}-1"}, unhealthy: 1, max_age: 5s}]
  - id: "l.{a}.{b}"
    kind: dependency
    per: link
    signals: [{name: rtt, unhealthy: 1, max_age: 5s}]
`
	var asked []string
	src := SourceFunc(func(name string, scope Scope) (Reading, bool) {
		asked = append(asked, key(name, scope))
		scope["mutated"] = "by the source" // the source owns the map
		return Reading{}, false
	})
	e, err := NewEvaluator(EvaluatorConfig{Model: mustModel(t, model), Source: src, Regions: func() []string { return []string{"y", "x"} }})
	if err != nil {
		t.Fatal(err)
	}
	e.Evaluate()
	slices.Sort(asked)
	want := []string{"queue.age{stream=orders}", "rtt{a=x,b=y}", "s{region=x,zone=x-1}", "s{region=y,zone=y-1}"}
	if !slices.Equal(asked, want) {
		t.Fatalf("source asked for %v, want %v", asked, want)
	}
}

func TestNewEvaluatorConfig(t *testing.T) {
	src := SourceFunc(func(string, Scope) (Reading, bool) { return Reading{}, false })
	if _, err := NewEvaluator(EvaluatorConfig{Regions: func() []string { return nil }}); err == nil || !strings.Contains(err.Error(), "Source") {
		t.Errorf("no source: %v, want an error naming Source", err)
	}
	if _, err := NewEvaluator(EvaluatorConfig{Source: src}); err == nil || !strings.Contains(err.Error(), "Regions") {
		t.Errorf("default model without regions: %v, want an error naming Regions", err)
	}
	if _, err := NewEvaluator(EvaluatorConfig{Source: src, Model: mustModel(t, fmt.Sprintf(oneLeafModel, "{name: s, unhealthy: 1, max_age: 1s}"))}); err != nil {
		t.Errorf("model without per entities needs no regions: %v", err)
	}
	e, err := NewEvaluator(EvaluatorConfig{Source: src, Regions: func() []string { return []string{"a"} }})
	if err != nil {
		t.Fatal(err)
	}
	if root := e.Evaluate(); root.ID != "system" || root.Find("region.a") == nil {
		t.Fatalf("nil model: root %q, want the default model", root.ID)
	}
}

func TestRunEvaluatesEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		src := SourceFunc(func(string, Scope) (Reading, bool) {
			calls.Add(1)
			return Reading{At: time.Now()}, true
		})
		m := mustModel(t, fmt.Sprintf(oneLeafModel, "{name: s, unhealthy: 1, max_age: 1s}"))
		e, err := NewEvaluator(EvaluatorConfig{Model: m, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		if e.Latest() != nil {
			t.Fatal("Latest before the first evaluation is not nil")
		}
		start := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { e.Run(ctx); close(done) }()
		synctest.Wait()
		if n := e.Latest(); n == nil || !n.EvaluatedAt.Equal(start) {
			t.Fatalf("Run did not evaluate at once: %v", n)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := calls.Load(); got != 11 {
			t.Fatalf("evaluations in 10 s at a 1 s interval = %d, want 11", got)
		}
		if n := e.Latest(); !n.EvaluatedAt.Equal(start.Add(10*time.Second)) || n.State != health.Healthy {
			t.Fatalf("latest evaluated at %s (%s), want start+10s", n.EvaluatedAt, n.State)
		}
		cancel()
		<-done
	})
}

func TestHandlerServesTheTree(t *testing.T) {
	c := newClock()
	r := healthyDefaultReadings(c, threeRegions)
	e := mustEvaluator(t, Default(), r, func() []string { return threeRegions })
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()

	get := func() (*http.Response, map[string]any) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/ops/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	// No evaluation yet: the handler evaluates once.
	resp, body := get()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || e.Latest() == nil {
		t.Fatalf("first GET: %d %q, latest %v", resp.StatusCode, resp.Header.Get("Content-Type"), e.Latest())
	}
	keys := func(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
	if got, want := keys(body), []string{"children", "evaluatedAt", "id", "kind", "name", "reason", "score", "since", "state"}; !slices.Equal(got, want) {
		t.Fatalf("root fields %v, want %v", got, want)
	}
	if body["id"] != "system" || body["state"] != "healthy" || body["score"] != 1.0 {
		t.Fatalf("root %v %v %v", body["id"], body["state"], body["score"])
	}
	// Find a per-region leaf in the JSON: it carries region, impact and signals.
	var find func(n map[string]any, id string) map[string]any
	find = func(n map[string]any, id string) map[string]any {
		if n["id"] == id {
			return n
		}
		kids, _ := n["children"].([]any)
		for _, k := range kids {
			if f := find(k.(map[string]any), id); f != nil {
				return f
			}
		}
		return nil
	}
	leaf := find(body, "dependency.store-read.eastus")
	if leaf == nil {
		t.Fatal("no dependency.store-read.eastus in the JSON")
	}
	if got, want := keys(leaf), []string{"evaluatedAt", "id", "impact", "kind", "name", "reason", "region", "score", "signals", "since", "state"}; !slices.Equal(got, want) {
		t.Fatalf("leaf fields %v, want %v", got, want)
	}
	sig := leaf["signals"].([]any)[0].(map[string]any)
	if got, want := keys(sig), []string{"ageMs", "degraded", "name", "reason", "state", "unhealthy", "value"}; !slices.Equal(got, want) {
		t.Fatalf("signal fields %v, want %v", got, want)
	}
	if sig["name"] != "probe.store-read" || sig["degraded"] != 1.0 || sig["unhealthy"] != 2.0 {
		t.Fatalf("signal %v", sig)
	}

	// An unhealthy system still answers 200; the state is in the body.
	r.value("edge.error_ratio", 0.5)
	for range DefaultTrip {
		c.Advance(DefaultInterval)
		e.Evaluate()
	}
	resp, body = get()
	if resp.StatusCode != http.StatusOK || body["state"] != "unhealthy" || resp.Header.Get("X-Health-Status") != "unhealthy" {
		t.Fatalf("unhealthy system: %d %v %q", resp.StatusCode, body["state"], resp.Header.Get("X-Health-Status"))
	}
}

// Evaluations from Run and requests may overlap; the race detector checks
// that they share nothing unguarded.
func TestEvaluatorConcurrentUse(t *testing.T) {
	c := newClock()
	r := healthyDefaultReadings(c, threeRegions)
	e := mustEvaluator(t, Default(), r, func() []string { return threeRegions })
	h := e.Handler()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ops/health", nil))
				if rec.Code != http.StatusOK {
					t.Errorf("status %d", rec.Code)
				}
				e.Evaluate()
			}
		})
	}
	wg.Wait()
}

var threeRegions = []string{"westeurope", "northeurope", "eastus"}

// healthyDefaultReadings sets every signal of the default model to a
// healthy value for the given regions.
func healthyDefaultReadings(c *clock, regions []string) *readings {
	r := newReadings(c)
	perRegion := map[string]float64{
		"stamp.drained": 0, "stamp.routable_pops": 1, "stamp.capacity": 1, "http.error_ratio": 0.001, "http.p99": 0.1, "http.write_p99": 0.2,
		"probe.async-path": 0, "probe.age": 1, "probe.store-read": 0, "probe.store-write": 0,
		"probe.stream-publish": 0, "probe.secret-store": 0, "probe.partner": 0, "partner.breaker": 0,
		"registry.age": 1, "probe.read-model": 0,
	}
	for _, reg := range regions {
		for name, v := range perRegion {
			r.value(key(name, Scope{"region": reg}), v)
		}
	}
	sorted := slices.Sorted(slices.Values(regions))
	for i, a := range sorted {
		for _, b := range sorted[i+1:] {
			r.value(key("link.probe_failed", Scope{"a": a, "b": b}), 0)
			r.value(key("link.rtt_excess", Scope{"a": a, "b": b}), 3)
		}
	}
	r.value("edge.error_ratio", 0.001)
	r.value("edge.p99", 0.2)
	r.value(key("queue.age", Scope{"stream": "orders"}), 0.5)
	r.value(key("queue.age", Scope{"stream": "comments"}), 0.5)
	return r
}

func region(name, reg string) string { return key(name, Scope{"region": reg}) }

func link(name, a, b string) string { return key(name, Scope{"a": a, "b": b}) }

// reasonPath follows reasons from the root: at each node, to the first
// child that is not healthy and that the node's reason names.
func reasonPath(root *Node) []string {
	path := []string{root.ID}
	for n := root; n.State != health.Healthy; {
		named := map[string]bool{}
		for _, tok := range strings.FieldsFunc(n.Reason, func(r rune) bool { return strings.ContainsRune(" ,;:()", r) }) {
			named[tok] = true
		}
		var next *Node
		for _, c := range n.Children {
			if named[c.ID] && c.State != health.Healthy {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		path = append(path, next.ID)
		n = next
	}
	return path
}

// TestDefaultModelFaults injects one fault at a time into a healthy
// three-region system and checks that it shows where it should, after
// exactly trip evaluations, and nowhere else.
func TestDefaultModelFaults(t *testing.T) {
	const (
		H = health.Healthy
		D = health.Degraded
		U = health.Unhealthy
		X = health.Unknown
	)
	eachRegion := func(name string, v float64) map[string]float64 {
		m := map[string]float64{}
		for _, reg := range threeRegions {
			m[region(name, reg)] = v
		}
		return m
	}
	perRegion := func(prefix string, states map[string]health.Status) map[string]health.Status {
		out := map[string]health.Status{}
		for _, reg := range threeRegions {
			out[prefix+reg] = states[reg]
		}
		return out
	}
	all := func(prefix string, s health.Status) map[string]health.Status {
		return perRegion(prefix, map[string]health.Status{"westeurope": s, "northeurope": s, "eastus": s})
	}
	for _, tc := range []struct {
		name    string
		set     map[string]float64 // values the fault changes (with plenty of traffic)
		raw     map[string]Reading // readings the fault changes, as they are
		silent  func(k string) bool
		want    map[string]health.Status // entity states after trip evaluations
		reasons map[string]string        // substrings of reasons
		healthy []string                 // unrelated entities that must stay healthy
		leaves  []string                 // where following reasons from the root must end
	}{
		{
			name: "store server stopped in eastus",
			set:  map[string]float64{region("probe.store-read", "eastus"): 2, region("probe.store-write", "eastus"): 2},
			want: map[string]health.Status{
				"dependency.store-read.eastus": U, "dependency.store-write.eastus": U,
				"component.api.eastus": U, "component.processor.eastus": U, "region.eastus": U,
				"region.eastus.browse": U, "region.eastus.comment": U, "region.eastus.checkout": U,
				"regions.browse": D, "regions.comment": D, "regions.checkout": D, "regions": D,
				"flow.browse": D, "flow.comment": D, "flow.checkout": D, "system": D,
			},
			reasons: map[string]string{
				"regions":                      "redundancy lost: 2 of 3 regions healthy; caused by region.eastus",
				"regions.browse":               "redundancy lost",
				"component.api.eastus":         "caused by dependency.store-read.eastus",
				"dependency.store-read.eastus": "probe.store-read 2 >= 2",
			},
			healthy: []string{"region.westeurope", "region.northeurope", "dependency.store-read.westeurope", "component.stamp.eastus",
				"dependency.streams.eastus", "dependency.partner.eastus", "links", "component.edge", "dependency.order-stream"},
			leaves: []string{"dependency.store-read.eastus", "dependency.store-write.eastus"},
		},
		{
			name: "link westeurope-eastus cut",
			set:  map[string]float64{link("link.probe_failed", "eastus", "westeurope"): 1},
			want: map[string]health.Status{"link.eastus.westeurope": U, "links": U, "system": D},
			reasons: map[string]string{
				"system":                 "caused by links (unhealthy, limited impact)",
				"link.eastus.westeurope": "a POP cannot reach the other region's stamp",
			},
			healthy: []string{"flow.browse", "flow.comment", "flow.checkout", "regions", "region.eastus", "region.westeurope",
				"link.eastus.northeurope", "link.northeurope.westeurope"},
			leaves: []string{"link.eastus.westeurope"},
		},
		{
			name:    "link westeurope-eastus slowed",
			set:     map[string]float64{link("link.rtt_excess", "eastus", "westeurope"): 120},
			want:    map[string]health.Status{"link.eastus.westeurope": D, "links": D, "system": D},
			reasons: map[string]string{"link.eastus.westeurope": "link slow (link.rtt_excess 120ms >= 50ms)"},
			healthy: []string{"flow.browse", "flow.comment", "flow.checkout", "regions", "link.eastus.northeurope"},
			leaves:  []string{"link.eastus.westeurope"},
		},
		{
			name: "secret store down, stamps serve from their cache",
			set:  eachRegion("probe.secret-store", 1),
			want: merge(all("dependency.secret-store.", D), all("component.processor.", D), all("region.", D),
				map[string]health.Status{"regions": D, "regions.checkout": D, "flow.checkout": D, "system": D}),
			reasons: map[string]string{"component.processor.eastus": "caused by dependency.secret-store.eastus"},
			healthy: []string{"flow.browse", "flow.comment", "component.api.eastus", "dependency.partner.eastus", "links", "component.edge"},
			leaves:  []string{"dependency.secret-store.eastus", "dependency.secret-store.northeurope", "dependency.secret-store.westeurope"},
		},
		{
			name: "secret store down hard: limited impact caps it",
			set:  eachRegion("probe.secret-store", 2),
			want: merge(all("dependency.secret-store.", U), all("component.processor.", D), all("region.", D),
				map[string]health.Status{"regions": D, "flow.checkout": D, "system": D}),
			reasons: map[string]string{"component.processor.westeurope": "caused by dependency.secret-store.westeurope (unhealthy, limited impact)"},
			healthy: []string{"flow.browse", "flow.comment", "links"},
			leaves:  []string{"dependency.secret-store.eastus", "dependency.secret-store.northeurope", "dependency.secret-store.westeurope"},
		},
		{
			name: "partner down, breaker open",
			set:  merge(eachRegion("probe.partner", 2), eachRegion("partner.breaker", 2)),
			want: merge(all("dependency.partner.", U), all("component.processor.", D), all("region.", D),
				map[string]health.Status{"regions.checkout": D, "flow.checkout": D, "regions": D, "system": D}),
			reasons: map[string]string{
				"dependency.partner.eastus":  "probe.partner 2 >= 2; circuit breaker not closed (partner.breaker 2 >= 2)",
				"component.processor.eastus": "caused by dependency.partner.eastus (unhealthy, limited impact)",
			},
			healthy: []string{"flow.browse", "flow.comment", "dependency.secret-store.eastus", "dependency.store-write.eastus", "links", "component.edge"},
			leaves:  []string{"dependency.partner.eastus", "dependency.partner.northeurope", "dependency.partner.westeurope"},
		},
		{
			name: "partner slow, breaker half-open",
			set:  merge(eachRegion("probe.partner", 1), eachRegion("partner.breaker", 1)),
			want: merge(all("dependency.partner.", D), all("component.processor.", D),
				map[string]health.Status{"flow.checkout": D, "system": D}),
			healthy: []string{"flow.browse", "flow.comment", "links"},
			leaves:  []string{"dependency.partner.eastus", "dependency.partner.northeurope", "dependency.partner.westeurope"},
		},
		{
			name: "stamp eastus drained",
			set:  map[string]float64{region("stamp.drained", "eastus"): 1, region("stamp.routable_pops", "eastus"): 0},
			want: map[string]health.Status{
				"component.stamp.eastus": U, "region.eastus": U, "region.eastus.browse": U, "region.eastus.checkout": U,
				"regions": D, "regions.browse": D, "flow.browse": D, "flow.comment": D, "flow.checkout": D, "system": D,
			},
			reasons: map[string]string{"component.stamp.eastus": "drained (stamp.drained 1 >= 1)", "regions.checkout": "redundancy lost"},
			healthy: []string{"component.api.eastus", "component.processor.eastus", "region.westeurope", "component.stamp.westeurope", "links"},
			leaves:  []string{"component.stamp.eastus"},
		},
		{
			// One of eastus's two instances is lost: the region is
			// degraded (its redundancy), its flows are not.
			name: "an instance of eastus lost",
			set:  map[string]float64{region("stamp.capacity", "eastus"): 0.5},
			want: map[string]health.Status{"component.zones.eastus": D, "region.eastus": D, "regions": D, "system": D},
			reasons: map[string]string{
				"component.zones.eastus": "redundancy lost in the region (instances down) (stamp.capacity 0.5 <= 0.99)",
			},
			healthy: []string{"flow.browse", "flow.comment", "flow.checkout", "region.eastus.browse", "component.stamp.eastus", "region.westeurope"},
			leaves:  []string{"component.zones.eastus"},
		},
		{
			name: "region eastus lost",
			set:  map[string]float64{region("registry.age", "eastus"): 30, region("stamp.routable_pops", "eastus"): 0},
			silent: func(k string) bool {
				return strings.Contains(k, "region=eastus") || strings.Contains(k, "a=eastus") || strings.Contains(k, "b=eastus")
			},
			want: map[string]health.Status{
				// The registry's impact on the API is limited: the API shows
				// what it knows (nothing: unknown); the stamp's routing says
				// it is gone.
				"component.stamp.eastus": U, "dependency.registry.eastus": U, "component.api.eastus": X,
				"dependency.store-read.eastus": X, "component.health.eastus": X, "link.eastus.westeurope": X,
				"region.eastus": U, "regions": D, "flow.browse": D, "flow.comment": D, "flow.checkout": D, "links": D, "system": D,
			},
			reasons: map[string]string{
				"regions":                      "redundancy lost: 2 of 3 regions healthy",
				"dependency.store-read.eastus": "no reading of probe.store-read",
			},
			healthy: []string{"region.westeurope", "region.northeurope", "link.northeurope.westeurope", "component.edge", "dependency.order-stream"},
			leaves:  []string{"component.stamp.eastus", "dependency.registry.eastus"},
		},
		{
			name: "two regions of three drained",
			set: map[string]float64{region("stamp.drained", "eastus"): 1, region("stamp.routable_pops", "eastus"): 0,
				region("stamp.drained", "westeurope"): 1, region("stamp.routable_pops", "westeurope"): 0},
			want: map[string]health.Status{
				// The redundancy is gone (the system is unhealthy); the flows
				// are still served by the one region left.
				"regions": U, "regions.browse": D, "flow.browse": D, "flow.comment": D, "flow.checkout": D, "system": U,
			},
			reasons: map[string]string{"regions": "1 of 3 regions healthy, 2 needed; caused by region.eastus, region.westeurope"},
			healthy: []string{"region.northeurope", "links", "component.edge"},
			leaves:  []string{"component.stamp.eastus", "component.stamp.westeurope"},
		},
		{
			name:    "edge failing",
			set:     map[string]float64{"edge.error_ratio": 0.2},
			want:    map[string]health.Status{"component.edge": U, "flow.browse": U, "flow.comment": U, "flow.checkout": U, "system": U},
			healthy: []string{"regions", "links", "region.eastus", "regions.browse"},
			leaves:  []string{"component.edge"},
		},
		{
			name:    "edge errors without traffic to judge",
			raw:     map[string]Reading{"edge.error_ratio": {Value: 0.9, Traffic: 2}},
			want:    map[string]health.Status{"component.edge": H, "system": H},
			healthy: []string{"flow.browse"},
		},
		{
			name:    "order processing stalled",
			set:     map[string]float64{key("queue.age", Scope{"stream": "orders"}): 120},
			want:    map[string]health.Status{"dependency.order-stream": U, "flow.checkout": U, "system": U},
			reasons: map[string]string{"dependency.order-stream": "orders waiting (queue.age 120s >= 60s)"},
			healthy: []string{"flow.browse", "flow.comment", "dependency.comment-stream", "regions", "component.processor.eastus"},
			leaves:  []string{"dependency.order-stream"},
		},
		{
			name:    "health report of eastus not read",
			set:     map[string]float64{region("probe.age", "eastus"): 10},
			want:    map[string]health.Status{"component.health.eastus": U, "region.eastus": U, "regions": D, "system": D},
			healthy: []string{"flow.browse", "flow.comment", "flow.checkout", "region.eastus.browse", "component.api.eastus"},
			leaves:  []string{"component.health.eastus"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := healthyDefaultReadings(c, threeRegions)
			m := Default()
			e := mustEvaluator(t, m, r, func() []string { return threeRegions })
			var healthyTree func(n *Node)
			healthyTree = func(n *Node) {
				if n.State != health.Healthy {
					t.Errorf("before the fault: %s is %s (%q)", n.ID, n.State, n.Reason)
				}
				for _, ch := range n.Children {
					healthyTree(ch)
				}
			}
			healthyTree(e.Evaluate())

			if tc.silent != nil {
				r.removeIf(tc.silent)
			}
			for k, v := range tc.set {
				r.value(k, v)
			}
			for k, rd := range tc.raw {
				r.set(k, rd)
			}
			var root *Node
			for i := 1; i <= m.trip; i++ {
				c.Advance(m.Interval())
				root = e.Evaluate()
				if i < m.trip && root.State != health.Healthy {
					t.Fatalf("evaluation %d of %d after the fault: system %s (%q), want healthy until trip", i, m.trip, root.State, root.Reason)
				}
			}
			check := func(when string) {
				t.Helper()
				for id, want := range tc.want {
					if n := mustFind(t, root, id); n.State != want {
						t.Errorf("%s: %s is %s (%q), want %s", when, id, n.State, n.Reason, want)
					}
				}
				for id, want := range tc.reasons {
					if n := mustFind(t, root, id); !strings.Contains(n.Reason, want) {
						t.Errorf("%s: %s reason %q, want it to contain %q", when, id, n.Reason, want)
					}
				}
				for _, id := range tc.healthy {
					if n := mustFind(t, root, id); n.State != health.Healthy {
						t.Errorf("%s: unrelated %s is %s (%q)", when, id, n.State, n.Reason)
					}
				}
				if len(tc.leaves) > 0 {
					path := reasonPath(root)
					if end := path[len(path)-1]; !slices.Contains(tc.leaves, end) {
						t.Errorf("%s: reasons from the root lead to %s (%v), want one of %v", when, end, path, tc.leaves)
					}
				}
			}
			check("at trip")
			// The fault persists: the tree stays as it is.
			for range m.recover + 1 {
				c.Advance(m.Interval())
				root = e.Evaluate()
			}
			check("later")

			// The fault clears: healthy again after recover evaluations.
			for k, rd := range healthyDefaultReadings(c, threeRegions).m {
				r.set(k, rd)
			}
			for i := 1; i <= m.recover; i++ {
				c.Advance(m.Interval())
				root = e.Evaluate()
			}
			healthyTree(root)
		})
	}
}

func merge[V any](ms ...map[string]V) map[string]V {
	out := map[string]V{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}
