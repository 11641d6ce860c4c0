// Package telemetry gives every component of the system traces, metrics and
// logs, correlated by trace id, from one *Telemetry per process.
//
// In the development command all components (edge, stamps, processors, the
// fulfilment partner) share one process and so one *Telemetry; every
// recording therefore carries the region and component it belongs to, which
// the caller supplies (Middleware, Transport, and the attributes of its own
// instruments and log records).
//
// Three exporters read the same providers:
//
//   - OTLP over HTTP, only when the standard OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT variable is set (traces only);
//   - Prometheus text at MetricsHandler, from a registry owned by this
//     Telemetry (never the global one);
//   - an in-process, bounded Sink that keeps recent traces, warning and error
//     log records, and a tiered history of metric snapshots that the
//     dashboard and the health model query (Sink.Increase, Sink.Quantile, ...).
//
// Context crosses process boundaries as W3C trace context: HTTP headers
// (Middleware, Transport) and NATS message headers (InjectNATS, ExtractNATS).
// LogHandler stamps trace_id and span_id on slog records made with a context
// that carries a span.
//
// A nil *Telemetry means "telemetry off": its Tracer and Meter are no-ops,
// Middleware and Transport pass requests through untouched, Sink is nil (and
// a nil *Sink answers every query with "no data"), Run returns at once and
// Shutdown does nothing. Components can therefore take an optional
// *Telemetry.
package telemetry
