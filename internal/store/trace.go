package store

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the store's spans.
const tracerName = "github.com/contoso/shoes/internal/store"

// Attribute keys of the store's spans.
const (
	attrDBSystem      = "db.system.name"
	attrDBCollection  = "db.collection.name"
	attrDBOperation   = "db.operation.name"
	attrMsgSystem     = "messaging.system"
	attrMsgOperation  = "messaging.operation.type"
	attrMsgDest       = "messaging.destination.name"
	attrMsgID         = "messaging.message.id"
	attrCASAttempts   = "contoso.cas.attempts"
	attrCASConflicts  = "contoso.cas.conflicts"
	attrCASChanges    = "contoso.cas.changes"
	attrLines         = "contoso.order.lines"
	eventCASConflict  = "revision conflict"
	eventStoreRetried = "store unavailable; retrying"
)

// startSpan starts a span for one store operation as a child of the span
// ctx carries (a request's, or a processed message's), made by that span's
// own tracer provider: the store's work is recorded by the part of the
// system that asked for it (the stamp's API, its processor), with no
// telemetry of its own. Without a span in ctx nothing is recorded.
func startSpan(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(ctx, name,
		trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// kvSpan starts the span of a key-value operation on bucket.
func kvSpan(ctx context.Context, op, bucket string) (context.Context, trace.Span) {
	return startSpan(ctx, op+" "+bucket, trace.SpanKindClient,
		attribute.String(attrDBSystem, "nats"), attribute.String(attrDBOperation, op), attribute.String(attrDBCollection, bucket))
}

// endSpan ends span with err as its outcome; an error the caller expects
// (ok(err)), such as a key that exists, is not one.
func endSpan(span trace.Span, err error, ok ...func(error) bool) {
	if err != nil {
		expected := false
		for _, f := range ok {
			expected = expected || f(err)
		}
		if !expected {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}
