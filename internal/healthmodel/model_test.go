package healthmodel

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultModelLoads(t *testing.T) {
	m := Default()
	if m.Interval() <= 0 || m.Interval() > MaxInterval {
		t.Fatalf("interval = %s, want in (0, %s]", m.Interval(), MaxInterval)
	}
	if m.root.id != "system" {
		t.Fatalf("root = %q, want system", m.root.id)
	}
	// The signal names are a contract with the Source that feeds the model.
	want := map[string][]string{
		"component.stamp.{region}":         {"stamp.drained", "stamp.routable_pops"},
		"component.zones.{region}":         {"stamp.capacity"},
		"component.api.{region}":           {"http.error_ratio", "http.p99", "http.write_p99"},
		"component.processor.{region}":     {"probe.async-path"},
		"component.health.{region}":        {"probe.age"},
		"dependency.store-read.{region}":   {"probe.store-read"},
		"dependency.store-write.{region}":  {"probe.store-write"},
		"dependency.streams.{region}":      {"probe.stream-publish"},
		"dependency.secret-store.{region}": {"probe.secret-store"},
		"dependency.partner.{region}":      {"probe.partner", "partner.breaker"},
		"dependency.registry.{region}":     {"registry.age"},
		"dependency.read-model.{region}":   {"probe.read-model"},
		"link.{a}.{b}":                     {"link.probe_failed", "link.rtt_excess"},
		"component.edge":                   {"edge.error_ratio", "edge.p99"},
		"dependency.order-stream":          {"queue.age"},
		"dependency.comment-stream":        {"queue.age"},
	}
	for id, names := range want {
		e := m.byID[id]
		if e == nil {
			t.Errorf("default model has no entity %q", id)
			continue
		}
		var got []string
		for _, s := range e.signals {
			got = append(got, s.name)
		}
		if !slices.Equal(got, names) {
			t.Errorf("%s signals = %v, want %v", id, got, names)
		}
	}
	for id, stream := range map[string]string{"dependency.order-stream": "orders", "dependency.comment-stream": "comments"} {
		if got := m.byID[id].signals[0].scope["stream"]; got != stream {
			t.Errorf("%s queue.age scope stream = %q, want %q", id, got, stream)
		}
	}
	stamp := m.byID["component.stamp.{region}"]
	if s := stamp.signals[1]; !s.below || s.unhealthy != 0 {
		t.Errorf("stamp.routable_pops = below %v unhealthy %g, want below, unhealthy 0", s.below, s.unhealthy)
	}
}

func TestLoadModelDefaultsAndTemplates(t *testing.T) {
	m, err := Load([]byte(`
entities:
  - id: root
    kind: system
    children: [{each: region, ref: "r.{region}"}, {each: link, ref: "l.{a}.{b}"}]
  - id: "r.{region}"
    name: "Region {region}"
    kind: region
    per: region
    signals: [{name: s, scope: {zone: "{region}-1"}, unhealthy: 1, max_age: 1s}]
  - id: "l.{a}.{b}"
    kind: dependency
    per: link
    signals: [{name: rtt, below: true, degraded: 5, unhealthy: 1, max_age: 1s}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if m.interval != DefaultInterval || m.trip != DefaultTrip || m.recover != DefaultRecover {
		t.Fatalf("defaults = %s %d %d, want %s %d %d", m.interval, m.trip, m.recover, DefaultInterval, DefaultTrip, DefaultRecover)
	}
	r := m.byID["r.{region}"]
	if r.rollup.kind != rollupWorst || r.signals[0].degraded != 1 {
		t.Fatalf("omitted rollup = %q, omitted degraded = %g; want worst and the unhealthy threshold", r.rollup.kind, r.signals[0].degraded)
	}
	if m.root.noun != "children" {
		t.Fatalf("noun of a mixed parent = %q", m.root.noun)
	}
}

func TestLoadModelErrors(t *testing.T) {
	// leaf is a valid leaf entity for the cases to reference.
	const leaf = `
  - id: leaf
    kind: dependency
    signals: [{name: s, degraded: 1, unhealthy: 2, max_age: 5s}]
`
	const root = `
  - id: root
    kind: system
    children: [{ref: leaf}]
`
	for _, tc := range []struct {
		name string
		yaml string
		want []string // every one must appear in the error
	}{
		{"empty file", ``, []string{"empty"}},
		{"no entities", "evaluation: {interval: 1s}\n", []string{"no entities"}},
		{"duplicate id", "entities:" + root + leaf + leaf, []string{`entity "leaf"`, "duplicate id"}},
		{"missing id", "entities:" + root + leaf + "\n  - kind: group\n    children: [{ref: leaf}]\n", []string{"entity #3", "id is required"}},
		{"unknown ref", "entities:" + leaf + `
  - id: root
    kind: system
    children: [{ref: leaf}, {ref: nowhere}]
`, []string{`entity "root"`, `child "nowhere"`, "unknown ref"}},
		{"cycle", "entities:" + root + `
  - id: leaf
    kind: group
    children: [{ref: a}]
  - id: a
    kind: group
    children: [{ref: b}]
  - id: b
    kind: group
    children: [{ref: a}]
`, []string{`entity "a"`, "cycle a -> b -> a"}},
		{"self reference", "entities:" + root + `
  - id: leaf
    kind: group
    children: [{ref: leaf}]
`, []string{`entity "leaf"`, "cycle leaf -> leaf"}},
		{"thresholds out of order", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, degraded: 3, unhealthy: 2, max_age: 5s}]
`, []string{`entity "leaf"`, `signal "s"`, "degraded 3 > unhealthy 2"}},
		{"below thresholds out of order", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, below: true, degraded: 1, unhealthy: 2, max_age: 5s}]
`, []string{`entity "leaf"`, `signal "s"`, "degraded 1 < unhealthy 2"}},
		{"no unhealthy threshold", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, degraded: 1, max_age: 5s}]
`, []string{`entity "leaf"`, `signal "s"`, "unhealthy threshold is required"}},
		{"infinite threshold", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, unhealthy: .inf, max_age: 5s}]
`, []string{`entity "leaf"`, "finite"}},
		{"negative min_traffic", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, unhealthy: 1, min_traffic: -1, max_age: 5s}]
`, []string{`entity "leaf"`, "min_traffic -1"}},
		{"interval over 5s", "evaluation: {interval: 6s}\nentities:" + root + leaf, []string{"interval 6s", "at most 5s"}},
		{"interval not a duration", "evaluation: {interval: soon}\nentities:" + root + leaf, []string{`interval "soon"`}},
		{"trip zero", "evaluation: {trip: 0}\nentities:" + root + leaf, []string{"trip 0 must be at least 1"}},
		{"recover negative", "evaluation: {recover: -2}\nentities:" + root + leaf, []string{"recover -2 must be at least 1"}},
		{"bad max_age", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, unhealthy: 1, max_age: 5 minutes}]
`, []string{`entity "leaf"`, `signal "s"`, `max_age "5 minutes"`}},
		{"missing max_age", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, unhealthy: 1}]
`, []string{`entity "leaf"`, `signal "s"`, "max_age is required"}},
		{"signal listed twice", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, unhealthy: 1, max_age: 1s}, {name: s, unhealthy: 2, max_age: 1s}]
`, []string{`entity "leaf"`, `signal "s" is listed twice`}},
		{"unknown rollup", "entities:" + leaf + `
  - id: root
    kind: system
    rollup: best
    children: [{ref: leaf}]
`, []string{`entity "root"`, `rollup "best"`}},
		{"unknown rollup mapping", "entities:" + leaf + `
  - id: root
    kind: system
    rollup: {majority: {}}
    children: [{ref: leaf}]
`, []string{`entity "root"`, "rollup must be worst or {k_of_n"}},
		{"k_of_n without k", "entities:" + leaf + `
  - id: root
    kind: system
    rollup: {k_of_n: {reason: lost}}
    children: [{ref: leaf}]
`, []string{`entity "root"`, "exactly one of healthy_at_least and tolerate"}},
		{"k_of_n with both", "entities:" + leaf + `
  - id: root
    kind: system
    rollup: {k_of_n: {healthy_at_least: 2, tolerate: 1}}
    children: [{ref: leaf}]
`, []string{`entity "root"`, "exactly one of"}},
		{"k_of_n unknown field", "entities:" + leaf + `
  - id: root
    kind: system
    rollup: {k_of_n: {tolerate: 1, quorum: 2}}
    children: [{ref: leaf}]
`, []string{`entity "root"`, `unknown field "quorum"`}},
		{"k_of_n not a number", "entities:" + leaf + `
  - id: root
    kind: system
    rollup: {k_of_n: {healthy_at_least: two}}
    children: [{ref: leaf}]
`, []string{`entity "root"`, `healthy_at_least "two"`}},
		{"unknown impact", "entities:" + leaf + `
  - id: root
    kind: system
    children: [{ref: leaf, impact: partial}]
`, []string{`entity "root"`, `child "leaf"`, `impact "partial"`}},
		{"unknown each", "entities:" + leaf + `
  - id: root
    kind: system
    children: [{ref: leaf, each: zone}]
`, []string{`entity "root"`, `each "zone"`}},
		{"unknown kind", "entities:" + root + `
  - id: leaf
    kind: database
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "leaf"`, `kind "database"`}},
		{"unknown per", "entities:" + root + `
  - id: leaf
    kind: dependency
    per: zone
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "leaf"`, `per "zone"`}},
		{"neither signals nor children", "entities:" + root + `
  - id: leaf
    kind: dependency
`, []string{`entity "leaf"`, "neither signals nor children"}},
		{"per region without the placeholder", "entities:" + `
  - id: root
    kind: system
    children: [{ref: leaf, each: region}]
  - id: leaf
    kind: dependency
    per: region
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "leaf"`, "must have {region} in its id"}},
		{"placeholder in a global id", "entities:" + `
  - id: root
    kind: system
    children: [{ref: "leaf.{region}"}]
  - id: "leaf.{region}"
    kind: dependency
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "leaf.{region}"`, "uses {region} but the entity has no per"}},
		{"wrong placeholder", "entities:" + `
  - id: root
    kind: system
    children: [{ref: "leaf.{regoin}", each: region}]
  - id: "leaf.{regoin}"
    kind: dependency
    per: region
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "leaf.{regoin}"`, "uses {regoin}"}},
		{"unbalanced brace", "entities:" + `
  - id: root
    kind: system
    children: [{ref: "leaf.{region", each: region}]
  - id: "leaf.{region"
    kind: dependency
    per: region
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "leaf.{region"`, "unbalanced {"}},
		{"per-region child without each", "entities:" + `
  - id: root
    kind: system
    children: [{ref: "leaf.{region}"}]
  - id: "leaf.{region}"
    kind: dependency
    per: region
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "root"`, `child "leaf.{region}" is per region: add each: region`}},
		{"each region over a global entity", "entities:" + leaf + `
  - id: root
    kind: system
    children: [{ref: leaf, each: region}]
`, []string{`entity "root"`, "each: region needs an entity per region"}},
		{"child listed twice", "entities:" + leaf + `
  - id: root
    kind: system
    children: [{ref: leaf}, {ref: leaf, impact: limited}]
`, []string{`entity "root"`, `child "leaf" is listed twice`}},
		{"two roots", "entities:" + root + leaf + `
  - id: orphan
    kind: dependency
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`"root" "orphan"`, "exactly one root"}},
		{"per-region root", "entities:" + `
  - id: "root.{region}"
    kind: system
    per: region
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "root.{region}"`, "root cannot be per region"}},
		{"k_of_n with signals", "entities:" + leaf + `
  - id: root
    kind: system
    rollup: {k_of_n: {tolerate: 1}}
    children: [{ref: leaf}]
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`, []string{`entity "root"`, "k_of_n entity cannot have signals"}},
		{"unknown field", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, unhealthy: 1, max_age: 1s, degraded_at: 3}]
`, []string{`entity "leaf"`, "field degraded_at not found"}},
		{"wrong type", "entities:" + root + `
  - id: leaf
    kind: dependency
    signals: [{name: s, unhealthy: high, max_age: 1s}]
`, []string{`entity "leaf"`, "cannot unmarshal"}},
		{"not yaml", "entities: [", []string{"health model"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Load succeeded (root %q), want an error with %q", m.root.id, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Loading reports every problem at once, so a model can be fixed in one go.
func TestLoadModelReportsAllProblems(t *testing.T) {
	_, err := Load([]byte(`
entities:
  - id: root
    kind: system
    children: [{ref: a, impact: partial}, {ref: b}]
  - id: a
    kind: dependency
    signals: [{name: s, degraded: 5, unhealthy: 1, max_age: 1s}]
`))
	if err == nil {
		t.Fatal("Load succeeded")
	}
	for _, w := range []string{`impact "partial"`, `child "b": unknown ref`, "degraded 5 > unhealthy 1"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestLoadModelAcceptsEvaluationLimits(t *testing.T) {
	m, err := Load([]byte(`
evaluation: {interval: 5s, trip: 1, recover: 1}
entities:
  - id: leaf
    kind: dependency
    signals: [{name: s, unhealthy: 1, max_age: 1s}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Interval() != 5*time.Second || m.root.id != "leaf" {
		t.Fatalf("interval %s root %q", m.Interval(), m.root.id)
	}
}

// WithInterval changes how often the model is evaluated and nothing else:
// the copy keeps the entities and the trip and recover counts, the model
// it came from keeps its interval, and an interval the file format refuses
// is refused here too.
func TestWithIntervalChangesOnlyTheInterval(t *testing.T) {
	m := Default()
	fast, err := m.WithInterval(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if fast.Interval() != time.Second || m.Interval() != DefaultInterval {
		t.Fatalf("intervals: copy %s, original %s; want 1s and %s", fast.Interval(), m.Interval(), DefaultInterval)
	}
	if fast.trip != m.trip || fast.recover != m.recover || fast.root != m.root || len(fast.entities) != len(m.entities) {
		t.Fatalf("the copy changed more than the interval: trip %d/%d recover %d/%d", fast.trip, m.trip, fast.recover, m.recover)
	}
	for _, d := range []time.Duration{0, -time.Second, MaxInterval + time.Millisecond} {
		if _, err := m.WithInterval(d); err == nil {
			t.Errorf("WithInterval(%s) accepted", d)
		}
	}
}
