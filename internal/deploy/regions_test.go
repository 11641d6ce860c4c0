package deploy_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/shop"
)

// sendAs sends one request through the edge as a client in region.
func sendAs(t *testing.T, d interface{ EdgeURL() string }, region, method, path, token, key string, body any) deploytest.Response {
	t.Helper()
	res, err := requestAs(d, region, method, path, token, key, body)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// requestAs is sendAs returning its error, for goroutines.
func requestAs(d interface{ EdgeURL() string }, region, method, path, token, key string, body any) (deploytest.Response, error) {
	req, err := deploytest.NewRequest(method, d.EdgeURL()+path, token, key, body)
	if err != nil {
		return deploytest.Response{}, err
	}
	req.Header.Set("X-Client-Region", region)
	return deploytest.Exchange(req)
}

// A stamp region added at run time gets a stamp, a POP and links, and
// serves its own clients; removed, it stops taking traffic while clients
// keep writing through it, and no accepted write is lost.
func TestRegionAddedAtRunTimeTakesTrafficAndRemovedLosesNothing(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{Latency: true}, regions3...)
	ops := d.OpsURL()
	// uksouth's latencies put it outside every other region's 10 ms window,
	// and nearest to westeurope.
	res := deploytest.Do(t, http.MethodPost, ops+"/ops/regions", "", map[string]any{"name": "uksouth",
		"latencyMs": map[string]float64{"westeurope": 20, "northeurope": 25, "eastus": 45}})
	if res.Status != http.StatusCreated {
		t.Fatalf("add uksouth = %d %s", res.Status, res.Body)
	}
	var info struct {
		Name        string   `json:"name"`
		Data        bool     `json:"data"`
		DataRegions []string `json:"dataRegions"`
		Stamps      []string `json:"stamps"`
		POP         bool     `json:"pop"`
	}
	res.JSON(t, &info)
	if info.Name != "uksouth" || info.Data || len(info.Stamps) != 1 || !info.POP || len(info.DataRegions) == 0 || info.DataRegions[0] != "westeurope" {
		t.Fatalf("added region = %+v, want a stamp-only region on westeurope's store (20 ms away) with a POP", info)
	}
	product := "/api/products/" + shop.SeedCatalog()[0].ID
	got := sendAs(t, d, "uksouth", http.MethodGet, product, "", "", nil)
	if got.Status != http.StatusOK || got.Header.Get("X-Served-Region") != "uksouth" || got.Header.Get("X-Edge-Pop") != "uksouth" {
		t.Fatalf("uksouth client: %d served by %q through POP %q", got.Status, got.Header.Get("X-Served-Region"), got.Header.Get("X-Edge-Pop"))
	}
	// The other regions' clients stay with their own, nearer stamps. (On a
	// saturated machine a stamp's probe may time out once and take it out
	// of rotation for a few probes; then its clients go elsewhere, though
	// never for good.)
	for _, r := range regions3 {
		deploytest.Eventually(t, 10*time.Second, func() error {
			if served := sendAs(t, d, r, http.MethodGet, product, "", "", nil).Header.Get("X-Served-Region"); served != r {
				for _, p := range d.Edge().Status() {
					if p.Region == r {
						t.Logf("%s client served by %s; its POP: %+v", r, served, p)
					}
				}
				return fmt.Errorf("%s client served by %s after uksouth joined", r, served)
			}
			return nil
		})
	}

	// Clients in uksouth keep reading and writing (comments with keys)
	// while the region is removed.
	var (
		mu       sync.Mutex
		accepted = map[string]string{} // comment location -> text
		failures atomic.Int64
		served   = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var (
					r   deploytest.Response
					err error
				)
				if i%2 == 0 {
					r, err = requestAs(d, "uksouth", http.MethodGet, product, "", "", nil)
				} else {
					text := fmt.Sprintf("worker %d comment %d", w, i)
					var shopper string
					shopper, err = deploytest.NewToken(d, fmt.Sprintf("shopper-%d-%d", w, i), false) // one user would meet its comment limit
					if err == nil {
						r, err = requestAs(d, "uksouth", http.MethodPost, product+"/comments", shopper, fmt.Sprintf("rm-%d-%d", w, i), map[string]string{"text": text})
					}
					if err == nil && r.Status == http.StatusAccepted {
						mu.Lock()
						accepted[r.Header.Get("Location")] = text
						mu.Unlock()
					}
				}
				if err != nil { // this client stops: the test fails below
					failures.Add(1)
					t.Errorf("during removal: %v", err)
					return
				}
				mu.Lock()
				served[r.Header.Get("X-Served-Region")]++
				mu.Unlock()
				if r.Status != http.StatusOK && r.Status != http.StatusAccepted {
					failures.Add(1)
					t.Errorf("during removal: %d %s", r.Status, r.Body)
				}
			}
		})
	}
	servedBy := func(region string, atLeast int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if served[region] < atLeast {
				return fmt.Errorf("%d requests served by %s so far", served[region], region)
			}
			return nil
		}
	}
	deploytest.Eventually(t, 10*time.Second, servedBy("uksouth", 20)) // the clients are going
	removing := time.Now()
	res = deploytest.Do(t, http.MethodDelete, ops+"/ops/regions/uksouth", "", nil)
	took := time.Since(removing)
	mu.Lock()
	before := served["westeurope"]
	mu.Unlock()
	deploytest.Eventually(t, 10*time.Second, servedBy("westeurope", before+20)) // and keep going after
	close(stop)
	wg.Wait()
	if res.Status != http.StatusOK {
		t.Fatalf("remove uksouth = %d %s", res.Status, res.Body)
	}
	t.Logf("removal took %s; requests served by region: %v; %d comments accepted", took, served, len(accepted))
	if failures.Load() != 0 {
		t.Fatalf("%d requests failed during the removal", failures.Load())
	}
	if served["uksouth"] == 0 || served["westeurope"] == 0 {
		t.Fatalf("served %v: want uksouth before the removal and westeurope (the next nearest) after", served)
	}
	after := sendAs(t, d, "uksouth", http.MethodGet, product, "", "", nil)
	if after.Header.Get("X-Served-Region") != "westeurope" || after.Header.Get("X-Edge-Pop") != "westeurope" {
		t.Fatalf("after removal a uksouth client is served by %q through POP %q, want westeurope's", after.Header.Get("X-Served-Region"), after.Header.Get("X-Edge-Pop"))
	}
	var list struct {
		Regions []struct{ Name string } `json:"regions"`
	}
	deploytest.Do(t, http.MethodGet, ops+"/ops/regions", "", nil).JSON(t, &list)
	if slices.ContainsFunc(list.Regions, func(r struct{ Name string }) bool { return r.Name == "uksouth" }) {
		t.Fatalf("uksouth still listed after removal: %+v", list.Regions)
	}
	// Every accepted comment is stored: readable through any region.
	mu.Lock()
	defer mu.Unlock()
	for loc, text := range accepted {
		deploytest.Eventually(t, 30*time.Second, func() error {
			r := sendAs(t, d, "eastus", http.MethodGet, loc, "", "", nil)
			if r.Status != http.StatusOK || !strings.Contains(string(r.Body), text) {
				return fmt.Errorf("comment %s: %d %s", loc, r.Status, r.Body)
			}
			return nil
		})
	}
}

// Bad requests to the regions endpoints get problem+json 4xx, and nothing
// changes.
func TestRegionsEndpointRejectsBadInput(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	ops := d.OpsURL()
	for _, c := range []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"malformed json", http.MethodPost, "/ops/regions", `{"name":`, http.StatusBadRequest},
		{"not an object", http.MethodPost, "/ops/regions", `["uksouth"]`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, "/ops/regions", `{"name":"uksouth","zone":1}`, http.StatusBadRequest},
		{"missing name", http.MethodPost, "/ops/regions", `{}`, http.StatusBadRequest},
		{"upper case", http.MethodPost, "/ops/regions", `{"name":"UKSouth"}`, http.StatusBadRequest},
		{"spaces", http.MethodPost, "/ops/regions", `{"name":"uk south"}`, http.StatusBadRequest},
		{"too long", http.MethodPost, "/ops/regions", `{"name":"` + strings.Repeat("a", 40) + `"}`, http.StatusBadRequest},
		{"path characters", http.MethodPost, "/ops/regions", `{"name":"../etc"}`, http.StatusBadRequest},
		{"negative latency", http.MethodPost, "/ops/regions", `{"name":"uksouth","latencyMs":{"westeurope":-1}}`, http.StatusBadRequest},
		{"absurd latency", http.MethodPost, "/ops/regions", `{"name":"uksouth","latencyMs":{"westeurope":1e9}}`, http.StatusBadRequest},
		{"latency to itself", http.MethodPost, "/ops/regions", `{"name":"uksouth","latencyMs":{"uksouth":5}}`, http.StatusBadRequest},
		{"oversized", http.MethodPost, "/ops/regions", `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, http.StatusRequestEntityTooLarge},
		{"existing region", http.MethodPost, "/ops/regions", `{"name":"westeurope"}`, http.StatusConflict},
		{"remove unknown", http.MethodDelete, "/ops/regions/nowhere", nil, http.StatusNotFound},
		{"remove the last serving region", http.MethodDelete, "/ops/regions/westeurope", nil, http.StatusConflict},
	} {
		res := deploytest.Do(t, c.method, ops+c.path, "", c.body)
		if res.Status != c.want || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s (%s), want %d problem+json", c.name, res.Status, res.Body, res.Header.Get("Content-Type"), c.want)
		}
	}
	var list struct {
		Regions []struct {
			Name   string
			Stamps []string
		} `json:"regions"`
	}
	deploytest.Do(t, http.MethodGet, ops+"/ops/regions", "", nil).JSON(t, &list)
	if len(list.Regions) != 1 || list.Regions[0].Name != "westeurope" || len(list.Regions[0].Stamps) != 1 {
		t.Fatalf("regions after bad requests = %+v", list.Regions)
	}
}
