package checkout_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/contoso/shoes/internal/checkout"
	"github.com/contoso/shoes/internal/poll"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// known is the catalog of these tests: two sizes of one shoe.
func known(sku string) bool { return sku == "shoe-42" || sku == "shoe-43" }

// service returns a checkout service on a one-server store, and that store,
// counting the admission slots it takes.
func service(t *testing.T, admit func(user string) (func(), error)) (*checkout.Service, *store.Store) {
	t.Helper()
	st, _ := storetest.NewCluster(t, "westeurope").MustOpen(t, 0)
	return checkout.New(checkout.Config{Store: st, Region: "westeurope", Known: known, Admit: admit}), st
}

func line(sku string, q int) shop.Line { return shop.Line{SKU: sku, Quantity: q} }

// Malformed requests are refused with the field at fault, before they take
// an admission slot, and make no order.
func TestPlaceRefusesMalformedRequests(t *testing.T) {
	var slots atomic.Int64
	svc, st := service(t, func(string) (func(), error) { slots.Add(1); return func() {}, nil })
	for _, tc := range []struct {
		name  string
		req   checkout.Request
		field string
	}{
		{"no key", checkout.Request{User: "alice", Items: []shop.Line{line("shoe-42", 1)}}, "Idempotency-Key"},
		{"key too long", checkout.Request{User: "alice", Key: strings.Repeat("k", 300), Items: []shop.Line{line("shoe-42", 1)}}, "Idempotency-Key"},
		{"key with a space", checkout.Request{User: "alice", Key: "a b", Items: []shop.Line{line("shoe-42", 1)}}, "Idempotency-Key"},
		{"neither items nor cart", checkout.Request{User: "alice", Key: "k1"}, "items"},
		{"items and cart", checkout.Request{User: "alice", Key: "k1", Items: []shop.Line{line("shoe-42", 1)}, FromCart: true}, "items"},
		{"unknown SKU", checkout.Request{User: "alice", Key: "k1", Items: []shop.Line{line("shoe-42", 1), line("shoe-99", 1)}}, "items[1].sku"},
		{"malformed SKU", checkout.Request{User: "alice", Key: "k1", Items: []shop.Line{line("Shoe 42!", 1)}}, "items[0].sku"},
		{"repeated SKU", checkout.Request{User: "alice", Key: "k1", Items: []shop.Line{line("shoe-42", 1), line("shoe-42", 2)}}, "items[1].sku"},
		{"zero quantity", checkout.Request{User: "alice", Key: "k1", Items: []shop.Line{line("shoe-42", 0)}}, "items[0].quantity"},
		{"quantity too high", checkout.Request{User: "alice", Key: "k1", Items: []shop.Line{line("shoe-42", 11)}}, "items[0].quantity"},
		{"empty cart", checkout.Request{User: "alice", Key: "k1", FromCart: true}, "fromCart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := slots.Load()
			_, err := svc.Place(t.Context(), tc.req)
			var se *shop.Error
			if !errors.As(err, &se) || se.Kind != shop.KindInvalid || se.Field != tc.field {
				t.Fatalf("Place = %v, want invalid %s", err, tc.field)
			}
			if tc.field != "fromCart" && slots.Load() != before {
				t.Fatal("a malformed request took an admission slot")
			}
		})
	}
	if orders, _, err := st.Orders(t.Context(), shop.UserKey("alice"), "", 10); err != nil || len(orders) != 0 {
		t.Fatalf("orders after refused requests: %v, %v", orders, err)
	}
	if _, n, err := st.QueueAge(t.Context(), store.StreamOrders); err != nil || n != 0 {
		t.Fatalf("%d orders queued after refused requests (%v)", n, err)
	}
}

// The same user and key get the same order, whatever the order of its
// lines, while it is queued and once the processor recorded it; another
// body with that key is refused; another user with the same key makes
// another order.
//
// Mutation tried: the request hash compared on neither path (replays of
// another body answered with the first order) → "a replay with another
// body = …, want the key refused".
func TestTheSameRequestGetsTheSameOrder(t *testing.T) {
	svc, st := service(t, nil)
	ctx := t.Context()
	req := checkout.Request{User: "alice", Key: "launch-1", Items: []shop.Line{line("shoe-43", 1), line("shoe-42", 2)}}
	first, err := svc.Place(ctx, req)
	if err != nil || !first.Fresh || first.Order.Status != shop.OrderAccepted || first.Order.Region != "westeurope" {
		t.Fatalf("first Place = %+v, %v", first, err)
	}
	if first.Order.Lines[0].SKU != "shoe-42" {
		t.Fatalf("lines %v, want them by SKU", first.Order.Lines)
	}
	reordered := req
	reordered.Items = []shop.Line{line("shoe-42", 2), line("shoe-43", 1)}
	other := req
	other.Items = []shop.Line{line("shoe-42", 1)}

	check := func(when string) {
		t.Helper()
		again, err := svc.Place(ctx, reordered)
		if err != nil || again.Fresh || again.Order.ID != first.Order.ID {
			t.Fatalf("%s: a replay = %+v, %v; want order %s, not fresh", when, again, err, first.Order.ID)
		}
		if got, err := svc.Place(ctx, other); !errors.Is(err, checkout.ErrReusedKey) || shop.KindOf(err) != shop.KindUnprocessable {
			t.Fatalf("%s: a replay with another body = %+v, %v; want the key refused", when, got, err)
		}
	}
	check("queued")

	// What the processor does when it takes the message: record the
	// request, then the order.
	in := store.Intake{Order: first.Order, IdempotencyID: shop.IdempotencyID("alice", "launch-1"), RequestHash: shop.RequestHash(false, first.Order.Lines)}
	if _, won, err := st.Remember(ctx, in.IdempotencyID, in.Record()); err != nil || !won {
		t.Fatalf("remember: won %v, %v", won, err)
	}
	if _, err := st.CreateOrder(ctx, first.Order); err != nil {
		t.Fatal(err)
	}
	check("recorded")

	bob, err := svc.Place(ctx, checkout.Request{User: "bob", Key: "launch-1", Items: req.Items})
	if err != nil || !bob.Fresh || bob.Order.ID == first.Order.ID {
		t.Fatalf("another user's order with the same key = %+v, %v", bob, err)
	}
	if got, err := svc.Order(ctx, shop.UserKey("bob"), bob.Order.ID); err != nil || got.ID != bob.Order.ID {
		t.Fatalf("bob's queued order reads %+v, %v", got, err)
	}
}

// An order from the cart takes the cart's lines and empties it; a replay
// once the cart is empty gets that order, and a first request on an empty
// cart is refused.
func TestAnOrderFromTheCartEmptiesIt(t *testing.T) {
	svc, st := service(t, nil)
	ctx := t.Context()
	if _, err := st.UpdateCart(ctx, shop.UserKey("carol"), func(c *shop.Cart) error {
		return errors.Join(c.SetItem("shoe-43", 2), c.SetItem("shoe-42", 1))
	}); err != nil {
		t.Fatal(err)
	}
	req := checkout.Request{User: "carol", Key: "cart-1", FromCart: true}
	first, err := svc.Place(ctx, req)
	if err != nil || !first.Fresh || len(first.Order.Lines) != 2 || first.Order.Lines[1] != line("shoe-43", 2) {
		t.Fatalf("Place from the cart = %+v, %v", first, err)
	}
	if c, _, err := st.Cart(ctx, shop.UserKey("carol")); err != nil || len(c.Items) != 0 {
		t.Fatalf("cart after the order: %+v, %v", c, err)
	}
	again, err := svc.Place(ctx, req)
	if err != nil || again.Fresh || again.Order.ID != first.Order.ID {
		t.Fatalf("a replay on the emptied cart = %+v, %v; want order %s", again, err, first.Order.ID)
	}
	if _, err := svc.Place(ctx, checkout.Request{User: "carol", Key: "cart-2", FromCart: true}); shop.KindOf(err) != shop.KindInvalid {
		t.Fatalf("a new order from an empty cart = %v, want invalid", err)
	}
}

// Admission's refusal is the answer, and nothing is queued; an admitted
// order gives its slot back.
func TestAdmissionRefusesBeforeTheStore(t *testing.T) {
	var held atomic.Int64
	refuse := atomic.Bool{}
	svc, st := service(t, func(string) (func(), error) {
		if refuse.Load() {
			return nil, shop.Errorf(shop.KindTooMany, "", "the store is busy; retry in a second")
		}
		held.Add(1)
		return func() { held.Add(-1) }, nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	refuse.Store(true)
	if _, err := svc.Place(ctx, checkout.Request{User: "dave", Key: "k", Items: []shop.Line{line("shoe-42", 1)}}); shop.KindOf(err) != shop.KindTooMany {
		t.Fatalf("Place refused by admission = %v, want too many", err)
	}
	if _, n, err := st.QueueAge(ctx, store.StreamOrders); err != nil || n != 0 {
		t.Fatalf("%d orders queued after a refusal (%v)", n, err)
	}
	refuse.Store(false)
	if p, err := svc.Place(ctx, checkout.Request{User: "dave", Key: "k", Items: []shop.Line{line("shoe-42", 1)}}); err != nil || !p.Fresh {
		t.Fatalf("Place admitted = %+v, %v", p, err)
	}
	if held.Load() != 0 {
		t.Fatalf("%d admission slots still held after Place returned", held.Load())
	}
}

// spanHook calls onEnd with every span that ends: a way to act at a
// precise point inside a store call, through the tracing it does.
type spanHook struct{ onEnd func(sdktrace.ReadOnlySpan) }

func (h spanHook) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (h spanHook) OnEnd(s sdktrace.ReadOnlySpan)                   { h.onEnd(s) }
func (h spanHook) Shutdown(context.Context) error                  { return nil }
func (h spanHook) ForceFlush(context.Context) error                { return nil }

// An order moves from its queue to its record: the processor writes the
// record, then acknowledges the message, which leaves the queue. A read
// that finds no record yet, and then no message any more, reads the record
// again and finds the order. The test processes the order exactly between
// the two reads, from the end of the first read of the record (its span).
//
// Mutation tried: store.recordedOrQueued without its second read → "Order = {…}, not-found:
// order … not found; want the confirmed order".
func TestAnOrderRecordedBetweenItsReadsIsFound(t *testing.T) {
	svc, st := service(t, nil)
	placed, err := svc.Place(t.Context(), checkout.Request{User: "alice", Key: "between-1", Items: []shop.Line{line("shoe-42", 1)}})
	if err != nil {
		t.Fatal(err)
	}
	o := placed.Order
	process := func() {
		run, stop := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- st.ProcessOrders(run, func(ctx context.Context, in store.Intake) error {
				_, _, err := st.SetOrderStatus(ctx, in.Order, store.Unwritten(), shop.OrderConfirmed, "", time.Now())
				return err
			}, func(error) bool { return false }, 1)
		}()
		poll.Until(t, 20*time.Second, 20*time.Millisecond, func() error {
			if _, err := st.PendingOrder(t.Context(), shop.UserKey(o.User), o.ID); shop.KindOf(err) != shop.KindNotFound {
				return fmt.Errorf("the order's message still queued: %v", err)
			}
			return nil
		})
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	var once sync.Once
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spanHook{func(s sdktrace.ReadOnlySpan) {
		if s.Name() == "get "+store.BucketOrders {
			once.Do(process)
		}
	}}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(t.Context(), "read an order")
	defer span.End()
	got, err := svc.Order(ctx, shop.UserKey(o.User), o.ID)
	if err != nil || got.ID != o.ID || got.Status != shop.OrderConfirmed {
		t.Fatalf("Order = %+v, %v; want the confirmed order", got, err)
	}
}
