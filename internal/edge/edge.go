package edge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/telemetry"
)

// Headers the edge reads or sets.
const (
	HeaderClientRegion = "X-Client-Region"
	HeaderEdgePop      = "X-Edge-Pop"
	HeaderFailOpen     = "X-Edge-Fail-Open" // "true" when no stamp was healthy and the POP failed open
)

// StampInfo is a stamp instance as the registry announces it.
type StampInfo struct {
	ID     string
	Region string
	// URL is the stamp's own address, e.g. http://127.0.0.1:35191 or
	// https://weu-1.stamps.contoso.example: http or https, a host and an
	// optional port. The edge speaks the scheme given, never plain http to
	// an https stamp; a stamp with any other URL is never probed nor routed
	// to.
	URL string
	// Release is the release the stamp runs; a traffic table (Weights)
	// splits each region's traffic by it. Empty: none announced (such a
	// stamp is on standby in a region the table lists).
	Release string
}

// Registry streams the stamps registry: every current stamp, then every
// change (nil when a stamp left), until ctx is done.
type Registry func(ctx context.Context, fn func(id string, s *StampInfo)) error

// Weights is a traffic table as the edge follows it: region → release
// (StampInfo.Release) → percent of the region's traffic, 0 to 100. A region
// listed takes its stamps' weights from it; a stamp whose release is at 0 %
// or not listed there is on standby and takes no user traffic (see
// trafficShares and Decide). nil: no release under way, every stamp takes
// DefaultWeight.
type Weights map[string]map[string]int

// clone copies w, so that the caller's map may change after it is handed
// over.
func (w Weights) clone() Weights {
	if w == nil {
		return nil
	}
	out := make(Weights, len(w))
	for region, split := range w {
		out[region] = maps.Clone(split)
	}
	return out
}

// Traffic streams the traffic table: the current one (nil when there is
// none), then every change (nil when cleared), until ctx is done.
type Traffic func(ctx context.Context, fn func(w Weights)) error

// Dialer maps a stamp's address to the address a POP in region pop uses to
// reach it: across the simulated inter-region link on one machine, the
// address itself on real networks. nil: the address itself.
type Dialer func(pop, stampRegion, hostport string) (string, error)

// Config configures an Edge.
type Config struct {
	POPs     []string // regions with a point of presence; required; the first serves clients without X-Client-Region
	Registry Registry // required
	// Traffic follows the release controller's traffic table: each table
	// it delivers applies to every POP at once, so the very next request
	// follows it (no probe needed). nil: no release ever shifts weights.
	Traffic Traffic
	Dial    Dialer
	Policy  Policy
	// ProbeInterval is how often each POP probes every stamp; zero: 1 s.
	// ProbeTimeout bounds one probe; zero: 500 ms.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// EjectAfter consecutive connection failures or 5xx answers from real
	// traffic eject a stamp from a POP for EjectFor; zero: 3 and 5 s.
	EjectAfter int
	EjectFor   time.Duration
	// Rise is how many consecutive good probes bring a stamp that failed
	// back into rotation; zero: 3. Each further failure within FlapWindow
	// doubles it (up to 16 times), so a flapping link keeps its stamp out
	// instead of flapping the routing; zero FlapWindow: 1 min.
	Rise       int
	FlapWindow time.Duration
	// NoRetry turns the retry of idempotent requests off. Only to prove,
	// in experiments, that the retry is what keeps failovers invisible.
	NoRetry bool
	// Timeout bounds one proxied attempt; zero: 20 s, above the stamps'
	// 15 s write budget (a write rides out a leader election; a dead stamp
	// is caught sooner by its failed probe, which aborts the attempt).
	Timeout time.Duration
	// ClientRate and ClientBurst limit each client (by remote address) to
	// a token bucket: requests per second and burst; zero: 200 and 400.
	// Over it, the edge answers 429 with Retry-After and never reaches a
	// stamp.
	ClientRate  float64
	ClientBurst int
	// Credential is added to every forwarded request as
	// httpapi.HeaderEdgeCredential, replacing whatever a client sent;
	// stamps refuse API traffic without it. Empty: none is sent (and a
	// client's is still removed).
	Credential string
	// StampTLS verifies stamps announced with an https URL, for probes
	// and proxied requests alike: its RootCAs holds the CA the operator
	// gives. Certificates are checked against the host the edge dials (the
	// Dialer's address: 127.0.0.1 on one machine, the stamp's host on real
	// networks), unless ServerName says otherwise. nil: the system roots.
	// An https stamp that fails verification fails its probes and never
	// enters rotation; there is no fallback to plain http.
	StampTLS *tls.Config
	// RegistryTTL is how long the edge keeps a stamp the registry has
	// stopped announcing: a stamp not announced (every heartbeat announces
	// it) within RegistryTTL leaves every POP, as if the registry had said
	// it left, whether or not the registry's own expiry reached the edge.
	// It counts on the edge's clock (Now), and only while the edge hears
	// the registry: while it announces nothing at all, the edge may have
	// lost its watch, so such quiet beyond registryQuiet counts against
	// nobody (see expireLocked). Zero: 7 s, the registry's 5 s TTL plus
	// 2 s. The edge times a stamp from when it hears its heartbeat, never
	// before the server stored it, so the registry drops the stamp first;
	// the 2 s (two heartbeat periods) give the registry's delete, which
	// comes somewhat after its TTL (the server's expiry timer, then the
	// watch's delivery), time to arrive, so that the edge's own expiry is
	// only the backstop for a delete it missed, never the usual way out.
	RegistryTTL time.Duration
	// Now is the clock of registry expiry; nil: time.Now.
	Now func() time.Time
	// Telemetry records the edge's traces and metrics and carries the
	// trace context to the stamps; nil: none.
	Telemetry *telemetry.Telemetry
	// Routes are the ServeMux patterns of the stamps' API
	// (stamp.APIRoutes): a forwarded request is recorded under the one it
	// matches (http.route), never its raw path. nil, or no match: "/api/*".
	Routes []string
	Logger *slog.Logger // nil: discard
}

// defaultRegistryTTL is Config.RegistryTTL's zero value: the stamps
// registry's 5 s TTL plus 2 s.
const defaultRegistryTTL = 7 * time.Second

// registryQuiet is the longest the registry stays quiet while the edge
// hears it and some stamp lives: a stamp heartbeats every second, each put
// bounded by 1 s. Quiet beyond it (no announcement of any stamp) is as
// likely the edge's lost watch as every stamp's death, so it does not
// count towards any stamp's expiry.
const registryQuiet = 2 * time.Second

// Edge is the global entry point.
type Edge struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client // proxied requests, traced
	probes *http.Client // health probes, untraced
	limits *limiter
	tel    edgeTelemetry

	mu        sync.Mutex // guards the fields below and pops' maps
	stamps    map[string]StampInfo
	weights   Weights              // the traffic table in force; nil: none
	shares    map[string]share     // what weights make of each stamp of stamps (trafficShares)
	seen      map[string]time.Time // when the registry last announced each stamp (every heartbeat), on Config.Now
	due       map[string]time.Time // when each stamp expires unless announced again: seen+RegistryTTL, pushed back by quiet spells
	heard     time.Time            // when the registry last announced anything (a stamp or its leaving); zero: never
	pops      map[string]*pop
	order     []string            // POP regions in the order they were added; the first serves clients without X-Client-Region
	redirects map[string][]string // a removed POP's region -> the POPs its clients use instead, nearest first
	closed    map[string]*pop     // removed POPs, whose last requests may still be in flight
	run       context.Context     // Run's context, for the probe loops of POPs added later; nil before Run
	loops     sync.WaitGroup      // the probe loops
}

// pop is one point of presence: what it knows about every stamp.
type pop struct {
	region   string
	stop     context.CancelFunc // ends its probe loop; nil until Run starts it
	inflight atomic.Int64       // requests this POP is serving now
	mu       sync.Mutex         // guards everything below
	state    map[string]*stampState
	prev     []string
	dec      Decision
	changes  int                                           // how often the near set changed
	attempts map[string]map[uint64]context.CancelCauseFunc // attempts in flight per stamp, aborted when its probe fails
	seq      uint64
}

// stampState is a POP's view of one stamp.
type stampState struct {
	region      string // the stamp's, as announced
	url         string // the announced URL the two fields below come from
	scheme      string // "http" or "https", as announced
	addr        string // as reached from this POP
	health      health.Status
	rtt         time.Duration // EWMA of probe round trips
	verdict     string        // the last probe's outcome, for operators
	answered    bool          // the last probe got an answer (of any status)
	probedAt    time.Time
	failures    int // consecutive passive failures
	ejectedTill time.Time
	release     string      // the stamp's, as announced
	share       share       // its weight under the traffic table, copied from Edge.shares
	downs       []time.Time // when probes started failing, within the flap window
	recovering  int         // good probes still needed before rotation; 0: not recovering
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

// New validates cfg and returns an edge; call Run to start its probes.
func New(cfg Config) (*Edge, error) {
	if len(cfg.POPs) == 0 || cfg.Registry == nil {
		return nil, errors.New("new edge: POPs and a registry are required")
	}
	if cfg.Dial == nil {
		cfg.Dial = func(_, _, hostport string) (string, error) { return hostport, nil }
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 500 * time.Millisecond
	}
	if cfg.EjectAfter <= 0 {
		cfg.EjectAfter = 3
	}
	if cfg.EjectFor <= 0 {
		cfg.EjectFor = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.Rise <= 0 {
		cfg.Rise = 3
	}
	if cfg.FlapWindow <= 0 {
		cfg.FlapWindow = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ClientRate <= 0 {
		cfg.ClientRate = 200
	}
	if cfg.ClientBurst <= 0 {
		cfg.ClientBurst = 400
	}
	if cfg.RegistryTTL <= 0 {
		cfg.RegistryTTL = defaultRegistryTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tel, err := newEdgeTelemetry(cfg.Telemetry, cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("new edge: %w", err)
	}
	e := &Edge{
		tel:    tel,
		limits: newLimiter(cfg.ClientRate, cfg.ClientBurst),
		cfg:    cfg, log: cfg.Logger, stamps: map[string]StampInfo{}, seen: map[string]time.Time{}, due: map[string]time.Time{}, pops: map[string]*pop{}, redirects: map[string][]string{}, closed: map[string]*pop{},
		client: &http.Client{
			Transport: cfg.Telemetry.Transport(&http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, ResponseHeaderTimeout: cfg.Timeout,
				TLSClientConfig: cfg.StampTLS.Clone(), TLSHandshakeTimeout: 10 * time.Second},
				"stamp", "global"),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		probes: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, TLSClientConfig: cfg.StampTLS.Clone()}},
	}
	for _, r := range cfg.POPs {
		e.pops[r] = &pop{region: r, state: map[string]*stampState{}}
		e.order = append(e.order, r)
	}
	return e, nil
}

// AddPOP opens a point of presence in region (a region added at run time
// or back from an outage). It probes every stamp once before it takes
// clients, so its first request already has a routing table. Adding a POP
// that exists does nothing.
func (e *Edge) AddPOP(ctx context.Context, region string) {
	e.mu.Lock()
	_, exists := e.pops[region]
	e.mu.Unlock()
	if exists {
		return
	}
	p := &pop{region: region, state: map[string]*stampState{}}
	e.probeAll(ctx, p)
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.pops[region]; ok {
		return
	}
	delete(e.redirects, region)
	delete(e.closed, region)
	e.pops[region] = p
	e.sharesToLocked(p) // a traffic table that came while it probed
	e.order = append(e.order, region)
	if e.run != nil {
		e.startLoopLocked(p)
	}
	e.log.Info("POP opened", "pop", region)
}

// RemovePOP closes region's point of presence; its clients are served by
// the first of instead that still has a POP (nearest first), as geo-DNS
// would send them to the next POP. Removing the last POP is refused.
// With abort (the region crashed: its links lead nowhere), the attempts
// the POP has in flight are aborted, and idempotent ones are retried
// through the POP that takes its clients over.
func (e *Edge) RemovePOP(region string, instead []string, abort bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pops[region]
	if !ok {
		return fmt.Errorf("remove POP %s: no such POP", region)
	}
	if len(e.pops) == 1 {
		return fmt.Errorf("remove POP %s: it is the last one", region)
	}
	delete(e.pops, region)
	e.closed[region] = p
	e.order = slices.DeleteFunc(e.order, func(r string) bool { return r == region })
	e.redirects[region] = slices.Clone(instead)
	if p.stop != nil {
		p.stop()
	}
	if abort {
		p.mu.Lock()
		for id := range p.attempts {
			p.abortLocked(id)
		}
		p.mu.Unlock()
	}
	e.log.Info("POP closed", "pop", region, "clientsGoTo", instead)
	return nil
}

// retryVia is where a retry goes: the stamp chosen with the first attempt,
// from the same POP, unless that POP closed meanwhile: then the POP that
// took its clients over picks.
func (e *Edge) retryVia(r *http.Request, p *pop, retry upstream) (*pop, upstream) {
	e.mu.Lock()
	_, open := e.pops[p.region]
	e.mu.Unlock()
	if open {
		return p, retry
	}
	np, err := e.popFor(r)
	if err != nil || np == p {
		return p, retry
	}
	primary, _, _ := np.route()
	return np, primary
}

// InFlight is how many requests the POP of region is serving now, open or
// removed: a removed POP's links can go once it reaches zero.
func (e *Edge) InFlight(region string) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.pops[region]; ok {
		return p.inflight.Load()
	}
	if p, ok := e.closed[region]; ok {
		return p.inflight.Load()
	}
	return 0
}

// startLoopLocked starts p's probe loop under e.run; e.mu must be held.
func (e *Edge) startLoopLocked(p *pop) {
	ctx, stop := context.WithCancel(e.run)
	p.stop = stop
	e.loops.Go(func() { e.probeLoop(ctx, p) })
}

// Run follows the registry and probes every stamp from every POP until ctx
// is done.
func (e *Edge) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		e.follow(ctx, "registry", func(ctx context.Context) error { return e.cfg.Registry(ctx, e.apply) })
	})
	if e.cfg.Traffic != nil {
		wg.Go(func() {
			e.follow(ctx, "traffic table", func(ctx context.Context) error { return e.cfg.Traffic(ctx, e.applyTraffic) })
		})
	}
	e.mu.Lock()
	e.run = ctx
	for _, p := range e.pops {
		e.startLoopLocked(p)
	}
	e.mu.Unlock()
	wg.Wait()
	e.loops.Wait()
}

// follow runs watch until ctx is done, restarting it a second after it
// ends.
func (e *Edge) follow(ctx context.Context, what string, watch func(context.Context) error) {
	for ctx.Err() == nil {
		err := watch(ctx)
		if ctx.Err() != nil {
			return
		}
		e.log.Warn(what+" watch ended; restarting", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// applyTraffic puts traffic table w in force on every POP at once.
func (e *Edge) applyTraffic(w Weights) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.weights = w.clone()
	e.reweighLocked()
	if w == nil {
		e.log.Info("no traffic table: every stamp takes its default weight")
		return
	}
	e.log.Info("traffic table in force", "split", w)
}

// reweighLocked recomputes every stamp's share under the traffic table and
// gives it to every POP, whose routing decisions are recomputed at once
// where a share changed. e.mu must be held.
func (e *Edge) reweighLocked() {
	e.shares = trafficShares(e.weights, slices.Collect(maps.Values(e.stamps)))
	for _, p := range e.pops {
		e.sharesToLocked(p)
	}
}

// sharesToLocked gives p every stamp's current share and release, and
// recomputes p's decision if one changed. e.mu must be held, not p.mu.
func (e *Edge) sharesToLocked(p *pop) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for id, st := range p.state {
		sh, release := e.shares[id], e.stamps[id].Release
		if st.share != sh || st.release != release {
			st.share, st.release, changed = sh, release, true
		}
	}
	if changed {
		p.decideLocked(e.cfg.Policy, time.Now())
	}
}

func (e *Edge) popList() []*pop {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*pop, 0, len(e.pops))
	for _, p := range e.pops {
		out = append(out, p)
	}
	return out
}

// apply takes one registry change: a stamp announced (joined, or its
// heartbeat), or gone (nil).
func (e *Edge) apply(id string, s *StampInfo) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Now()
	e.hearLocked(now)
	if s == nil {
		if _, ok := e.stamps[id]; ok {
			e.forgetLocked(id)
			e.log.Info("stamp left the registry", "id", id)
		}
		return
	}
	e.seen[id] = now
	e.due[id] = now.Add(e.cfg.RegistryTTL)
	e.expireLocked(now)
	if old, ok := e.stamps[id]; ok && old == *s {
		return
	}
	e.stamps[id] = *s
	e.reweighLocked()
	e.log.Info("stamp joined the registry", "id", id, "region", s.Region, "url", s.URL, "release", s.Release)
}

// hearLocked records that the registry announced something at now. After
// a quiet spell longer than registryQuiet, every stamp's expiry moves back
// by the excess: the edge may not have heard the registry then, so that
// time counts against nobody. e.mu must be held.
func (e *Edge) hearLocked(now time.Time) {
	if !e.heard.IsZero() {
		if deaf := now.Sub(e.heard) - registryQuiet; deaf > 0 {
			for id, d := range e.due {
				e.due[id] = d.Add(deaf)
			}
			e.log.Warn("the registry announces again after a quiet spell; the spell does not count towards any stamp's expiry",
				"quiet", now.Sub(e.heard).Round(time.Millisecond))
		}
	}
	e.heard = now
}

// expireLocked forgets every stamp the registry has not announced within
// RegistryTTL of the time the edge heard it: up to now, or, when the
// registry has been quiet since e.heard, up to registryQuiet after it. A
// stamp whose expiry the edge missed (its watch was on a server that died
// and never delivered the registry's delete) so leaves every POP on the
// edge's own clock, while an edge that hears nothing at all keeps what it
// knows, routing on its probes alone, rather than drop every stamp at
// once. e.mu must be held.
func (e *Edge) expireLocked(now time.Time) {
	if e.heard.IsZero() {
		return
	}
	at := now
	if last := e.heard.Add(registryQuiet); at.After(last) {
		at = last
	}
	for id, due := range e.due {
		if at.After(due) {
			e.log.Warn("stamp expired: the registry has not announced it within its TTL", "id", id,
				"lastAnnounced", e.seen[id], "ttl", e.cfg.RegistryTTL)
			e.forgetLocked(id)
		}
	}
}

// forgetLocked removes stamp id from the edge and from every POP, whose
// routing decisions are recomputed at once so that no request goes to it
// any more. e.mu must be held.
func (e *Edge) forgetLocked(id string) {
	delete(e.stamps, id)
	delete(e.seen, id)
	delete(e.due, id)
	for _, p := range e.pops {
		p.mu.Lock()
		if _, ok := p.state[id]; ok {
			delete(p.state, id)
			p.decideLocked(e.cfg.Policy, time.Now())
		}
		p.mu.Unlock()
	}
	e.reweighLocked() // the others of its release take its part
}

func (e *Edge) probeLoop(ctx context.Context, p *pop) {
	t := time.NewTicker(e.cfg.ProbeInterval)
	defer t.Stop()
	for {
		e.probeAll(ctx, p)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
	p.decideLocked(e.cfg.Policy, time.Now())
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
			st = &stampState{health: health.Unknown, share: e.shares[s.ID], release: e.stamps[s.ID].Release}
			p.state[s.ID] = st
		}
		if st != nil {
			st.url, st.scheme, st.addr, st.region = s.URL, scheme, addr, s.Region
		}
		p.mu.Unlock()
		e.mu.Unlock()
		if st == nil {
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ProbeTimeout)
	defer cancel()
	start := time.Now()
	h, verdict, answered := e.fetchHealth(ctx, scheme, addr)
	rtt := time.Since(start)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if st.health != health.Unknown || h == health.Unhealthy { // the first verdict of a new stamp needs no recovery
		st.observe(h, now, e.cfg.Rise, e.cfg.FlapWindow)
	}
	st.health, st.verdict, st.probedAt, st.answered = h, verdict, now, answered
	if !answered {
		p.abortLocked(s.ID)
	}
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
	p.dec = Decide(pol, p.candidatesLocked(), p.prev, now)
	if !slices.Equal(p.prev, p.dec.Near) {
		p.changes++
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
// (an empty id: none).
func (p *pop) route() (primary, retry upstream, failOpen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pid, rid := Pick(p.dec, p.candidatesLocked(), rand.Float64())
	return p.upstreamLocked(pid), p.upstreamLocked(rid), p.dec.FailOpen
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
	if !failed {
		st.failures = 0
		return
	}
	st.failures++
	if st.failures >= e.cfg.EjectAfter && time.Now().After(st.ejectedTill) {
		st.ejectedTill = time.Now().Add(e.cfg.EjectFor)
		st.failures = 0
		e.tel.ejected(ctx, p.region, st.region, st.release)
		e.log.WarnContext(ctx, "stamp ejected after consecutive failures", "pop", p.region, "stamp", id, "until", st.ejectedTill)
		p.decideLocked(e.cfg.Policy, time.Now())
	}
}

// popFor returns the POP that serves a client: its region's; the nearest
// open one when its region's POP was removed; the first without a region.
func (e *Edge) popFor(r *http.Request) (*pop, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(e.cfg.Now()) // an expired stamp takes no request, even between probes
	region := r.Header.Get(HeaderClientRegion)
	if region == "" && len(e.order) > 0 {
		region = e.order[0]
	}
	if p, ok := e.pops[region]; ok {
		return p, nil
	}
	for _, alt := range e.redirects[region] {
		if p, ok := e.pops[alt]; ok {
			return p, nil
		}
	}
	if _, known := e.redirects[region]; known && len(e.order) > 0 {
		return e.pops[e.order[0]], nil
	}
	return nil, shop.Invalid(HeaderClientRegion, "no point of presence in region %q", region)
}

// Handler serves the public API: each request through its client's POP to
// the chosen stamp, retried once elsewhere when it is idempotent. What it
// refuses without reaching a stamp is listed in the package documentation.
func (e *Edge) Handler() http.Handler {
	// Telemetry first, so that what the others log carries the trace.
	return httpapi.Chain(httpapi.Handle(e.log, e.serve),
		e.cfg.Telemetry.Middleware("edge", "global", httpapi.Flow), httpapi.RequestIDs, httpapi.Recover(e.log))
}

func (e *Edge) serve(w http.ResponseWriter, r *http.Request) error {
	e.tel.route(r)
	if !e.limits.allow(clientKey(r)) {
		return shop.Errorf(shop.KindTooMany, "", "too many requests from this client; retry in a second")
	}
	if err := publicTarget(r); err != nil {
		return err
	}
	p, err := e.popFor(r)
	if err != nil {
		return err
	}
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	telemetry.SetRegion(r.Context(), p.region)
	w.Header().Set(HeaderEdgePop, p.region)
	retryable := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Header.Get("Idempotency-Key") != ""
	body, err := readPayload(w, r, retryable)
	if err != nil {
		return err
	}
	primary, retry, failOpen := p.route()
	if failOpen {
		// Nothing is healthy: serve from the least-bad stamp rather than
		// fail every request, and say so.
		w.Header().Set(HeaderFailOpen, "true")
	}
	if primary.id == "" {
		return shop.Unavailable("no stamp can serve this request right now", errors.New("no routable stamp"))
	}
	resp, err := e.attempt(r, p, primary, body)
	f := blame(r, resp, err, body)
	if f == clientFault {
		closeBody(resp)
		return clientProblem(err, body)
	}
	if f != clientGone {
		e.report(r.Context(), p, primary.id, f == stampFault)
	}
	if f == stampFault && retryable && !e.cfg.NoRetry && retry.id != "" {
		closeBody(resp)
		rp, up := e.retryVia(r, p, retry)
		e.tel.retried(r.Context(), p.region)
		resp, err = e.attempt(r, rp, up, body)
		switch f = blame(r, resp, err, body); f {
		case clientFault:
			closeBody(resp)
			return clientProblem(err, body)
		case stampFault, noFault:
			e.report(r.Context(), rp, up.id, f == stampFault)
		}
	}
	if err != nil {
		return shop.Unavailable("the stamp did not answer", err)
	}
	defer resp.Body.Close()
	copyResponseHeaders(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	if resp.ContentLength >= 0 {
		_, _ = io.Copy(w, resp.Body)
		return nil
	}
	// A response of unknown length may be a stream (events, a long
	// listing): each chunk goes to the client as it arrives.
	flush := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil
			}
			_ = flush.Flush()
		}
		if rerr != nil {
			return nil
		}
	}
}

// closeBody closes resp's body, if there is a response.
func closeBody(resp *http.Response) {
	if resp != nil {
		resp.Body.Close()
	}
}

// payload is a request body as the attempts send it: kept whole (bounded
// by httpapi.MaxBodyBytes) when the request may be retried, otherwise the
// client's stream passed through once, never held in memory.
type payload struct {
	buf    []byte
	stream *clientBody
	length int64 // of stream; -1: unknown
}

// clientErr is the error reading the client's stream gave, if any.
func (p payload) clientErr() error {
	if p.stream == nil {
		return nil
	}
	p.stream.mu.Lock()
	defer p.stream.mu.Unlock()
	return p.stream.err
}

// clientBody is a client's request body passed through to a stamp,
// remembering whether reading it failed (too long, or the client went
// away) so that the failure is not blamed on the stamp.
type clientBody struct {
	r   io.Reader
	mu  sync.Mutex // the transport may still be sending the body when the answer is in
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

// readPayload takes r's body for forwarding. A declared length over the
// limit is refused before any stamp is reached; a stream that turns out
// longer fails its attempt with *http.MaxBytesError.
func readPayload(w http.ResponseWriter, r *http.Request, retryable bool) (payload, error) {
	if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return payload{}, nil
	}
	if r.ContentLength > httpapi.MaxBodyBytes {
		return payload{}, httpapi.BodyTooLarge()
	}
	if !retryable {
		return payload{stream: &clientBody{r: http.MaxBytesReader(w, r.Body, httpapi.MaxBodyBytes)}, length: r.ContentLength}, nil
	}
	buf, err := httpapi.ReadBody(r)
	return payload{buf: buf}, err
}

// errStampDown aborts the attempts in flight to a stamp whose probe just
// failed: a black-holed stamp never answers, and waiting for the attempt's
// timeout would turn a failover into seconds of latency.
var errStampDown = errors.New("the stamp failed its probe while the request was in flight")

// attempt forwards r to stamp up, registered with p so that a failed probe
// of the stamp aborts it (and an idempotent request is retried).
func (e *Edge) attempt(r *http.Request, p *pop, up upstream, body payload) (*http.Response, error) {
	ctx, abort := context.WithCancelCause(telemetry.WithCall(r.Context(), telemetry.Call{From: p.region, Region: up.region, Instance: up.id}))
	key := p.track(up.id, abort)
	resp, err := e.forward(r.WithContext(ctx), up, body)
	if err != nil {
		p.untrack(up.id, key)
		abort(nil)
		if cause := context.Cause(ctx); errors.Is(cause, errStampDown) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		return nil, err
	}
	resp.Body = onClose{resp.Body, func() { p.untrack(up.id, key); abort(nil) }}
	return resp, nil
}

// track registers an attempt in flight to stamp id; untrack removes it.
func (p *pop) track(id string, abort context.CancelCauseFunc) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	if p.attempts == nil {
		p.attempts = map[string]map[uint64]context.CancelCauseFunc{}
	}
	if p.attempts[id] == nil {
		p.attempts[id] = map[uint64]context.CancelCauseFunc{}
	}
	p.attempts[id][p.seq] = abort
	return p.seq
}

func (p *pop) untrack(id string, key uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.attempts[id], key)
}

// abortLocked aborts every attempt in flight to stamp id; p.mu held.
func (p *pop) abortLocked(id string) {
	for key, abort := range p.attempts[id] {
		abort(errStampDown)
		delete(p.attempts[id], key)
	}
}

// forward sends one attempt of r to stamp up (see upstreamRequest).
func (e *Edge) forward(r *http.Request, up upstream, body payload) (*http.Response, error) {
	if up.addr == "" {
		return nil, errors.New("no address")
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.Timeout)
	out, err := e.upstreamRequest(ctx, r, up, body)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := e.client.Do(out)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = onClose{resp.Body, cancel}
	return resp, nil
}

// onClose is a response body that runs done once closed: the attempt's
// context and bookkeeping end with the body, not before.
type onClose struct {
	io.ReadCloser
	done func()
}

func (o onClose) Close() error {
	err := o.ReadCloser.Close()
	o.done()
	return err
}
