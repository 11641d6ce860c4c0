package worker_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/worker"
)

type keys struct{}

func (keys) PartnerAPIKey() (string, error)     { return "api-key", nil }
func (keys) PartnerSigningKey() (string, error) { return "signing-key", nil }

// partnerStandIn is the partner stand-in on a test server of its own,
// checking keys' credentials, and a partner client that reaches it.
func partnerStandIn(t *testing.T) (*partner.StandIn, *partner.Client) {
	t.Helper()
	standIn := partner.NewStandIn(partner.StandInConfig{APIKey: func() string { return "api-key" }, SigningKey: func() string { return "signing-key" }})
	srv := httptest.NewServer(standIn.Handler())
	t.Cleanup(srv.Close)
	client, err := partner.NewClient(partner.ClientConfig{URL: srv.URL + "/v1/orders", Secrets: keys{}})
	if err != nil {
		t.Fatal(err)
	}
	return standIn, client
}

// The worker counts the orders it confirms and rejects (by reason), once
// per order: a redelivered order that is already final is not counted
// again.
func TestWorkerCountsConfirmedAndRejectedOrders(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	_, client := partnerStandIn(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	w := worker.New(worker.Config{Region: "westeurope", Store: st, Partner: client, Meter: mp.Meter("test")})

	if err := st.SetStock(t.Context(), "p1-42", 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first := shop.Order{ID: shop.NewID(now), User: "u1", Lines: []shop.Line{{SKU: "p1-42", Quantity: 1}}, Status: shop.OrderAccepted, CreatedAt: now}
	second := shop.Order{ID: shop.NewID(now.Add(time.Millisecond)), User: "u2", Lines: []shop.Line{{SKU: "p1-42", Quantity: 1}}, Status: shop.OrderAccepted, CreatedAt: now}
	for _, o := range []shop.Order{first, second, first, second} { // each twice: redeliveries
		if err := w.Order(t.Context(), o); err != nil {
			t.Fatalf("order %s: %v", o.ID, err)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	enc := attribute.DefaultEncoder()
	got := map[string]map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Errorf("%s is not a counter", m.Name)
				continue
			}
			got[m.Name] = map[string]int64{}
			for _, dp := range sum.DataPoints {
				got[m.Name][dp.Attributes.Encoded(enc)] = dp.Value
			}
		}
	}
	want := map[string]map[string]int64{
		worker.MetricOrdersConfirmed: {"region=westeurope": 1},
		worker.MetricOrdersRejected:  {"reason=out_of_stock,region=westeurope": 1},
	}
	for name, points := range want {
		if len(got[name]) != len(points) {
			t.Errorf("%s = %v, want %v", name, got[name], points)
			continue
		}
		for labels, v := range points {
			if got[name][labels] != v {
				t.Errorf("%s{%s} = %d, want %d", name, labels, got[name][labels], v)
			}
		}
	}
}
