package deploy

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/contoso/shoes/internal/health"
)

// startHealthModel builds the evaluator of the deployment's health model
// over the deployment's signals, and exports its verdicts as gauges
// (contoso_health_state per entity; contoso_regions_total and
// contoso_regions_healthy for the redundancy alerts).
func (d *Deployment) startHealthModel() (*health.Evaluator, error) {
	ev, err := health.NewEvaluator(health.EvaluatorConfig{Model: health.DefaultModel(), Source: newSignals(d), Regions: d.regionNames})
	if err != nil {
		return nil, fmt.Errorf("health model: %w", err)
	}
	meter := d.tel.Meter("github.com/contoso/shoes/internal/deploy")
	state, err1 := meter.Int64ObservableGauge("contoso.health.state",
		metric.WithDescription("health model state per entity: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown"))
	total, err2 := meter.Int64ObservableGauge("contoso.regions.total", metric.WithDescription("regions in the health model"))
	healthy, err3 := meter.Int64ObservableGauge("contoso.regions.healthy", metric.WithDescription("regions the health model finds healthy"))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("health model gauges: %w", err)
	}
	codes := map[health.Status]int64{health.Healthy: 0, health.Degraded: 1, health.Unhealthy: 2, health.Unknown: 3}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		root := ev.Latest()
		if root == nil {
			return nil
		}
		var n, ok int64
		var walk func(*health.Node)
		seen := map[string]bool{}
		walk = func(node *health.Node) {
			if !seen[node.ID] {
				seen[node.ID] = true
				o.ObserveInt64(state, codes[node.State], metric.WithAttributes(attribute.String("entity", node.ID)))
				if node.Kind == "region" {
					n++
					if node.State == health.Healthy {
						ok++
					}
				}
			}
			for _, c := range node.Children {
				walk(c)
			}
		}
		walk(root)
		o.ObserveInt64(total, n)
		o.ObserveInt64(healthy, ok)
		return nil
	}, state, total, healthy)
	if err != nil {
		return nil, fmt.Errorf("health model gauges: %w", err)
	}
	return ev, nil
}
