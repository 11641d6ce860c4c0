// Package healthmodel evaluates the deployment's layered health model: user
// flows, components and dependencies declared in YAML (model.go, the
// embedded model.yaml), judged from signals every few seconds with
// hysteresis and roll-ups (evaluate.go), so that an operator can follow the
// reasons from the root to the broken dependency. docs/health-model.md
// describes the file format and the evaluation.
//
// Its states are health.Status, the vocabulary the stamps' prober, the edge
// and the dashboard share; it imports internal/health for that type only,
// and nothing else of ours. The prober (internal/health) knows nothing of
// the model: the composition root turns the stamps' reports into signals.
package healthmodel

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxInterval is the longest evaluation interval a model may ask for.
const MaxInterval = 5 * time.Second

// Defaults for the evaluation block of a model file.
const (
	DefaultInterval = 2 * time.Second
	DefaultTrip     = 2
	DefaultRecover  = 3
)

// Entity kinds, rollups, impacts and expansions a model file may use.
const (
	ImpactStandard   = "standard"   // the child's state passes through
	ImpactLimited    = "limited"    // the child makes its parent at most degraded
	ImpactSuppressed = "suppressed" // the child is shown but ignored

	rollupWorst = "worst"
	rollupKOfN  = "k_of_n"

	perRegion = "region"
	perLink   = "link"
)

var kinds = []string{"system", "flow", "group", "region", "component", "dependency"}

// placeholders lists the template variables an entity id carries, by its
// per: value.
var placeholders = map[string][]string{
	"":        nil,
	perRegion: {"region"},
	perLink:   {"a", "b"},
}

//go:embed model.yaml
var defaultModelYAML []byte

// Model is a validated health model: a tree of entities whose leaves read
// signals and whose parents roll up their children. A Model is immutable and
// safe to share between evaluators.
type Model struct {
	interval time.Duration
	trip     int
	recover  int
	root     *entity
	entities []*entity // in file order
	byID     map[string]*entity
	perUsed  bool // some entity is per region or per link
}

// Interval is how often an Evaluator's Run evaluates the model.
func (m *Model) Interval() time.Duration { return m.interval }

// WithInterval returns the model evaluated every d instead, with the
// same entities and the same trip and recover counts (so a state shows
// and clears after as many evaluations, in proportion sooner or later).
func (m *Model) WithInterval(d time.Duration) (*Model, error) {
	if d <= 0 || d > MaxInterval {
		return nil, fmt.Errorf("health model: interval %s must be more than 0 and at most %s", d, MaxInterval)
	}
	c := *m
	c.interval = d
	return &c, nil
}

// entity is one entry of the model, possibly a template instantiated once
// per region or per link.
type entity struct {
	id       string // may hold {region}, or {a} and {b}
	name     string // may hold the same placeholders; defaults to id
	kind     string
	per      string // "", perRegion or perLink
	rollup   rollup
	children []child
	signals  []signal
	noun     string // how k-of-n reasons count the children: "regions", "links" or "children"
}

type child struct {
	ent    *entity
	impact string
	each   string // "", perRegion or perLink
}

type rollup struct {
	kind string // rollupWorst or rollupKOfN
	// For k-of-n, exactly one of atLeast (> 0) and tolerate (>= 0, with
	// byTolerate set) applies.
	atLeast    int
	tolerate   int
	byTolerate bool
	reason     string
}

type signal struct {
	name       string
	scope      map[string]string // extra scope entries; values may hold placeholders
	degraded   float64
	unhealthy  float64
	maxAge     time.Duration
	minTraffic float64
	below      bool
	unit       string
	reason     string // what it means when the signal is not healthy; may be empty
}

// Default returns the model embedded in the package (model.yaml). It
// panics only if that file is invalid, which a test rules out.
func Default() *Model {
	m, err := Load(defaultModelYAML)
	if err != nil {
		panic(fmt.Sprintf("health model: embedded model.yaml: %v", err))
	}
	return m
}

// The file format, decoded strictly (unknown fields are errors). Durations
// and rollups are kept raw and interpreted during validation so that errors
// can name the entity.
type fileModel struct {
	Evaluation fileEvaluation `yaml:"evaluation"`
	Entities   []fileEntity   `yaml:"entities"`
}

type fileEvaluation struct {
	Interval string `yaml:"interval"`
	Trip     *int   `yaml:"trip"`
	Recover  *int   `yaml:"recover"`
}

type fileEntity struct {
	ID       string       `yaml:"id"`
	Name     string       `yaml:"name"`
	Kind     string       `yaml:"kind"`
	Per      string       `yaml:"per"`
	Rollup   yaml.Node    `yaml:"rollup"`
	Children []fileChild  `yaml:"children"`
	Signals  []fileSignal `yaml:"signals"`
}

type fileChild struct {
	Ref    string `yaml:"ref"`
	Each   string `yaml:"each"`
	Impact string `yaml:"impact"`
}

type fileSignal struct {
	Name       string            `yaml:"name"`
	Scope      map[string]string `yaml:"scope"`
	Degraded   *float64          `yaml:"degraded"`
	Unhealthy  *float64          `yaml:"unhealthy"`
	MaxAge     string            `yaml:"max_age"`
	MinTraffic float64           `yaml:"min_traffic"`
	Below      bool              `yaml:"below"`
	Unit       string            `yaml:"unit"`
	Reason     string            `yaml:"reason"`
}

// Load parses and validates a model file (the format is described in
// docs/health-model.md). It reports every problem it finds, each naming the
// entity: unknown fields, duplicate ids, references that resolve to no
// entity, cycles, more or less than one root, thresholds out of order,
// missing or bad durations, an interval over MaxInterval, unknown kinds,
// rollups, impacts and expansions, and placeholders that do not match per.
func Load(data []byte) (*Model, error) {
	var f fileModel
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("health model: the file is empty")
		}
		if te, ok := errors.AsType[*yaml.TypeError](err); ok {
			return nil, attributeTypeErrors(data, te)
		}
		return nil, fmt.Errorf("health model: %w", err)
	}
	c := &compiler{}
	m := c.compile(&f)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return m, nil
}

// attributeTypeErrors rewrites the decoder's "line N: ..." messages to name
// the entity that starts at or before line N.
func attributeTypeErrors(data []byte, te *yaml.TypeError) error {
	type start struct {
		line int
		id   string
	}
	var starts []start
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) == 1 {
		if ents := mapValue(doc.Content[0], "entities"); ents != nil && ents.Kind == yaml.SequenceNode {
			for _, e := range ents.Content {
				id := ""
				if v := mapValue(e, "id"); v != nil {
					id = v.Value
				}
				starts = append(starts, start{e.Line, id})
			}
		}
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		prefix := "health model: "
		var line int
		if _, err := fmt.Sscanf(msg, "line %d:", &line); err == nil {
			for _, s := range starts {
				if s.line <= line {
					prefix = fmt.Sprintf("health model: entity %q: ", s.id)
				}
			}
		}
		errs = append(errs, errors.New(prefix+msg))
	}
	return errors.Join(errs...)
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

type compiler struct {
	errs []error
}

func (c *compiler) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("health model: "+format, args...))
}

func (c *compiler) compile(f *fileModel) *Model {
	m := &Model{interval: DefaultInterval, trip: DefaultTrip, recover: DefaultRecover, byID: map[string]*entity{}}
	c.evaluation(m, f.Evaluation)
	if len(f.Entities) == 0 {
		c.errorf("no entities")
		return nil
	}
	// First pass: ids, so that references can resolve in any order.
	for i := range f.Entities {
		fe := &f.Entities[i]
		if fe.ID == "" {
			c.errorf("entity #%d: id is required", i+1)
			continue
		}
		if _, dup := m.byID[fe.ID]; dup {
			c.errorf("entity %q: duplicate id", fe.ID)
			continue
		}
		e := &entity{id: fe.ID, per: fe.Per}
		m.byID[fe.ID] = e
		m.entities = append(m.entities, e)
	}
	compiled := map[*entity]bool{}
	for i := range f.Entities {
		fe := &f.Entities[i]
		if e := m.byID[fe.ID]; e != nil && !compiled[e] {
			compiled[e] = true // the first of duplicates
			c.entity(m, e, fe)
		}
	}
	if len(c.errs) > 0 {
		return nil
	}
	c.cycles(m)
	if len(c.errs) > 0 {
		return nil
	}
	c.root(m)
	return m
}

func (c *compiler) evaluation(m *Model, fe fileEvaluation) {
	if fe.Interval != "" {
		d, err := time.ParseDuration(fe.Interval)
		switch {
		case err != nil:
			c.errorf("evaluation: interval %q is not a duration (like 2s)", fe.Interval)
		case d <= 0 || d > MaxInterval:
			c.errorf("evaluation: interval %s must be more than 0 and at most %s", d, MaxInterval)
		default:
			m.interval = d
		}
	}
	if fe.Trip != nil {
		if *fe.Trip < 1 {
			c.errorf("evaluation: trip %d must be at least 1", *fe.Trip)
		}
		m.trip = *fe.Trip
	}
	if fe.Recover != nil {
		if *fe.Recover < 1 {
			c.errorf("evaluation: recover %d must be at least 1", *fe.Recover)
		}
		m.recover = *fe.Recover
	}
}

func (c *compiler) entity(m *Model, e *entity, fe *fileEntity) {
	e.kind = fe.Kind
	if !slices.Contains(kinds, fe.Kind) {
		c.errorf("entity %q: kind %q is not one of %s", e.id, fe.Kind, strings.Join(kinds, ", "))
	}
	vars, ok := placeholders[fe.Per]
	if !ok {
		c.errorf("entity %q: per %q is not region or link", e.id, fe.Per)
		return
	}
	c.template(e.id, "id", e.id, vars, true)
	e.name = fe.Name
	if e.name == "" {
		e.name = e.id
	}
	c.template(e.id, "name", e.name, vars, false)
	e.rollup = c.rollup(e.id, &fe.Rollup)
	if len(fe.Children) == 0 && len(fe.Signals) == 0 {
		c.errorf("entity %q: has neither signals nor children", e.id)
	}
	if len(fe.Children) > 0 && e.rollup.kind == rollupKOfN && len(fe.Signals) > 0 {
		c.errorf("entity %q: a k_of_n entity cannot have signals of its own", e.id)
	}
	seen := map[string]bool{}
	for _, fc := range fe.Children {
		if ch, ok := c.child(m, e, fc); ok {
			key := ch.each + "/" + ch.ent.id
			if seen[key] {
				c.errorf("entity %q: child %q is listed twice", e.id, fc.Ref)
				continue
			}
			seen[key] = true
			e.children = append(e.children, ch)
		}
	}
	e.noun = "children"
	if len(e.children) > 0 {
		each := e.children[0].each
		if each != "" && !slices.ContainsFunc(e.children, func(ch child) bool { return ch.each != each }) {
			e.noun = each + "s"
		}
	}
	names := map[string]bool{}
	for _, fs := range fe.Signals {
		if s, ok := c.signal(e, vars, fs); ok {
			if names[s.name] {
				c.errorf("entity %q: signal %q is listed twice", e.id, s.name)
				continue
			}
			names[s.name] = true
			e.signals = append(e.signals, s)
		}
	}
	if e.per != "" {
		m.perUsed = true
	}
}

// template checks that s uses only the placeholders in vars, and all of
// them when exact is set.
func (c *compiler) template(id, field, s string, vars []string, exact bool) {
	used, err := templateVars(s)
	if err != nil {
		c.errorf("entity %q: %s %q: %v", id, field, s, err)
		return
	}
	for _, u := range used {
		if !slices.Contains(vars, u) {
			if len(vars) == 0 {
				c.errorf("entity %q: %s uses {%s} but the entity has no per:", id, field, u)
			} else {
				c.errorf("entity %q: %s uses {%s}; an entity per %s may use only %s", id, field, u, perOf(vars), braced(vars))
			}
		}
	}
	if exact {
		for _, v := range vars {
			if !slices.Contains(used, v) {
				c.errorf("entity %q: an entity per %s must have {%s} in its id", id, perOf(vars), v)
			}
		}
	}
}

func perOf(vars []string) string {
	if slices.Equal(vars, placeholders[perLink]) {
		return perLink
	}
	return perRegion
}

func braced(vars []string) string {
	out := make([]string, len(vars))
	for i, v := range vars {
		out[i] = "{" + v + "}"
	}
	return strings.Join(out, " and ")
}

// templateVars returns the {name} placeholders in s.
func templateVars(s string) ([]string, error) {
	var vars []string
	for {
		i := strings.IndexAny(s, "{}")
		if i < 0 {
			return vars, nil
		}
		if s[i] == '}' {
			return nil, errors.New("unbalanced }")
		}
		j := strings.IndexAny(s[i+1:], "{}")
		if j < 0 || s[i+1+j] == '{' {
			return nil, errors.New("unbalanced {")
		}
		name := s[i+1 : i+1+j]
		if name == "" {
			return nil, errors.New("empty placeholder {}")
		}
		if !slices.Contains(vars, name) {
			vars = append(vars, name)
		}
		s = s[i+j+2:]
	}
}

func (c *compiler) rollup(id string, n *yaml.Node) rollup {
	r := rollup{kind: rollupWorst}
	switch n.Kind {
	case 0:
		return r
	case yaml.ScalarNode:
		if n.Value != rollupWorst {
			c.errorf("entity %q: rollup %q is not worst or {k_of_n: ...}", id, n.Value)
		}
		return r
	case yaml.MappingNode:
	default:
		c.errorf("entity %q: rollup must be worst or {k_of_n: ...}", id)
		return r
	}
	if len(n.Content) != 2 || n.Content[0].Value != rollupKOfN {
		c.errorf("entity %q: rollup must be worst or {k_of_n: ...}", id)
		return r
	}
	r.kind = rollupKOfN
	r.reason = "redundancy lost"
	k := n.Content[1]
	if k.Kind != yaml.MappingNode {
		c.errorf("entity %q: k_of_n needs healthy_at_least or tolerate", id)
		return r
	}
	var hasAtLeast bool
	for i := 0; i+1 < len(k.Content); i += 2 {
		key, val := k.Content[i].Value, k.Content[i+1]
		switch key {
		case "healthy_at_least", "tolerate":
			v, err := strconv.Atoi(val.Value)
			if err != nil || val.Kind != yaml.ScalarNode {
				c.errorf("entity %q: k_of_n %s %q is not a whole number", id, key, val.Value)
				continue
			}
			if key == "tolerate" {
				if v < 0 {
					c.errorf("entity %q: k_of_n tolerate %d must not be negative", id, v)
				}
				r.tolerate, r.byTolerate = v, true
			} else {
				if v < 1 {
					c.errorf("entity %q: k_of_n healthy_at_least %d must be at least 1", id, v)
				}
				r.atLeast, hasAtLeast = v, true
			}
		case "reason":
			r.reason = val.Value
		default:
			c.errorf("entity %q: k_of_n has unknown field %q (want healthy_at_least, tolerate, reason)", id, key)
		}
	}
	if hasAtLeast == r.byTolerate {
		c.errorf("entity %q: k_of_n needs exactly one of healthy_at_least and tolerate", id)
	}
	return r
}

func (c *compiler) child(m *Model, parent *entity, fc fileChild) (child, bool) {
	ch := child{impact: fc.Impact, each: fc.Each}
	if ch.impact == "" {
		ch.impact = ImpactStandard
	}
	ok := true
	switch ch.impact {
	case ImpactStandard, ImpactLimited, ImpactSuppressed:
	default:
		c.errorf("entity %q: child %q: impact %q is not standard, limited or suppressed", parent.id, fc.Ref, fc.Impact)
		ok = false
	}
	if ch.each != "" && ch.each != perRegion && ch.each != perLink {
		c.errorf("entity %q: child %q: each %q is not region or link", parent.id, fc.Ref, fc.Each)
		return ch, false
	}
	target := m.byID[fc.Ref]
	if target == nil {
		if fc.Ref == "" {
			c.errorf("entity %q: a child has no ref", parent.id)
		} else {
			c.errorf("entity %q: child %q: unknown ref (no entity has that id)", parent.id, fc.Ref)
		}
		return ch, false
	}
	ch.ent = target
	tper := target.per
	if _, valid := placeholders[tper]; !valid {
		return ch, false // reported with the target
	}
	switch {
	case ch.each != "" && tper != ch.each:
		c.errorf("entity %q: child %q: each: %s needs an entity per %s", parent.id, fc.Ref, ch.each, ch.each)
		ok = false
	case ch.each == "" && tper != "" && tper != parent.per:
		c.errorf("entity %q: child %q is per %s: add each: %s", parent.id, fc.Ref, tper, tper)
		ok = false
	}
	return ch, ok
}

func (c *compiler) signal(e *entity, vars []string, fs fileSignal) (signal, bool) {
	s := signal{name: fs.Name, scope: fs.Scope, minTraffic: fs.MinTraffic, below: fs.Below, unit: fs.Unit, reason: fs.Reason}
	where := fmt.Sprintf("entity %q: signal %q", e.id, fs.Name)
	if fs.Name == "" {
		c.errorf("entity %q: a signal has no name", e.id)
		return s, false
	}
	n := len(c.errs)
	for k, v := range fs.Scope {
		if k == "" {
			c.errorf("%s: scope has an empty key", where)
		}
		c.template(e.id, "signal "+strconv.Quote(fs.Name)+" scope "+k, v, vars, false)
	}
	if fs.Unhealthy == nil {
		c.errorf("%s: unhealthy threshold is required", where)
	} else {
		s.unhealthy = *fs.Unhealthy
	}
	s.degraded = s.unhealthy
	if fs.Degraded != nil {
		s.degraded = *fs.Degraded
	}
	if !finite(s.degraded) || !finite(s.unhealthy) || !finite(s.minTraffic) {
		c.errorf("%s: thresholds and min_traffic must be finite numbers", where)
	}
	switch {
	case !s.below && s.degraded > s.unhealthy:
		c.errorf("%s: degraded %g > unhealthy %g; thresholds must be ordered (degraded <= unhealthy, or set below: true)", where, s.degraded, s.unhealthy)
	case s.below && s.degraded < s.unhealthy:
		c.errorf("%s: degraded %g < unhealthy %g; with below: true, degraded must be >= unhealthy", where, s.degraded, s.unhealthy)
	}
	if s.minTraffic < 0 {
		c.errorf("%s: min_traffic %g must not be negative", where, s.minTraffic)
	}
	if fs.MaxAge == "" {
		c.errorf("%s: max_age is required (the dead-man's switch)", where)
	} else if d, err := time.ParseDuration(fs.MaxAge); err != nil {
		c.errorf("%s: max_age %q is not a duration (like 5s)", where, fs.MaxAge)
	} else if d <= 0 {
		c.errorf("%s: max_age %s must be positive", where, d)
	} else {
		s.maxAge = d
	}
	return s, len(c.errs) == n
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// cycles reports every reference cycle, naming its entities in order.
func (c *compiler) cycles(m *Model) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[*entity]int{}
	var path []*entity
	var visit func(e *entity)
	visit = func(e *entity) {
		state[e] = visiting
		path = append(path, e)
		for _, ch := range e.children {
			switch state[ch.ent] {
			case visiting:
				i := slices.Index(path, ch.ent)
				ids := make([]string, 0, len(path)-i+1)
				for _, p := range path[i:] {
					ids = append(ids, p.id)
				}
				ids = append(ids, ch.ent.id)
				c.errorf("entity %q: cycle %s", ch.ent.id, strings.Join(ids, " -> "))
			case unvisited:
				visit(ch.ent)
			}
		}
		path = path[:len(path)-1]
		state[e] = done
	}
	for _, e := range m.entities {
		if state[e] == unvisited {
			visit(e)
		}
	}
}

// root finds the one entity no other entity references.
func (c *compiler) root(m *Model) {
	referenced := map[*entity]bool{}
	for _, e := range m.entities {
		for _, ch := range e.children {
			referenced[ch.ent] = true
		}
	}
	var roots []string
	for _, e := range m.entities {
		if !referenced[e] {
			roots = append(roots, e.id)
			if m.root == nil {
				m.root = e
			}
		}
	}
	switch {
	case len(roots) > 1:
		c.errorf("entities %q are referenced by no other entity; a model has exactly one root", roots)
	case m.root != nil && m.root.per != "":
		c.errorf("entity %q: the root cannot be per %s", m.root.id, m.root.per)
	}
}
