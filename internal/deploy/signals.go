package deploy

import (
	"context"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/healthmodel"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/telemetry"
)

// signalWindow is the window of the rate and percentile signals.
const signalWindow = 30 * time.Second

// signals feeds the health model: each region's stamp reports (its own
// dependency checks), the edge's view (routing, probes, heartbeats), the
// metric history in the telemetry sink, and the queues' backlog. One
// evaluation asks for many signals; they are computed together at most
// every half second.
type signals struct {
	d *Deployment

	mu       sync.Mutex // guards the fields below
	at       time.Time
	readings map[signalKey]healthmodel.Reading
}

func newSignals(d *Deployment) *signals { return &signals{d: d} }

// signalKey names one reading: the signal and the scope it is asked for.
type signalKey struct {
	name, region, a, b, stream string
}

func keyOf(name string, scope healthmodel.Scope) signalKey {
	return signalKey{name: name, region: scope["region"], a: scope["a"], b: scope["b"], stream: scope["stream"]}
}

// Signal implements healthmodel.Source.
func (s *signals) Signal(name string, scope healthmodel.Scope) (healthmodel.Reading, bool) {
	r, ok := s.all()[keyOf(name, scope)]
	return r, ok
}

// all returns every current reading, computed at most every half second.
func (s *signals) all() map[signalKey]healthmodel.Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.at) > 500*time.Millisecond {
		s.readings = s.collect()
		s.at = time.Now()
	}
	return s.readings
}

// regionNames lists the regions with a running stamp, for the model.
func (d *Deployment) regionNames() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for name, r := range d.regions {
		if len(r.instances) > 0 || r.node != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
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

func (s *signals) collect() map[signalKey]healthmodel.Reading {
	d := s.d
	now := time.Now()
	out := map[signalKey]healthmodel.Reading{}
	put := func(name string, scope healthmodel.Scope, v float64, at time.Time, traffic float64) {
		out[keyOf(name, scope)] = healthmodel.Reading{Value: v, At: at, Traffic: traffic}
	}
	regions := d.regionNames()
	status := d.front.edge.Status()
	routes := edge.Routes(status)
	beats := d.front.edge.Heartbeats()

	d.mu.Lock()
	live := map[string][]*instance{}
	for name, r := range d.regions {
		live[name] = slices.Clone(r.instances)
	}
	d.mu.Unlock()

	for _, region := range regions {
		scope := healthmodel.Scope{"region": region}
		// The stamp's own dependency checks: the freshest report of its
		// instances. A crashed stamp has none: its signals go unknown, and
		// the routing signals below say it is out.
		var best *health.Report
		drained := len(live[region]) > 0
		breaker := -1.0
		for _, in := range live[region] {
			rep := in.stamp.Prober().Report()
			if best == nil || rep.CheckedAt.After(best.CheckedAt) {
				best = &rep
			}
			drained = drained && rep.Drained
			if in.partner != nil {
				breaker = max(breaker, map[string]float64{"closed": 0, "half-open": 1, "open": 2}[in.partner.BreakerState()])
			}
		}
		if best != nil && !best.CheckedAt.IsZero() {
			for _, c := range best.Checks {
				put("probe."+c.Name, scope, verdictValue(c.Status), c.CheckedAt, 0)
			}
			put("probe.age", scope, now.Sub(best.CheckedAt).Seconds(), now, 0)
		}
		if breaker >= 0 {
			put("partner.breaker", scope, breaker, now, 0)
		}
		put("stamp.drained", scope, map[bool]float64{true: 1}[drained], now, 0)
		routing := 0
		for _, p := range status {
			if slices.Contains(routes[p.Region], region) && !p.FailOpen {
				routing++
			}
		}
		put("stamp.routable_pops", scope, float64(routing), now, 0)
		var lastBeat time.Time
		for _, b := range beats {
			if b.Region == region && b.At.After(lastBeat) {
				lastBeat = b.At
			}
		}
		if !lastBeat.IsZero() {
			put("registry.age", scope, now.Sub(lastBeat).Seconds(), now, 0)
		}
		// Real traffic: the stamp's API requests over the last 30 s.
		t := trafficOf(d.tel.Sink(), apiRequests(region), signalWindow)
		put("http.error_ratio", scope, t.errorRatio, now, t.requests)
		put("http.p99", scope, t.p99, now, t.requests)
	}
	t := trafficOf(d.tel.Sink(), telemetry.Labels{"component": "edge"}, signalWindow)
	put("edge.error_ratio", healthmodel.Scope{}, t.errorRatio, now, t.requests)
	put("edge.p99", healthmodel.Scope{}, t.p99, now, t.requests)

	// Links: what each POP sees of the other regions' stamps.
	probeOK := map[[2]string]bool{} // [pop, region] -> some stamp of region answers that POP
	rtt := map[[2]string]float64{}  // [pop, region] -> best RTT in ms
	for _, p := range status {
		for _, st := range p.Stamps {
			key := [2]string{p.Region, st.Region}
			if st.Reached {
				probeOK[key] = true
				if r, ok := rtt[key]; !ok || st.RTTMs < r {
					rtt[key] = st.RTTMs
				}
			}
		}
	}
	for i, a := range regions {
		for _, b := range regions[i+1:] {
			scope := healthmodel.Scope{"a": a, "b": b}
			failed := 0.0
			excess := 0.0
			for _, dir := range [][2]string{{a, b}, {b, a}} {
				pop, far := dir[0], dir[1]
				if !popOpen(status, pop) {
					continue
				}
				// The far stamp answers its own POP but not this one: the
				// link between them is the trouble.
				if !probeOK[[2]string{pop, far}] && probeOK[[2]string{far, far}] {
					failed = 1
				}
				if r, ok := rtt[[2]string{pop, far}]; ok {
					expected := 2*float64(d.net.BaseLatency(pop, far))/float64(time.Millisecond) + rtt[[2]string{far, far}]
					excess = max(excess, r-expected)
				}
			}
			put("link.probe_failed", scope, failed, now, 0)
			put("link.rtt_excess", scope, math.Max(0, excess), now, 0)
		}
	}
	// The queues: how long the oldest unprocessed message has waited.
	if d.front.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for stream, name := range map[string]string{store.StreamOrders: "orders", store.StreamWrites: "comments"} {
			if age, pending, err := d.front.store.QueueAge(ctx, stream); err == nil {
				put("queue.age", healthmodel.Scope{"stream": name}, age.Seconds(), now, float64(pending))
			}
		}
	}
	return out
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

func popOpen(status []edge.POPStatus, region string) bool {
	return slices.ContainsFunc(status, func(p edge.POPStatus) bool { return p.Region == region })
}
