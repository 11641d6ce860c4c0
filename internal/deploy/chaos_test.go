package deploy_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/health"
)

// The fault library against a real deployment: a region outage through
// POST /ops/chaos crashes the region (its clients move, the health model
// says so), DELETE heals it early (server back on its data, a new stamp,
// its POP reopened), and its clients come home. An instance kill heals by
// starting a replacement.
func TestChaosRegionOutageAndHeal(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{HealthModel: everySecond(t)}, regions3...)
	ops := d.OpsURL()
	res := deploytest.Do(t, http.MethodPost, ops+"/ops/chaos", "", map[string]string{"fault": "region-outage", "target": "eastus", "duration": "1m"})
	if res.Status != http.StatusCreated {
		t.Fatalf("inject = %d %s", res.Status, res.Body)
	}
	var active struct{ ID string }
	res.JSON(t, &active)
	served, pop := viaEdge(t, d.EdgeURL(), "eastus")
	if served == "eastus" || pop == "eastus" {
		t.Fatalf("during the outage an eastus client is served by %s through POP %s", served, pop)
	}
	injected := time.Now()
	deploytest.Eventually(t, 30*time.Second, func() error {
		return expectStates(healthTree(t, d), map[string]health.Status{"region.eastus": health.Unhealthy, "regions": health.Degraded})
	})
	t.Logf("region outage: eastus unhealthy and the others healthy after %s", time.Since(injected).Round(100*time.Millisecond))
	if res := deploytest.Do(t, http.MethodPost, ops+"/ops/chaos", "", map[string]string{"fault": "region-outage", "target": "eastus", "duration": "1m"}); res.Status != http.StatusConflict {
		t.Fatalf("the same fault again = %d, want 409", res.Status)
	}
	if res := deploytest.Do(t, http.MethodDelete, ops+"/ops/chaos/"+active.ID, "", nil); res.Status != http.StatusOK {
		t.Fatalf("heal = %d %s", res.Status, res.Body)
	}
	deploytest.Eventually(t, 30*time.Second, func() error {
		if served, pop := viaEdge(t, d.EdgeURL(), "eastus"); served != "eastus" || pop != "eastus" {
			return fmt.Errorf("after the heal an eastus client is served by %s through POP %s", served, pop)
		}
		return nil
	})
	deploytest.Eventually(t, 60*time.Second, func() error {
		return expectStates(healthTree(t, d), map[string]health.Status{"system": health.Healthy})
	})

	res = deploytest.Do(t, http.MethodPost, ops+"/ops/chaos", "", map[string]string{"fault": "instance-kill", "target": "northeurope", "duration": "2s"})
	if res.Status != http.StatusCreated {
		t.Fatalf("instance-kill = %d %s", res.Status, res.Body)
	}
	deploytest.Eventually(t, 30*time.Second, func() error { // healed by itself: a replacement serves
		if served, _ := viaEdge(t, d.EdgeURL(), "northeurope"); served != "northeurope" {
			return fmt.Errorf("northeurope's clients served by %s", served)
		}
		var list struct {
			Faults []struct {
				ID       string     `json:"id"`
				HealedAt *time.Time `json:"healedAt"`
			} `json:"faults"`
		}
		deploytest.Do(t, http.MethodGet, ops+"/ops/chaos", "", nil).JSON(t, &list)
		for _, f := range list.Faults {
			if f.HealedAt == nil {
				return fmt.Errorf("fault %s still active", f.ID)
			}
		}
		return nil
	})
}
