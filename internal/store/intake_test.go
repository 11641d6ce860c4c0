package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// The same request accepted twice within the stream's duplicate window is
// one message: the second AcceptOrder returns the first order, read from
// the queue while it waits there and, once a processor has recorded it
// and taken it off the queue, from what the processor recorded.
//
// Mutations tried: queuedAt without its fall-back to the records → "after
// processing: ... the order cannot be read back ...: neither queued nor
// recorded"; the message id the order id → "while queued: fresh true,
// order X ...; want the first order Y".
func TestAcceptOrderAnswersARepeatWithTheFirstOrder(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope", "northeurope", "eastus")
	st, _ := c.MustOpen(t, 0)
	ctx := t.Context()
	now := time.Now().UTC()
	lines := []shop.Line{{SKU: "p1-42", Quantity: 1}}
	order := func(at time.Time) shop.Order {
		return shop.Order{ID: shop.NewID(at), User: "ann", Lines: lines, Status: shop.OrderAccepted, Region: "westeurope", CreatedAt: at, UpdatedAt: at}
	}
	first := store.Intake{Order: order(now), IdempotencyID: shop.IdempotencyID("ann", "k"), RequestHash: shop.RequestHash(false, lines)}
	if got, fresh, err := st.AcceptOrder(ctx, first); err != nil || !fresh || got.Order.ID != first.Order.ID {
		t.Fatalf("first: fresh %v, order %s (%v)", fresh, got.Order.ID, err)
	}
	repeat := func(what string) {
		t.Helper()
		again := first
		again.Order = order(time.Now())
		got, fresh, err := st.AcceptOrder(ctx, again)
		if err != nil || fresh || got.Order.ID != first.Order.ID || got.RequestHash != first.RequestHash {
			t.Fatalf("%s: fresh %v, order %s, hash %s (%v); want the first order %s", what, fresh, got.Order.ID, got.RequestHash, err, first.Order.ID)
		}
	}
	repeat("while queued")
	if o, err := st.PendingOrder(ctx, shop.UserKey("ann"), first.Order.ID); err != nil || o.ID != first.Order.ID {
		t.Fatalf("pending order: %+v (%v)", o, err)
	}

	// A processor records the request and the order, and finishes.
	var taken atomic.Int32
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- st.ProcessOrders(run, func(ctx context.Context, in store.Intake) error {
			if _, _, err := st.Remember(ctx, in.IdempotencyID, in.Record()); err != nil {
				return err
			}
			if _, err := st.CreateOrder(ctx, in.Order); err != nil {
				return err
			}
			taken.Add(1)
			return nil
		}, func(error) bool { return false }, 1)
	}()
	waitUntil(t, 20*time.Second, "the order processed", func() bool {
		_, pending, err := st.QueueAge(ctx, store.StreamOrders)
		return taken.Load() > 0 && err == nil && pending == 0
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := taken.Load(); n != 1 {
		t.Fatalf("%d messages processed, want 1", n)
	}
	repeat("after processing")
	// The queue drops the message once its acknowledgement arrives, which
	// may be a moment after the processor returned.
	waitFor(t, 10*time.Second, "the processed order no longer pending", func() error {
		if _, err := st.PendingOrder(ctx, shop.UserKey("ann"), first.Order.ID); shop.KindOf(err) != shop.KindNotFound {
			return fmt.Errorf("pending order after processing: %v, want not found", err)
		}
		return nil
	})
	repeat("once it left the queue")
}

// An order moves from its queue to its record: the processor writes the
// record, then acknowledges the message, which leaves the queue. An
// admin's FindOrder that scans the records before the processor wrote it
// and reads the queues after the message left finds the order all the
// same: it scans the records again when the queues no longer hold it (the
// user's own read does the same: checkout's
// TestAnOrderRecordedBetweenItsReadsIsFound). The test processes the order exactly
// between the two reads, from the end of FindOrder's first scan of the
// records (its span).
//
// Mutation tried: recordedOrQueued without its second read → "FindOrder = {…},
// not-found: order … not found; want the confirmed order".
func TestFindOrderMeetsAnOrderRecordedBetweenItsReads(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	now := time.Now().UTC()
	lines := []shop.Line{{SKU: "p1-42", Quantity: 1}}
	o := shop.Order{ID: shop.NewID(now), User: "ann", Lines: lines, Status: shop.OrderAccepted, Region: "westeurope", CreatedAt: now, UpdatedAt: now}
	in := store.Intake{Order: o, IdempotencyID: shop.IdempotencyID("ann", "between"), RequestHash: shop.RequestHash(false, lines)}
	if _, fresh, err := st.AcceptOrder(t.Context(), in); err != nil || !fresh {
		t.Fatalf("accept: fresh %v, %v", fresh, err)
	}

	// process records the order confirmed and returns once its message
	// has left the queue.
	process := func() {
		run, stop := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- st.ProcessOrders(run, func(ctx context.Context, in store.Intake) error {
				_, _, err := st.SetOrderStatus(ctx, in.Order, store.Unwritten(), shop.OrderConfirmed, "", now)
				return err
			}, func(error) bool { return false }, 1)
		}()
		waitUntil(t, 20*time.Second, "the order's message off the queue", func() bool {
			_, err := st.PendingOrder(t.Context(), shop.UserKey(o.User), o.ID)
			return shop.KindOf(err) == shop.KindNotFound
		})
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	var once sync.Once
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spanHook{func(s sdktrace.ReadOnlySpan) {
		if s.Name() == "keys "+store.BucketOrders {
			once.Do(process)
		}
	}}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(t.Context(), "admin reads an order")
	defer span.End()
	got, err := st.FindOrder(ctx, o.ID)
	if err != nil || got.ID != o.ID || got.Status != shop.OrderConfirmed {
		t.Fatalf("FindOrder = %+v, %v; want the confirmed order", got, err)
	}
}
