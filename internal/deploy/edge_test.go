package deploy_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/shop"
)

func viaEdge(t *testing.T, url, clientRegion string) (served, pop string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/api/products/"+shop.SeedCatalog()[0].ID, nil)
	req.Header.Set("X-Client-Region", clientRegion)
	res := deploytest.Send(t, req)
	if res.Status != http.StatusOK {
		t.Fatalf("GET via the edge from %s = %d %s", clientRegion, res.Status, res.Body)
	}
	return res.Header.Get("X-Served-Region"), res.Header.Get("X-Edge-Pop")
}

// Clients are served by their own region; with it drained, by the next
// nearest one by the configured latencies, within 2 s; undrained, back.
func TestEdgeServesFromTheNearestHealthyRegion(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{Latency: true, Probe: 200 * time.Millisecond}, regions3...)
	edge := d.EdgeURL()
	for _, r := range regions3 {
		served, pop := viaEdge(t, edge, r)
		if served != r || pop != r {
			t.Fatalf("client in %s served by %s through POP %s", r, served, pop)
		}
	}
	admin := deploytest.Token(t, d, "ops", true)
	if res := deploytest.Do(t, http.MethodPost, d.Regions()["northeurope"]+"/ops/drain", admin, nil); res.Status != http.StatusOK {
		t.Fatalf("drain = %d", res.Status)
	}
	drained := time.Now()
	deploytest.Eventually(t, 2*time.Second, func() error {
		if served, _ := viaEdge(t, edge, "northeurope"); served != "westeurope" {
			return fmt.Errorf("northeurope's clients served by %s, want westeurope (10 ms away, eastus is 38 ms)", served)
		}
		return nil
	})
	t.Logf("drain moved traffic in %s", time.Since(drained))
	if served, _ := viaEdge(t, edge, "eastus"); served != "eastus" {
		t.Fatalf("eastus clients moved to %s by another region's drain", served)
	}
	if res := deploytest.Do(t, http.MethodDelete, d.Regions()["northeurope"]+"/ops/drain", admin, nil); res.Status != http.StatusOK {
		t.Fatalf("undrain = %d", res.Status)
	}
	deploytest.Eventually(t, 2*time.Second, func() error {
		if served, _ := viaEdge(t, edge, "northeurope"); served != "northeurope" {
			return fmt.Errorf("northeurope's clients still served by %s after undrain", served)
		}
		return nil
	})
	var status struct {
		POPs []struct {
			Region string   `json:"region"`
			Near   []string `json:"near"`
			Stamps []struct {
				ID, Region, State, LastProbe, Routing string
				RTTMs                                 float64
			} `json:"stamps"`
		} `json:"pops"`
	}
	deploytest.Do(t, http.MethodGet, d.OpsURL()+"/ops/edge", "", nil).JSON(t, &status)
	if len(status.POPs) != 3 {
		t.Fatalf("/ops/edge shows %d POPs", len(status.POPs))
	}
	for _, p := range status.POPs {
		if len(p.Stamps) != 3 || len(p.Near) == 0 {
			t.Fatalf("POP %s: %d stamps, near %v", p.Region, len(p.Stamps), p.Near)
		}
		for _, s := range p.Stamps {
			if s.Routing == "" || s.LastProbe == "" || s.RTTMs <= 0 {
				t.Fatalf("POP %s explains stamp %s poorly: %+v", p.Region, s.ID, s)
			}
		}
	}
}

// A region's server and stamp die while clients read through the edge:
// idempotent requests are retried elsewhere, so no client sees an error.
func TestEdgeRetriesIdempotentRequestsWhenAStampDies(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{Latency: true, Probe: 200 * time.Millisecond}, regions3...)
	edge := d.EdgeURL()
	if served, _ := viaEdge(t, edge, "eastus"); served != "eastus" {
		t.Fatalf("eastus served by %s", served)
	}
	if err := d.KillRegion("eastus"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var last time.Time
	for time.Since(killed) < 3*time.Second {
		served, _ := viaEdge(t, edge, "eastus") // fails the test on any error
		if served == "eastus" {
			last = time.Now()
		}
	}
	t.Logf("last request served by the killed region %s after the kill (zero: none)", max(0, last.Sub(killed)))
	if !last.IsZero() && last.Sub(killed) > 2*time.Second {
		t.Fatalf("requests still reached the dead region %s after it died", last.Sub(killed))
	}
}
