package deploy_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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
	// Ready means every POP routes home; on a machine so busy that a
	// stamp's probe answers late, a POP may measure a neighbour as nearer
	// for a moment, and must come back.
	for _, r := range regions3 {
		deploytest.Eventually(t, 5*time.Second, func() error {
			if served, pop := viaEdge(t, edge, r); served != r || pop != r {
				return fmt.Errorf("client in %s served by %s through POP %s", r, served, pop)
			}
			return nil
		})
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

// A whole region dies (stamp, store server and POP) while clients in every
// region read and place idempotent orders through the edge: no client sees
// an error, and nothing is routed to the dead region 2 s after the kill.
func TestRegionKilledUnderReadsAndOrdersFailsNoRequest(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{Latency: true, Probe: 200 * time.Millisecond, EdgeRate: 1e6, EdgeBurst: 1e6}, regions3...)
	if served, _ := viaEdge(t, d.EdgeURL(), "eastus"); served != "eastus" {
		t.Fatalf("eastus served by %s", served)
	}
	product := "/api/products/" + shop.SeedCatalog()[1].ID
	var p struct{ Sizes []struct{ SKU string } }
	deploytest.Do(t, http.MethodGet, d.EdgeURL()+product, "", nil).JSON(t, &p)
	tokens := make([]string, 30) // orders are limited per user: spread them
	for i := range tokens {
		tokens[i] = deploytest.Token(t, d, fmt.Sprintf("buyer-%d", i), false)
	}
	var (
		mu       sync.Mutex
		lastDead time.Time // the last answer served by eastus
		killed   time.Time
		counts   = map[string]int{}
		failed   atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ri, region := range regions3 {
		for kind := range 2 { // a reader and a buyer per region
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var (
						res deploytest.Response
						err error
					)
					if kind == 0 {
						res, err = requestAs(d, region, http.MethodGet, product, "", "", nil)
					} else {
						body := map[string]any{"items": []map[string]any{{"sku": p.Sizes[i%len(p.Sizes)].SKU, "quantity": 1}}}
						res, err = requestAs(d, region, http.MethodPost, "/api/orders", tokens[(ri*10+i)%len(tokens)], fmt.Sprintf("kill-%s-%d", region, i), body)
					}
					if err != nil { // this client stops: the test fails below
						failed.Add(1)
						t.Errorf("client in %s: %v", region, err)
						return
					}
					now := time.Now()
					mu.Lock()
					counts[fmt.Sprintf("%s %d", res.Header.Get("X-Served-Region"), res.Status)]++
					if res.Header.Get("X-Served-Region") == "eastus" && !killed.IsZero() {
						lastDead = now
					}
					mu.Unlock()
					if res.Status != http.StatusOK && res.Status != http.StatusAccepted {
						failed.Add(1)
						t.Errorf("client in %s: %d %s", region, res.Status, res.Body)
					}
				}
			})
		}
	}
	seen := func(key string, atLeast int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if counts[key] < atLeast {
				return fmt.Errorf("%d answers %q so far (%v)", counts[key], key, counts)
			}
			return nil
		}
	}
	deploytest.Eventually(t, 15*time.Second, seen("eastus 202", 5)) // eastus takes orders before the kill
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	if err := d.KillRegion("eastus"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	before := counts["northeurope 202"]
	mu.Unlock()
	deploytest.Eventually(t, 20*time.Second, seen("northeurope 202", before+30)) // orders go on elsewhere
	deploytest.Eventually(t, 20*time.Second, func() error {                      // for 3 s after the kill
		if time.Since(killed) < 3*time.Second {
			return errors.New("keep going")
		}
		return nil
	})
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("answers by region and status: %v", counts)
	t.Logf("last request served by the killed region %s after the kill (zero: none)", max(0, lastDead.Sub(killed)))
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	if !lastDead.IsZero() && lastDead.Sub(killed) > 2*time.Second {
		t.Fatalf("requests still reached the dead region %s after it died", lastDead.Sub(killed))
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

	scheme, host, _ := strings.Cut(edge, "://")
	var conn net.Conn
	var err error
	if scheme == "https" { // under CONTOSO_TEST_TLS=1: the same slow client, inside TLS
		conn, err = tls.Dial("tcp", host, d.ClientTLS())
	} else {
		conn, err = net.Dial("tcp", host)
	}
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
	// The operations plane hears the POP's status within a second.
	deploytest.Eventually(t, 3*time.Second, func() error {
		var status struct {
			POPs []struct {
				FailOpen bool `json:"failOpen"`
			} `json:"pops"`
		}
		deploytest.Do(t, http.MethodGet, d.OpsURL()+"/ops/edge", "", nil).JSON(t, &status)
		if len(status.POPs) != 1 || !status.POPs[0].FailOpen {
			return fmt.Errorf("/ops/edge = %+v, want the POP failing open", status.POPs)
		}
		return nil
	})
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

// Only the edge is public: a request straight to a stamp's API without the
// deployment's edge credential gets 403, whatever it claims; the stamp's
// health endpoints stay open for probes, and its operations endpoints keep
// requiring an admin token. Through the edge the same request succeeds,
// and a client cannot forge its way past by sending a credential of its own.
func TestStampsAcceptAPITrafficOnlyFromTheEdge(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	stampURL := d.Regions()["westeurope"]
	product := "/api/products/" + shop.SeedCatalog()[0].ID
	plain := deploytest.PlainClient(d)
	get := func(url string, header map[string]string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, c := range []struct {
		name   string
		path   string
		header map[string]string
		want   int
	}{
		{"api without credential", product, nil, http.StatusForbidden},
		{"api with a wrong credential", product, map[string]string{"X-Edge-Credential": "guess"}, http.StatusForbidden},
		{"api with an empty credential", product, map[string]string{"X-Edge-Credential": ""}, http.StatusForbidden},
		{"api with the credential as a bearer token", product, map[string]string{"Authorization": "Bearer " + d.EdgeCredential()}, http.StatusForbidden},
		{"order list without credential", "/api/orders", nil, http.StatusForbidden},
		{"unknown api path without credential", "/api/nope", nil, http.StatusForbidden},
		{"api with the credential", product, map[string]string{"X-Edge-Credential": d.EdgeCredential()}, http.StatusOK},
		{"health stays open", "/health/stamp", nil, http.StatusOK},
		{"liveness stays open", "/health/live", nil, http.StatusOK},
		{"ops still needs an admin token", "/ops/drain", nil, http.StatusUnauthorized},
	} {
		status, h, body := get(stampURL+c.path, c.header)
		if status != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.want)
		}
		if c.want == http.StatusForbidden && h.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: 403 as %q, want problem+json", c.name, h.Get("Content-Type"))
		}
	}
	if status, _, body := get(d.EdgeURL()+product, map[string]string{"X-Edge-Credential": "forged"}); status != http.StatusOK {
		t.Fatalf("through the edge with a forged credential: %d %s", status, body)
	}
}

// With Pprof, the Go runtime's profiles are on the operations address,
// for admins only, and never on the edge's.
func TestProfilesOnlyOnTheOperationsAddress(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{OpsNeedToken: true, Pprof: true}, "westeurope")
	user := deploytest.Token(t, d, "shopper", false)
	admin := deploytest.Token(t, d, "ops", true)
	for _, c := range []struct {
		name, url, token string
		want             int
	}{
		{"no token", d.OpsURL() + "/debug/pprof/", "", http.StatusUnauthorized},
		{"user token", d.OpsURL() + "/debug/pprof/", user, http.StatusForbidden},
		{"admin token", d.OpsURL() + "/debug/pprof/", admin, http.StatusOK},
		{"admin token, a heap profile", d.OpsURL() + "/debug/pprof/heap?debug=1", admin, http.StatusOK},
		{"through the edge", d.EdgeURL() + "/debug/pprof/", admin, http.StatusNotFound},
		{"through the edge, a heap profile", d.EdgeURL() + "/debug/pprof/heap", admin, http.StatusNotFound},
	} {
		res := deploytest.Do(t, http.MethodGet, c.url, c.token, nil)
		if res.Status != c.want {
			t.Errorf("%s: %d %.200s, want %d", c.name, res.Status, res.Body, c.want)
		}
		if c.want == http.StatusOK && !strings.Contains(string(res.Body), "heap") {
			t.Errorf("%s: %.200s, want a profile", c.name, res.Body)
		}
	}
}

// Outside development mode the operations address wants an admin token
// from everyone, loopback included.
func TestOpsAddressRequiresAnAdminToken(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{OpsNeedToken: true}, "westeurope")
	user := deploytest.Token(t, d, "shopper", false)
	admin := deploytest.Token(t, d, "ops", true)
	for _, c := range []struct {
		name, method, path, token string
		body                      any
		want                      int
	}{
		{"no token", http.MethodGet, "/ops/edge", "", nil, http.StatusUnauthorized},
		{"garbage token", http.MethodGet, "/ops/edge", "not-a-jwt", nil, http.StatusUnauthorized},
		{"user token", http.MethodGet, "/ops/edge", user, nil, http.StatusForbidden},
		{"user token adding a region", http.MethodPost, "/ops/regions", user, map[string]string{"name": "uksouth"}, http.StatusForbidden},
		{"admin token", http.MethodGet, "/ops/edge", admin, nil, http.StatusOK},
		{"admin token, regions", http.MethodGet, "/ops/regions", admin, nil, http.StatusOK},
		{"profiles without --pprof", http.MethodGet, "/debug/pprof/", admin, nil, http.StatusNotFound},
	} {
		res := deploytest.Do(t, c.method, d.OpsURL()+c.path, c.token, c.body)
		if res.Status != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, res.Status, res.Body, c.want)
		}
	}
}
