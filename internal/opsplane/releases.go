package opsplane

import (
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/telemetry"
)

// Instances lists every stamp instance the registry announces, with its
// release and last health report: what the release controller waits on
// and judges. It implements release.Observer.
func (p *Plane) Instances() []release.Instance {
	now := p.now()
	var out []release.Instance
	for _, s := range p.in.stampList() {
		if !s.announced {
			continue
		}
		in := release.Instance{ID: s.id, Region: s.region, Release: s.release, Health: health.Unknown, Silent: s.silent, SilentSince: s.silentSince}
		// A stamp that stopped answering is unknown, as on the dashboard.
		if r := s.freshReport(now); r != nil {
			in.Health, in.Reason = r.Status, r.Reason
		}
		out = append(out, in)
	}
	return out
}

// Flows reads what one release's stamps in region served since then, by
// user flow, from the telemetry the stamps send. It implements
// release.Observer.
func (p *Plane) Flows(region, version string, since time.Time) map[string]release.FlowReading {
	window := max(p.now().Sub(since), 2*time.Second)
	out := map[string]release.FlowReading{}
	for _, flow := range flows {
		match := apiRequests(region)
		match[telemetry.AttrServiceVersion] = version
		match["flow"] = flow
		t := trafficOf(p.cfg.Sink, match, window)
		if t.requests == 0 {
			continue
		}
		out[flow] = release.FlowReading{Requests: t.requests, Errors: t.errorRatio * t.requests, P99: t.p99}
	}
	return out
}

var _ release.Observer = (*Plane)(nil)
