package opsplane

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

// stateCodes are the values of contoso.health.state.
var stateCodes = map[health.Status]int64{health.Healthy: 0, health.Degraded: 1, health.Unhealthy: 2, health.Unknown: 3}

// registerGauges exports the model's verdicts and the signals behind them
// as gauges:
//
//   - contoso.health.state per entity, 0 healthy, 1 degraded, 2 unhealthy,
//     3 unknown, labelled with entity, kind, state and, where they apply,
//     region and flow, so states can be aggregated by label;
//   - contoso.regions.total, .healthy and .up (not unhealthy nor unknown),
//     for the redundancy alerts;
//   - the queues' age and depth, every stamp check's verdict, the partner
//     breakers and where each POP routes.
func (p *Plane) registerGauges() error {
	if p.cfg.Telemetry == nil {
		return nil
	}
	meter := p.cfg.Telemetry.Meter("github.com/contoso/shoes/internal/opsplane")
	state, err1 := meter.Int64ObservableGauge("contoso.health.state",
		metric.WithDescription("health model state per entity: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown"))
	total, err2 := meter.Int64ObservableGauge("contoso.regions.total", metric.WithDescription("regions in the health model"))
	healthy, err3 := meter.Int64ObservableGauge("contoso.regions.healthy", metric.WithDescription("regions the health model finds healthy"))
	up, err4 := meter.Int64ObservableGauge("contoso.regions.up", metric.WithDescription("regions the health model finds serving: healthy or degraded"))
	queueAge, err5 := meter.Float64ObservableGauge("contoso.queue.age", metric.WithUnit("s"),
		metric.WithDescription("age of the oldest unprocessed message of a work-queue stream"))
	queueDepth, err6 := meter.Int64ObservableGauge("contoso.queue.depth", metric.WithDescription("unprocessed messages of a work-queue stream"))
	probe, err7 := meter.Int64ObservableGauge("contoso.probe.status",
		metric.WithDescription("a stamp dependency check's verdict: 0 healthy, 1 degraded, 2 unhealthy"))
	breaker, err8 := meter.Int64ObservableGauge("contoso.partner.breaker",
		metric.WithDescription("the partner client's circuit breaker: 0 closed, 1 half-open, 2 open"))
	routes, err9 := meter.Int64ObservableGauge("contoso.edge.routes",
		metric.WithDescription("1 when a POP sends its clients to a region's stamps now"))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9); err != nil {
		return fmt.Errorf("operations plane gauges: %w", err)
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for key, r := range p.readings() {
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
		for pop, regions := range edge.Routes(p.POPs()) {
			for _, region := range regions {
				o.ObserveInt64(routes, 1, metric.WithAttributes(attribute.String("pop", pop), attribute.String("region", region)))
			}
		}
		return nil
	}, queueAge, queueDepth, probe, breaker, routes)
	if err != nil {
		return fmt.Errorf("operations plane gauges: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		root := p.eval.Latest()
		if root == nil {
			return nil
		}
		seen := map[string]bool{}
		var walk func(*healthmodel.Node)
		walk = func(n *healthmodel.Node) {
			if !seen[n.ID] {
				seen[n.ID] = true
				o.ObserveInt64(state, stateCodes[n.State], metric.WithAttributes(stateLabels(n)...))
			}
			for _, c := range n.Children {
				walk(c)
			}
		}
		walk(root)
		n, ok, serving := regionCounts(root)
		o.ObserveInt64(total, n)
		o.ObserveInt64(healthy, ok)
		o.ObserveInt64(up, serving)
		return nil
	}, state, total, healthy, up)
	if err != nil {
		return fmt.Errorf("operations plane gauges: %w", err)
	}
	return nil
}

// flows are the user flows of the model, by the last part of the ids of
// their entities (flow.checkout, region.westeurope.checkout).
var flows = []string{"browse", "comment", "checkout"}

// stateLabels are the labels of one entity's state: its id, kind and
// state, and the region and flow it belongs to where it belongs to one.
func stateLabels(n *healthmodel.Node) []attribute.KeyValue {
	kv := []attribute.KeyValue{attribute.String("entity", n.ID), attribute.String("kind", n.Kind), attribute.String("state", n.State.String())}
	if n.Region != "" {
		kv = append(kv, attribute.String("region", n.Region))
	}
	last := n.ID[strings.LastIndexByte(n.ID, '.')+1:]
	for _, f := range flows {
		if last == f {
			kv = append(kv, attribute.String("flow", f))
		}
	}
	return kv
}

// regionCounts counts the regions of the model's redundancy group: all,
// healthy, and serving (healthy or degraded). A degraded region still
// serves its clients; a region is down when it is unhealthy or unknown.
func regionCounts(root *healthmodel.Node) (total, healthy, serving int64) {
	group := root.Find("regions")
	if group == nil {
		return 0, 0, 0
	}
	for _, r := range group.Children {
		total++
		switch r.State {
		case health.Healthy:
			healthy++
			serving++
		case health.Degraded:
			serving++
		}
	}
	return total, healthy, serving
}
