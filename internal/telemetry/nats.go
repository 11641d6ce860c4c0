package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
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
