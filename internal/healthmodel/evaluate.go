package healthmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contoso/shoes/internal/health"
)

// Scope says which instance of a signal a Source is asked for: "region" for
// per-region entities, "a" and "b" for per-link entities, plus the signal's
// own scope entries from the model (such as "stream"). It is empty for
// global entities. A Source owns the map it is given.
type Scope map[string]string

// Reading is the latest value of one signal.
type Reading struct {
	Value float64
	// At is when the value was measured; a reading older than the signal's
	// max_age is stale and makes the signal unknown.
	At time.Time
	// Traffic is how much traffic the value is based on (for example the
	// requests in the measuring window), compared with min_traffic.
	Traffic float64
}

// Source supplies signal readings. Signal returns false when it has no
// reading, which makes the signal unknown. It is called from the goroutine
// that evaluates, once per signal per evaluation, and must not block.
type Source interface {
	Signal(name string, scope Scope) (Reading, bool)
}

// SourceFunc adapts a function to a Source.
type SourceFunc func(name string, scope Scope) (Reading, bool)

// Signal calls f.
func (f SourceFunc) Signal(name string, scope Scope) (Reading, bool) { return f(name, scope) }

// Node is one evaluated entity; the tree of Nodes is what /ops/health
// serves. The field names are a contract with the dashboard. A Node returned
// by the Evaluator is shared: treat it as read-only.
type Node struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Kind   string `json:"kind"` // system | flow | group | region | component | dependency
	Region string `json:"region,omitempty"`
	// State is healthy, degraded, unhealthy or unknown, after hysteresis.
	// A signal with no reading, or with one older than its max_age (the
	// dead-man's switch), is unknown, and an entity is as bad as its worst
	// signal; unknown shows on that entity and rolls up into parents as
	// degraded (health.Status.RollUp).
	State health.Status `json:"state"`
	Score float64       `json:"score"`
	// Reason says why the node is in its state. A parent's reason names the
	// children that caused it, so following reasons from the root leads to
	// the root cause.
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"` // when State last changed
	// Impact is how this node affects its parent: standard, limited or
	// suppressed. Empty on the root.
	Impact      string        `json:"impact,omitempty"`
	Signals     []SignalValue `json:"signals,omitempty"`
	Children    []*Node       `json:"children,omitempty"`
	EvaluatedAt time.Time     `json:"evaluatedAt"`
}

// SignalValue is one signal of a Node as read in the evaluation: its raw
// state, before the hysteresis that the Node's State has been through.
type SignalValue struct {
	Name      string        `json:"name"`
	Value     float64       `json:"value"` // 0 when there is no reading
	State     health.Status `json:"state"`
	Degraded  float64       `json:"degraded"`
	Unhealthy float64       `json:"unhealthy"`
	AgeMs     float64       `json:"ageMs"` // age of the reading; 0 when there is none
	Reason    string        `json:"reason"`
}

// Find returns the first node with the given id in a depth-first search of
// the tree under n (n included), or nil.
func (n *Node) Find(id string) *Node {
	if n == nil {
		return nil
	}
	if n.ID == id {
		return n
	}
	for _, c := range n.Children {
		if f := c.Find(id); f != nil {
			return f
		}
	}
	return nil
}

// Score maps a state to the score a Node carries: 1 healthy, 0.75 degraded
// or unknown (unknown counts as degraded, as in a roll-up), 0.5 unhealthy.
func Score(s health.Status) float64 {
	switch s.RollUp() {
	case health.Healthy:
		return 1
	case health.Degraded:
		return 0.75
	default:
		return 0.5
	}
}

// EvaluatorConfig configures an Evaluator.
type EvaluatorConfig struct {
	Model  *Model // nil: Default()
	Source Source // required
	// Regions returns the current regions; it is called once per
	// evaluation, so regions may come and go. Required when the model has
	// per-region or per-link entities; duplicates and empty names are
	// ignored.
	Regions func() []string
	Now     func() time.Time // nil: time.Now
}

// Evaluator evaluates a model against a Source and keeps the hysteresis
// state of every entity between evaluations. Its methods are safe for
// concurrent use.
type Evaluator struct {
	model   *Model
	source  Source
	regions func() []string
	now     func() time.Time

	mu     sync.Mutex            // serialises Evaluate; guards leaves and states
	leaves map[string]*leafState // hysteresis of entities with signals, by instance id
	states map[string]*reported  // reported state of every entity, by instance id
	latest atomic.Pointer[Node]  // nil before the first evaluation
}

type reported struct {
	state health.Status
	since time.Time
}

// NewEvaluator returns an evaluator; call Run to evaluate periodically, or
// Evaluate.
func NewEvaluator(cfg EvaluatorConfig) (*Evaluator, error) {
	if cfg.Model == nil {
		cfg.Model = Default()
	}
	if cfg.Source == nil {
		return nil, errors.New("new health evaluator: Source is required")
	}
	if cfg.Regions == nil {
		if cfg.Model.perUsed {
			return nil, errors.New("new health evaluator: Regions is required: the model has per-region or per-link entities")
		}
		cfg.Regions = func() []string { return nil }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Evaluator{
		model:   cfg.Model,
		source:  cfg.Source,
		regions: cfg.Regions,
		now:     cfg.Now,
		leaves:  map[string]*leafState{},
		states:  map[string]*reported{},
	}, nil
}

// Evaluate evaluates the model now and returns the tree, which Latest
// returns from then on. Entities that no longer exist (those of a removed
// region) are forgotten: if they come back they start afresh.
func (e *Evaluator) Evaluate() *Node {
	e.mu.Lock()
	defer e.mu.Unlock()
	regions := slices.DeleteFunc(slices.Clone(e.regions()), func(r string) bool { return r == "" })
	slices.Sort(regions)
	regions = slices.Compact(regions)
	var links [][2]string
	for i, a := range regions {
		for _, b := range regions[i+1:] {
			links = append(links, [2]string{a, b})
		}
	}
	run := &evaluation{e: e, now: e.now(), regions: regions, links: links, done: map[string]*Node{}}
	root := run.node(e.model.root, nil)
	for id := range e.leaves {
		if run.done[id] == nil {
			delete(e.leaves, id)
		}
	}
	for id := range e.states {
		if run.done[id] == nil {
			delete(e.states, id)
		}
	}
	e.latest.Store(root)
	return root
}

// Run evaluates at once and then every model interval until ctx is done.
func (e *Evaluator) Run(ctx context.Context) {
	t := time.NewTicker(e.model.interval)
	defer t.Stop()
	for {
		e.Evaluate()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Latest returns the tree of the last evaluation, or nil before the first.
func (e *Evaluator) Latest() *Node { return e.latest.Load() }

// Handler serves the latest tree as JSON (evaluating once if there is none
// yet) with status 200 whatever the state: the state is in the body and in
// the X-Health-Status header. HEAD gets the headers only. Mount it at
// "GET /ops/health".
func (e *Evaluator) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := e.Latest()
		if n == nil {
			n = e.Evaluate()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Health-Status", n.State.String())
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(w).Encode(n)
	})
}

// binding holds the placeholder values of one instance of an entity; it is
// also the scope of the entity's signals.
type binding map[string]string

func (b binding) expand(s string) string {
	for k, v := range b {
		s = strings.ReplaceAll(s, "{"+k+"}", v)
	}
	return s
}

// evaluation is one pass over the model.
type evaluation struct {
	e       *Evaluator
	now     time.Time
	regions []string
	links   [][2]string
	done    map[string]*Node // evaluated instances by id: each is evaluated once per pass
}

func (r *evaluation) node(ent *entity, b binding) *Node {
	id := b.expand(ent.id)
	if n, ok := r.done[id]; ok {
		return n
	}
	n := &Node{ID: id, Name: b.expand(ent.name), Kind: ent.kind, Region: b["region"], EvaluatedAt: r.now}
	var own, kids verdict
	hasOwn := len(ent.signals) > 0
	if hasOwn {
		raw := r.signals(ent, b, n)
		st := r.e.leaves[id]
		if st == nil {
			st = &leafState{}
			r.e.leaves[id] = st
		}
		own = st.observe(raw, r.e.model.trip, r.e.model.recover)
	}
	hasKids := len(ent.children) > 0
	if hasKids {
		for _, ch := range ent.children {
			for _, cb := range r.bindings(ch, b) {
				c := *r.node(ch.ent, cb)
				c.Impact = ch.impact
				n.Children = append(n.Children, &c)
			}
		}
		kids = ent.rollup.apply(n.Children, ent.noun)
	}
	var v verdict
	switch {
	case hasOwn && hasKids:
		v = own.combine(kids)
	case hasOwn:
		v = own
	default:
		v = kids
	}
	n.State, n.Reason, n.Score = v.state, v.reason, Score(v.state)
	prev := r.e.states[id]
	if prev == nil || prev.state != n.State {
		prev = &reported{state: n.State, since: r.now}
		r.e.states[id] = prev
	}
	n.Since = prev.since
	r.done[id] = n
	return n
}

// bindings returns the instances of a child reference under an instance
// with binding b.
func (r *evaluation) bindings(ch child, b binding) []binding {
	switch {
	case ch.each == perRegion:
		out := make([]binding, len(r.regions))
		for i, reg := range r.regions {
			out[i] = binding{"region": reg}
		}
		return out
	case ch.each == perLink:
		out := make([]binding, len(r.links))
		for i, l := range r.links {
			out[i] = binding{"a": l[0], "b": l[1]}
		}
		return out
	case ch.ent.per == "":
		return []binding{nil}
	default: // the same region or link as the parent
		return []binding{b}
	}
}

// verdict is a state with the sentence that explains it.
type verdict struct {
	state  health.Status
	reason string
}

// combine joins an entity's own (signal) verdict with its children's.
func (own verdict) combine(kids verdict) verdict {
	switch {
	case own.state.Rank() > kids.state.Rank():
		if kids.state == health.Healthy {
			return own
		}
		return verdict{own.state, own.reason + "; " + kids.reason}
	case kids.state.Rank() > own.state.Rank():
		if own.state == health.Healthy {
			return kids
		}
		return verdict{kids.state, kids.reason + "; " + own.reason}
	default:
		return verdict{own.state, own.reason + "; " + kids.reason}
	}
}

// signals reads the entity's signals into n.Signals and returns their raw
// verdict: the worst signal state (in the order of health.Status, where
// unknown is worse than degraded), explained by the signals in that state.
func (r *evaluation) signals(ent *entity, b binding, n *Node) verdict {
	raw := health.Healthy
	notes := make([]bool, len(ent.signals))
	n.Signals = make([]SignalValue, len(ent.signals))
	for i := range ent.signals {
		n.Signals[i], notes[i] = ent.signals[i].evaluate(r.e.source, b, r.now)
		raw = health.Worse(raw, n.Signals[i].State)
	}
	var reasons []string
	for i, v := range n.Signals {
		if v.State == raw && (raw != health.Healthy || notes[i]) {
			reasons = append(reasons, v.Reason)
		}
	}
	if len(reasons) == 0 {
		return verdict{health.Healthy, "all signals within thresholds"}
	}
	return verdict{raw, strings.Join(reasons, "; ")}
}

// evaluate reads one signal. The boolean reports a healthy verdict worth
// mentioning in the entity's reason (too little traffic to judge).
func (s *signal) evaluate(src Source, b binding, now time.Time) (SignalValue, bool) {
	v := SignalValue{Name: s.name, Degraded: s.degraded, Unhealthy: s.unhealthy}
	scope := make(Scope, len(b)+len(s.scope))
	maps.Copy(scope, b)
	for k, val := range s.scope {
		scope[k] = b.expand(val)
	}
	rd, ok := src.Signal(s.name, scope)
	if !ok {
		v.State, v.Reason = health.Unknown, "no reading of "+s.name
		return v, false
	}
	age := max(now.Sub(rd.At), 0)
	v.AgeMs = float64(age) / float64(time.Millisecond)
	if !finite(rd.Value) {
		v.State, v.Reason = health.Unknown, s.name+" reading is not a number"
		return v, false
	}
	v.Value = rd.Value
	if age > s.maxAge {
		v.State = health.Unknown
		v.Reason = fmt.Sprintf("stale: %s last read %s ago, max_age %s", s.name, age.Round(time.Millisecond), s.maxAge)
		return v, false
	}
	if s.minTraffic > 0 && rd.Traffic < s.minTraffic {
		v.State = health.Healthy
		v.Reason = fmt.Sprintf("too little traffic to judge %s (%s < %s)", s.name, number(rd.Traffic), number(s.minTraffic))
		return v, true
	}
	bad, worseOp, okOp := func(th float64) bool { return rd.Value >= th }, ">=", "<"
	if s.below {
		bad, worseOp, okOp = func(th float64) bool { return rd.Value <= th }, "<=", ">"
	}
	switch {
	case bad(s.unhealthy):
		v.State, v.Reason = health.Unhealthy, s.explain(worseOp, s.unhealthy, rd.Value)
	case bad(s.degraded):
		v.State, v.Reason = health.Degraded, s.explain(worseOp, s.degraded, rd.Value)
	default:
		v.State = health.Healthy
		v.Reason = fmt.Sprintf("%s %s%s %s %s%s", s.name, number(rd.Value), s.unit, okOp, number(s.degraded), s.unit)
	}
	return v, false
}

func (s *signal) explain(op string, threshold, value float64) string {
	d := fmt.Sprintf("%s %s%s %s %s%s", s.name, number(value), s.unit, op, number(threshold), s.unit)
	if s.reason == "" {
		return d
	}
	return s.reason + " (" + d + ")"
}

// number formats a value for a reason: at most three decimals, no exponent.
func number(f float64) string {
	return strconv.FormatFloat(math.Round(f*1000)/1000, 'f', -1, 64)
}

// leafState is the hysteresis of one entity's signals.
type leafState struct {
	state   health.Status   // reported; meaningless before the first observation
	reason  string          // why, as last seen while the raw state equalled it
	history []health.Status // the last raw states, oldest first, at most max(trip, recover); empty before the first observation
}

// observe records a raw verdict and returns the reported one. The reported
// state moves to a worse state once the last trip raw states were all worse
// than it (to the least bad of them), and to a better one once the last
// recover raw states were all better (to the worst of them), in the order
// of health.Status. The first observation is reported as it is.
func (l *leafState) observe(raw verdict, trip, recover int) verdict {
	if len(l.history) == 0 {
		l.state, l.reason, l.history = raw.state, raw.reason, []health.Status{raw.state}
		return raw
	}
	l.history = append(l.history, raw.state)
	if keep := max(trip, recover); len(l.history) > keep {
		l.history = slices.Delete(l.history, 0, len(l.history)-keep)
	}
	if raw.state == l.state {
		l.reason = raw.reason
		return raw
	}
	worse := raw.state.Rank() > l.state.Rank()
	need := recover
	side := func(s health.Status) bool { return s.Rank() < l.state.Rank() }
	if worse {
		need = trip
		side = func(s health.Status) bool { return s.Rank() > l.state.Rank() }
	}
	streak := 0
	for i := len(l.history) - 1; i >= 0 && side(l.history[i]); i-- {
		streak++
	}
	if streak >= need {
		// Move to the state every one of the last need evaluations reached.
		last := l.history[len(l.history)-need:]
		target := last[0]
		for _, s := range last[1:] {
			if worse == (s.Rank() < target.Rank()) {
				target = s
			}
		}
		l.state, l.reason = target, raw.reason
		return verdict{l.state, l.reason}
	}
	if worse {
		return verdict{l.state, fmt.Sprintf("not yet %s: %s (%d of %d evaluations)", raw.state, raw.reason, streak, need)}
	}
	return verdict{l.state, fmt.Sprintf("%s (recovering: %s for %d of %d evaluations)", l.reason, raw.state, streak, need)}
}

// effective is the state a child passes to its parent: unknown counts as
// degraded (health.Status.RollUp), limited caps at degraded, suppressed is
// ignored.
func effective(c *Node) health.Status {
	switch c.Impact {
	case ImpactLimited:
		return c.State.RollUp().CappedAt(health.Degraded)
	case ImpactSuppressed:
		return health.Healthy
	}
	return c.State.RollUp()
}

// cause names a child in a parent's reason, with its own state when the
// parent sees it differently.
func cause(c *Node) string {
	eff := effective(c)
	switch {
	case c.State == eff:
		return c.ID
	case c.Impact == ImpactStandard:
		return fmt.Sprintf("%s (%s)", c.ID, c.State)
	default:
		return fmt.Sprintf("%s (%s, %s impact)", c.ID, c.State, c.Impact)
	}
}

func causedBy(kids []*Node, state health.Status) string {
	var ids []string
	for _, c := range kids {
		if effective(c) == state {
			ids = append(ids, cause(c))
		}
	}
	return "caused by " + strings.Join(ids, ", ")
}

// healthyReason explains a healthy rollup, naming suppressed children that
// are not healthy.
func healthyReason(kids []*Node, all string) string {
	var ignored []string
	for _, c := range kids {
		if c.Impact == ImpactSuppressed && c.State != health.Healthy {
			ignored = append(ignored, cause(c))
		}
	}
	if len(ignored) == 0 {
		return all
	}
	return "healthy, ignoring " + strings.Join(ignored, ", ")
}

func (ru rollup) apply(kids []*Node, noun string) verdict {
	if ru.kind == rollupKOfN {
		return ru.kOfN(kids, noun)
	}
	state := health.Healthy
	for _, c := range kids {
		state = health.Worse(state, effective(c))
	}
	switch {
	case len(kids) == 0:
		return verdict{health.Healthy, "no " + noun}
	case state == health.Healthy:
		return verdict{health.Healthy, healthyReason(kids, "all children healthy")}
	}
	return verdict{state, causedBy(kids, state)}
}

// kOfN: all counted children healthy is healthy; none unhealthy is
// degraded; at least k up (healthy or degraded) is degraded with the
// rollup's reason; fewer is unhealthy. Suppressed children are not counted.
// k is healthy_at_least, or n minus tolerate (at least 1), and never more
// than n.
func (ru rollup) kOfN(kids []*Node, noun string) verdict {
	var counted []*Node
	for _, c := range kids {
		if c.Impact != ImpactSuppressed {
			counted = append(counted, c)
		}
	}
	n := len(counted)
	if n == 0 {
		return verdict{health.Unhealthy, "no " + noun}
	}
	need := ru.atLeast
	if ru.byTolerate {
		need = max(n-ru.tolerate, 1)
	}
	need = min(need, n)
	var up, healthy int
	for _, c := range counted {
		switch effective(c) {
		case health.Healthy:
			healthy++
			up++
		case health.Degraded:
			up++
		}
	}
	count := fmt.Sprintf("%d of %d %s healthy", up, n, noun)
	if up != healthy {
		count = fmt.Sprintf("%d of %d %s healthy or degraded", up, n, noun)
	}
	switch {
	case healthy == n:
		return verdict{health.Healthy, healthyReason(kids, fmt.Sprintf("all %d %s healthy", n, noun))}
	case up == n:
		return verdict{health.Degraded, causedBy(counted, health.Degraded)}
	case up >= need:
		return verdict{health.Degraded, fmt.Sprintf("%s: %s; %s", ru.reason, count, causedBy(counted, health.Unhealthy))}
	default:
		return verdict{health.Unhealthy, fmt.Sprintf("%s, %d needed; %s", count, need, causedBy(counted, health.Unhealthy))}
	}
}
