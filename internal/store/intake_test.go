package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

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
