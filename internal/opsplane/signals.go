package opsplane

import (
	"maps"
	"math"
	"slices"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/healthmodel"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/telemetry"
)

// signalWindow is the window of the rate and percentile signals.
const signalWindow = 30 * time.Second

// signalKey names one reading: the signal and the scope it is asked for.
type signalKey struct {
	name, region, a, b, stream string
}

func keyOf(name string, scope healthmodel.Scope) signalKey {
	return signalKey{name: name, region: scope["region"], a: scope["a"], b: scope["b"], stream: scope["stream"]}
}

// Signal implements healthmodel.Source.
func (p *Plane) Signal(name string, scope healthmodel.Scope) (healthmodel.Reading, bool) {
	r, ok := p.readings()[keyOf(name, scope)]
	return r, ok
}

// readings returns every current reading, computed at most every half
// second: one evaluation asks for many signals.
func (p *Plane) readings() map[signalKey]healthmodel.Reading {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := p.now(); now.Sub(p.readAt) > 500*time.Millisecond {
		p.cached = p.collect(now)
		p.readAt = now
	}
	return p.cached
}

func verdictValue(st health.Status) float64 {
	switch st {
	case health.Healthy:
		return 0
	case health.Degraded:
		return 1
	}
	return 2
}

// collect computes every reading from the inputs and the telemetry.
func (p *Plane) collect(now time.Time) map[signalKey]healthmodel.Reading {
	out := map[signalKey]healthmodel.Reading{}
	put := func(name string, scope healthmodel.Scope, v float64, at time.Time, traffic float64) {
		out[keyOf(name, scope)] = healthmodel.Reading{Value: v, At: at, Traffic: traffic}
	}
	regions := p.Regions()
	status := p.in.popStatus()
	routes := edge.Routes(status)
	beats := p.in.heartbeats()
	byRegion := map[string][]stampView{}
	for _, s := range p.in.stampList() {
		byRegion[s.region] = append(byRegion[s.region], s)
	}
	for _, region := range regions {
		scope := healthmodel.Scope{"region": region}
		// The stamp's own dependency checks: the freshest report of its
		// instances. A stamp that stopped answering keeps its last report
		// while it ages (probe.age); a stamp gone from the registry has
		// none, its signals go unknown, and the routing signals below say
		// it is out.
		var best *stampView
		drained := len(byRegion[region]) > 0
		for i, s := range byRegion[region] {
			if s.report == nil {
				drained = false
				continue
			}
			if best == nil || s.freshAt.After(best.freshAt) {
				best = &byRegion[region][i]
			}
			drained = drained && s.report.Drained
		}
		if best != nil {
			for _, c := range best.report.Checks {
				put("probe."+c.Name, scope, verdictValue(c.Status), best.freshAt, 0)
			}
			for name, v := range best.report.Gauges {
				put(name, scope, v, best.freshAt, 0)
			}
			put("probe.age", scope, now.Sub(best.freshAt).Seconds(), now, 0)
		}
		put("stamp.drained", scope, map[bool]float64{true: 1}[drained], now, 0)
		// Redundancy inside the region: the share of the instances it
		// should run (one per zone) that serve, by their own fresh
		// reports; a release's new instances count too.
		serving := 0
		for _, s := range byRegion[region] {
			if r := s.freshReport(now); s.announced && r != nil && r.Status.Routable() && !r.Drained {
				serving++
			}
		}
		put("stamp.capacity", scope, float64(serving)/float64(max(1, p.cfg.Instances)), now, 0)
		routing := 0
		for _, ps := range status {
			if slices.Contains(routes[ps.Region], region) && !ps.FailOpen {
				routing++
			}
		}
		put("stamp.routable_pops", scope, float64(routing), now, 0)
		if at, ok := beats[region]; ok {
			put("registry.age", scope, now.Sub(at).Seconds(), now, 0)
		}
		// Real traffic: the stamp's API requests over the last 30 s; the
		// latency of reads apart from that of writes (see the model).
		t := trafficOf(p.cfg.Sink, apiRequests(region), signalWindow)
		put("http.error_ratio", scope, t.errorRatio, now, t.requests)
		for name, methods := range map[string][]string{"http.p99": {"GET", "HEAD"}, "http.write_p99": {"POST", "PUT", "PATCH", "DELETE"}} {
			var p99, n float64
			for _, m := range methods {
				mt := trafficOf(p.cfg.Sink, methodRequests(region, m), signalWindow)
				p99, n = max(p99, mt.p99), n+mt.requests
			}
			put(name, scope, p99, now, n)
		}
	}
	t := trafficOf(p.cfg.Sink, telemetry.Labels{"component": "edge"}, signalWindow)
	put("edge.error_ratio", healthmodel.Scope{}, t.errorRatio, now, t.requests)
	put("edge.p99", healthmodel.Scope{}, t.p99, now, t.requests)
	p.links(regions, status, now, put)
	for stream, name := range map[string]string{store.StreamOrders: "orders", store.StreamWrites: "comments"} {
		if q, ok := p.queue(stream); ok {
			put("queue.age", healthmodel.Scope{"stream": name}, q.age.Seconds(), q.at, float64(q.pending))
		}
	}
	return out
}

// links reads what each POP sees of the other regions' stamps: a far stamp
// that answers its own POP but not this one means trouble on the link
// between them; a round trip above what the link should take means a slow
// link.
func (p *Plane) links(regions []string, status []edge.POPStatus, now time.Time, put func(string, healthmodel.Scope, float64, time.Time, float64)) {
	probeOK := map[[2]string]bool{} // [pop, region] -> some stamp of region answers that POP
	rtt := map[[2]string]float64{}  // [pop, region] -> best RTT in ms
	for _, ps := range status {
		for _, st := range ps.Stamps {
			key := [2]string{ps.Region, st.Region}
			if st.Reached {
				probeOK[key] = true
				if r, ok := rtt[key]; !ok || st.RTTMs < r {
					rtt[key] = st.RTTMs
				}
			}
		}
	}
	popOpen := func(region string) bool {
		return slices.ContainsFunc(status, func(ps edge.POPStatus) bool { return ps.Region == region })
	}
	for i, a := range regions {
		for _, b := range regions[i+1:] {
			scope := healthmodel.Scope{"a": a, "b": b}
			failed, excess := 0.0, 0.0
			for _, dir := range [][2]string{{a, b}, {b, a}} {
				pop, far := dir[0], dir[1]
				if !popOpen(pop) {
					continue
				}
				if !probeOK[[2]string{pop, far}] && probeOK[[2]string{far, far}] {
					failed = 1
				}
				if r, ok := rtt[[2]string{pop, far}]; ok {
					excess = max(excess, r-p.expectedRTT(pop, far, r, rtt[[2]string{far, far}]))
				}
			}
			put("link.probe_failed", scope, failed, now, 0)
			put("link.rtt_excess", scope, math.Max(0, excess), now, 0)
		}
	}
}

// expectedRTT is the round trip a POP in pop should see to a stamp in far:
// twice the link's one-way latency (Config.Baseline) plus what the stamp
// takes at home. Without a baseline, the least round trip seen on that
// path since the plane started stands for it.
func (p *Plane) expectedRTT(pop, far string, current, home float64) float64 {
	if p.cfg.Baseline != nil {
		return 2*float64(p.cfg.Baseline(pop, far))/float64(time.Millisecond) + home
	}
	key := [2]string{pop, far}
	if least, ok := p.leastRTT[key]; ok && least <= current {
		return least
	}
	p.leastRTT[key] = current
	return current
}

// traffic is what a set of requests looked like over a window.
type traffic struct {
	requests   float64 // how many
	errorRatio float64 // 5xx over requests; 0 without requests
	p99        float64 // seconds; 0 without requests
}

// trafficOf reads the requests that match from the metric history.
func trafficOf(sink *telemetry.Sink, match telemetry.Labels, window time.Duration) traffic {
	var t traffic
	t.requests, _ = sink.Increase(telemetry.MetricHTTPServerDuration, match, window)
	if t.requests == 0 {
		return t
	}
	bad := maps.Clone(match)
	bad["http.response.status_code"] = "5*"
	if errs, ok := sink.Increase(telemetry.MetricHTTPServerDuration, bad, window); ok {
		t.errorRatio = errs / t.requests
	}
	t.p99, _ = sink.Quantile(telemetry.MetricHTTPServerDuration, match, 0.99, window)
	return t
}

// apiRequests selects a region's stamp API requests (not its probes).
func apiRequests(region string) telemetry.Labels {
	return telemetry.Labels{"component": "stamp", "region": region, "http.route": "/api/*"}
}

// methodRequests selects a region's stamp API requests of one method.
func methodRequests(region, method string) telemetry.Labels {
	l := apiRequests(region)
	l[telemetry.AttrMethod] = method
	return l
}
