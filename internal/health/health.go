// Package health runs a stamp's dependency checks in the background and
// serves their cached verdict in O(1): the health check API that the edge,
// orchestrators and deployment gates read. A check never runs inline with a
// request, and a cached verdict older than three probe intervals is reported
// unhealthy (stale), never silently healthy.
//
// It also defines Status (status.go), the one health vocabulary and order
// that the prober, the health model (internal/healthmodel), the edge and
// the operations dashboard share. The package imports nothing of ours.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDegraded marks a check error that degrades rather than fails: wrap it
// (fmt.Errorf("...: %w", health.ErrDegraded)) to report a slow but working
// dependency.
var ErrDegraded = errors.New("degraded")

// Check is one dependency check.
type Check struct {
	Name string
	// Run probes the dependency. A nil error is healthy; an error wrapping
	// ErrDegraded is degraded; any other error is unhealthy. The detail is
	// shown to operators either way.
	Run func(ctx context.Context) (detail string, err error)
	// Impact caps what this check can do to the stamp's verdict: Unhealthy
	// (the zero value, Unknown, means Unhealthy) or Degraded for
	// dependencies the stamp can serve without.
	Impact Status
	// Grace reports a failing check as degraded until it has been failing
	// for this long: for dependencies whose brief stalls the callers ride
	// out (a store leader election stalls writes for seconds while the
	// stamp's writes retry through it). Zero: unhealthy at once.
	Grace time.Duration
	// Tolerate reports a failing (or degraded) check as healthy until it
	// has been failing for this long, its detail saying so: for stalls
	// the callers ride out without anyone noticing (a leader election
	// that ends well within the write budget delays writes, it fails
	// none). After Tolerate, Grace and the verdict apply as usual. Zero:
	// nothing tolerated.
	Tolerate time.Duration
	// Every runs the check at most this often: a round sooner than that
	// after its last run reports the last result again. For checks that
	// cost the dependency real work (a replicated write) and whose verdict
	// moves slower than the probe interval anyway (Tolerate). Zero: every
	// round.
	Every time.Duration
}

// CheckResult is the outcome of one run of one check.
type CheckResult struct {
	Name      string    `json:"name"`
	Status    Status    `json:"status"`
	LatencyMs float64   `json:"latencyMs"`
	Detail    string    `json:"detail,omitempty"`
	CheckedAt time.Time `json:"checkedAt"`
	impact    Status
}

// Report is the stamp's health as /health/stamp answers it.
type Report struct {
	Status    Status    `json:"status"`
	Region    string    `json:"region"`
	CheckedAt time.Time `json:"checkedAt"`
	Reason    string    `json:"reason,omitempty"`
	// Drained is set while an operator has drained the stamp. Status is
	// then Unhealthy, so /health/stamp answers 503 and whoever reads only
	// the status takes the stamp out too; the edge reads this field to
	// tell a drained stamp from a failing one. Reason says so in words.
	Drained bool          `json:"drained"`
	Checks  []CheckResult `json:"checks"`
	// Instance is the reporting stamp instance's id in the stamps
	// registry; empty for a prober without one.
	Instance string `json:"instance,omitempty"`
	// Release is the release the reporting stamp runs, as in the stamps
	// registry; empty for a prober without one.
	Release string `json:"release,omitempty"`
	// Zone is the failure domain the reporting stamp runs in inside its
	// region (e.g. "westeurope-2"); empty for a prober without one.
	Zone string `json:"zone,omitempty"`
	// Gauges are numbers the stamp reports beside its checks for the
	// operations plane, e.g. "partner.breaker" (0 closed, 1 half-open, 2
	// open); nil: none.
	Gauges map[string]float64 `json:"gauges,omitempty"`
	// Load is the reporting stamp's load over the window that ended with
	// this run (Config.Load), for the autoscaler; nil for a prober
	// without one and before the first run.
	Load *Load `json:"load,omitempty"`
}

// Load is what a stamp instance reports of its load over its last window
// (the time between two probe runs, about a second), for the autoscaler.
//
// A stamp admits reads and writes through two bulkheads, each with its
// own slots, so that writes waiting on the store never hold the slots
// reads need. The top-level figures (the embedded Bulkhead) are those of
// the busier one, the binding limit a scaler steers on; Reads and Writes
// give each.
type Load struct {
	Bulkhead
	CPU      float64   `json:"cpu"`              // the process's CPU seconds per second over the window
	WindowMs int64     `json:"windowMs"`         // the window's length
	Reads    *Bulkhead `json:"reads,omitempty"`  // GET and HEAD API requests; nil: not told apart
	Writes   *Bulkhead `json:"writes,omitempty"` // the other API requests; nil: not told apart
	// Orders is the orders accepted and not yet processed; nil: not
	// known (before the stamp first read its queue).
	Orders *OrderLoad `json:"orders,omitempty"`
}

// OrderLoad is what a stamp knows of the orders accepted (202) and not yet
// processed: those its own processor holds now, and the backlog of the
// order queue that every region's processors share, as last read.
type OrderLoad struct {
	InProcess   int    `json:"inProcess"`   // orders this instance's processor is processing now
	Concurrency int    `json:"concurrency"` // the most it processes at once
	Queued      uint64 `json:"queued"`      // the shared queue's backlog: waiting, and being processed anywhere
	OldestMs    int64  `json:"oldestMs"`    // how long the oldest of them has waited (0 when none)
	ReadAgoMs   int64  `json:"readAgoMs"`   // how old the reading of Queued and OldestMs is
}

// Bulkhead is the load of one admission limit over a window. Requests
// counts the requests that held a slot and were answered; the ones
// refused for want of a slot are in Shed only.
type Bulkhead struct {
	InFlight    float64 `json:"inFlight"`    // mean API requests in flight over the window
	Peak        int     `json:"peak"`        // most API requests in flight at once in the window
	Capacity    int     `json:"capacity"`    // API requests it handles at once (its admission limit)
	Utilisation float64 `json:"utilisation"` // InFlight / Capacity
	Waiting     int     `json:"waiting"`     // requests waiting for a slot at the end of the window
	Shed        int64   `json:"shed"`        // requests refused in the window for want of a slot
	Requests    int64   `json:"requests"`    // API requests answered in the window
	P99Ms       float64 `json:"p99Ms"`       // p99 of the API handlers' latency in the window (0 when none)
}

// Demand is b's utilisation scaled up by what it shed or left waiting:
// demand beyond its capacity, in the proportion of requests.
func (b Bulkhead) Demand() float64 {
	u := b.Utilisation
	if extra := float64(b.Shed) + float64(b.Waiting); extra > 0 {
		u *= (float64(b.Requests) + extra) / float64(max(b.Requests, 1))
	}
	return u
}

// Config configures a Prober.
type Config struct {
	Region   string
	Checks   []Check
	Interval time.Duration // time between runs; zero: 1 s
	// Timeout bounds one run of one check; zero: the interval, at least 500 ms.
	Timeout time.Duration
	// Instance is Report.Instance.
	Instance string
	// Release is Report.Release.
	Release string
	// Zone is Report.Zone.
	Zone string
	// Hold, when set, is asked at every Report: a non-empty reason reports
	// the stamp unhealthy with that reason while its checks pass (or only
	// degrade), for a stamp that must not take traffic although its
	// dependencies are fine: one still warming up, or one that must never
	// become ready. Failing checks, a stale or first report and a drain
	// keep their own reason. It must be O(1), reading cached state. Nil:
	// never held.
	Hold func() string
	// Gauges are read once per run into Report.Gauges; nil: none.
	Gauges func() map[string]float64
	// Load is called once per run, after the checks, and its result is
	// Report.Load: the load over the window since its previous call. Nil:
	// no load in the report.
	Load   func() *Load
	Logger *slog.Logger // nil: discard
}

// Prober runs the checks every interval and caches the last report.
type Prober struct {
	cfg     Config
	log     *slog.Logger
	last    atomic.Pointer[Report] // nil until the first run completes
	drained atomic.Bool
	started time.Time

	mu      sync.Mutex // guards running, failing and results
	running map[string]bool
	failing map[string]time.Time   // since when each check has failed, for Grace
	results map[string]CheckResult // each check's newest result, as soon as it has one

	kick chan struct{} // Kick
}

// NewProber returns a prober; call Run to start it.
func NewProber(cfg Config) *Prober {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = max(cfg.Interval, 500*time.Millisecond)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Prober{cfg: cfg, log: cfg.Logger, started: time.Now(), running: map[string]bool{}, failing: map[string]time.Time{},
		results: map[string]CheckResult{}, kick: make(chan struct{}, 1)}
}

// Run probes until ctx is done: at once, then every interval, and again
// as soon as Kick asks.
func (p *Prober) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
			t.Reset(p.cfg.Interval) // the next round an interval after this one
		}
	}
}

// Kick asks Run for a round now rather than at its next tick: something
// a check looks at has just changed (a stamp that finished warming up is
// healthy at once, not an interval later). A kick while another is
// pending adds nothing.
func (p *Prober) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// RunOnce runs every check once, in parallel, each within the timeout, and
// caches the report. A check whose previous run has not returned yet (it
// ignores its context) is reported as hung rather than started again.
func (p *Prober) RunOnce(ctx context.Context) {
	results := make([]CheckResult, len(p.cfg.Checks))
	var wg sync.WaitGroup
	for i, c := range p.cfg.Checks {
		wg.Go(func() { results[i] = p.run(ctx, c) })
	}
	wg.Wait()
	rep := &Report{Region: p.cfg.Region, Instance: p.cfg.Instance, Release: p.cfg.Release, Zone: p.cfg.Zone, CheckedAt: time.Now(), Checks: results, Status: Healthy}
	if p.cfg.Gauges != nil {
		rep.Gauges = p.cfg.Gauges()
	}
	if p.cfg.Load != nil {
		rep.Load = p.cfg.Load()
	}
	for _, r := range results {
		rep.Status = Worse(rep.Status, r.Status.CappedAt(r.impact))
		if r.Status != Healthy && rep.Reason == "" {
			rep.Reason = r.Name + " " + r.Status.String()
		}
	}
	if prev := p.last.Load(); prev != nil && prev.Status != rep.Status {
		p.log.Info("stamp health changed", "from", prev.Status, "to", rep.Status, "reason", rep.Reason)
	}
	p.last.Store(rep)
}

func (p *Prober) run(ctx context.Context, c Check) CheckResult {
	res := CheckResult{Name: c.Name, impact: c.Impact}
	if res.impact == Unknown {
		res.impact = Unhealthy
	}
	p.mu.Lock()
	if prev, ok := p.results[c.Name]; ok && c.Every > 0 && time.Since(prev.CheckedAt) < c.Every {
		p.mu.Unlock()
		return prev
	}
	if p.running[c.Name] {
		p.mu.Unlock()
		res.Status, res.Detail, res.CheckedAt = Unhealthy, "previous run has not returned", time.Now()
		p.grace(c, &res)
		return res
	}
	p.running[c.Name] = true
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	type outcome struct {
		detail string
		err    error
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		d, err := c.Run(ctx)
		// Not running any more before the round hears so: a round that
		// starts the moment this one ends must not find the check hung.
		p.mu.Lock()
		delete(p.running, c.Name)
		p.mu.Unlock()
		done <- outcome{d, err}
	}()
	select {
	case o := <-done:
		res.Detail = o.detail
		switch {
		case o.err == nil:
			res.Status = Healthy
		case errors.Is(o.err, ErrDegraded):
			res.Status = Degraded
			res.Detail = joinDetail(o.detail, o.err.Error())
		default:
			res.Status = Unhealthy
			res.Detail = joinDetail(o.detail, o.err.Error())
		}
	case <-ctx.Done():
		res.Status = Unhealthy
		res.Detail = fmt.Sprintf("timed out after %s", p.cfg.Timeout)
	}
	res.CheckedAt = time.Now()
	res.LatencyMs = float64(res.CheckedAt.Sub(start).Microseconds()) / 1000
	p.grace(c, &res)
	p.mu.Lock()
	p.results[c.Name] = res
	p.mu.Unlock()
	return res
}

// grace applies c.Tolerate and c.Grace: a check failing for less than
// Tolerate is healthy, for less than Grace degraded.
func (p *Prober) grace(c Check, res *CheckResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if res.Status == Healthy || (res.Status != Unhealthy && c.Tolerate == 0) {
		delete(p.failing, c.Name)
		return
	}
	since, ok := p.failing[c.Name]
	if !ok {
		since = res.CheckedAt
		p.failing[c.Name] = since
	}
	failing := res.CheckedAt.Sub(since)
	switch {
	case failing < c.Tolerate:
		res.Detail = fmt.Sprintf("%s (%s for %s; tolerated up to %s)", res.Detail, res.Status, failing.Round(time.Millisecond), c.Tolerate)
		res.Status = Healthy
	case res.Status == Unhealthy && failing < c.Grace:
		res.Status = Degraded
		res.Detail = fmt.Sprintf("%s (failing for %s; unhealthy after %s)", res.Detail, failing.Round(time.Millisecond), c.Grace)
	}
}

func joinDetail(detail, err string) string {
	if detail == "" {
		return err
	}
	return detail + ": " + err
}

// drainedReason is a drained report's Reason.
const drainedReason = "drained by an operator"

// SetDrained drains (true) or restores (false) the stamp. A drained stamp
// reports unhealthy with Drained set from the next Report on, so the edge
// takes it out of rotation while it keeps serving in-flight work.
func (p *Prober) SetDrained(drained bool) {
	if p.drained.Swap(drained) != drained {
		p.log.Info("stamp drain changed", "drained", drained)
	}
}

// Drained reports whether the stamp is drained.
func (p *Prober) Drained() bool { return p.drained.Load() }

// Report returns the cached report as of now: unhealthy with reason
// "starting" before the first run, or "stale: ..." when the last run is
// older than three rounds (a round is an interval, or the check timeout
// when that is longer: a round waits for a slow check that long);
// unhealthy with Config.Hold's reason while it
// holds the stamp and the checks do not fail; when drained, unhealthy with
// Drained set and reason "drained by an operator", whatever the checks say.
func (p *Prober) Report() Report {
	var rep Report
	if last := p.last.Load(); last == nil {
		rep = Report{Status: Unhealthy, Region: p.cfg.Region, Instance: p.cfg.Instance, Release: p.cfg.Release, Zone: p.cfg.Zone, Reason: "starting", Checks: []CheckResult{}}
	} else {
		rep = *last
		if age := time.Since(last.CheckedAt); age > 3*max(p.cfg.Interval, p.cfg.Timeout) {
			rep.Status = Unhealthy
			rep.Reason = fmt.Sprintf("stale: last probe run finished %s ago", age.Round(time.Millisecond))
		}
	}
	if rep.Status != Unhealthy && p.cfg.Hold != nil {
		if reason := p.cfg.Hold(); reason != "" {
			rep.Status, rep.Reason = Unhealthy, reason
		}
	}
	if p.drained.Load() {
		rep.Status, rep.Drained, rep.Reason = Unhealthy, true, drainedReason
	}
	return rep
}

// Result returns the newest result of the named check, and false when
// there is none or it is older than three intervals (of the check's own,
// Every, when that is longer). It does not wait for
// the round to end: a quick check's result is there while a slow one of
// the same round still runs (a stamp starting up waits for its store read
// probe, not for the canary's round trip through the async path).
func (p *Prober) Result(name string) (CheckResult, bool) {
	p.mu.Lock()
	r, ok := p.results[name]
	p.mu.Unlock()
	if !ok || time.Since(r.CheckedAt) > 3*p.interval(name) {
		return CheckResult{}, false
	}
	return r, true
}

// interval is how often the named check runs: the probe interval, or the
// check's Every when that is longer.
func (p *Prober) interval(name string) time.Duration {
	for _, c := range p.cfg.Checks {
		if c.Name == name {
			return max(p.cfg.Interval, c.Every)
		}
	}
	return p.cfg.Interval
}
