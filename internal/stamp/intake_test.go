package stamp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/worker"
)

type partnerKeys struct{}

func (partnerKeys) PartnerAPIKey() (string, error)     { return "api-key", nil }
func (partnerKeys) PartnerSigningKey() (string, error) { return "signing-key", nil }

// An order is accepted with one write, its message on the order stream,
// and a replay is the same order whether the processor has taken that
// message or not. The stamp here has no processor of its own: its orders
// wait on the queue until the test starts one.
//
// While queued: GET finds the order right after its 202 (the user's and
// an admin's); a replay is
// answered through the stream's deduplication (the same order, one
// message); a replay of an order from the cart, whose cart the first
// request emptied, is found on the queue; another body is 422. Once a
// processor recorded them: the replays are answered from the idempotency
// record (the same orders, 200 once confirmed), another body is still
// 422, and the stock was taken once per order; a request recorded long
// ago (its message id forgotten by the stream) is answered from its record
// alone.
//
// Mutations tried, each red: the message id of AcceptOrder the order id
// instead of the request's idempotency id → "queued replay = 202, order
// X; want 202, order Y" (a second order); GET without PendingOrder → "GET
// right after the 202 = 404"; no hash check on the duplicate path →
// "queued replay with another body = 202, want 422"; QueuedRequest not
// consulted for an empty cart → "queued replay from the cart = 400"; no
// Recall before the publish → "replay of an old request = 202, order X;
// want 200, order Y" and "1 orders queued"; no hash check on the recorded
// path → "recorded replay with another body = 200, want 422"; FindOrder
// without its look at the stream → "an admin's GET right after the 202 =
// 404".
func TestAnOrderReplayIsTheSameOrderQueuedOrRecorded(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope", "northeurope", "eastus")
	ts := serveStamp(t, c, stamp.Config{})
	ts.waitReady(t)
	tok := ts.token(t, "olivia")
	p := shop.SeedCatalog()[13]
	a, b := shop.SKU(p.ID, p.Sizes[0]), shop.SKU(p.ID, p.Sizes[1])
	stock := func(sku string) int {
		t.Helper()
		s, err := ts.store.Stock(t.Context(), sku)
		if err != nil {
			t.Fatal(err)
		}
		return s.Available
	}
	stockA, stockB := stock(a), stock(b)

	post := func(key, body string) (int, shop.Order) {
		t.Helper()
		resp, raw := ts.do(t, http.MethodPost, "/api/orders", tok, key, body)
		var o shop.Order
		if resp.StatusCode < 300 {
			if err := json.Unmarshal(raw, &o); err != nil {
				t.Fatalf("POST %s: %v in %s", key, err, raw)
			}
		}
		return resp.StatusCode, o
	}
	items := fmt.Sprintf(`{"items":[{"sku":%q,"quantity":2}]}`, a)
	other := fmt.Sprintf(`{"items":[{"sku":%q,"quantity":3}]}`, a)
	code, first := post("items-1", items)
	if code != http.StatusAccepted {
		t.Fatalf("first order = %d", code)
	}
	resp, raw := ts.do(t, http.MethodGet, "/api/orders/"+first.ID, tok, "", "")
	var got shop.Order
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &got) != nil || got.ID != first.ID || got.Status != shop.OrderAccepted {
		t.Fatalf("GET right after the 202 = %d %s, want 200 with order %s accepted", resp.StatusCode, raw, first.ID)
	}
	admin, err := ts.issuer.Mint("ops", true, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if resp, raw := ts.do(t, http.MethodGet, "/api/orders/"+first.ID, admin, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("an admin's GET right after the 202 = %d %s, want 200", resp.StatusCode, raw)
	}
	if code, again := post("items-1", items); code != http.StatusAccepted || again.ID != first.ID {
		t.Fatalf("queued replay = %d, order %s; want 202, order %s", code, again.ID, first.ID)
	}
	if code, _ := post("items-1", other); code != http.StatusUnprocessableEntity {
		t.Fatalf("queued replay with another body = %d, want 422", code)
	}

	if resp, raw := ts.do(t, http.MethodPut, "/api/cart/items/"+b, tok, "", `{"quantity":1}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT cart item = %d %s", resp.StatusCode, raw)
	}
	code, fromCart := post("cart-1", `{"fromCart":true}`)
	if code != http.StatusAccepted || len(fromCart.Lines) != 1 || fromCart.Lines[0] != (shop.Line{SKU: b, Quantity: 1}) {
		t.Fatalf("order from the cart = %d %+v", code, fromCart)
	}
	if code, again := post("cart-1", `{"fromCart":true}`); code != http.StatusAccepted || again.ID != fromCart.ID {
		t.Fatalf("queued replay from the cart = %d, order %s; want 202, order %s", code, again.ID, fromCart.ID)
	}
	if code, _ := post("cart-1", items); code != http.StatusUnprocessableEntity {
		t.Fatalf("queued replay of the cart's key with items = %d, want 422", code)
	}
	if _, pending, err := ts.store.QueueAge(t.Context(), store.StreamOrders); err != nil || pending != 2 {
		t.Fatalf("%d orders queued (%v), want 2", pending, err)
	}

	// A processor records and confirms both.
	st2, _ := c.MustOpen(t, 1)
	standIn := partner.NewStandIn(partner.StandInConfig{APIKey: func() string { return "api-key" }, SigningKey: func() string { return "signing-key" }})
	srv := httptest.NewServer(standIn.Handler())
	t.Cleanup(srv.Close)
	client, err := partner.NewClient(partner.ClientConfig{URL: srv.URL + "/v1/orders", Secrets: partnerKeys{}})
	if err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = worker.New(worker.Config{Region: "northeurope", Store: st2, Partner: client}).Run(run)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for _, o := range []shop.Order{first, fromCart} {
		for {
			got, err := ts.store.Order(t.Context(), shop.UserKey("olivia"), o.ID)
			if err == nil && got.Status == shop.OrderConfirmed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %s not confirmed within 30 s: %+v (%v)", o.ID, got, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stop()
	<-done

	if code, again := post("items-1", items); code != http.StatusOK || again.ID != first.ID || again.Status != shop.OrderConfirmed {
		t.Errorf("recorded replay = %d, order %s %s; want 200, order %s confirmed", code, again.ID, again.Status, first.ID)
	}
	if code, _ := post("items-1", other); code != http.StatusUnprocessableEntity {
		t.Errorf("recorded replay with another body = %d, want 422", code)
	}
	if code, again := post("cart-1", `{"fromCart":true}`); code != http.StatusOK || again.ID != fromCart.ID {
		t.Errorf("recorded replay from the cart = %d, order %s; want 200, order %s", code, again.ID, fromCart.ID)
	}
	// A request recorded long ago, its message id forgotten by the
	// stream: the record alone answers a replay, nothing is queued.
	// Another user, within his own admission limit.
	tok = ts.token(t, "oscar")
	now := time.Now().UTC()
	old := shop.Order{ID: shop.NewID(now.Add(-time.Hour)), User: "oscar", Lines: []shop.Line{{SKU: a, Quantity: 2}},
		Status: shop.OrderConfirmed, Region: "eastus", CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour)}
	if _, err := ts.store.CreateOrder(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	rec := store.IdempotencyRecord{ID: old.ID, UserKey: shop.UserKey("oscar"), RequestHash: shop.RequestHash(false, old.Lines)}
	if _, _, err := ts.store.Remember(t.Context(), shop.IdempotencyID("oscar", "old-1"), rec); err != nil {
		t.Fatal(err)
	}
	if code, again := post("old-1", items); code != http.StatusOK || again.ID != old.ID {
		t.Errorf("replay of an old request = %d, order %s; want 200, order %s", code, again.ID, old.ID)
	}
	if code, _ := post("old-1", other); code != http.StatusUnprocessableEntity {
		t.Errorf("replay of an old request with another body = %d, want 422", code)
	}
	if _, pending, err := ts.store.QueueAge(t.Context(), store.StreamOrders); err != nil || pending != 0 {
		t.Errorf("%d orders queued (%v) after replays of recorded requests, want none", pending, err)
	}
	if got, want := stock(a), stockA-2; got != want {
		t.Errorf("stock %s = %d, want %d (taken once)", a, got, want)
	}
	if got, want := stock(b), stockB-1; got != want {
		t.Errorf("stock %s = %d, want %d (taken once)", b, got, want)
	}
}
