package opsplane

import "github.com/contoso/shoes/internal/autoscale"

// Loads lists every stamp instance the registry announces, with the load
// its last fresh report gave (when it serves: healthy or degraded) and the
// requests the POPs sent it. It implements autoscale.Observer.
func (p *Plane) Loads() []autoscale.InstanceLoad {
	now := p.now()
	sent := map[string]uint64{}
	for _, pop := range p.in.popStatus() {
		for _, s := range pop.Stamps {
			sent[s.ID] += s.Requests
		}
	}
	var out []autoscale.InstanceLoad
	for _, s := range p.in.stampList() {
		if !s.announced {
			continue
		}
		l := autoscale.InstanceLoad{ID: s.id, Region: s.region, Zone: s.zone, Release: s.release, Requests: sent[s.id]}
		if r := s.freshReport(now); r != nil && r.Status.Routable() {
			l.Ready = true
			if r.Load != nil {
				l.Load = &autoscale.Load{InFlight: r.Load.InFlight, Capacity: r.Load.Capacity, Requests: r.Load.Requests,
					Shed: r.Load.Shed, Waiting: r.Load.Waiting, P99Ms: r.Load.P99Ms}
				if o := r.Load.Orders; o != nil {
					l.Load.Orders = &autoscale.Orders{InProcess: o.InProcess, Queued: o.Queued, OldestMs: o.OldestMs, ReadAgoMs: o.ReadAgoMs}
				}
			}
		}
		out = append(out, l)
	}
	return out
}

var _ autoscale.Observer = (*Plane)(nil)
