package edge

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/contoso/shoes/internal/telemetry"
)

// Metric names the edge records, beside the server and dependency
// histograms of its telemetry.
const (
	// MetricRetries counts idempotent requests retried on another stamp,
	// by the POP's region (contoso_edge_retries_total).
	MetricRetries = "contoso.edge.retries"
	// MetricEjections counts stamps ejected from a POP after consecutive
	// failures, by the POP's region, the stamp's (dependency.region) and
	// the stamp's release when it announced one (dependency.release)
	// (contoso_edge_ejections_total).
	MetricEjections = "contoso.edge.ejections"
)

// AttrDependencyRelease is the release of the stamp a metric is about
// (contoso_edge_ejections_total's dependency_release): a release's stamps
// failing can be told from the others' while traffic shifts between them.
const AttrDependencyRelease = "dependency.release"

// RouteAPI is the http.route of a forwarded request that no route of the
// stamps' API (Config.Routes) matches.
const RouteAPI = "/api/*"

// edgeTelemetry are the edge's instruments, and the stamps' routes it names
// requests by.
type edgeTelemetry struct {
	routes             *http.ServeMux // Config.Routes; nil: none
	retries, ejections metric.Int64Counter
}

func newEdgeTelemetry(tel *telemetry.Telemetry, routes []string) (edgeTelemetry, error) {
	var m edgeTelemetry
	if len(routes) > 0 {
		m.routes = http.NewServeMux()
		for _, p := range routes {
			if err := registerRoute(m.routes, p); err != nil {
				return m, fmt.Errorf("route %q: %w", p, err)
			}
		}
	}
	meter := tel.Meter("github.com/contoso/shoes/internal/edge")
	var err error
	if m.retries, err = meter.Int64Counter(MetricRetries, metric.WithUnit("{request}"),
		metric.WithDescription("Idempotent requests retried on another stamp.")); err != nil {
		return m, err
	}
	m.ejections, err = meter.Int64Counter(MetricEjections, metric.WithUnit("{ejection}"),
		metric.WithDescription("Stamps ejected from a POP after consecutive failures."))
	return m, err
}

// registerRoute adds pattern to mux, turning its panic on a bad or
// conflicting pattern into an error.
func registerRoute(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// route names r's route for the telemetry around the edge: the stamps'
// pattern it matches, RouteAPI for another API path, the health path; a
// request the edge refuses as not public keeps "unmatched".
func (m edgeTelemetry) route(r *http.Request) {
	if publicTarget(r) != nil {
		return
	}
	if r.URL.Path == "/health/live" || r.URL.Path == "/health/ready" {
		telemetry.SetRoute(r.Context(), r.URL.Path)
		return
	}
	if m.routes != nil {
		if _, pattern := m.routes.Handler(r); pattern != "" {
			telemetry.SetRoute(r.Context(), pattern)
			return
		}
	}
	telemetry.SetRoute(r.Context(), RouteAPI)
}

func (m edgeTelemetry) retried(ctx context.Context, pop string) {
	m.retries.Add(ctx, 1, metric.WithAttributes(attribute.String(telemetry.AttrRegion, pop)))
}

// ejected counts a stamp of stampRegion running release ("": none
// announced, and no release attribute) ejected from POP pop.
func (m edgeTelemetry) ejected(ctx context.Context, pop, stampRegion, release string) {
	attrs := []attribute.KeyValue{attribute.String(telemetry.AttrRegion, pop), attribute.String(telemetry.AttrDependencyRegion, stampRegion)}
	if release != "" {
		attrs = append(attrs, attribute.String(AttrDependencyRelease, release))
	}
	m.ejections.Add(ctx, 1, metric.WithAttributes(attrs...))
}
