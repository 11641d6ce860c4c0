package deploy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/shop"
)

// RegionSpec asks for a stamp region added at run time.
type RegionSpec struct {
	Name string `json:"name"`
	// LatencyMs is the one-way latency to other regions in milliseconds;
	// pairs left out use the deployment's latency table (which knows
	// uksouth and westus) or its default for unknown pairs.
	LatencyMs map[string]float64 `json:"latencyMs,omitempty"`
}

// RegionInfo describes a region for operators.
type RegionInfo struct {
	Name string `json:"name"`
	// Data is true for a region with a store server (a data replica).
	Data bool `json:"data"`
	// DataRegions are the regions whose store servers a stamp-only
	// region's stamp uses, nearest first.
	DataRegions []string `json:"dataRegions,omitempty"`
	Stamps      []string `json:"stamps"` // URLs of its running stamp instances
	POP         bool     `json:"pop"`    // it has a point of presence
}

var regionName = regexp.MustCompile(`^[a-z][a-z0-9-]{1,30}[a-z0-9]$`)

// natsURL is where region r's stamp instances reach the store: the
// region's own server, or, for a stamp-only region, the data regions'
// servers across the simulated links, nearest first.
func (d *Deployment) natsURL(r *region) (string, error) {
	if r.node != nil {
		return r.node.ClientURL(), nil
	}
	var urls []string
	for _, name := range r.data {
		d.mu.Lock()
		dr := d.regions[name]
		d.mu.Unlock()
		if dr == nil || dr.node == nil {
			continue
		}
		scheme, host, _ := strings.Cut(dr.node.ClientURL(), "://")
		addr, err := d.net.Route(r.name, name, host)
		if err != nil {
			return "", fmt.Errorf("link %s-%s: %w", r.name, name, err)
		}
		urls = append(urls, scheme+"://"+addr)
	}
	if len(urls) == 0 {
		return "", fmt.Errorf("region %s: no data region to use", r.name)
	}
	return strings.Join(urls, ","), nil
}

// nearest lists the other regions that satisfy keep, nearest to name first
// by the latency table.
func (d *Deployment) nearest(name string, keep func(*region) bool) []string {
	d.mu.Lock()
	var out []string
	for other, r := range d.regions {
		if other != name && keep(r) {
			out = append(out, other)
		}
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		li, lj := d.net.BaseLatency(name, out[i]), d.net.BaseLatency(name, out[j])
		if li != lj {
			return li < lj
		}
		return out[i] < out[j]
	})
	return out
}

// nearestServing lists the other regions with a running stamp, nearest to
// name first: where a closed POP's clients go.
func (d *Deployment) nearestServing(name string) []string {
	return d.nearest(name, func(r *region) bool { return len(r.instances) > 0 })
}

// AddRegion adds a stamp region at run time: its links to every region, a
// stamp whose store is the nearest data region's server (reached across
// the link), and a POP. It returns once the new POP routes its clients to
// the new stamp. A data region whose stamp was removed gets a stamp and a
// POP again.
func (d *Deployment) AddRegion(ctx context.Context, spec RegionSpec) (RegionInfo, error) {
	if !regionName.MatchString(spec.Name) {
		return RegionInfo{}, shop.Invalid("name", "a region name is 3 to 32 lower-case letters, digits or dashes")
	}
	for other, ms := range spec.LatencyMs {
		if other == spec.Name || ms < 0 || ms > 10_000 {
			return RegionInfo{}, shop.Invalid("latencyMs", "latency to %q must be between 0 and 10000 ms, to another region", other)
		}
	}
	d.regionOps.Lock()
	defer d.regionOps.Unlock()
	d.mu.Lock()
	r, exists := d.regions[spec.Name]
	if exists && len(r.instances) > 0 {
		d.mu.Unlock()
		return RegionInfo{}, shop.Errorf(shop.KindConflict, "name", "region %s already has a stamp", spec.Name)
	}
	d.mu.Unlock()
	for other, ms := range spec.LatencyMs {
		if err := d.net.SetBaseLatency(spec.Name, other, time.Duration(ms*float64(time.Millisecond))); err != nil {
			return RegionInfo{}, shop.Invalid("latencyMs", "%v", err)
		}
	}
	if !exists {
		r = &region{name: spec.Name, data: d.nearest(spec.Name, func(r *region) bool { return r.node != nil })}
		if len(r.data) == 0 {
			return RegionInfo{}, shop.Errorf(shop.KindConflict, "", "no data region to attach %s to", spec.Name)
		}
		d.mu.Lock()
		d.regions[spec.Name] = r
		d.mu.Unlock()
	}
	in, err := d.startInstance(ctx, r, instanceSpec{})
	if err != nil {
		if !exists {
			d.mu.Lock()
			delete(d.regions, spec.Name)
			d.mu.Unlock()
			d.net.RemoveRegion(spec.Name)
		}
		return RegionInfo{}, fmt.Errorf("add region %s: %w", spec.Name, err)
	}
	if err := waitFor(ctx, "the new stamp to be ready", in.stamp.Ready); err != nil {
		return RegionInfo{}, fmt.Errorf("add region %s: %w", spec.Name, err)
	}
	d.front.edge.AddPOP(ctx, spec.Name)
	err = waitFor(ctx, "the new POP to route to its stamp", func() error {
		for _, p := range d.front.edge.Status() {
			if p.Region != spec.Name {
				continue
			}
			for _, s := range p.Stamps {
				if s.Region == spec.Name && slices.Contains(p.Near, s.ID) {
					return nil
				}
			}
			return fmt.Errorf("POP %s routes to %v", spec.Name, p.Near)
		}
		return errors.New("no POP yet")
	})
	if err != nil {
		return RegionInfo{}, fmt.Errorf("add region %s: %w", spec.Name, err)
	}
	d.log.Info("region added", "region", spec.Name, "dataRegions", r.data)
	return d.regionInfo(spec.Name), nil
}

// RemoveRegion takes a region's stamp out of service without losing data:
// its stamps are drained, the edge stops routing to them (its POP's
// clients go to the nearest other POP), then they shut down gracefully,
// finishing the requests they hold; their unfinished background work is
// redelivered to the other regions' processors. A stamp-only region's
// links go too. A data region keeps its store server (its replica): removing
// a data replica is a store membership change (docs/operations.md).
func (d *Deployment) RemoveRegion(ctx context.Context, name string) (RegionInfo, error) {
	d.regionOps.Lock()
	defer d.regionOps.Unlock()
	d.mu.Lock()
	r, ok := d.regions[name]
	serving := 0
	for _, other := range d.regions {
		if len(other.instances) > 0 {
			serving++
		}
	}
	var instances []*instance
	if ok {
		instances = slices.Clone(r.instances)
	}
	d.mu.Unlock()
	switch {
	case !ok:
		return RegionInfo{}, shop.Errorf(shop.KindNotFound, "", "no region %s", name)
	case len(instances) == 0:
		return RegionInfo{}, shop.Errorf(shop.KindConflict, "", "region %s has no stamp to remove", name)
	case serving == 1:
		return RegionInfo{}, shop.Errorf(shop.KindConflict, "", "region %s is the last one serving", name)
	}
	ids := map[string]bool{}
	for _, in := range instances {
		in.stamp.Prober().SetDrained(true)
		ids[in.stamp.ID()] = true
	}
	// Drained stamps leave rotation within a probe interval or two; wait
	// until no POP routes or retries to them.
	err := waitFor(ctx, "the edge to stop routing to the drained stamps", func() error {
		for _, p := range d.front.edge.Status() {
			for _, id := range append(slices.Clone(p.Near), p.Fallback...) {
				if ids[id] && !p.FailOpen {
					return fmt.Errorf("POP %s still routes to %s", p.Region, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		for _, in := range instances {
			in.stamp.Prober().SetDrained(false)
		}
		return RegionInfo{}, fmt.Errorf("remove region %s: %w", name, err)
	}
	if err := d.front.edge.RemovePOP(name, d.nearestServing(name), false); err != nil {
		d.log.Warn("remove region: POP", "region", name, "error", err)
	}
	var errs []error
	for _, in := range instances {
		in.cancel()
		errs = append(errs, <-in.done)
	}
	d.mu.Lock()
	r.instances = nil
	stampOnly := r.node == nil
	d.mu.Unlock()
	if stampOnly {
		// The closed POP's last requests cross this region's links to
		// other regions' stamps: let them finish before the links go.
		_ = waitFor(ctx, "the closed POP's requests to finish", func() error {
			if n := d.front.edge.InFlight(name); n > 0 {
				return fmt.Errorf("%d requests in flight", n)
			}
			return nil
		})
	}
	d.mu.Lock()
	if stampOnly {
		delete(d.regions, name)
	}
	d.mu.Unlock()
	if stampOnly {
		d.net.RemoveRegion(name)
	}
	d.log.Info("region removed", "region", name, "dataKept", !stampOnly)
	info := RegionInfo{Name: name, Data: !stampOnly, Stamps: []string{}}
	return info, errors.Join(errs...)
}

// RegionsInfo describes every region, sorted by name.
func (d *Deployment) RegionsInfo() []RegionInfo {
	d.mu.Lock()
	names := make([]string, 0, len(d.regions))
	for name := range d.regions {
		names = append(names, name)
	}
	d.mu.Unlock()
	sort.Strings(names)
	out := make([]RegionInfo, 0, len(names))
	for _, name := range names {
		out = append(out, d.regionInfo(name))
	}
	return out
}

func (d *Deployment) regionInfo(name string) RegionInfo {
	pops := map[string]bool{}
	if d.front != nil {
		for _, p := range d.front.edge.Status() {
			pops[p.Region] = true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.regions[name]
	info := RegionInfo{Name: name, Data: r.node != nil, DataRegions: r.data, Stamps: []string{}, POP: pops[name]}
	for _, in := range r.instances {
		info.Stamps = append(info.Stamps, in.url)
	}
	return info
}

// waitFor polls cond every 50 ms until it returns nil or ctx ends.
func waitFor(ctx context.Context, what string, cond func() error) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (%w)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// regionNames lists the regions with a running stamp or a store server,
// sorted: the regions the health model judges.
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
