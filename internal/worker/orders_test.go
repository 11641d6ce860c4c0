package worker_test

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/worker"
)

// spanHook is a span processor that calls onEnd with every span that
// ends: a way to act at a precise point of the processing, through the
// tracing the store already does.
type spanHook struct{ onEnd func(sdktrace.ReadOnlySpan) }

func (h spanHook) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (h spanHook) OnEnd(s sdktrace.ReadOnlySpan)                   { h.onEnd(s) }
func (h spanHook) Shutdown(context.Context) error                  { return nil }
func (h spanHook) ForceFlush(context.Context) error                { return nil }

var _ sdktrace.SpanProcessor = spanHook{}

// linesOf returns the contoso.order.lines attribute of a span, or -1.
func linesOf(s sdktrace.ReadOnlySpan) int64 {
	for _, kv := range s.Attributes() {
		if kv.Key == "contoso.order.lines" && kv.Value.Type() == attribute.INT64 {
			return kv.Value.AsInt64()
		}
	}
	return -1
}

// The processor of a region dies with three orders in flight: a right
// after its stock was reserved (before the order was marked reserved); b
// while its partner notification was on the wire, never delivered; c
// after the partner took its notification but before the answer came
// back. None is acknowledged, so all come back, after the ack wait, to
// another region's processor, which finishes them: the partner holds
// each order exactly once (c's second notification, from another region
// and so with another body, is answered as a conflict, which the client
// takes for "already there"), each order is confirmed, and the stock is
// exact to the unit: the held units sold once, no hold left, nothing
// taken twice.
//
// Mutations tried: the held check in Reserve's update func removed →
// "stock crash-a-42 = 0 available, holds map[]; want 2 available, no
// hold"; the confirmed order's holds released with restore → "stock
// crash-a-42 = 5 available, holds map[]; want 2 available, no hold"; the
// notification skipped for an order found reserved (as if reserved meant
// notified) → "finished: a, b, c [confirmed reserved reserved]; want all
// confirmed"; the partner client taking 409 for a failure → "40 s after
// the crash: a, b, c [confirmed confirmed reserved], 1 orders queued".
func TestOrdersWhoseProcessorDiedAreFinishedOnceByAnother(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope", "northeurope", "eastus")
	ctx := t.Context()

	now := time.Now().UTC()
	stock := map[string]int{"crash-a-42": 5, "crash-b-42": 4}
	order := func(i int, user string, lines ...shop.Line) shop.Order {
		return shop.Order{ID: shop.NewID(now.Add(time.Duration(i) * time.Millisecond)), User: user, Status: shop.OrderAccepted,
			Region: "westeurope", CreatedAt: now, UpdatedAt: now, Lines: lines}
	}
	a := order(0, "alice", shop.Line{SKU: "crash-a-42", Quantity: 2}, shop.Line{SKU: "crash-b-42", Quantity: 1})
	b := order(1, "bob", shop.Line{SKU: "crash-a-42", Quantity: 1})
	cc := order(2, "carol", shop.Line{SKU: "crash-b-42", Quantity: 2})
	orders := []shop.Order{a, b, cc}

	standIn := partner.NewStandIn(partner.StandInConfig{APIKey: func() string { return "api-key" }, SigningKey: func() string { return "signing-key" }})
	// The first processor reaches the partner through a server of its own
	// whose answers never come back: b's notification stays on the wire,
	// c's reaches the partner. arrivals tells of each.
	arrivals := make(chan string, len(orders))
	srv1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			standIn.Handler().ServeHTTP(w, r)
			return
		}
		id := r.Header.Get(partner.HeaderIdempotencyKey)
		if id == cc.ID {
			standIn.Handler().ServeHTTP(httptest.NewRecorder(), r)
		}
		// With the body read, net/http watches the connection and ends
		// the request's context when it closes.
		_, _ = io.Copy(io.Discard, r.Body)
		arrivals <- id
		<-r.Context().Done() // until the processor's connections die with it
	}))
	t.Cleanup(srv1.Close)
	srv2 := httptest.NewServer(standIn.Handler())
	t.Cleanup(srv2.Close)
	// One attempt that waits as long as the partner takes.
	client1, err := partner.NewClient(partner.ClientConfig{URL: srv1.URL + "/v1/orders", Secrets: keys{}, AttemptTimeout: time.Minute, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	client2, err := partner.NewClient(partner.ClientConfig{URL: srv2.URL + "/v1/orders", Secrets: keys{}})
	if err != nil {
		t.Fatal(err)
	}

	observer, _ := c.MustOpen(t, 2)
	for sku, n := range stock {
		if err := observer.SetStock(ctx, sku, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range orders {
		if _, err := observer.CreateOrder(ctx, o); err != nil {
			t.Fatal(err)
		}
		if err := observer.SubmitOrder(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// The first processor: its store calls are traced, and the end of a's
	// reservation (the only one of two lines) is where it dies, once b's
	// and c's notifications have reached the partner's server.
	nc1, err := nats.Connect(c.Nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc1.Close)
	crashed := make(chan struct{})
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spanHook{onEnd: func(s sdktrace.ReadOnlySpan) {
		if s.Name() != "reserve stock" || linesOf(s) != int64(len(a.Lines)) {
			return
		}
		for range 2 {
			select {
			case <-arrivals:
			case <-time.After(30 * time.Second): // the checks below fail
			}
		}
		nc1.Close()
		srv1.CloseClientConnections()
		close(crashed)
	}}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracer := tp.Tracer("test")
	// A short write budget: what is left of the processor after its crash
	// gives up its calls on the closed connection soon.
	st1, err := store.Open(ctx, store.Config{Conn: nc1, Replicas: 3, WriteBudget: 2 * time.Second, Process: func(ctx context.Context, subject string, _ nats.Header) (context.Context, func(error)) {
		ctx, span := tracer.Start(ctx, "process "+subject)
		return ctx, func(error) { span.End() }
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run1, stop1 := context.WithCancel(ctx)
	done1 := make(chan struct{})
	go func() {
		defer close(done1)
		_ = worker.New(worker.Config{Region: "westeurope", Store: st1, Partner: client1}).Run(run1)
	}()
	select {
	case <-crashed:
	case <-time.After(30 * time.Second):
		t.Fatal("the first processor did not reach the crash point within 30 s")
	}
	t.Logf("the first processor crashed %s after it started", time.Since(start))
	stop1()
	select {
	case <-done1:
	case <-time.After(30 * time.Second):
		t.Fatal("the first processor did not stop within 30 s of its crash")
	}

	// What the crash left: a accepted with its stock held, b and c
	// reserved, the partner told of c only.
	status := func(o shop.Order) shop.OrderStatus {
		t.Helper()
		got, err := observer.Order(ctx, shop.UserKey(o.User), o.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Status
	}
	statuses := func() []shop.OrderStatus {
		t.Helper()
		var out []shop.OrderStatus
		for _, o := range orders {
			out = append(out, status(o))
		}
		return out
	}
	stockOf := func(sku string) shop.Stock {
		t.Helper()
		s, err := observer.Stock(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got, want := statuses(), []shop.OrderStatus{shop.OrderAccepted, shop.OrderReserved, shop.OrderReserved}; !slices.Equal(got, want) {
		t.Fatalf("after the crash: a, b, c %v; want %v", got, want)
	}
	for sku, want := range map[string]shop.Stock{
		"crash-a-42": {Available: 2, Holds: map[string]int{a.ID: 2, b.ID: 1}},
		"crash-b-42": {Available: 1, Holds: map[string]int{a.ID: 1, cc.ID: 2}},
	} {
		if got := stockOf(sku); got.Available != want.Available || !maps.Equal(got.Holds, want.Holds) {
			t.Fatalf("after the crash: %s = %+v, want %+v", sku, got, want)
		}
	}
	if got := standIn.Received(); len(got) != 1 || got[0].OrderID != cc.ID {
		t.Fatalf("after the crash the partner has %+v, want c's notification only", got)
	}

	// Another region's processor takes the orders over. Their messages
	// stay unacknowledged until it finishes them.
	st2, _ := c.MustOpen(t, 1)
	run2, stop2 := context.WithCancel(ctx)
	done2 := make(chan struct{})
	go func() {
		defer close(done2)
		_ = worker.New(worker.Config{Region: "northeurope", Store: st2, Partner: client2}).Run(run2)
	}()
	deadline := time.Now().Add(40 * time.Second)
	for {
		_, pending, err := observer.QueueAge(ctx, store.StreamOrders)
		if err == nil && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("40 s after the crash: a, b, c %v, %d orders queued (%v)", statuses(), pending, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the orders were finished %s after the first processor started", time.Since(start))
	stop2()
	<-done2

	if got := statuses(); slices.ContainsFunc(got, func(s shop.OrderStatus) bool { return s != shop.OrderConfirmed }) {
		t.Errorf("finished: a, b, c %v; want all confirmed", got)
	}
	byOrder := map[string][]string{} // order id -> regions that notified it
	for _, n := range standIn.Received() {
		byOrder[n.OrderID] = append(byOrder[n.OrderID], n.Region)
	}
	for _, o := range orders {
		want := "northeurope"
		if o.ID == cc.ID {
			want = "westeurope" // the first notification is the one kept
		}
		if got := byOrder[o.ID]; !slices.Equal(got, []string{want}) {
			t.Errorf("the partner holds order %s from %v, want once, from %s", o.ID, got, want)
		}
		if n := standIn.Deliveries(o.ID); n != 1 {
			t.Errorf("order %s was taken by the partner %d times, want once", o.ID, n)
		}
	}
	for sku, want := range map[string]int{"crash-a-42": 5 - 2 - 1, "crash-b-42": 4 - 1 - 2} {
		if s := stockOf(sku); s.Available != want || len(s.Holds) != 0 {
			t.Errorf("stock %s = %d available, holds %v; want %d available, no hold", sku, s.Available, s.Holds, want)
		}
	}
}
