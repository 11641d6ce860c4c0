package telemetry

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// NATSCarrier adapts NATS message headers to a propagation.TextMapCarrier.
// NATS header keys are case-sensitive; the W3C propagators use lower-case
// keys ("traceparent", "tracestate", "baggage") on both sides.
type NATSCarrier nats.Header

var _ propagation.TextMapCarrier = NATSCarrier(nil)

// Get returns the first value of key, or "".
func (c NATSCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set replaces the values of key. It panics on a nil carrier, as writing to
// a nil map does.
func (c NATSCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header keys.
func (c NATSCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectNATS writes the trace context (traceparent, tracestate) and baggage
// of ctx into the message headers h. h must be non-nil (nats.NewMsg makes
// one); a nil h is left alone. p nil: W3C trace context and baggage.
func InjectNATS(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) {
	if h == nil {
		return
	}
	if p == nil {
		p = defaultPropagator
	}
	p.Inject(ctx, NATSCarrier(h))
}

// ExtractNATS returns ctx carrying the remote span context (and baggage)
// found in the message headers h, so that a span started from it continues
// the publisher's trace. p nil: W3C trace context and baggage.
func ExtractNATS(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) context.Context {
	if p == nil {
		p = defaultPropagator
	}
	return p.Extract(ctx, NATSCarrier(h))
}

// StreamHooks are the functions a store takes to trace work through its
// streams: Inject puts the trace context into a published message's
// headers; Process starts a consumer span for a delivered message,
// continuing the publisher's trace, and returns the context to handle the
// message in and a function that ends the span with the outcome. On a nil
// *Telemetry both are nil (no tracing).
func (t *Telemetry) StreamHooks(component, region string) (
	inject func(context.Context, nats.Header),
	process func(context.Context, string, nats.Header) (context.Context, func(error)),
) {
	if t == nil {
		return nil, nil
	}
	tracer := t.Tracer("github.com/contoso/shoes/internal/store")
	inject = func(ctx context.Context, h nats.Header) { InjectNATS(ctx, t.Propagator(), h) }
	process = func(ctx context.Context, subject string, h nats.Header) (context.Context, func(error)) {
		ctx = ExtractNATS(ctx, t.Propagator(), h)
		ctx, span := tracer.Start(ctx, "process "+subjectKind(subject), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject),
				attribute.String(AttrRegion, region), attribute.String(AttrComponent, component)))
		return ctx, func(err error) {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
	}
	return inject, process
}

// subjectKind names a subject without its ids ("writes.comment.x" ->
// "writes.comment"), so span names stay few.
func subjectKind(subject string) string {
	parts := strings.SplitN(subject, ".", 3)
	return strings.Join(parts[:min(len(parts), 2)], ".")
}
