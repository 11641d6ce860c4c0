package worker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/worker"
)

// startHook is spanHook that acts when a span starts.
type startHook struct {
	spanHook
	onStart func(sdktrace.ReadWriteSpan)
}

func (h startHook) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) { h.onStart(s) }

// waitQueueEmpty polls until no order is left on the order queue.
func waitQueueEmpty(t *testing.T, st *store.Store, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, pending, err := st.QueueAge(t.Context(), store.StreamOrders)
		if err == nil && pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d orders queued (%v)", within, pending, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An order accepted with the one write of its message is recorded by the
// processor that takes it. That processor dies after taking it: before it
// recorded anything, or after it recorded the request but not the order.
// The message comes back, after the ack wait, to another region's
// processor, which records the request and the order once, reserves the
// stock once and confirms the order: a replay finds this order, the stock
// is exact, the partner holds the order once.
//
// Mutations tried: the reservation made before the records (Order called
// first in Take) → "after the crash: order record <nil>, want not found"
// in both cases; a request found recorded always taken for a duplicate
// (the order id not compared) → the redelivery drops its own order:
// "order ... not found, want confirmed", "stock {Available:5 ...}, want 3
// available", "the partner took the order 0 times".
func TestAnOrderWhoseProcessorDiedBeforeRecordingItIsRecordedOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		atStart bool // the crash when the request's create starts; else when it ends
	}{
		{"before recording", true},
		{"between the request and the order", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := storetest.NewCluster(t, "westeurope", "northeurope", "eastus")
			ctx := t.Context()
			observer, _ := c.MustOpen(t, 2)
			const sku = "intake-a-42"
			if err := observer.SetStock(ctx, sku, 5); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			o := shop.Order{ID: shop.NewID(now), User: "alice", Status: shop.OrderAccepted, Region: "westeurope",
				CreatedAt: now, UpdatedAt: now, Lines: []shop.Line{{SKU: sku, Quantity: 2}}}
			idemID := shop.IdempotencyID("alice", "key-1")
			in := store.Intake{Order: o, IdempotencyID: idemID, RequestHash: shop.RequestHash(false, o.Lines)}
			if _, fresh, err := observer.AcceptOrder(ctx, in); err != nil || !fresh {
				t.Fatalf("accept: fresh %v, %v", fresh, err)
			}

			standIn, client := partnerStandIn(t)

			// The first processor dies at the request's create: its
			// connection closes as the create starts (nothing sent) or
			// once it is acknowledged.
			nc1, err := nats.Connect(c.Nodes[0].ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc1.Close)
			crashed := make(chan struct{})
			var once sync.Once
			crash := func(s sdktrace.ReadOnlySpan) {
				if s.Name() == "create idempotency" {
					once.Do(func() { nc1.Close(); close(crashed) })
				}
			}
			hook := startHook{spanHook: spanHook{onEnd: func(s sdktrace.ReadOnlySpan) {
				if !tc.atStart {
					crash(s)
				}
			}}, onStart: func(s sdktrace.ReadWriteSpan) {
				if tc.atStart {
					crash(s)
				}
			}}
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(hook))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			tracer := tp.Tracer("test")
			st1, err := store.Open(ctx, store.Config{Conn: nc1, Replicas: 3, WriteBudget: 2 * time.Second, Process: func(ctx context.Context, subject string, _ nats.Header) (context.Context, func(error)) {
				ctx, span := tracer.Start(ctx, "process "+subject)
				return ctx, func(error) { span.End() }
			}})
			if err != nil {
				t.Fatal(err)
			}
			run1, stop1 := context.WithCancel(ctx)
			done1 := make(chan struct{})
			go func() {
				defer close(done1)
				_ = worker.New(worker.Config{Region: "westeurope", Store: st1, Partner: client}).Run(run1)
			}()
			select {
			case <-crashed:
			case <-time.After(30 * time.Second):
				t.Fatal("the first processor did not reach the crash point within 30 s")
			}
			stop1()
			select {
			case <-done1:
			case <-time.After(30 * time.Second):
				t.Fatal("the first processor did not stop within 30 s of its crash")
			}

			// What the crash left: the request recorded or not, no order
			// record, no stock taken.
			if _, recorded, err := observer.Recall(ctx, idemID); err != nil || recorded == tc.atStart {
				t.Fatalf("after the crash: request recorded %v (%v), want %v", recorded, err, !tc.atStart)
			}
			if _, err := observer.Order(ctx, shop.UserKey(o.User), o.ID); shop.KindOf(err) != shop.KindNotFound {
				t.Fatalf("after the crash: order record %v, want not found", err)
			}
			if s, err := observer.Stock(ctx, sku); err != nil || s.Available != 5 || len(s.Holds) != 0 {
				t.Fatalf("after the crash: stock %+v (%v), want 5 available, no hold", s, err)
			}

			// Another region's processor takes the message over.
			st2, _ := c.MustOpen(t, 1)
			run2, stop2 := context.WithCancel(ctx)
			done2 := make(chan struct{})
			go func() {
				defer close(done2)
				_ = worker.New(worker.Config{Region: "northeurope", Store: st2, Partner: client}).Run(run2)
			}()
			waitQueueEmpty(t, observer, 40*time.Second)
			stop2()
			<-done2

			rec, recorded, err := observer.Recall(ctx, idemID)
			if err != nil || !recorded || rec != in.Record() {
				t.Errorf("request recorded: %v %+v (%v); want order %s", recorded, rec, err, o.ID)
			}
			got, err := observer.Order(ctx, shop.UserKey(o.User), o.ID)
			if err != nil || got.Status != shop.OrderConfirmed {
				t.Errorf("order %s status %q (%v), want confirmed", o.ID, got.Status, err)
			}
			if s, err := observer.Stock(ctx, sku); err != nil || s.Available != 3 || len(s.Holds) != 0 {
				t.Errorf("stock %+v (%v), want 3 available (5 less the order's 2), no hold", s, err)
			}
			if n := standIn.Deliveries(o.ID); n != 1 {
				t.Errorf("the partner took the order %d times, want once", n)
			}
		})
	}
}

// A replay published again after the stream's duplicate window, while the
// first order still waited on the queue, is a second message for the same
// request: the processor records the first order it takes and drops the
// other, reserving nothing for it; the other's id reads as the first
// order.
//
// Mutations tried: the duplicate's record in Take removed → "the
// duplicate's id reads as {…} (order … not found), want order …"; the drop
// in Take removed → the duplicate's id reads as its own order, "stock
// {Available:1 Holds:map[]}, want 3 available", "the partner took the
// duplicate 1 times".
func TestAReplayQueuedAfterTheDuplicateWindowIsDropped(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	ctx := t.Context()
	st, nc := c.MustOpen(t, 0)
	const sku = "intake-b-42"
	if err := st.SetStock(ctx, sku, 5); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	lines := []shop.Line{{SKU: sku, Quantity: 2}}
	first := shop.Order{ID: shop.NewID(now), User: "bob", Status: shop.OrderAccepted, Region: "westeurope", CreatedAt: now, UpdatedAt: now, Lines: lines}
	again := first
	again.ID = shop.NewID(now.Add(11 * time.Minute))
	idemID := shop.IdempotencyID("bob", "key-1")
	hash := shop.RequestHash(false, lines)
	if _, fresh, err := st.AcceptOrder(ctx, store.Intake{Order: first, IdempotencyID: idemID, RequestHash: hash}); err != nil || !fresh {
		t.Fatalf("accept: fresh %v, %v", fresh, err)
	}
	// The replay as AcceptOrder would queue it once the stream forgot the
	// first message's id: the same request, another message id.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(fmt.Sprintf("orders.new.%s.%s", shop.UserKey("bob"), again.ID))
	msg.Data = fmt.Appendf(nil, `{"schema":%d,"id":%q,"user":"bob","items":[{"sku":%q,"quantity":2}],"status":"accepted","acceptedIn":"westeurope","createdAt":%q,"updatedAt":%q}`,
		store.SchemaOrder, again.ID, sku, now.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	msg.Header.Set("Contoso-Idempotency-Id", idemID)
	msg.Header.Set("Contoso-Request-Hash", hash)
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID("after-the-window")); err != nil {
		t.Fatal(err)
	}

	standIn, client := partnerStandIn(t)
	run, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = worker.New(worker.Config{Region: "westeurope", Store: st, Partner: client, OrderConcurrency: 1}).Run(run)
	}()
	waitQueueEmpty(t, st, 30*time.Second)
	stop()
	<-done

	if rec, ok, err := st.Recall(ctx, idemID); err != nil || !ok || rec.ID != first.ID {
		t.Errorf("request recorded with %+v %v (%v), want order %s", rec, ok, err, first.ID)
	}
	// The duplicate's id, which its client holds, reads as the first
	// order; the user's list holds the first order only.
	if got, err := st.Order(ctx, shop.UserKey("bob"), again.ID); err != nil || got.ID != first.ID || !got.Status.Final() {
		t.Errorf("the duplicate's id reads as %+v (%v), want order %s, final", got, err, first.ID)
	}
	if list, _, err := st.Orders(ctx, shop.UserKey("bob"), "", 10); err != nil || len(list) != 1 || list[0].ID != first.ID {
		t.Errorf("bob's orders = %+v (%v), want the first only", list, err)
	}
	if s, err := st.Stock(ctx, sku); err != nil || s.Available != 3 || len(s.Holds) != 0 {
		t.Errorf("stock %+v (%v), want 3 available (5 less one order's 2), no hold", s, err)
	}
	if n := standIn.Deliveries(again.ID); n != 0 {
		t.Errorf("the partner took the duplicate %d times", n)
	}
}
