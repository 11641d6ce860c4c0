package chaos_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/chaos/chaostest"
)

// Every fault injected is counted by its kind; a refused one is not.
func TestFaultsInjectedAreCountedByFault(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	c, err := chaos.New(chaos.Config{Target: chaostest.NewTarget(regions...), Meter: mp.Meter("test")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	mustInject(t, c, spec(chaos.FaultStoreNodeLoss, "westeurope", time.Minute))
	mustInject(t, c, spec(chaos.FaultStoreNodeLoss, "eastus", time.Minute))
	mustInject(t, c, spec(chaos.FaultPartnerOutage, chaos.GlobalTarget, time.Minute))
	if _, err := c.Inject(context.Background(), spec(chaos.FaultStoreNodeLoss, "eastus", time.Minute)); err == nil {
		t.Fatal("the same fault twice on one target was injected")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != chaos.MetricFaultsInjected {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				fault, _ := dp.Attributes.Value("fault")
				got[fault.AsString()] = dp.Value
			}
		}
	}
	want := map[string]int64{chaos.FaultStoreNodeLoss: 2, chaos.FaultPartnerOutage: 1}
	if len(got) != len(want) || got[chaos.FaultStoreNodeLoss] != 2 || got[chaos.FaultPartnerOutage] != 1 {
		t.Errorf("%s = %v, want %v", chaos.MetricFaultsInjected, got, want)
	}
}
