package worker_test

import (
	"encoding/json"
	"errors"
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
	return createdOrderOf(t, map[string]int{sku: units}, shop.Line{SKU: sku, Quantity: quantity})
}

// createdOrderOf is createdOrder of an order of lines, each SKU stocked
// as stock says.
func createdOrderOf(t *testing.T, stock map[string]int, lines ...shop.Line) (*store.Store, *worker.Worker, shop.Order, store.Version) {
	t.Helper()
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	for sku, units := range stock {
		if err := st.SetStock(t.Context(), sku, units); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	o := shop.Order{ID: shop.NewID(now), User: "alice", Lines: lines, Status: shop.OrderAccepted,
		Region: "westeurope", CreatedAt: now, UpdatedAt: now}
	created, err := st.CreateOrder(t.Context(), o)
	if err != nil || !created.Known() {
		t.Fatalf("create order: %+v, %v", created, err)
	}
	return st, worker.New(worker.Config{Region: "westeurope", Store: st}), o, created
}

// stockOf reads sku's stock.
func stockOf(t *testing.T, st *store.Store, sku string) shop.Stock {
	t.Helper()
	s, err := st.Stock(t.Context(), sku)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// finish confirms a reserved order and settles it, as the processor that
// reserved it does next, over ver, its record as that processor wrote it.
func finish(t *testing.T, st *store.Store, o shop.Order, ver store.Version) {
	t.Helper()
	done, ver, err := st.SetOrderStatus(t.Context(), o, ver, shop.OrderConfirmed, "", o.CreatedAt)
	if err != nil || done.Status != shop.OrderConfirmed {
		t.Fatalf("confirm: %+v, %v", done, err)
	}
	if err := st.Settle(t.Context(), done, ver); err != nil {
		t.Fatalf("settle: %v", err)
	}
}

// Two processors hold the same order message (one kept it past its ack
// wait, its progress reports lost in a leader election) and interleave
// their steps; whatever the order, the order is confirmed once and its
// stock taken once, to the unit.
//
// Mutations tried: Settle selling every hold of a confirmed order, whoever
// made it → "a stale reservation of a settled order: 1 available, holds
// map[]; want 3 (5 less the order's 2), none"; commit giving back the
// holds its reservation made when it finds the order final (what it did
// before holds carried tokens) → "the other made the hold this one found
// and confirmed: 5 available, holds map[]; want 4, none"; commit settling
// the order as rejected before it writes the rejection → "one short, the
// other reserved with its hold: contoso-skyline-1-42 5 available, holds
// map[]; want 4, none".
func TestTwoProcessorsOfOneOrderTakeItsStockOnce(t *testing.T) {
	t.Run("the other made the hold this one found and confirmed", func(t *testing.T) {
		// The second processor makes the hold; the first finds it, marks
		// the order reserved with it and confirms the order; then the
		// second, going on from its reservation, finds the order final,
		// and the first settles it. The hold was the order's: it stays sold.
		const sku = "contoso-skyline-1-44"
		st, w, o, created := createdOrder(t, sku, 5, 1)
		ctx := t.Context()
		res, err := st.Reserve(ctx, o.ID, o.Lines)
		if err != nil {
			t.Fatal(err)
		}
		reserved, ver, err := worker.Reserve(w, ctx, o, o.Lines, created)
		if err != nil || !reserved {
			t.Fatalf("the first's reservation: reserved %v, %v", reserved, err)
		}
		done, doneVer, err := st.SetOrderStatus(ctx, o, ver, shop.OrderConfirmed, "", o.CreatedAt)
		if err != nil {
			t.Fatal(err)
		}
		reserved, _, err = worker.Commit(w, ctx, o, store.Version{}, res, nil)
		if err != nil || reserved {
			t.Fatalf("the second going on: reserved %v, %v; want the order ended", reserved, err)
		}
		if err := st.Settle(ctx, done, doneVer); err != nil {
			t.Fatal(err)
		}
		if s := stockOf(t, st, sku); s.Available != 4 || len(s.Holds) != 0 {
			t.Fatalf("the other made the hold this one found and confirmed: %d available, holds %v; want 4, none", s.Available, s.Holds)
		}
	})

	t.Run("a stale reservation of a settled order", func(t *testing.T) {
		// The first processor reserves, confirms and settles; the second,
		// from its stale view (the order accepted, as it created it), holds
		// the stock again, and its write of the reserved status, made over
		// the order as created, is refused as a conflict and finds the
		// order final: that hold is not the order's, and goes back.
		const sku = "contoso-skyline-1-42"
		st, w, o, created := createdOrder(t, sku, 5, 2)
		reserved, ver, err := worker.Reserve(w, t.Context(), o, o.Lines, created)
		if err != nil || !reserved {
			t.Fatalf("first reservation: reserved %v, %v", reserved, err)
		}
		if s := stockOf(t, st, sku); s.Available != 3 || s.Holds[o.ID] != 2 {
			t.Fatalf("after the first reservation: %+v", s)
		}
		finish(t, st, o, ver)
		reserved, _, err = worker.Reserve(w, t.Context(), o, o.Lines, created)
		if err != nil || reserved {
			t.Fatalf("stale reservation: reserved %v, %v; want the order ended", reserved, err)
		}
		if got, err := st.Order(t.Context(), shop.UserKey(o.User), o.ID); err != nil || got.Status != shop.OrderConfirmed {
			t.Fatalf("order after the stale reservation: %+v, %v; want it confirmed still", got, err)
		}
		if s := stockOf(t, st, sku); s.Available != 3 || len(s.Holds) != 0 {
			t.Fatalf("a stale reservation of a settled order: %d available, holds %v; want 3 (5 less the order's 2), none", s.Available, s.Holds)
		}
	})

	t.Run("one short, the other reserved with its hold", func(t *testing.T) {
		// An order of two SKUs. The second processor holds the first SKU
		// and finds the second short; the stock comes back, and the first
		// processor finds the hold, makes the other and marks the order
		// reserved with both; the second, writing its rejection, finds the
		// order reserved and goes on with it.
		const sku, short = "contoso-skyline-1-42", "contoso-skyline-1-43"
		st, w, o, created := createdOrderOf(t, map[string]int{sku: 5, short: 0}, shop.Line{SKU: sku, Quantity: 1}, shop.Line{SKU: short, Quantity: 1})
		ctx := t.Context()
		res, shortErr := st.Reserve(ctx, o.ID, o.Lines)
		if !errors.Is(shortErr, store.ErrOutOfStock) {
			t.Fatalf("the second's reservation: %v; want out of stock", shortErr)
		}
		if err := st.SetStock(ctx, short, 1); err != nil {
			t.Fatal(err)
		}
		reserved, ver, err := worker.Reserve(w, ctx, o, o.Lines, created)
		if err != nil || !reserved {
			t.Fatalf("the first's reservation: reserved %v, %v", reserved, err)
		}
		reserved, _, err = worker.Commit(w, ctx, o, store.Version{}, res, shortErr)
		if err != nil || !reserved {
			t.Fatalf("the second's rejection: reserved %v, %v; want it to go on with the reserved order", reserved, err)
		}
		finish(t, st, o, ver)
		for sku, want := range map[string]int{sku: 4, short: 0} {
			if s := stockOf(t, st, sku); s.Available != want || len(s.Holds) != 0 {
				t.Errorf("one short, the other reserved with its hold: %s %d available, holds %v; want %d, none", sku, s.Available, s.Holds, want)
			}
		}
	})
}

// Two processors hold the same order message (one's progress reports were
// lost). The first finds the stock short; the stock comes back and the
// second reserves the order and marks it reserved; then the first rejects
// it. That rejection must not stand: the order holds its stock under its
// id and goes on to be confirmed.
//
// Mutation tried: SetOrderStatus rejecting a reserved order → "the
// rejection over a reserved order: reserved false, <nil>; want it to go on
// reserved" (and the order rejected while its stock is held).
func TestARejectionNeverOverwritesAReservation(t *testing.T) {
	const sku = "contoso-skyline-1-43"
	st, w, o, created := createdOrder(t, sku, 0, 1)
	ctx := t.Context()
	res, shortErr := st.Reserve(ctx, o.ID, o.Lines)
	if !errors.Is(shortErr, store.ErrOutOfStock) {
		t.Fatalf("the first's reservation: %v; want out of stock", shortErr)
	}
	if err := st.SetStock(ctx, sku, 1); err != nil {
		t.Fatal(err)
	}
	if reserved, _, err := worker.Reserve(w, ctx, o, o.Lines, created); err != nil || !reserved {
		t.Fatalf("the other processor's reservation: reserved %v, %v", reserved, err)
	}
	reserved, _, err := worker.Commit(w, ctx, o, store.Version{}, res, shortErr)
	if err != nil || !reserved {
		t.Fatalf("the rejection over a reserved order: reserved %v, %v; want it to go on reserved", reserved, err)
	}
	if got, err := st.Order(ctx, shop.UserKey(o.User), o.ID); err != nil || got.Status != shop.OrderReserved {
		t.Fatalf("order after the rejection = %+v, %v; want reserved still", got, err)
	}
	if s := stockOf(t, st, sku); s.Available != 0 || s.Holds[o.ID] != 1 {
		t.Fatalf("stock after the rejection: %+v; want the order's hold of 1 standing", s)
	}
}

// An order of two SKUs, the second short of stock, is rejected, and the
// hold its first line made goes back: all or nothing.
//
// Mutation tried: commit not settling the order it rejected →
// "contoso-skyline-1-42: 4 available, holds map[…:1]; want 5, none".
func TestAnOrderShortOfStockIsRejectedAndHoldsNothing(t *testing.T) {
	const sku, short = "contoso-skyline-1-42", "contoso-skyline-1-43"
	st, w, o, _ := createdOrderOf(t, map[string]int{sku: 5, short: 0}, shop.Line{SKU: sku, Quantity: 1}, shop.Line{SKU: short, Quantity: 1})
	if err := w.Order(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Order(t.Context(), shop.UserKey(o.User), o.ID); err != nil || got.Status != shop.OrderRejected || got.Reason != shop.ReasonOutOfStock {
		t.Fatalf("order = %+v, %v; want rejected, out of stock", got, err)
	}
	for sku, want := range map[string]int{sku: 5, short: 0} {
		if s := stockOf(t, st, sku); s.Available != want || len(s.Holds) != 0 {
			t.Errorf("%s: %d available, holds %v; want %d, none", sku, s.Available, s.Holds, want)
		}
	}
}
