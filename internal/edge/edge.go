package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/backoff"
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
	// Zone is the stamp's failure domain in its region, for operators;
	// routing does not read it (a region's instances share its traffic
	// whatever their zones). Empty: not announced.
	Zone string
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
	// DialContext opens the connections to the stamps (probes and proxied
	// requests alike), to the address Dial gives; nil: a net.Dialer's.
	// Tests run the edge over a network in memory with it
	// (edgetest.Net), under testing/synctest.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	Policy      Policy
	// ProbeInterval is how often each POP probes every stamp; zero:
	// 500 ms. ProbeTimeout bounds one probe; zero: 500 ms. A probe that
	// times out is sent again at once, and only a second timeout in a row
	// counts: a black-holed stamp is out within ProbeInterval and twice
	// ProbeTimeout (1.5 s by default).
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
	// Now is the edge's clock: registry expiry, probe round trips and
	// times, ejections, flap damping, client rate limits; nil: time.Now.
	// (Tickers and timeouts use the time package, which testing/synctest
	// fakes.)
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

// Edge is the global entry point: the registry's stamps and the traffic
// table as it hears them (this file), a POP per region that probes every
// stamp and decides where its clients go (pop.go), and the proxy that
// forwards each request through its client's POP (proxy.go).
type Edge struct {
	cfg    Config
	log    *slog.Logger
	proxy  *proxy
	conns  *http.Transport // the proxy's connections to the stamps, closed when Run ends
	probes *http.Client    // health probes, untraced
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

	changed chan struct{} // Changed
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
		cfg.ProbeInterval = 500 * time.Millisecond
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
		tel: tel, cfg: cfg, log: cfg.Logger,
		stamps: map[string]StampInfo{}, seen: map[string]time.Time{}, due: map[string]time.Time{},
		pops: map[string]*pop{}, redirects: map[string][]string{}, closed: map[string]*pop{},
		changed: make(chan struct{}, 1),
		conns:   newTransport(cfg),
		probes: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, TLSClientConfig: cfg.StampTLS.Clone(),
			DialContext: cfg.DialContext}},
	}
	e.proxy = newProxy(e, e.conns)
	for _, r := range cfg.POPs {
		e.pops[r] = newPOP(r, e.changed)
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
	p := newPOP(region, e.changed)
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
	e.conns.CloseIdleConnections()
	e.probes.CloseIdleConnections()
}

// Changed receives when the near set of some POP changed since the last
// receive (one pending signal stands for any number of changes): a
// publisher of Status can send it at once instead of at its next tick.
func (e *Edge) Changed() <-chan struct{} { return e.changed }

// follow runs watch until ctx is done, restarting it a second after it
// ends.
func (e *Edge) follow(ctx context.Context, what string, watch func(context.Context) error) {
	backoff.Policy{First: time.Second, Max: time.Second}.Keep(ctx, watch, func(err error, _ time.Duration) {
		e.log.Warn(what+" watch ended; restarting", "error", err)
	})
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
		p.decideLocked(e.cfg.Policy, e.cfg.Now())
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
	old, known := e.stamps[id]
	if known && old == *s {
		return
	}
	e.stamps[id] = *s
	e.reweighLocked()
	if !known {
		for _, p := range e.pops {
			signal(p.kick)
		}
	}
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
			p.decideLocked(e.cfg.Policy, e.cfg.Now())
		}
		p.mu.Unlock()
	}
	e.reweighLocked() // the others of its release take its part
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
