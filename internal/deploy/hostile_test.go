package deploy_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/edge/edgetest"
)

// The edge's hostile table against a real deployment: every request gets
// the answer the table wants from whoever must give it, a foreign listener
// hears nothing, nothing reaches the operations address (the rows that try
// to inject a region outage or remove a region through the edge leave no
// fault and every region in place; development mode trusts loopback, so
// one that got through would act), no stamp is ejected, and the edge's
// own private paths are 404. Three regions, so that removing westeurope
// would be allowed if a request got through (one region is the last one
// serving and cannot be removed).
func TestEdgeRefusesHostileRequestsInADeployment(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	foreign := edgetest.MustRecord(t)
	host := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	targets := edgetest.Targets{Edge: host(d.EdgeURL()), Foreign: foreign.Addr(), Stamp: host(d.Regions()["westeurope"]), Ops: host(d.OpsURL())}
	deploytest.Eventually(t, 30*time.Second, func() error {
		res := deploytest.Do(t, http.MethodGet, d.EdgeURL()+"/api/products", "", nil)
		if res.Status != http.StatusOK {
			return fmt.Errorf("GET /api/products through the edge = %d %s", res.Status, res.Body)
		}
		return nil
	})
	for _, c := range edgetest.Hostile(targets) {
		t.Run(c.Name, func(t *testing.T) {
			got, err := edgetest.Exchange(targets.Edge, d.ClientTLS(), []byte(c.Raw), len(c.Want), 10*time.Second)
			if err != nil {
				t.Fatalf("%v (%s)", err, edgetest.Describe(got))
			}
			if err := edgetest.Check(c, got); err != nil {
				t.Error(err)
			}
			for _, p := range d.Edge().Status() {
				for _, st := range p.Stamps {
					if st.Ejected {
						t.Fatalf("POP %s ejected stamp %s: %+v", p.Region, st.ID, st)
					}
				}
			}
		})
	}

	var faults struct {
		Faults []struct{ ID, Fault, Target string } `json:"faults"`
	}
	deploytest.Do(t, http.MethodGet, d.OpsURL()+"/ops/chaos", "", nil).JSON(t, &faults)
	if len(faults.Faults) > 0 {
		t.Errorf("faults were injected through the edge: %+v", faults.Faults)
	}
	type region struct {
		Name   string   `json:"name"`
		Stamps []string `json:"stamps"`
		POP    bool     `json:"pop"`
	}
	var regions struct{ Regions []region }
	deploytest.Do(t, http.MethodGet, d.OpsURL()+"/ops/regions", "", nil).JSON(t, &regions)
	for _, name := range regions3 {
		i := slices.IndexFunc(regions.Regions, func(r region) bool { return r.Name == name })
		if i < 0 || len(regions.Regions[i].Stamps) == 0 || !regions.Regions[i].POP {
			t.Errorf("region %s is no longer in place: %+v", name, regions.Regions)
		}
	}
	foreign.MustBeSilent(t, "the hostile table")
	for _, path := range []string{"/metrics", "/ops/edge", "/health/stamp", "/ops/chaos", "/ops/regions"} {
		if res := deploytest.Do(t, http.MethodGet, d.EdgeURL()+path, "", nil); res.Status != http.StatusNotFound || res.Header.Get("X-Served-Region") != "" {
			t.Errorf("GET $EDGE%s = %d (served by %q), want 404 from the edge", path, res.Status, res.Header.Get("X-Served-Region"))
		}
	}
}
