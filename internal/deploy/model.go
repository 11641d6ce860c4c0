package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/healthmodel"
)

// startHealthModel builds the evaluator of the deployment's health model
// over the deployment's signals, and exports its verdicts as gauges
// (contoso_health_state per entity; contoso_regions_total and
// contoso_regions_healthy for the redundancy alerts).
func (d *Deployment) startHealthModel() (*healthmodel.Evaluator, error) {
	sig := newSignals(d)
	ev, err := healthmodel.NewEvaluator(healthmodel.EvaluatorConfig{Model: healthmodel.Default(), Source: sig, Regions: d.regionNames})
	if err != nil {
		return nil, fmt.Errorf("health model: %w", err)
	}
	meter := d.tel.Meter("github.com/contoso/shoes/internal/deploy")
	state, err1 := meter.Int64ObservableGauge("contoso.health.state",
		metric.WithDescription("health model state per entity: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown"))
	total, err2 := meter.Int64ObservableGauge("contoso.regions.total", metric.WithDescription("regions in the health model"))
	healthy, err3 := meter.Int64ObservableGauge("contoso.regions.healthy", metric.WithDescription("regions the health model finds healthy"))
	// The signals behind the model, as metrics: queue age and depth,
	// every stamp check's verdict, the partner breakers, where each POP
	// routes.
	queueAge, err4 := meter.Float64ObservableGauge("contoso.queue.age", metric.WithUnit("s"),
		metric.WithDescription("age of the oldest unprocessed message of a work-queue stream"))
	queueDepth, err5 := meter.Int64ObservableGauge("contoso.queue.depth", metric.WithDescription("unprocessed messages of a work-queue stream"))
	probe, err6 := meter.Int64ObservableGauge("contoso.probe.status",
		metric.WithDescription("a stamp dependency check's verdict: 0 healthy, 1 degraded, 2 unhealthy"))
	breaker, err7 := meter.Int64ObservableGauge("contoso.partner.breaker",
		metric.WithDescription("the partner client's circuit breaker: 0 closed, 1 half-open, 2 open"))
	routes, err8 := meter.Int64ObservableGauge("contoso.edge.routes",
		metric.WithDescription("1 when a POP sends its clients to a region's stamps now"))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8); err != nil {
		return nil, fmt.Errorf("health model gauges: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for key, r := range sig.all() {
			switch {
			case key.name == "queue.age":
				o.ObserveFloat64(queueAge, r.Value, metric.WithAttributes(attribute.String("stream", key.stream)))
				o.ObserveInt64(queueDepth, int64(r.Traffic), metric.WithAttributes(attribute.String("stream", key.stream)))
			case strings.HasPrefix(key.name, "probe.") && key.name != "probe.age":
				o.ObserveInt64(probe, int64(r.Value), metric.WithAttributes(attribute.String("region", key.region),
					attribute.String("check", strings.TrimPrefix(key.name, "probe."))))
			case key.name == "partner.breaker":
				o.ObserveInt64(breaker, int64(r.Value), metric.WithAttributes(attribute.String("region", key.region)))
			}
		}
		for pop, regions := range edge.Routes(d.front.edge.Status()) {
			for _, region := range regions {
				o.ObserveInt64(routes, 1, metric.WithAttributes(attribute.String("pop", pop), attribute.String("region", region)))
			}
		}
		return nil
	}, queueAge, queueDepth, probe, breaker, routes)
	if err != nil {
		return nil, fmt.Errorf("signal gauges: %w", err)
	}
	codes := map[health.Status]int64{health.Healthy: 0, health.Degraded: 1, health.Unhealthy: 2, health.Unknown: 3}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		root := ev.Latest()
		if root == nil {
			return nil
		}
		var walk func(*healthmodel.Node)
		seen := map[string]bool{}
		walk = func(node *healthmodel.Node) {
			if !seen[node.ID] {
				seen[node.ID] = true
				o.ObserveInt64(state, codes[node.State], metric.WithAttributes(attribute.String("entity", node.ID)))
			}
			for _, c := range node.Children {
				walk(c)
			}
		}
		walk(root)
		// The regions are the children of the model's redundancy group
		// (other entities of kind region are a region's part of a flow).
		var n, ok int64
		if group := root.Find("regions"); group != nil {
			for _, r := range group.Children {
				n++
				if r.State == health.Healthy {
					ok++
				}
			}
		}
		o.ObserveInt64(total, n)
		o.ObserveInt64(healthy, ok)
		return nil
	}, state, total, healthy)
	if err != nil {
		return nil, fmt.Errorf("health model gauges: %w", err)
	}
	return ev, nil
}
