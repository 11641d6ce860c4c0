package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/telemetry"
)

// tracedStore opens a store on a one-server cluster that injects the trace
// context into the messages it publishes, and a tracer provider that
// records every ended span.
func tracedStore(t *testing.T) (*store.Store, *nats.Conn, *tracetest.SpanRecorder, trace.Tracer) {
	t.Helper()
	c := storetest.NewCluster(t, "a")
	nc, err := nats.Connect(c.Nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Conn: nc, Replicas: 1,
		Inject: func(ctx context.Context, h nats.Header) { telemetry.InjectNATS(ctx, nil, h) }})
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return st, nc, rec, tp.Tracer("test")
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// The time an order spends in the store is explained by child spans of the
// caller's span, made by the caller's own tracer provider: the order
// record's create, the publish (a producer span whose context the message
// carries) and the stock reservation with its compare-and-set.
func TestStoreWritesAreSpansOfTheCallersTrace(t *testing.T) {
	st, nc, rec, tracer := tracedStore(t)
	if err := st.SetStock(t.Context(), "p1-42", 5); err != nil { // no span in ctx: nothing recorded
		t.Fatal(err)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("a write without a span in its context recorded %d spans", n)
	}
	ctx, parent := tracer.Start(t.Context(), "POST /api/orders")
	o := shop.Order{ID: shop.NewID(time.Now()), User: "u1", Lines: []shop.Line{{SKU: "p1-42", Quantity: 2}}, Status: shop.OrderAccepted}
	if _, err := st.CreateOrder(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := st.SubmitOrder(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reserve(ctx, o.ID, o.Lines); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Recall(ctx, "nobody"); err != nil {
		t.Fatal(err)
	}
	parent.End()

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("span %q is not in the caller's trace", s.Name())
		}
		byName[s.Name()] = s
	}
	for _, tc := range []struct {
		name, parent string
		kind         trace.SpanKind
		attrs        map[string]string
	}{
		{"create orders", "POST /api/orders", trace.SpanKindClient, map[string]string{"db.system.name": "nats", "db.operation.name": "create", "db.collection.name": "orders"}},
		{"publish orders.new", "POST /api/orders", trace.SpanKindProducer, map[string]string{"messaging.system": "nats", "messaging.operation.type": "send",
			"messaging.destination.name": "orders.new." + shop.UserKey(o.User) + "." + o.ID, "messaging.message.id": o.ID}},
		{"reserve stock", "POST /api/orders", trace.SpanKindInternal, map[string]string{"contoso.order.lines": "1"}},
		{"update inventory", "reserve stock", trace.SpanKindClient, map[string]string{"db.operation.name": "update", "contoso.cas.attempts": "1", "contoso.cas.conflicts": "0"}},
		{"get idempotency", "POST /api/orders", trace.SpanKindClient, map[string]string{"db.operation.name": "get"}},
	} {
		s, ok := byName[tc.name]
		if !ok {
			t.Errorf("no span %q among %v", tc.name, names(rec.Ended()))
			continue
		}
		if p, ok := byName[tc.parent]; !ok || s.Parent().SpanID() != p.SpanContext().SpanID() {
			t.Errorf("span %q's parent is not %q", tc.name, tc.parent)
		}
		if s.SpanKind() != tc.kind {
			t.Errorf("span %q is a %v span, want %v", tc.name, s.SpanKind(), tc.kind)
		}
		for k, v := range tc.attrs {
			if got := attr(s, k); got != v {
				t.Errorf("span %q: %s = %q, want %q", tc.name, k, got, v)
			}
		}
		if s.Status().Code.String() == "Error" {
			t.Errorf("span %q is an error: %v (not found is an answer)", tc.name, s.Status())
		}
	}

	// The message carries the producer span's context: the processor's
	// span continues the trace under the publish.
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(t.Context(), store.StreamOrders)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	got := trace.SpanContextFromContext(telemetry.ExtractNATS(context.Background(), nil, msg.Header))
	if pub := byName["publish orders.new"]; pub == nil || got.SpanID() != pub.SpanContext().SpanID() {
		t.Errorf("the message's trace context names span %v, want the publish span", got.SpanID())
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// Concurrent reservations of one SKU go through the SKU's one writer in
// batches: each compare-and-set span says how many changes it carried, how
// many attempts it took, and has an event per conflict (every attempt but
// the last a conflict); it links the traces of the reservations batched
// into it from other traces. Together the spans carry every reservation
// once.
func TestReservationSpansCountTheirConflicts(t *testing.T) {
	st, nc, rec, tracer := tracedStore(t)
	if err := st.SetStock(t.Context(), "p2-40", 100); err != nil {
		t.Fatal(err)
	}
	// A second store client, as a second stamp's processor is: two
	// writers of the SKU, whose batches conflict.
	other, err := store.Open(t.Context(), store.Config{Conn: nc, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	writers := []*store.Store{st, other}
	const orders = 16
	var wg sync.WaitGroup
	for i := range orders {
		wg.Go(func() {
			ctx, span := tracer.Start(t.Context(), fmt.Sprintf("order %d", i))
			defer span.End()
			if _, err := writers[i%2].Reserve(ctx, fmt.Sprintf("order-%d", i), []shop.Line{{SKU: "p2-40", Quantity: 1}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	updates, changes, conflicts := 0, 0, 0
	for _, s := range rec.Ended() {
		if s.Name() != "update inventory" {
			continue
		}
		updates++
		var attempts, n, batched int
		fmt.Sscan(attr(s, "contoso.cas.attempts"), &attempts)
		fmt.Sscan(attr(s, "contoso.cas.conflicts"), &n)
		fmt.Sscan(attr(s, "contoso.cas.changes"), &batched)
		changes += batched
		if links := len(s.Links()); links != batched-1 {
			t.Errorf("update span of %d changes has %d links, want one per other change", batched, links)
		}
		events := 0
		for _, e := range s.Events() {
			if e.Name == "revision conflict" {
				events++
			}
		}
		if attempts < 1 || attempts != n+1 || events != n {
			t.Errorf("update span: %d attempts, %d conflicts, %d conflict events; want attempts = conflicts + 1 = events + 1", attempts, n, events)
		}
		conflicts += n
	}
	if changes != orders {
		t.Fatalf("%d update spans carried %d changes for %d reservations", updates, changes, orders)
	}
	t.Logf("%d reservations in %d writes met %d revision conflicts", orders, updates, conflicts)
}
