package worker_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/worker"
)

func TestMessagesThatCanNeverSucceedArePoisoned(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	w := worker.New(worker.Config{Region: "westeurope", Store: st})
	good := shop.Comment{ID: shop.NewID(time.Now()), ProductID: "p1", User: "u", Text: "ok"}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bad := good
	bad.Text = ""
	badID := good
	badID.ID = "../x"
	for name, data := range map[string][]byte{
		"undecodable": []byte("{"), "empty text": mustJSON(bad), "bad id": mustJSON(badID),
	} {
		if err := w.Comment(t.Context(), data); shop.KindOf(err) != shop.KindInvalid {
			t.Errorf("%s: Comment = %v, want an invalid error", name, err)
		}
	}
	if err := w.Rating(t.Context(), mustJSON(shop.Rating{ID: good.ID, ProductID: "p1", User: "u", Stars: 9})); shop.KindOf(err) != shop.KindInvalid {
		t.Errorf("9 stars: %v", err)
	}
	if err := w.Comment(t.Context(), mustJSON(good)); err != nil {
		t.Fatalf("valid comment: %v", err)
	}
	if err := w.Comment(t.Context(), mustJSON(good)); err != nil {
		t.Fatalf("redelivered comment: %v", err)
	}
	if w.Processed() != 2 {
		t.Fatalf("processed = %d", w.Processed())
	}
}

func TestCanaryOfAnotherRegionIsRejectedAndOwnIsRecorded(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	w := worker.New(worker.Config{Region: "westeurope", Store: st})
	sentAt := time.Now().Add(-50 * time.Millisecond).Truncate(time.Millisecond)
	other, _ := json.Marshal(store.Canary{Region: "eastus", ID: shop.NewID(sentAt)})
	if err := w.Canary(t.Context(), other); shop.KindOf(err) != shop.KindInvalid {
		t.Fatalf("foreign canary: %v", err)
	}
	if sent, _ := w.LastCanary(); !sent.IsZero() {
		t.Fatal("foreign canary recorded")
	}
	own, _ := json.Marshal(store.Canary{Region: "westeurope", ID: shop.NewID(sentAt)})
	if err := w.Canary(t.Context(), own); err != nil {
		t.Fatal(err)
	}
	sent, done := w.LastCanary()
	if !sent.Equal(sentAt) || done.Before(sent) {
		t.Fatalf("LastCanary = %v, %v; want sent %v", sent, done, sentAt)
	}
	// A canary older than StaleCanary is done without a word, even when
	// the store cannot take it (it would otherwise come back for ever): a
	// fresh one fails then and comes back.
	cut, nc := c.MustOpen(t, 0)
	nc.Close()
	w = worker.New(worker.Config{Region: "westeurope", Store: cut})
	stale, _ := json.Marshal(store.Canary{Region: "westeurope", ID: shop.NewID(time.Now().Add(-worker.StaleCanary - time.Second))})
	if err := w.Canary(t.Context(), stale); err != nil {
		t.Fatalf("stale canary: %v", err)
	}
	if s, _ := w.LastCanary(); !s.IsZero() {
		t.Fatalf("a stale canary was recorded: sent %v", s)
	}
	if err := w.Canary(t.Context(), own); err == nil {
		t.Fatal("a fresh canary with the store unreachable: no error")
	}
}

// createdOrder stores units of sku and creates an accepted order for
// quantity of it, as a processor does when it takes the order's message;
// it returns the store, a processor on it, the order and the order
// record's Version as created.
func createdOrder(t *testing.T, sku string, units, quantity int) (*store.Store, *worker.Worker, shop.Order, store.Version) {
	t.Helper()
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	if err := st.SetStock(t.Context(), sku, units); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	o := shop.Order{ID: shop.NewID(now), User: "alice", Lines: []shop.Line{{SKU: sku, Quantity: quantity}}, Status: shop.OrderAccepted,
		Region: "westeurope", CreatedAt: now, UpdatedAt: now}
	created, err := st.CreateOrder(t.Context(), o)
	if err != nil || !created.Known() {
		t.Fatalf("create order: %+v, %v", created, err)
	}
	return st, worker.New(worker.Config{Region: "westeurope", Store: st}), o, created
}

// A processor acting on a stale view of an order (the same message
// redelivered to it while another processor, whose progress reports were
// lost, finished the order and released its holds) gives back the stock
// its reservation took again: the order's stock is taken once.
func TestAStaleReservationOfAFinishedOrderGivesItsStockBack(t *testing.T) {
	const sku = "contoso-skyline-1-42"
	st, w, o, created := createdOrder(t, sku, 5, 2)
	ctx, now := t.Context(), o.CreatedAt
	stock := func() shop.Stock {
		t.Helper()
		s, err := st.Stock(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The first processor: reserve, confirm, settle.
	reserved, ver, err := worker.Reserve(w, ctx, o, o.Lines, created)
	if err != nil || !reserved {
		t.Fatalf("first reservation: reserved %v, %v", reserved, err)
	}
	if s := stock(); s.Available != 3 || s.Holds[o.ID] != 2 {
		t.Fatalf("after the first reservation: %+v", s)
	}
	if _, _, err := st.SetOrderStatus(ctx, o, ver, shop.OrderConfirmed, "", now); err != nil {
		t.Fatal(err)
	}
	if err := st.ReleaseHolds(ctx, o.ID, o.Lines, false); err != nil {
		t.Fatal(err)
	}
	// The second, from its stale view (the order accepted, as it created
	// it): its reservation finds no hold, takes the stock, and its write of
	// the reserved status, made over the order as created, is refused as a
	// conflict and finds the order final; it gives the stock back and
	// leaves the order confirmed.
	reserved, _, err = worker.Reserve(w, ctx, o, o.Lines, created)
	if err != nil || reserved {
		t.Fatalf("stale reservation: reserved %v, %v; want the order ended", reserved, err)
	}
	if got, err := st.Order(ctx, shop.UserKey(o.User), o.ID); err != nil || got.Status != shop.OrderConfirmed {
		t.Fatalf("order after the stale reservation: %+v, %v; want it confirmed still", got, err)
	}
	if s := stock(); s.Available != 3 || len(s.Holds) != 0 {
		t.Fatalf("after the stale reservation: %+v; want 3 available (5 less the order's 2), no hold", s)
	}
}

// Two processors hold the same order message (one's progress reports were
// lost). The first finds the stock short and releases what it took; the
// stock comes back and the second reserves the order and marks it
// reserved; then the first rejects it. That rejection must not stand: the
// order holds its stock under its id and goes on to be confirmed. The
// test starts from the moment of the rejection: the order marked reserved,
// the first processor's reservation short.
//
// Mutation tried: SetOrderStatus rejecting a reserved order → "the
// rejection over a reserved order: reserved false, <nil>; want it to go on
// reserved" (and the order rejected while its stock is held).
func TestARejectionNeverOverwritesAReservation(t *testing.T) {
	st, w, o, created := createdOrder(t, "contoso-skyline-1-43", 0, 1)
	ctx, now := t.Context(), o.CreatedAt
	if got, _, err := st.SetOrderStatus(ctx, o, store.Version{}, shop.OrderReserved, "", now); err != nil || got.Status != shop.OrderReserved {
		t.Fatalf("the other processor's reserved mark = %+v, %v", got, err)
	}
	reserved, _, err := worker.Reserve(w, ctx, o, o.Lines, created)
	if err != nil || !reserved {
		t.Fatalf("the rejection over a reserved order: reserved %v, %v; want it to go on reserved", reserved, err)
	}
	if got, err := st.Order(ctx, shop.UserKey(o.User), o.ID); err != nil || got.Status != shop.OrderReserved {
		t.Fatalf("order after the rejection = %+v, %v; want reserved still", got, err)
	}
}
