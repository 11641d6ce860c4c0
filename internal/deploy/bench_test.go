package deploy_test

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/shop"
)

// BenchmarkOrders measures the order path on three regions in one
// process: accepted orders per second (202s, the order durably on the R3
// order stream) and confirmed orders per second (reserved, partner
// notified, confirmed), for orders spread over many SKUs and for every
// order racing for one SKU.
//
//	go test -run='^$' -bench=Orders -benchtime=400x ./internal/deploy
func BenchmarkOrders(b *testing.B) {
	for _, tc := range []struct {
		name      string
		contended bool
	}{{"spread", false}, {"one-sku", true}} {
		b.Run(tc.name, func(b *testing.B) {
			d := deploytest.MustStart(b, deploytest.Options{}, regions3...)
			var skus []string
			for _, p := range shop.SeedCatalog() {
				for _, size := range p.Sizes {
					skus = append(skus, shop.SKU(p.ID, size))
				}
			}
			admin := deploytest.Token(b, d, "ops", true)
			if tc.contended {
				skus = skus[:1]
			}
			for _, sku := range skus {
				n := 1_000_000
				if tc.contended {
					n = b.N / 2 // half the buyers win
				}
				res := deploytest.Do(b, http.MethodPut, d.Regions()["westeurope"]+"/api/inventory/"+sku, admin, map[string]int{"stock": n})
				if res.Status != http.StatusOK {
					b.Fatalf("stock: %d", res.Status)
				}
			}
			const users = 500
			tokens := make([]string, users)
			for i := range tokens {
				tokens[i] = deploytest.Token(b, d, fmt.Sprintf("bench-%d", i), false)
			}
			var (
				next     atomic.Int64
				mu       sync.Mutex
				accepted = map[string]string{}
			)
			b.ResetTimer()
			start := time.Now()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(1))
					tok := tokens[i%users]
					res := deploytest.DoKeyed(b, http.MethodPost, d.Regions()[regions3[i%3]]+"/api/orders", tok, fmt.Sprintf("bench-%d", i),
						map[string]any{"items": []shop.Line{{SKU: skus[i%len(skus)], Quantity: 1}}})
					if res.Status != http.StatusAccepted {
						b.Errorf("POST = %d %s", res.Status, res.Body)
						continue
					}
					var o order
					res.JSON(b, &o)
					mu.Lock()
					accepted[o.ID] = tok
					mu.Unlock()
				}
			})
			acceptDur := time.Since(start)
			final := waitFinal(b, d, accepted, 5*time.Minute)
			allDur := time.Since(start)
			b.StopTimer()
			confirmed := 0
			for _, o := range final {
				if o.Status == shop.OrderConfirmed {
					confirmed++
				}
			}
			b.ReportMetric(float64(len(accepted))/acceptDur.Seconds(), "accepted/s")
			b.ReportMetric(float64(len(final))/allDur.Seconds(), "final/s")
			b.ReportMetric(float64(confirmed), "confirmed")
			if tc.contended && confirmed > b.N/2 {
				b.Fatalf("oversold: %d confirmed of %d units", confirmed, b.N/2)
			}
		})
	}
}

// BenchmarkEdgeGetProduct compares GET /api/products/{id} straight at a
// stamp with the same request through the edge (its POP in the same
// region, no simulated latency), in one run.
//
//	go test -run='^$' -bench=EdgeGetProduct -benchtime=3s ./internal/deploy
func BenchmarkEdgeGetProduct(b *testing.B) {
	d := deploytest.MustStart(b, deploytest.Options{EdgeRate: 1e6, EdgeBurst: 1e6}, "westeurope")
	path := "/api/products/" + shop.SeedCatalog()[7].ID
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, tc := range []struct{ name, url string }{
		{"stamp", d.Regions()["westeurope"] + path},
		{"edge", d.EdgeURL() + path},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
					req.Header.Set("X-Client-Region", "westeurope")
					req.Header.Set("X-Edge-Credential", d.EdgeCredential()) // as the edge sends it; the edge replaces it
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("GET = %d", resp.StatusCode)
					}
				}
			})
		})
	}
}
