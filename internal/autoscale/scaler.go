package autoscale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/release"
)

// MaxInstances is the most instances a region's Max may allow.
const MaxInstances = 32

// keepEvents is how many events the scaler remembers, newest first.
const keepEvents = 200

// Load is one instance's load over its last window, as its health report
// gives it (health.Load).
type Load struct {
	InFlight float64
	Capacity int
	Requests int64
	Shed     int64
	Waiting  int
	P99Ms    float64
	// Orders is what the instance knows of the orders accepted and not
	// yet processed; nil: nothing.
	Orders *Orders
}

// Orders is an instance's view of the orders accepted and not yet
// processed (see Inputs).
type Orders struct {
	InProcess int
	Queued    uint64
	OldestMs  int64
	ReadAgoMs int64 // how old its reading of Queued and OldestMs is
}

// InstanceLoad is what the operations plane knows of one instance.
type InstanceLoad struct {
	ID, Region, Zone, Release string
	// Ready is set while its last health report is fresh and says it
	// serves (healthy or degraded).
	Ready bool
	// Load is its reported load; nil: none (not ready, or a version that
	// does not report one).
	Load *Load
	// Requests counts the requests the edge's POPs sent it since it
	// joined: above zero, it takes traffic.
	Requests uint64
}

// Observer is where the scaler reads the instances' load: the operations
// plane.
type Observer interface {
	Loads() []InstanceLoad
}

// Limits bound the instances of one region.
type Limits struct {
	Min int `json:"min"`
	Max int `json:"max"`
	// PreScale raises Min until a time: capacity warmed for a known
	// launch. Nil: none.
	PreScale *PreScale `json:"preScale,omitempty"`
}

// PreScale is a temporary minimum.
type PreScale struct {
	Min   int       `json:"min"`
	Until time.Time `json:"until"`
}

// effective are l's bounds at now: Min raised by a pre-scale under way.
func (l Limits) effective(now time.Time) (lo, hi int) {
	lo, hi = l.Min, l.Max
	if l.PreScale != nil && now.Before(l.PreScale.Until) {
		lo = max(lo, l.PreScale.Min)
	}
	return lo, max(hi, lo)
}

func (l Limits) validate() error {
	switch {
	case l.Min < 1 || l.Min > MaxInstances:
		return fmt.Errorf("min %d: want from 1 to %d", l.Min, MaxInstances)
	case l.Max < l.Min || l.Max > MaxInstances:
		return fmt.Errorf("max %d: want from min (%d) to %d", l.Max, l.Min, MaxInstances)
	case l.PreScale != nil && (l.PreScale.Min < 1 || l.PreScale.Min > MaxInstances):
		return fmt.Errorf("pre-scale min %d: want from 1 to %d", l.PreScale.Min, MaxInstances)
	}
	return nil
}

// Config configures a Scaler.
type Config struct {
	// Launcher starts and drains instances; required.
	Launcher release.Launcher
	// Observer gives the instances' load; required.
	Observer Observer
	// Regions are the regions scaled, once per evaluation; required.
	Regions func() []string
	// Spec is what a new instance of region runs; nil: Spec{Region:
	// region}, the launcher's default version.
	Spec func(region string) release.Spec
	// Hold, when it returns a reason, stops every change while it does
	// (a release under way). Nil: never.
	Hold func(ctx context.Context) string
	// Default are a region's limits until PUT sets its own. Zero Min: 1;
	// Max below Min: Min.
	Default Limits
	// Policy is the damping; zero: DefaultPolicy. Invalid: New refuses.
	Policy Policy
	// Instances reads and sets the instances' capacity and simulated
	// work; nil: the scaling API refuses to set them.
	Instances InstanceControl
	// Tick is the time between evaluations; zero: 1 s.
	Tick time.Duration
	// Now is the clock; nil: time.Now.
	Now    func() time.Time
	Logger *slog.Logger // nil: discard
}

// InstanceControl sets what every stamp instance of the deployment
// serves with, those started later included.
type InstanceControl interface {
	// InstanceSettings are the settings in force; false when each
	// instance serves with its own configuration.
	InstanceSettings() (InstanceSettings, bool)
	// SetInstanceSettings gives every instance is; nil: back to each
	// one's own configuration.
	SetInstanceSettings(is *InstanceSettings) error
}

// InstanceSettings are every instance's capacity (API requests at once)
// and simulated work per request, a test bench's knob.
type InstanceSettings struct {
	Capacity int `json:"capacity"`
	WorkMs   int `json:"workMs"`
}

// Event is one thing the scaler did or saw, with the inputs behind it.
type Event struct {
	At     time.Time `json:"at"`
	Region string    `json:"region"`
	// Action is scale-out or scale-in (a decision), started, stopped or
	// failed (an instance's start or drain ended), serving (a started
	// instance took its first request), held or resumed (a hold began or
	// ended), or settings (an operator changed the rules).
	Action   string  `json:"action"`
	From     int     `json:"from,omitempty"`
	To       int     `json:"to,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	Inputs   *Inputs `json:"inputs,omitempty"`
	Instance string  `json:"instance,omitempty"`
	// ExceededAt is when the load first exceeded the target, for a
	// scale-out on load and the serving events it led to.
	ExceededAt time.Time `json:"exceededAt,omitzero"`
	// ToTrafficMs is, for a serving event, the time from ExceededAt to the
	// instance's first request.
	ToTrafficMs int64 `json:"toTrafficMs,omitempty"`
}

// RegionStatus is a region's scaling as of the last evaluation.
type RegionStatus struct {
	Region string `json:"region"`
	Limits
	// Want is the count the last evaluation wanted; Reason, why, when
	// it says anything.
	Want        int     `json:"want"`
	Reason      string  `json:"reason,omitempty"`
	Utilisation float64 `json:"utilisation"`
	Inputs      Inputs  `json:"inputs"`
}

// Status is what GET /ops/scaling answers.
type Status struct {
	Policy    PolicyJSON        `json:"policy"`
	Held      string            `json:"held,omitempty"`
	Instances *InstanceSettings `json:"instance,omitempty"` // nil: each instance serves with its own configuration
	Regions   []RegionStatus    `json:"regions"`
	Events    []Event           `json:"events"`
}

// PolicyJSON is a Policy as the API shows and takes it.
type PolicyJSON struct {
	Target               float64 `json:"target"`
	Tolerance            float64 `json:"tolerance"`
	ScaleOutAfterSeconds float64 `json:"scaleOutAfterSeconds"`
	ScaleInAfterSeconds  float64 `json:"scaleInAfterSeconds"`
}

func policyJSON(p Policy) PolicyJSON {
	return PolicyJSON{Target: p.Target, Tolerance: p.Tolerance, ScaleOutAfterSeconds: p.ScaleOutAfter.Seconds(), ScaleInAfterSeconds: p.ScaleInAfter.Seconds()}
}

// Scaler is a running autoscaler. Its methods are safe for concurrent use.
type Scaler struct {
	cfg Config
	log *slog.Logger
	wg  sync.WaitGroup

	applyMu  sync.Mutex // serialises Apply
	mu       sync.Mutex // guards the fields below
	policy   Policy
	limits   map[string]Limits // set by an operator
	states   map[string]*State
	status   map[string]RegionStatus
	held     string
	starting map[string]int       // region -> starts under way
	stopping map[string]bool      // instance -> drain under way
	waiting  map[string]time.Time // started instance -> when the load that asked for it exceeded the target
	events   []Event              // oldest first, at most keepEvents
}

// New validates cfg.
func New(cfg Config) (*Scaler, error) {
	if cfg.Launcher == nil || cfg.Observer == nil || cfg.Regions == nil {
		return nil, errors.New("autoscaler: a launcher, an observer and regions are required")
	}
	if cfg.Policy == (Policy{}) {
		cfg.Policy = DefaultPolicy()
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("autoscaler: %w", err)
	}
	cfg.Default.Min = max(cfg.Default.Min, 1)
	cfg.Default.Max = max(cfg.Default.Max, cfg.Default.Min)
	if err := cfg.Default.validate(); err != nil {
		return nil, fmt.Errorf("autoscaler: default limits: %w", err)
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scaler{cfg: cfg, log: cfg.Logger.With("component", "autoscaler"), policy: cfg.Policy,
		limits: map[string]Limits{}, states: map[string]*State{}, status: map[string]RegionStatus{},
		starting: map[string]int{}, stopping: map[string]bool{}, waiting: map[string]time.Time{}}, nil
}

// Run evaluates every Tick until ctx is done, then waits for the starts
// and drains it began.
func (s *Scaler) Run(ctx context.Context) {
	defer s.wg.Wait()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		s.Evaluate(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Evaluate is one evaluation of every region: decide, then start or
// drain instances in the background. Run calls it every Tick.
func (s *Scaler) Evaluate(ctx context.Context) {
	hold := ""
	if s.cfg.Hold != nil {
		hold = s.cfg.Hold(ctx)
	}
	running := map[string][]string{}
	for _, in := range s.cfg.Launcher.Running() {
		running[in.Region] = append(running[in.Region], in.ID)
	}
	loads := map[string]InstanceLoad{}
	for _, l := range s.cfg.Observer.Loads() {
		loads[l.ID] = l
	}
	regions := s.cfg.Regions()
	now := s.cfg.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.noteServing(loads, now)
	if hold != s.held {
		action := "held"
		if hold == "" {
			action = "resumed"
		}
		s.record(Event{At: now, Action: action, Reason: cmp.Or(hold, s.held)})
		s.held = hold
	}
	for _, region := range regions {
		ids := slices.DeleteFunc(running[region], func(id string) bool { return s.stopping[id] })
		in := s.inputs(region, ids, loads, now)
		st := s.states[region]
		if st == nil {
			st = &State{}
			s.states[region] = st
		}
		status := RegionStatus{Region: region, Want: in.Instances, Utilisation: in.Utilisation(), Inputs: in}
		if hold != "" {
			*st = State{lastMin: in.Min}
			status.Reason = "held: " + hold
			s.status[region] = status
			continue
		}
		d := s.policy.Decide(st, in, now)
		status.Want, status.Reason = d.Want, d.Reason
		s.status[region] = status
		switch {
		case d.Want > in.Instances:
			s.record(Event{At: now, Region: region, Action: "scale-out", From: in.Instances, To: d.Want, Reason: d.Reason, Inputs: &in, ExceededAt: d.ExceededAt})
			spec := release.Spec{Region: region}
			if s.cfg.Spec != nil {
				spec = s.cfg.Spec(region)
			}
			for range d.Want - in.Instances {
				s.starting[region]++
				s.wg.Go(func() { s.start(ctx, spec, d.ExceededAt) })
			}
		case d.Want < in.Instances && s.starting[region] == 0:
			id := s.victim(ids, loads)
			s.record(Event{At: now, Region: region, Action: "scale-in", From: in.Instances, To: d.Want, Reason: d.Reason, Inputs: &in, Instance: id})
			s.stopping[id] = true
			s.wg.Go(func() { s.stop(ctx, region, id) })
		}
	}
	for region := range s.status {
		if !slices.Contains(regions, region) {
			delete(s.status, region)
			delete(s.states, region)
		}
	}
}

// inputs sums the load of a region's instances. s.mu is held.
func (s *Scaler) inputs(region string, ids []string, loads map[string]InstanceLoad, now time.Time) Inputs {
	in := Inputs{Instances: len(ids) + s.starting[region]}
	freshest := int64(math.MaxInt64) // the age of the order queue's reading in in
	for _, id := range ids {
		l, ok := loads[id]
		if !ok || !l.Ready || l.Load == nil {
			continue
		}
		in.Reporting++
		in.InFlight += l.Load.InFlight
		in.Capacity += l.Load.Capacity
		in.Requests += l.Load.Requests
		in.Shed += l.Load.Shed
		in.Waiting += l.Load.Waiting
		in.P99Ms = max(in.P99Ms, l.Load.P99Ms)
		if o := l.Load.Orders; o != nil {
			in.OrdersInProcess += o.InProcess
			if o.ReadAgoMs < freshest {
				freshest, in.OrdersQueued, in.OrdersOldestMs = o.ReadAgoMs, o.Queued, o.OldestMs
			}
		}
	}
	in.Min, in.Max = s.limitsOf(region).effective(now)
	return in
}

// victim is the instance a scale-in drains: one of the zone that runs the
// most of them (zones stay balanced), the least busy of those. s.mu is
// held.
func (s *Scaler) victim(ids []string, loads map[string]InstanceLoad) string {
	perZone := map[string]int{}
	for _, id := range ids {
		perZone[loads[id].Zone]++
	}
	return slices.MinFunc(ids, func(a, b string) int {
		la, lb := loads[a], loads[b]
		if c := cmp.Compare(perZone[lb.Zone], perZone[la.Zone]); c != 0 {
			return c
		}
		return cmp.Compare(inFlight(la), inFlight(lb))
	})
}

func inFlight(l InstanceLoad) float64 {
	if l.Load == nil {
		return 0
	}
	return l.Load.InFlight
}

// noteServing records the first request of every started instance. s.mu
// is held.
func (s *Scaler) noteServing(loads map[string]InstanceLoad, now time.Time) {
	for id, exceeded := range s.waiting {
		l, ok := loads[id]
		if !ok || l.Requests == 0 {
			continue
		}
		delete(s.waiting, id)
		e := Event{At: now, Region: l.Region, Action: "serving", Instance: id, ExceededAt: exceeded}
		if !exceeded.IsZero() {
			e.ToTrafficMs = now.Sub(exceeded).Milliseconds()
		}
		s.record(e)
	}
}

func (s *Scaler) start(ctx context.Context, spec release.Spec, exceeded time.Time) {
	id, err := s.cfg.Launcher.Start(ctx, spec)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starting[spec.Region]--
	now := s.cfg.Now()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("autoscaler: start instance", "region", spec.Region, "error", err)
			s.record(Event{At: now, Region: spec.Region, Action: "failed", Reason: "start: " + err.Error()})
		}
		return
	}
	s.waiting[id] = exceeded
	s.log.Info("autoscaler: instance started", "region", spec.Region, "instance", id)
	s.record(Event{At: now, Region: spec.Region, Action: "started", Instance: id})
}

func (s *Scaler) stop(ctx context.Context, region, id string) {
	err := s.cfg.Launcher.Stop(ctx, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.stopping, id)
	delete(s.waiting, id)
	now := s.cfg.Now()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("autoscaler: drain instance", "region", region, "instance", id, "error", err)
			s.record(Event{At: now, Region: region, Action: "failed", Instance: id, Reason: "drain: " + err.Error()})
		}
		return
	}
	s.log.Info("autoscaler: instance drained and stopped", "region", region, "instance", id)
	s.record(Event{At: now, Region: region, Action: "stopped", Instance: id})
}

// record keeps e, dropping the oldest beyond keepEvents. s.mu is held.
func (s *Scaler) record(e Event) {
	if e.Action == "scale-out" || e.Action == "scale-in" {
		s.log.Info("autoscaler: "+e.Action, "region", e.Region, "from", e.From, "to", e.To, "reason", e.Reason)
	}
	s.events = append(s.events, e)
	if len(s.events) > keepEvents {
		s.events = slices.Delete(s.events, 0, len(s.events)-keepEvents)
	}
}

// limitsOf are region's limits: an operator's, or the default. s.mu is
// held.
func (s *Scaler) limitsOf(region string) Limits {
	if l, ok := s.limits[region]; ok {
		return l
	}
	return s.cfg.Default
}

// Status is the scaler's state: its rules, every region's last
// evaluation, and its events, newest first.
func (s *Scaler) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Status{Policy: policyJSON(s.policy), Held: s.held, Regions: []RegionStatus{}, Events: make([]Event, 0, len(s.events))}
	for _, region := range slices.Sorted(maps.Keys(s.status)) {
		st := s.status[region]
		st.Limits = s.limitsOf(region)
		out.Regions = append(out.Regions, st)
	}
	for i := len(s.events) - 1; i >= 0; i-- {
		out.Events = append(out.Events, s.events[i])
	}
	if s.cfg.Instances != nil {
		if is, ok := s.cfg.Instances.InstanceSettings(); ok {
			out.Instances = &is
		}
	}
	return out
}
