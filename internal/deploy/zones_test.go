package deploy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/shop"
)

// homeInEveryZone is nil once every POP routes its clients to its own
// region's instance in each zone, and only to them.
func homeInEveryZone(status []edge.POPStatus, zones int) error {
	for _, p := range status {
		var home []string
		for _, s := range p.Stamps {
			if s.Region == p.Region && slices.Contains(p.Near, s.ID) {
				home = append(home, s.Zone)
			}
		}
		slices.Sort(home)
		var want []string
		for k := 1; k <= zones; k++ {
			want = append(want, deploy.ZoneName(p.Region, k))
		}
		if !slices.Equal(home, want) || len(p.Near) != zones {
			return fmt.Errorf("POP %s routes to %v (zones %v), want its own instances in %v", p.Region, p.Near, home, want)
		}
	}
	if len(status) == 0 {
		return fmt.Errorf("no POP")
	}
	return nil
}

// Zone 2 of every region is lost at once under reads and idempotent orders
// from every region: no request fails, every answer still comes from the
// client's own region, each region reads degraded (redundancy lost) and
// never unhealthy, and once the zone is back every POP routes to both
// zones again, the regions read healthy, and each region's two instances
// share its traffic. (Mutation tried: Pick's retry without its same-region
// loops; requests of eastus's clients failed with 503 and the test went
// red.)
func TestAZoneLostLeavesEveryRegionServingItsOwnClients(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{Instances: 2, Latency: true, EdgeRate: 1e9, EdgeBurst: 1e9, HealthModel: everySecond(t)}, regions3...)
	deploytest.Eventually(t, 30*time.Second, func() error { return homeInEveryZone(d.Edge().Status(), 2) })
	sku := shop.SKU(shop.SeedCatalog()[4].ID, shop.SeedCatalog()[4].Sizes[0])
	setStock(t, d, sku, 100000)
	deploytest.Eventually(t, 60*time.Second, func() error {
		if root := healthTree(t, d); root.State != health.Healthy {
			return fmt.Errorf("system %s before the fault: %s", root.State, sickLeaves(root))
		}
		return nil
	})
	routing := watchRouting(t, d)
	load := startUserTraffic(t, d, sku, true)
	deploytest.Eventually(t, 30*time.Second, func() error {
		if n := load.requests.Load(); n < 150 {
			return fmt.Errorf("%d requests so far", n)
		}
		return nil
	})

	routing.mark("zone 2 lost")
	killed, err := d.KillZone("", 2)
	if err != nil || len(killed) != len(regions3) {
		t.Fatalf("KillZone = %v, %v; want one instance per region", killed, err)
	}
	degraded := map[string]health.Status{}
	for _, r := range regions3 {
		degraded["component.zones."+r] = health.Degraded
	}
	deploytest.Eventually(t, 20*time.Second, func() error {
		root := healthTree(t, d)
		for _, id := range []string{"region.westeurope", "region.northeurope", "region.eastus", "flow.browse", "flow.checkout"} {
			if st := root.Find(id).State; st == health.Unhealthy {
				t.Fatalf("%s unhealthy after losing one zone: %s", id, explain(root.Find(id)))
			}
		}
		return expectStates(root, degraded)
	})

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	routing.mark("zone 2 restored")
	if err := d.RestoreZone(ctx, "", 2); err != nil {
		t.Fatal(err)
	}
	deploytest.Eventually(t, 30*time.Second, func() error { return homeInEveryZone(d.Edge().Status(), 2) })
	healthyAgain := map[string]health.Status{}
	for _, r := range regions3 {
		healthyAgain["component.zones."+r] = health.Healthy
	}
	deploytest.Eventually(t, 30*time.Second, func() error { return expectStates(healthTree(t, d), healthyAgain) })
	// Both zones back: each region's traffic is shared between its two
	// instances, neither taking more than 70 % of it.
	before, n0 := sentTo(d.Edge().Status()), load.requests.Load()
	deploytest.Eventually(t, time.Minute, func() error {
		if n := load.requests.Load() - n0; n < 450 {
			return fmt.Errorf("%d requests since the restore", n)
		}
		return nil
	})
	after := sentTo(d.Edge().Status())
	routing.mark("shares measured")
	for _, r := range regions3 {
		var total uint64
		byID := map[string]uint64{}
		for id, n := range after[r] {
			if n < before[r][id] { // a POP stopped routing to it meanwhile
				t.Errorf("%s: instance %s left a POP's routing while the shares were measured", r, id)
				continue
			}
			byID[id] = n - before[r][id]
			total += byID[id]
		}
		for id, n := range byID {
			if total == 0 || float64(n) > 0.7*float64(total) || len(byID) != 2 {
				t.Errorf("%s: instance %s took %d of the region's %d requests (instances %v)", r, id, n, total, byID)
			}
		}
	}
	load.end()
	failures, _, orders := load.results()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed, e.g. %v", len(failures), load.requests.Load(), failures[:min(5, len(failures))])
	}
	load.mu.Lock()
	away := slices.Clone(load.away)
	load.mu.Unlock()
	if len(away) > 0 || t.Failed() {
		routing.explain(t)
	}
	if len(away) > 0 {
		t.Fatalf("%d answers from another region than the client's, e.g. %v", len(away), away[:min(20, len(away))])
	}
	waitFinal(t, d, orders, 2*time.Minute)
	t.Logf("%d requests, none failed, each served at home; %d orders final", load.requests.Load(), len(orders))
}

// routeLog is every change of every POP's routing during a test: what a
// failure explains itself with.
type routeLog struct {
	mu    sync.Mutex
	lines []string
}

// watchRouting samples the edge's routing every 100 ms until the test
// ends, keeping each change of a POP's nearest stamps with the state and
// last probe of every stamp of its region.
func watchRouting(t *testing.T, d *deploy.Deployment) *routeLog {
	l := &routeLog{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	wg.Go(func() {
		last := map[string]string{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, p := range d.Edge().Status() {
				near := fmt.Sprint(p.Near)
				if last[p.Region] == near {
					continue
				}
				last[p.Region] = near
				var home []string
				for _, s := range p.Stamps {
					if s.Region == p.Region {
						home = append(home, fmt.Sprintf("%s(%s) %s %q %s", s.ID, s.Zone, s.State, s.LastProbe, s.Routing))
					}
				}
				l.add(fmt.Sprintf("POP %s routes to %s; its region: %s", p.Region, near, strings.Join(home, "; ")))
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	return l
}

func (l *routeLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, time.Now().Format("15:04:05.000")+" "+line)
}

// mark notes a step of the test among the routing changes.
func (l *routeLog) mark(step string) { l.add("--- " + step) }

func (l *routeLog) explain(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("routing changes:\n%s", strings.Join(l.lines, "\n"))
}

// sentTo sums, by region and instance, the requests every POP sent the
// region's routable instances.
func sentTo(status []edge.POPStatus) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for _, p := range status {
		for _, s := range p.Stamps {
			if !s.State.Routable() {
				continue
			}
			if out[s.Region] == nil {
				out[s.Region] = map[string]uint64{}
			}
			out[s.Region][s.ID] += s.Requests
		}
	}
	return out
}
