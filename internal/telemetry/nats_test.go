package telemetry

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
)

func TestNATSPropagation(t *testing.T) {
	tel := mustNew(t, Config{})
	tr := tel.Tracer("test")
	member, _ := baggage.NewMember("region", "westeurope")
	bag, _ := baggage.New(member)
	ctx, pub := tr.Start(baggage.ContextWithBaggage(context.Background(), bag), "publish orders", trace.WithSpanKind(trace.SpanKindProducer))
	msg := nats.NewMsg("orders.placed")
	InjectNATS(ctx, tel.Propagator(), msg.Header)
	pub.End()
	if msg.Header.Get("traceparent") == "" {
		t.Fatalf("no traceparent in headers %v", msg.Header)
	}

	for _, tc := range []struct {
		name   string
		header nats.Header
		want   bool
	}{
		{"propagated", msg.Header, true},
		{"no headers", nil, false},
		{"garbage", nats.Header{"traceparent": {"00-zz-yy-01"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ExtractNATS(context.Background(), nil, tc.header)
			_, sub := tr.Start(ctx, "process orders", trace.WithSpanKind(trace.SpanKindConsumer))
			defer sub.End()
			same := sub.SpanContext().TraceID() == pub.SpanContext().TraceID()
			if same != tc.want {
				t.Fatalf("consumer trace %s, publisher trace %s: same=%v, want %v", sub.SpanContext().TraceID(), pub.SpanContext().TraceID(), same, tc.want)
			}
			if tc.want {
				if !trace.SpanContextFromContext(ctx).IsRemote() {
					t.Error("extracted span context is not remote")
				}
				if got := baggage.FromContext(ctx).Member("region").Value(); got != "westeurope" {
					t.Errorf("baggage region = %q", got)
				}
			}
		})
	}
	InjectNATS(ctx, nil, nil) // a nil header is left alone, not a panic
}
