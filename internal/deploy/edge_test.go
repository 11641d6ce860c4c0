package deploy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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

// The edge protects the stamps: a client over its rate gets 429 with
// Retry-After, an oversized body gets 413 without reaching a stamp, and a
// client that never finishes its headers is disconnected.
func TestEdgeProtections(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{EdgeRate: 5, EdgeBurst: 5}, "westeurope")
	edge := d.EdgeURL()
	limited := 0
	for range 20 {
		res := deploytest.Do(t, http.MethodGet, edge+"/api/products?limit=1", "", nil)
		switch res.Status {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
			if res.Header.Get("Retry-After") == "" || res.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("429 without Retry-After or problem+json: %v", res.Header)
			}
		default:
			t.Fatalf("GET = %d %s", res.Status, res.Body)
		}
	}
	if limited < 10 {
		t.Fatalf("%d of 20 back-to-back requests limited at 5/s burst 5, want at least 10", limited)
	}
	deploytest.Eventually(t, 3*time.Second, func() error { // the bucket refills
		if res := deploytest.Do(t, http.MethodGet, edge+"/api/products?limit=1", "", nil); res.Status != http.StatusOK {
			return fmt.Errorf("after a pause: %d", res.Status)
		}
		return nil
	})

	huge := `{"text":"` + strings.Repeat("x", 70<<10) + `"}`
	deploytest.Eventually(t, 3*time.Second, func() error {
		res := deploytest.Do(t, http.MethodPost, edge+"/api/products/"+shop.SeedCatalog()[0].ID+"/comments", "", huge)
		if res.Status != http.StatusRequestEntityTooLarge {
			return fmt.Errorf("oversized body = %d", res.Status)
		}
		return nil
	})

	host := strings.TrimPrefix(edge, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /api/products HTTP/1.1\r\nHost: x\r\n")); err != nil { // never finished
		t.Fatal(err)
	}
	start := time.Now()
	if err := conn.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a client that never finished its headers was still connected after %s", time.Since(start))
	}
	t.Logf("slow client disconnected after %s", time.Since(start))
}

// With every stamp drained or unhealthy, the edge does not fail every
// request: it serves from the least-bad stamp and says so.
func TestEdgeFailsOpenWhenNothingIsHealthy(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	admin := deploytest.Token(t, d, "ops", true)
	if res := deploytest.Do(t, http.MethodPost, d.Regions()["westeurope"]+"/ops/drain", admin, nil); res.Status != http.StatusOK {
		t.Fatalf("drain = %d", res.Status)
	}
	deploytest.Eventually(t, 3*time.Second, func() error {
		res := deploytest.Do(t, http.MethodGet, d.EdgeURL()+"/api/products?limit=1", "", nil)
		if res.Status != http.StatusOK || res.Header.Get("X-Edge-Fail-Open") != "true" {
			return fmt.Errorf("all drained: %d, X-Edge-Fail-Open %q", res.Status, res.Header.Get("X-Edge-Fail-Open"))
		}
		return nil
	})
	var status struct {
		POPs []struct {
			FailOpen bool `json:"failOpen"`
		} `json:"pops"`
	}
	deploytest.Do(t, http.MethodGet, d.OpsURL()+"/ops/edge", "", nil).JSON(t, &status)
	if len(status.POPs) != 1 || !status.POPs[0].FailOpen {
		t.Fatalf("/ops/edge = %+v, want the POP failing open", status.POPs)
	}
	if res := deploytest.Do(t, http.MethodDelete, d.Regions()["westeurope"]+"/ops/drain", admin, nil); res.Status != http.StatusOK {
		t.Fatalf("undrain = %d", res.Status)
	}
	deploytest.Eventually(t, 3*time.Second, func() error {
		if res := deploytest.Do(t, http.MethodGet, d.EdgeURL()+"/api/products?limit=1", "", nil); res.Header.Get("X-Edge-Fail-Open") != "" {
			return fmt.Errorf("still failing open after undrain")
		}
		return nil
	})
}
