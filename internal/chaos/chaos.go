// Package chaos injects faults into a running deployment and heals them:
// region outages, store server losses, slow or partitioned inter-region
// links, outages of the secret store and of the fulfilment partner, drained
// stamps and crashed stamp instances. Every fault carries a duration after
// which it heals itself; it can be healed earlier, and Close heals whatever
// is still active.
//
// The package reaches the deployment through the Target interface, which the
// composition root implements, and serves the operations API under
// /ops/chaos (Routes). Client is that API's client for tools.
//
// Faults that would undo each other are refused with a conflict: the same
// fault twice on one target, or two faults that drive the same switch (a
// region outage and a store server loss in one region). Faults that merely
// cut the same link (a region outage and a partition, or two region
// outages) may overlap: the link heals when the last of them heals.
package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/contoso/shoes/internal/shop"
)

// Target is the deployment as faults reach it.
type Target interface {
	Regions() []string                                     // current regions, for validating targets
	KillRegion(region string) error                        // crash: stamp instances drop every connection, store server stops, POP removed
	ReviveRegion(ctx context.Context, region string) error // store server back on its data, a stamp instance, POP reopened
	StopServer(region string) error                        // the region's store server stops (crash)
	StartServer(region string) error
	Link(a, b string) (Link, error)                    // the simulated link between two regions
	SetSecretStore(up bool)                            // the secret store answers 503 when down
	SetPartner(mode string, delay time.Duration) error // PartnerUp, PartnerDown (connections reset), PartnerSlow (delay), PartnerFailing (503)
	SetDrained(region string, drained bool) error      // every stamp instance of the region
	KillInstance(region string) (id string, err error) // crash one stamp instance of the region
	AddInstance(ctx context.Context, region string) (url string, err error)
	// KillZone crashes every stamp instance in zone k of region (of every
	// region when region is EveryRegion) and returns their ids;
	// RestoreZone starts in that zone the instances it should run.
	KillZone(region string, k int) (ids []string, err error)
	RestoreZone(ctx context.Context, region string, k int) error
}

// Link is a simulated link between two regions.
type Link interface {
	SetLatency(latency, jitter time.Duration) error
	ResetLatency()
	Cut()  // black-hole every byte, both ways
	Heal() // end a cut
}

// Config configures a Chaos.
type Config struct {
	Target Target       // required
	Logger *slog.Logger // nil: discard
	// Now stamps InjectedAt, HealsAt and HealedAt; nil: time.Now. The heal
	// timers run on the runtime's clock either way.
	Now func() time.Time
	// Meter counts the faults injected, by fault (MetricFaultsInjected);
	// nil: they are not counted.
	Meter metric.Meter
}

// MetricFaultsInjected counts the faults injected, by fault
// (contoso_chaos_faults_injected_total{fault="region-outage"}).
const MetricFaultsInjected = "contoso.chaos.faults.injected"

// keepHealed is how many healed faults List keeps showing.
const keepHealed = 50

// healTimeout bounds a heal that no caller bounds: an expiry, or one asked
// for over HTTP (which goes on when the client goes away).
const healTimeout = 2 * time.Minute

// Chaos injects faults into a Target and heals them. It is safe for
// concurrent use.
type Chaos struct {
	target Target
	log    *slog.Logger
	now    func() time.Time
	faults metric.Int64Counter // injected, by fault

	// turn is a one-slot semaphore: every change to the Target (inject,
	// heal) runs holding it, so faults sharing a link or a switch never
	// interleave their calls. cuts is guarded by it.
	turn chan struct{}
	cuts map[string]int // link key → active faults holding the link cut

	base    context.Context    // parent of the expiry heals' contexts
	cancel  context.CancelFunc // cancels base; called by Close
	expires sync.WaitGroup     // heal timers scheduled or running

	mu     sync.Mutex // guards the fields below and the Active of every entry
	seq    uint64
	active map[string]*entry
	healed []Active // oldest first, at most keepHealed
	closed bool
}

// entry is an active fault.
type entry struct {
	Active             // guarded by Chaos.mu
	seq    uint64      // order of injection
	plan   plan        // read-only once registered
	timer  *time.Timer // the expiry heal; guarded by Chaos.mu
	cuts   []heldCut   // links this fault holds cut; guarded by the turn
	link   Link        // link-latency's link; guarded by the turn
}

type heldCut struct {
	key  string
	link Link
}

// New returns a Chaos for cfg, or an error when cfg is invalid.
func New(cfg Config) (*Chaos, error) {
	if cfg.Target == nil {
		return nil, errors.New("chaos: Target is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	meter := cfg.Meter
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("")
	}
	faults, err := meter.Int64Counter(MetricFaultsInjected, metric.WithUnit("{fault}"), metric.WithDescription("Faults injected, by fault."))
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Chaos{
		target: cfg.Target,
		log:    log,
		now:    now,
		faults: faults,
		turn:   make(chan struct{}, 1),
		cuts:   map[string]int{},
		base:   base,
		cancel: cancel,
		active: map[string]*entry{},
	}, nil
}

func (c *Chaos) acquire(ctx context.Context) error {
	select {
	case c.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Chaos) release() { <-c.turn }

// Inject validates s, injects the fault and schedules its heal after
// s.Duration. Errors: kind Invalid for a bad spec (unknown fault, a target
// that does not fit the fault, a region the Target does not have, a bad
// duration or parameter); Conflict when the same fault is active on an
// overlapping target or an active fault would fight this one; Unavailable
// after Close; the Target's error (Internal unless it has a kind) when the
// injection failed, in which case whatever part was done has been healed
// and nothing is registered. ctx bounds the wait for other injections and
// heals to finish.
func (c *Chaos) Inject(ctx context.Context, s Spec) (Active, error) {
	p, err := parseSpec(s)
	if err != nil {
		return Active{}, err
	}
	if err := c.acquire(ctx); err != nil {
		return Active{}, fmt.Errorf("inject %s on %s: %w", p.fault, p.target, err)
	}
	defer c.release()
	if err := c.resolve(&p); err != nil {
		return Active{}, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Active{}, shop.Errorf(shop.KindUnavailable, "", "chaos is shut down")
	}
	if err := c.conflictLocked(p); err != nil {
		c.mu.Unlock()
		return Active{}, err
	}
	c.seq++
	e := &entry{seq: c.seq, plan: p, Active: Active{
		ID: fmt.Sprintf("%s-%d", p.fault, c.seq), Fault: p.fault, Target: p.target, Params: maps.Clone(p.params),
	}}
	c.mu.Unlock()

	if err := c.inject(e); err != nil {
		return Active{}, fmt.Errorf("inject %s on %s: %w", p.fault, p.target, err)
	}
	now := c.now()
	c.mu.Lock()
	e.InjectedAt, e.HealsAt = now, now.Add(p.dur)
	c.active[e.ID] = e
	c.expires.Add(1)
	id := e.ID
	e.timer = time.AfterFunc(p.dur, func() {
		defer c.expires.Done()
		c.expire(id)
	})
	a := e.snapshot()
	c.mu.Unlock()
	c.faults.Add(ctx, 1, metric.WithAttributes(attribute.String("fault", a.Fault)))
	c.log.InfoContext(ctx, "fault injected", "id", a.ID, "fault", a.Fault, "target", a.Target, "params", a.Params, "heals_at", a.HealsAt)
	return a, nil
}

// resolve checks p's regions against the Target's.
func (c *Chaos) resolve(p *plan) error {
	switch p.def.scope {
	case scopeRegion:
		regions := c.target.Regions()
		if !slices.Contains(regions, p.target) {
			return shop.Invalid("target", "unknown region %q; regions: %s", p.target, strings.Join(regions, ", "))
		}
	case scopeLink:
		a, b, err := splitLink(p.target, c.target.Regions())
		if err != nil {
			return err
		}
		p.a, p.b = a, b
	case scopeZone:
		region, _, _ := splitZone(p.target)
		regions := c.target.Regions()
		if region != EveryRegion && !slices.Contains(regions, region) {
			return shop.Invalid("target", "unknown region %q; regions: %s", region, strings.Join(regions, ", "))
		}
	}
	return nil
}

// conflictLocked returns a Conflict error when p would overlap or fight an
// active fault.
func (c *Chaos) conflictLocked(p plan) error {
	for _, e := range c.sortedLocked() {
		q := e.plan
		if q.def.scope != p.def.scope || !sameTarget(p, q) {
			continue
		}
		if q.fault == p.fault {
			return shop.Errorf(shop.KindConflict, "", "%s on %s is already active as %s; heal it first", p.fault, p.target, e.ID)
		}
		if slices.Contains(p.def.fights, q.fault) {
			return shop.Errorf(shop.KindConflict, "", "%s on %s would fight the active %s (%s on %s); heal it first", p.fault, p.target, e.ID, q.fault, q.target)
		}
	}
	return nil
}

// sameTarget reports whether p and q, of the same scope, aim at the same
// thing: one region, one link (in either direction), or the global target.
func sameTarget(p, q plan) bool {
	if p.def.scope == scopeLink {
		return linkKey(p.a, p.b) == linkKey(q.a, q.b)
	}
	return p.target == q.target
}

func linkKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return a + "|" + b
}

// inject makes the Target calls of e's fault. On failure it heals what it
// did. The caller holds the turn.
func (c *Chaos) inject(e *entry) error {
	t, p := c.target, e.plan
	switch p.fault {
	case FaultRegionOutage:
		for _, peer := range t.Regions() {
			if peer == p.target {
				continue
			}
			l, err := t.Link(p.target, peer)
			if err != nil {
				c.releaseCuts(e)
				return fmt.Errorf("link %s-%s: %w", p.target, peer, err)
			}
			c.holdCut(e, p.target, peer, l)
		}
		if err := t.KillRegion(p.target); err != nil {
			c.releaseCuts(e)
			return err
		}
	case FaultStoreNodeLoss:
		return t.StopServer(p.target)
	case FaultLinkLatency:
		l, err := t.Link(p.a, p.b)
		if err != nil {
			return err
		}
		if err := l.SetLatency(p.values["latency"], p.values["jitter"]); err != nil {
			return err
		}
		e.link = l
	case FaultPartition:
		l, err := t.Link(p.a, p.b)
		if err != nil {
			return err
		}
		c.holdCut(e, p.a, p.b, l)
	case FaultSecretStoreOutage:
		t.SetSecretStore(false)
	case FaultPartnerOutage:
		return t.SetPartner(PartnerDown, 0)
	case FaultPartnerSlow:
		return t.SetPartner(PartnerSlow, p.values["delay"])
	case FaultStampDrain:
		return t.SetDrained(p.target, true)
	case FaultInstanceKill:
		id, err := t.KillInstance(p.target)
		if err != nil {
			return err
		}
		e.Params = map[string]string{"instance": id} // e is not shared until inject returns
	case FaultZoneOutage:
		region, k, _ := splitZone(p.target)
		ids, err := t.KillZone(region, k)
		if err != nil {
			return err
		}
		e.Params = map[string]string{"instances": strings.Join(ids, ",")}
	default:
		return fmt.Errorf("fault %q has no injection", p.fault)
	}
	return nil
}

// undo makes the Target calls that heal e's fault. The caller holds the
// turn.
func (c *Chaos) undo(ctx context.Context, e *entry) error {
	t, p := c.target, e.plan
	switch p.fault {
	case FaultRegionOutage:
		c.releaseCuts(e)
		return t.ReviveRegion(ctx, p.target)
	case FaultStoreNodeLoss:
		return t.StartServer(p.target)
	case FaultLinkLatency:
		e.link.ResetLatency()
	case FaultPartition:
		c.releaseCuts(e)
	case FaultSecretStoreOutage:
		t.SetSecretStore(true)
	case FaultPartnerOutage, FaultPartnerSlow:
		return t.SetPartner(PartnerUp, 0)
	case FaultStampDrain:
		return t.SetDrained(p.target, false)
	case FaultInstanceKill:
		url, err := t.AddInstance(ctx, p.target)
		if err != nil {
			return err
		}
		c.log.Info("replacement instance added", "id", e.ID, "region", p.target, "url", url)
	case FaultZoneOutage:
		region, k, _ := splitZone(p.target)
		return t.RestoreZone(ctx, region, k)
	default:
		return fmt.Errorf("fault %q has no heal", p.fault)
	}
	return nil
}

// holdCut cuts the link between a and b unless another fault holds it cut
// already, and records that e holds it. The caller holds the turn.
func (c *Chaos) holdCut(e *entry, a, b string, l Link) {
	key := linkKey(a, b)
	if c.cuts[key] == 0 {
		l.Cut()
	}
	c.cuts[key]++
	e.cuts = append(e.cuts, heldCut{key: key, link: l})
}

// releaseCuts lets go of e's cuts, healing every link no other fault holds
// cut. The caller holds the turn.
func (c *Chaos) releaseCuts(e *entry) {
	for _, h := range e.cuts {
		c.cuts[h.key]--
		if c.cuts[h.key] <= 0 {
			delete(c.cuts, h.key)
			h.link.Heal()
		}
	}
	e.cuts = nil
}

// Heal heals the fault id now and returns it. A fault already healed is
// returned as it is, with its Error if its heal failed. Errors: NotFound
// for an id that is neither active nor among the recently healed; the
// Target's error when the heal failed, returned with the fault, which is
// then recorded as healed with Error set (and logged). ctx bounds the wait
// for other injections and heals and is passed to the Target.
func (c *Chaos) Heal(ctx context.Context, id string) (Active, error) {
	return c.heal(ctx, id, "early")
}

// expire is the heal timer of id.
func (c *Chaos) expire(id string) {
	ctx, cancel := context.WithTimeout(c.base, healTimeout)
	defer cancel()
	if _, err := c.heal(ctx, id, "expired"); err != nil {
		if _, settled, _ := c.settled(id); !settled {
			// It never got its turn (a failed undo is logged by heal and
			// leaves the fault healed): nothing will try again.
			c.log.Error("fault still active after its duration; heal it with DELETE /ops/chaos/{id}", "id", id, "error", err)
		}
	}
}

func (c *Chaos) heal(ctx context.Context, id, reason string) (Active, error) {
	if a, done, err := c.settled(id); done {
		return a, err
	}
	if err := c.acquire(ctx); err != nil {
		return Active{}, fmt.Errorf("heal %s: %w", id, err)
	}
	defer c.release()
	if a, done, err := c.settled(id); done {
		return a, err // healed while this call waited for its turn
	}
	c.mu.Lock()
	e := c.active[id]
	c.mu.Unlock()
	return c.healHeld(ctx, e, reason)
}

// settled returns the fault id when it is not active: healed, or not found.
func (c *Chaos) settled(id string) (a Active, done bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.active[id]; ok {
		return Active{}, false, nil
	}
	for _, a := range c.healed {
		if a.ID == id {
			return clone(a), true, nil
		}
	}
	return Active{}, true, shop.NotFound("fault", id)
}

// healHeld heals the active e. The caller holds the turn.
func (c *Chaos) healHeld(ctx context.Context, e *entry, reason string) (Active, error) {
	c.mu.Lock()
	if e.timer.Stop() {
		c.expires.Done() // the timer will not run
	}
	c.mu.Unlock()
	err := c.undo(ctx, e)
	at := c.now()
	c.mu.Lock()
	delete(c.active, e.ID)
	e.HealedAt = &at
	if err != nil {
		e.Error = err.Error()
	}
	a := e.snapshot()
	c.healed = append(c.healed, clone(a))
	if len(c.healed) > keepHealed {
		c.healed = slices.Delete(c.healed, 0, len(c.healed)-keepHealed)
	}
	c.mu.Unlock()
	if err != nil {
		c.log.Error("fault heal failed", "id", a.ID, "fault", a.Fault, "target", a.Target, "reason", reason, "error", err)
		return a, fmt.Errorf("heal %s: %w", a.ID, err)
	}
	c.log.Info("fault healed", "id", a.ID, "fault", a.Fault, "target", a.Target, "reason", reason)
	return a, nil
}

// Get returns the fault id, active or recently healed; NotFound otherwise.
func (c *Chaos) Get(id string) (Active, error) {
	c.mu.Lock()
	e, ok := c.active[id]
	if ok {
		a := e.snapshot()
		c.mu.Unlock()
		return a, nil
	}
	c.mu.Unlock()
	a, _, err := c.settled(id)
	return a, err
}

// List returns the active faults, newest first, then the last healed ones
// (up to 50), newest first.
func (c *Chaos) List() []Active {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Active, 0, len(c.active)+len(c.healed))
	for _, e := range c.sortedLocked() {
		out = append(out, e.snapshot())
	}
	for i := len(c.healed) - 1; i >= 0; i-- {
		out = append(out, clone(c.healed[i]))
	}
	return out
}

// sortedLocked returns the active entries, newest first.
func (c *Chaos) sortedLocked() []*entry {
	es := make([]*entry, 0, len(c.active))
	for _, e := range c.active {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(b.seq, a.seq) })
	return es
}

// Close refuses further injections, heals every active fault (newest
// first) and waits for heal timers that already fired. It returns the
// failed heals' errors, or ctx's error when ctx ends first. Close may be
// called more than once.
func (c *Chaos) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	defer c.cancel()
	if err := c.acquire(ctx); err != nil {
		return fmt.Errorf("chaos: close: %w", err)
	}
	c.mu.Lock()
	es := c.sortedLocked()
	c.mu.Unlock()
	var errs []error
	for _, e := range es {
		if _, err := c.healHeld(ctx, e, "shutdown"); err != nil {
			errs = append(errs, err)
		}
	}
	c.release()
	done := make(chan struct{})
	go func() {
		c.expires.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("chaos: close: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// snapshot returns a copy of e's Active. The caller holds Chaos.mu.
func (e *entry) snapshot() Active { return clone(e.Active) }

func clone(a Active) Active {
	a.Params = cloneParams(a.Params)
	if a.HealedAt != nil {
		t := *a.HealedAt
		a.HealedAt = &t
	}
	return a
}

func cloneParams(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
