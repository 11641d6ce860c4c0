package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contoso/shoes/internal/health"
)

// pop is one point of presence: what it knows about every stamp (its
// probes' verdicts, the passive failures of real traffic, the traffic
// table's shares), the routing decision it makes of that, and the attempts
// it has in flight. The proxy (proxy.go) asks it where each request goes
// (route) and tells it how each attempt went (report).
type pop struct {
	region   string
	header   []string           // region, as the value of HeaderEdgePop: shared by every answer, never changed
	stop     context.CancelFunc // ends its probe loop; nil until Run starts it
	inflight atomic.Int64       // requests this POP is serving now
	mu       sync.Mutex         // guards everything below
	state    map[string]*stampState
	prev     []string
	dec      Decision
	// cands are the candidates dec was decided from, sorted by ID: what
	// Pick weighs each request by until the next decision. Every change
	// of what they hold (a probe round, an ejection, a share, a stamp
	// leaving) makes a new decision.
	cands    []Candidate
	changes  int                  // how often the near set changed
	attempts map[string]*inFlight // per stamp: the attempts in flight, aborted when it goes silent

	// kick asks the probe loop for a round now rather than at its next
	// tick: a stamp joined the registry.
	kick chan struct{}
	// changed is the edge's Changed channel, told when the near set
	// changes; nil: nobody is told.
	changed chan struct{}
}

// inFlight is a POP's attempts in flight to one stamp, and when the
// stamp last answered one of the POP's attempts.
type inFlight struct {
	attempts map[*attempt]struct{}
	// answered is when an attempt last got the stamp's answer (its
	// headers), in Unix nanoseconds of Config.Now; set without p.mu.
	answered atomic.Int64
}

func newPOP(region string, changed chan struct{}) *pop {
	return &pop{region: region, header: []string{region}, state: map[string]*stampState{},
		kick: make(chan struct{}, 1), changed: changed}
}

// signal tells c without waiting: a signal already pending stands for
// this one too.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// stampState is a POP's view of one stamp.
type stampState struct {
	region   string // the stamp's, as announced
	zone     string // the stamp's, as announced
	url      string // the announced URL the two fields below come from
	scheme   string // "http" or "https", as announced
	addr     string // as reached from this POP
	health   health.Status
	rtt      time.Duration // EWMA of probe round trips
	verdict  string        // the last probe's outcome, for operators
	answered bool          // the last probe got an answer (of any status)
	probedAt time.Time
	// silent counts the consecutive probes the stamp left unanswered
	// while answering none of the POP's attempts either; silentSince is
	// when the first of them was sent.
	silent      int
	silentSince time.Time
	failures    int    // consecutive passive failures
	sent        uint64 // requests this POP sent it (answered or failed), since it joined
	ejectedTill time.Time
	release     string      // the stamp's, as announced
	share       share       // its weight under the traffic table, copied from Edge.shares
	downs       []time.Time // when probes started failing, within the flap window
	recovering  int         // good probes still needed before rotation; 0: not recovering
	served      bool        // a probe has found it routable: from then on failures are flaps
	joined      time.Time   // when this POP first probed it
}

// riseNeeded is how many consecutive good probes a stamp needs after its
// n-th failure within the flap window: rise, doubled for every earlier
// failure, at most 16 times rise.
func riseNeeded(rise, n int) int {
	return rise << min(max(n-1, 0), 4)
}

// observe folds one probe verdict into the flap damping: a failure starts
// (or restarts) recovery; good probes count it down.
func (st *stampState) observe(h health.Status, now time.Time, rise int, window time.Duration) {
	st.downs = slices.DeleteFunc(st.downs, func(t time.Time) bool { return now.Sub(t) > window })
	switch {
	case h == health.Unhealthy:
		if st.recovering == 0 || st.health != health.Unhealthy {
			st.downs = append(st.downs, now)
		}
		st.recovering = riseNeeded(rise, len(st.downs))
	case h.Routable():
		if st.recovering > 0 {
			st.recovering--
		}
	}
}

// routedHealth is the health routing sees: a stamp still recovering from a
// failure counts as unhealthy.
func (st *stampState) routedHealth() health.Status {
	if st.recovering > 0 && st.health.Routable() {
		return health.Unhealthy
	}
	return st.health
}

// probeLoop probes every stamp from p once per ProbeInterval, and at once
// when a stamp joins the registry: a new stamp (one just started, at
// start-up or by a scale-out) takes traffic after one probe, not after
// up to a whole interval. While a stamp it knows is still starting (never
// routable yet, for at most startingWindow after it joined), it probes
// again startingProbeEvery after each round: such a stamp reports
// unhealthy while it warms up, and takes traffic within that and a round
// of its first healthy report.
func (e *Edge) probeLoop(ctx context.Context, p *pop) {
	t := time.NewTicker(e.cfg.ProbeInterval)
	defer t.Stop()
	for {
		e.probeAll(ctx, p)
		var soon <-chan time.Time
		if startingProbeEvery < e.cfg.ProbeInterval && p.starting(e.cfg.Now()) {
			soon = time.After(startingProbeEvery)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		case <-soon:
		}
	}
}

// startingProbeEvery is the pause between a POP's probe rounds while a
// stamp is starting; startingWindow is how long after it joined a stamp
// that has never been routable counts as starting (one that never gets
// there, a broken release, is then probed at the ordinary interval).
const (
	startingProbeEvery = 100 * time.Millisecond
	startingWindow     = 30 * time.Second
)

// starting reports whether a stamp p knows is still starting at now.
func (p *pop) starting(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.state {
		if !st.served && now.Sub(st.joined) < startingWindow {
			return true
		}
	}
	return false
}

// probeAll probes every known stamp from p in parallel and recomputes p's
// decision.
func (e *Edge) probeAll(ctx context.Context, p *pop) {
	e.mu.Lock()
	e.expireLocked(e.cfg.Now())
	stamps := make([]StampInfo, 0, len(e.stamps))
	for _, s := range e.stamps {
		stamps = append(stamps, s)
	}
	e.mu.Unlock()
	round := e.cfg.Now()
	var wg sync.WaitGroup
	for _, s := range stamps {
		wg.Go(func() { e.probe(ctx, p, s) })
	}
	wg.Wait()
	// Only stamps still in the registry now: one that left or expired
	// while it was probed stays out.
	e.mu.Lock()
	defer e.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.state {
		if _, ok := e.stamps[id]; !ok {
			delete(p.state, id)
		}
	}
	p.abortSilentLocked(round)
	p.decideLocked(e.cfg.Policy, e.cfg.Now())
}

// abortAfterSilentProbes is how many consecutive probes a stamp must
// leave unanswered, answering none of the POP's attempts meanwhile,
// before the attempts in flight to it are aborted. A probe that times out
// is sent again at once, and each send counts: a black-holed stamp is
// silent after one probe's two timeouts, a stamp that refused one
// connection is not.
const abortAfterSilentProbes = 2

// abortSilentLocked aborts the attempts in flight to each stamp that has
// gone silent (abortAfterSilentProbes probes unanswered, and none of the
// POP's attempts answered since the first of them was sent), so that an
// idempotent request is retried elsewhere rather than wait for its
// timeout: a black-holed stamp never answers. It does so only when
// another stamp answered its probe in the round that began at round, and
// never to a request's retry (attempt.retry), which has no retry left.
//
// A stamp that is slow, not gone, is left alone: one late probe is not a
// verdict, a stamp answering real traffic is alive, and when no stamp
// answered the round the trouble is on the POP's side (its own machine
// starved, its network) or everywhere: aborting would only start the
// requests over on stamps as slow, or fail them with nowhere to go.
// p.mu held.
func (p *pop) abortSilentLocked(round time.Time) {
	heard := false
	for _, st := range p.state {
		if st.answered && !st.probedAt.Before(round) {
			heard = true
			break
		}
	}
	if !heard {
		return
	}
	for id, st := range p.state {
		if st.silent >= abortAfterSilentProbes && !p.answeredSinceLocked(id, st.silentSince) {
			p.abortLocked(id)
		}
	}
}

func (e *Edge) probe(ctx context.Context, p *pop, s StampInfo) {
	p.mu.Lock()
	st := p.state[s.ID]
	var scheme, addr string
	if st != nil && st.url == s.URL {
		scheme, addr = st.scheme, st.addr
	}
	p.mu.Unlock()
	if addr == "" { // new, or announced at another URL
		var hostport string
		var err error
		scheme, hostport, err = stampAddress(s.URL)
		if err == nil {
			addr, err = e.cfg.Dial(p.region, s.Region, hostport)
		}
		if err != nil {
			e.log.Warn("no route from POP to stamp", "pop", p.region, "stamp", s.ID, "url", s.URL, "error", err)
			if st != nil { // never keep routing to its old address
				p.mu.Lock()
				delete(p.state, s.ID)
				p.mu.Unlock()
			}
			return
		}
		e.mu.Lock() // a stamp that left or expired meanwhile gets no state
		_, known := e.stamps[s.ID]
		p.mu.Lock()
		if known && st == nil {
			st = &stampState{health: health.Unknown, share: e.shares[s.ID], release: e.stamps[s.ID].Release, joined: e.cfg.Now()}
			p.state[s.ID] = st
		}
		if st != nil {
			st.url, st.scheme, st.addr, st.region, st.zone = s.URL, scheme, addr, s.Region, s.Zone
		}
		p.mu.Unlock()
		e.mu.Unlock()
		if st == nil {
			return
		}
	}
	start := e.cfg.Now()
	h, verdict, answered, late := e.probeOnce(ctx, scheme, addr)
	if late {
		// One probe left unanswered for ProbeTimeout is not a verdict: a
		// starved POP (its machine's CPU taken, a pause) sees every probe
		// of a round time out together, and flap damping would keep the
		// stamps out for seconds after the stall. The stamp is probed again
		// at once, and only a second timeout in a row takes it out. Each
		// send counts towards silence (abortAfterSilentProbes): a
		// black-holed stamp's attempts are aborted after the two.
		p.mu.Lock()
		p.heardLocked(st, s.ID, false, start)
		p.mu.Unlock()
		start = e.cfg.Now()
		h, verdict, answered, late = e.probeOnce(ctx, scheme, addr)
		if late {
			verdict += " (twice in a row)"
		}
	}
	now := e.cfg.Now()
	rtt := now.Sub(start)
	p.mu.Lock()
	defer p.mu.Unlock()
	// Flap damping applies to a stamp that has been in rotation: a new one
	// (a scale-out, a release's, a restart's) that answers unhealthy while
	// it starts, then healthy, joins at its first good probe.
	if st.served {
		st.observe(h, now, e.cfg.Rise, e.cfg.FlapWindow)
	}
	first := h.Routable() && !st.served
	if h.Routable() {
		st.served = true
	}
	st.health, st.verdict, st.probedAt, st.answered = h, verdict, now, answered
	p.heardLocked(st, s.ID, answered, start)
	if st.recovering > 0 && h != health.Unhealthy {
		st.verdict = fmt.Sprintf("%s; recovering: %d more good probes before rotation", verdict, st.recovering)
	}
	if answered {
		// Only answered probes measure the path; a smoothed RTT (EWMA,
		// alpha 0.3) keeps one slow answer from moving traffic.
		if st.rtt == 0 {
			st.rtt = rtt
		} else {
			st.rtt = time.Duration(0.7*float64(st.rtt) + 0.3*float64(rtt))
		}
	}
	if first {
		// A starting stamp takes traffic at its first good probe, not
		// once the round's slowest probe (a far stamp's) is back.
		p.decideLocked(e.cfg.Policy, now)
	}
}

// heardLocked counts one probe of stamp id, sent at start, towards its
// silence. A stamp that did not answer its probe but answered real
// traffic since the probe was sent is slow, not gone (a busy machine, a
// launch spike). One that answered nothing is counted silent; the round's
// end decides whether its attempts are aborted (abortSilentLocked). p.mu
// held.
func (p *pop) heardLocked(st *stampState, id string, answered bool, start time.Time) {
	switch {
	case answered || p.answeredSinceLocked(id, start):
		st.silent, st.silentSince = 0, time.Time{}
	case st.silent == 0:
		st.silent, st.silentSince = 1, start
	default:
		st.silent++
	}
}

// probeOnce is one probe of a stamp within ProbeTimeout (fetchHealth);
// late is set when the stamp did not answer within it while ctx itself
// goes on.
func (e *Edge) probeOnce(ctx context.Context, scheme, addr string) (h health.Status, verdict string, answered, late bool) {
	pctx, cancel := context.WithTimeout(ctx, e.cfg.ProbeTimeout)
	defer cancel()
	h, verdict, answered = e.fetchHealth(pctx, scheme, addr)
	late = !answered && ctx.Err() == nil && errors.Is(pctx.Err(), context.DeadlineExceeded)
	return h, verdict, answered, late
}

// fetchHealth reads a stamp's /health/stamp over scheme (http, or https
// verified with Config.StampTLS): its verdict, why, and whether the stamp
// answered at all. A report with Drained set is a drained stamp, whatever
// its reason says; otherwise the answer's status code decides (200 is in
// rotation, degraded when the report says so).
func (e *Edge) fetchHealth(ctx context.Context, scheme, addr string) (health.Status, string, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "", nil)
	if err != nil {
		return health.Unhealthy, "probe failed: " + err.Error(), false
	}
	req.URL = &url.URL{Scheme: scheme, Host: addr, Path: "/health/stamp"}
	req.Host = addr
	resp, err := e.probes.Do(req)
	if err != nil {
		return health.Unhealthy, "probe failed: " + err.Error(), false
	}
	defer resp.Body.Close()
	var rep health.Report
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep)
	switch {
	case rep.Drained:
		return health.Drained, "drained by an operator", true
	case resp.StatusCode == http.StatusOK && rep.Status == health.Degraded:
		return health.Degraded, "degraded: " + rep.Reason, true
	case resp.StatusCode == http.StatusOK:
		return health.Healthy, "healthy", true
	}
	return health.Unhealthy, fmt.Sprintf("unhealthy (%d): %s", resp.StatusCode, rep.Reason), true
}

// decideLocked recomputes the POP's routing decision; p.mu must be held.
func (p *pop) decideLocked(pol Policy, now time.Time) {
	p.cands = p.candidatesLocked()
	p.dec = Decide(pol, p.cands, p.prev, now)
	if !slices.Equal(p.prev, p.dec.Near) {
		p.changes++
		if p.changed != nil {
			signal(p.changed)
		}
	}
	p.prev = p.dec.Near
}

func (p *pop) candidatesLocked() []Candidate {
	cands := make([]Candidate, 0, len(p.state))
	for id, st := range p.state {
		cands = append(cands, Candidate{ID: id, Region: st.region, Release: st.release, Health: st.routedHealth(), RTT: st.rtt,
			Weight: st.share.weight, Standby: st.share.standby, EjectedUntil: st.ejectedTill})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].ID < cands[j].ID })
	return cands
}

// route picks the stamp for one request from POP p and the one to retry
// (an empty id: none), from the last decision and the candidates it was
// made of, and of two picks the one with fewer of p's attempts in flight
// (PickLessLoaded): nothing is allocated or sorted per request.
func (p *pop) route() (primary, retry upstream, failOpen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pid, rid := PickLessLoaded(p.dec, p.cands, rand.Float64(), rand.Float64(), p.inFlightLocked)
	return p.upstreamLocked(pid), p.upstreamLocked(rid), p.dec.FailOpen
}

// inFlightLocked is how many of p's attempts are in flight to stamp id;
// p.mu must be held.
func (p *pop) inFlightLocked(id string) int {
	if f := p.attempts[id]; f != nil {
		return len(f.attempts)
	}
	return 0
}

// upstreamLocked is how p reaches stamp id; p.mu must be held.
func (p *pop) upstreamLocked(id string) upstream {
	if st, ok := p.state[id]; ok {
		return upstream{id: id, region: st.region, scheme: st.scheme, addr: st.addr}
	}
	return upstream{id: id}
}

// report records the outcome of real traffic to a stamp: consecutive
// failures eject it from the POP for a while (passive outlier detection).
func (e *Edge) report(ctx context.Context, p *pop, id string, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.state[id]
	if !ok {
		return
	}
	st.sent++
	if !failed {
		st.failures = 0
		return
	}
	st.failures++
	if now := e.cfg.Now(); st.failures >= e.cfg.EjectAfter && now.After(st.ejectedTill) {
		st.ejectedTill = now.Add(e.cfg.EjectFor)
		st.failures = 0
		e.tel.ejected(ctx, p.region, st.region, st.release)
		e.log.WarnContext(ctx, "stamp ejected after consecutive failures", "pop", p.region, "stamp", id, "until", st.ejectedTill)
		p.decideLocked(e.cfg.Policy, now)
	}
}

// track registers attempt a in flight to its stamp; untrack removes it.
func (p *pop) track(a *attempt) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attempts == nil {
		p.attempts = map[string]*inFlight{}
	}
	f := p.attempts[a.stamp]
	if f == nil {
		f = &inFlight{attempts: map[*attempt]struct{}{}}
		p.attempts[a.stamp] = f
	}
	f.attempts[a] = struct{}{}
	a.inFlight = f
}

func (p *pop) untrack(a *attempt) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(a.inFlight.attempts, a)
}

// answeredSinceLocked reports whether stamp id answered one of p's
// attempts at or after since; p.mu held.
func (p *pop) answeredSinceLocked(id string, since time.Time) bool {
	f := p.attempts[id]
	return f != nil && f.answered.Load() >= since.UnixNano()
}

// abortLocked aborts every attempt in flight to stamp id but the
// requests' retries (attempt.retry); p.mu held.
func (p *pop) abortLocked(id string) {
	f := p.attempts[id]
	if f == nil {
		return
	}
	for a := range f.attempts {
		if a.retry {
			continue
		}
		a.abort()
		delete(f.attempts, a)
	}
}
