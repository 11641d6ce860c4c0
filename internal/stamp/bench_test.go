package stamp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// benchClient keeps enough idle connections for parallel benchmarks.
var benchClient = &http.Client{Transport: &http.Transport{
	MaxIdleConns: 256, MaxIdleConnsPerHost: 256,
	DialContext: (&net.Dialer{}).DialContext,
}}

// get sends one GET with the edge credential (cred), as the edge would.
func get(b *testing.B, url, cred string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set(httpapi.HeaderEdgeCredential, cred)
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
}

// BenchmarkGetProduct measures GET /api/products/{id} against one stamp,
// side by side with a bare net/http server answering the same bytes: the
// ratio is the cost of the stamp's middleware, routing and read model.
func BenchmarkGetProduct(b *testing.B) {
	d := deploytest.MustStart(b, deploytest.Options{}, "westeurope")
	id := shop.SeedCatalog()[7].ID
	url := d.Regions()["westeurope"] + "/api/products/" + id
	resp, err := deploytest.Client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(bare.Close)

	for _, tc := range []struct{ name, url string }{{"stamp", url}, {"bare-net-http", bare.URL + "/api/products/" + id}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, tc.url, d.EdgeCredential())
				}
			})
		})
	}
	// In-process, without the network, to count the handler's own allocations.
	st, _ := d.Stamp("westeurope")
	h := st.Handler()
	b.Run("stamp-handler-in-process", func(b *testing.B) {
		b.ReportAllocs()
		req := httptest.NewRequest(http.MethodGet, "/api/products/"+id, nil)
		req.Header.Set(httpapi.HeaderEdgeCredential, d.EdgeCredential())
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatal(rec.Code)
			}
		}
	})
}

// BenchmarkPostComment measures the comment write path (202s per second)
// on a three-region deployment, side by side with raw JetStream publishes
// of the same payload to the same R3 stream: the ratio is the cost of the
// API around the durable publish.
func BenchmarkPostComment(b *testing.B) {
	for _, latency := range []bool{false, true} {
		b.Run(fmt.Sprintf("latency=%v", latency), func(b *testing.B) {
			d := deploytest.MustStart(b, deploytest.Options{Latency: latency}, "westeurope", "northeurope", "eastus")
			id := shop.SeedCatalog()[5].ID
			url := d.Regions()["westeurope"] + "/api/products/" + id + "/comments"
			// Many users take turns, each far below its comment limit.
			tokens := make([]string, 4096)
			for i := range tokens {
				tokens[i] = deploytest.Token(b, d, fmt.Sprint("bench-", i), false)
			}
			var next atomic.Uint64
			payload := []byte(`{"text":"` + strings.Repeat("fast shoes ", 10) + `"}`)
			b.Run("stamp-202", func(b *testing.B) {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("Authorization", "Bearer "+tokens[next.Add(1)%uint64(len(tokens))])
						req.Header.Set(httpapi.HeaderEdgeCredential, d.EdgeCredential())
						resp, err := benchClient.Do(req)
						if err != nil {
							b.Fatal(err)
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							b.Fatalf("POST = %d", resp.StatusCode)
						}
					}
				})
			})
			nc := deploytest.StoreConn(b, d, "westeurope")
			js, _ := jetstream.New(nc)
			c := shop.Comment{ProductID: id, User: "bench", Text: strings.Repeat("fast shoes ", 10)}
			b.Run("raw-jetstream-publish", func(b *testing.B) {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						c := c
						c.ID = shop.NewID(c.CreatedAt)
						msg, _ := json.Marshal(c)
						if _, err := js.Publish(b.Context(), "writes.comment."+id, msg, jetstream.WithMsgID(c.ID)); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		})
	}
}

// BenchmarkOrderIntake measures order intake (202s per second) at one
// stamp of a three-region deployment, with and without simulated
// inter-region latency, 64 requests in flight, each order a new
// Idempotency-Key of one of many users: the cost of accepting an order
// durably, while the regions' processors work the queue behind it. Its
// baseline runs first, on the same servers: raw JetStream publishes of a
// message of an order's size (with a message id and two headers, as an
// order's) to an R3 stream of their own led from the stamp's region, as
// its intake stream is, 64 in flight through the same server: the
// engine's pace. orders/publish is the ratio the goal is written in.
// orders-processors-paused runs last, the same load with the processors'
// consumers paused: the 202 path alone, as in a burst the queue absorbs.
func BenchmarkOrderIntake(b *testing.B) {
	for _, latency := range []bool{false, true} {
		b.Run(fmt.Sprintf("latency=%v", latency), func(b *testing.B) {
			d := deploytest.MustStart(b, deploytest.Options{Latency: latency}, "westeurope", "northeurope", "eastus")
			p := shop.SeedCatalog()[3]
			sku := shop.SKU(p.ID, p.Sizes[0])
			publishes := rawPublishes(b, d, sku)
			url := d.Regions()["westeurope"] + "/api/orders"
			tokens := make([]string, 4096)
			for i := range tokens {
				tokens[i] = deploytest.Token(b, d, fmt.Sprint("bench-", i), false)
			}
			payload := []byte(`{"items":[{"sku":"` + sku + `","quantity":1}]}`)
			var next atomic.Uint64
			place := func(b *testing.B) {
				b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						n := next.Add(1)
						req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("Authorization", "Bearer "+tokens[n%uint64(len(tokens))])
						req.Header.Set("Idempotency-Key", fmt.Sprint("bench-order-", n))
						req.Header.Set(httpapi.HeaderEdgeCredential, d.EdgeCredential())
						resp, err := benchClient.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							b.Errorf("POST = %d %s", resp.StatusCode, body)
							return
						}
					}
				})
				orders := float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(orders, "orders/s")
				b.ReportMetric(orders/publishes, "orders/publish")
			}
			b.Run("orders", place)
			// The 202 path alone: the processors' consumers paused, as
			// when a launch's burst outruns them and the queue holds it,
			// or when they run on machines of their own.
			pauseProcessors(b, d)
			b.Run("orders-processors-paused", place)
		})
	}
}

// pauseProcessors pauses the order processors' consumer on ORDERS and on
// every region's intake stream of d for an hour.
func pauseProcessors(b *testing.B, d *deploy.Deployment) {
	b.Helper()
	js, _ := jetstream.New(deploytest.StoreConn(b, d, "westeurope"))
	for _, stream := range []string{store.StreamOrders, store.IntakeStream("westeurope"), store.IntakeStream("northeurope"), store.IntakeStream("eastus")} {
		if _, err := js.PauseConsumer(b.Context(), stream, store.ConsumerOrders, time.Now().Add(time.Hour)); err != nil {
			b.Fatalf("pause %s on %s: %v", store.ConsumerOrders, stream, err)
		}
	}
}

// rawPublishes runs the raw-jetstream-publish baseline of
// BenchmarkOrderIntake on d and returns its publishes/s.
func rawPublishes(b *testing.B, d *deploy.Deployment, sku string) float64 {
	b.Helper()
	nc := deploytest.StoreConn(b, d, "westeurope")
	js, _ := jetstream.New(nc)
	st, err := js.CreateStream(b.Context(), jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"},
		Storage: jetstream.FileStorage, Replicas: 3})
	if err != nil {
		b.Fatal(err)
	}
	leader := func() (string, error) {
		info, err := st.Info(b.Context())
		switch {
		case err != nil:
			return "", err
		case info.Cluster == nil || info.Cluster.Leader == "":
			return "", errors.New("no leader yet")
		}
		return info.Cluster.Leader, nil
	}
	var first string
	deploytest.Eventually(b, 30*time.Second, func() (err error) { first, err = leader(); return err })
	if first != "westeurope" {
		storetest.StepDown(b, nc, "BENCH_RAW", "westeurope")
		deploytest.Eventually(b, 30*time.Second, func() error {
			if l, err := leader(); err != nil || l != "westeurope" {
				return fmt.Errorf("led from %q (%v), want westeurope", l, err)
			}
			return nil
		})
	}
	now := time.Now()
	msg, _ := json.Marshal(shop.Order{ID: shop.NewID(now), User: "bench-0", Status: shop.OrderAccepted,
		Lines: []shop.Line{{SKU: sku, Quantity: 1}}, CreatedAt: now})
	var publishes float64
	b.Run("raw-jetstream-publish", func(b *testing.B) {
		b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := shop.NewID(time.Now())
				m := &nats.Msg{Subject: "bench.raw." + id, Data: msg, Header: nats.Header{}}
				m.Header.Set("Contoso-Idempotency-Id", id)
				m.Header.Set("Contoso-Request-Hash", id+id)
				if _, err := js.PublishMsg(b.Context(), m, jetstream.WithMsgID(id)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		publishes = float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(publishes, "publishes/s")
	})
	return publishes
}
