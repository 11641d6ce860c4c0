// Package telemetry gives every part of the system traces, metrics and
// logs, correlated by trace id.
//
// A part is one service.name (the Service constants: the edge, a stamp, its
// processor, the secret store, the partner, the operations plane), in a
// region or global, with an instance id: the resource every span and metric
// it records carries. New makes a process's telemetry, whose first part is
// Config.Service; Part adds another part hosted in the same process, as the
// development command runs every part in one process. Each part has trace
// and meter providers of its own; the parts of a process share the span
// processors, the exporters' settings, one Prometheus registry and one sink.
// Within a part, the caller still says which component and region a
// recording belongs to (Middleware, Transport, the attributes of its own
// instruments), as an edge serves several regions' POPs.
//
// Three exporters read the providers:
//
//   - OTLP over HTTP, when the standard OTEL_EXPORTER_OTLP_ENDPOINT (or the
//     per-signal) variables are set: traces, and every part's metrics as
//     its own resource;
//   - Prometheus text at MetricsHandler, from a registry owned by the
//     process's telemetry (never the global one), with the Go and process
//     collectors; the series of a part added with Part carry its identity
//     as labels;
//   - an in-process, bounded Sink that keeps recent traces, warning and error
//     log records, and a tiered history of metric snapshots that the
//     dashboard and the health model query (Sink.Increase, Sink.Quantile, ...).
//
// Context crosses process boundaries as W3C trace context: HTTP headers
// (Middleware, Transport) and NATS message headers (InjectNATS, ExtractNATS,
// StreamHooks). LogHandler stamps trace_id and span_id on slog records made
// with a context that carries a span. Code without a Telemetry of its own
// (the store) starts its spans with the tracer provider of the span its
// context carries, so that they belong to the part that called it.
//
// A nil *Telemetry means "telemetry off": its Tracer and Meter are no-ops,
// Middleware and Transport pass requests through untouched, Part returns
// nil, Sink is nil (and a nil *Sink answers every query with "no data"), Run
// returns at once and Shutdown does nothing. Components can therefore take
// an optional *Telemetry.
package telemetry
