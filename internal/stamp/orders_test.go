package stamp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

func TestAdmissionAnswers429WithRetryAfter(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	url := d.Regions()["westeurope"]
	tok := deploytest.Token(t, d, "hasty", false)
	p := shop.SeedCatalog()[9]
	body := map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[0]), Quantity: 1}}}
	limited := 0
	for i := range 30 {
		res := deploytest.DoKeyed(t, http.MethodPost, url+"/api/orders", tok, fmt.Sprint("burst-", i), body)
		switch res.Status {
		case http.StatusAccepted:
		case http.StatusTooManyRequests:
			limited++
			if res.Header.Get("Retry-After") == "" || res.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("429 without Retry-After or problem+json: %v", res.Header)
			}
		default:
			t.Fatalf("order %d = %d %s", i, res.Status, res.Body)
		}
	}
	// A burst of 10, refilled at 5/s: of 30 back-to-back orders most are refused.
	if limited < 10 {
		t.Fatalf("%d of 30 back-to-back orders from one user were limited, want at least 10", limited)
	}
	// Another user is not affected by the first one's limit.
	if res := deploytest.DoKeyed(t, http.MethodPost, url+"/api/orders", deploytest.Token(t, d, "patient", false), "k", body); res.Status != http.StatusAccepted {
		t.Fatalf("another user's order = %d %s", res.Status, res.Body)
	}
}

func TestCartAndOrderFromCart(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	url := d.Regions()["westeurope"]
	tok := deploytest.Token(t, d, "henry", false)
	p := shop.SeedCatalog()[10]
	a, b := shop.SKU(p.ID, p.Sizes[0]), shop.SKU(p.ID, p.Sizes[1])
	for _, step := range []struct {
		sku string
		q   int
	}{{a, 2}, {b, 1}, {b, 3}, {a, 0}} {
		if res := deploytest.Do(t, http.MethodPut, url+"/api/cart/items/"+step.sku, tok, map[string]int{"quantity": step.q}); res.Status != http.StatusOK {
			t.Fatalf("PUT cart item = %d %s", res.Status, res.Body)
		}
	}
	var cart shop.Cart
	deploytest.Do(t, http.MethodGet, url+"/api/cart", tok, nil).JSON(t, &cart)
	if len(cart.Items) != 1 || cart.Items[0] != (shop.Line{SKU: b, Quantity: 3}) {
		t.Fatalf("cart = %+v, want only %s x3", cart.Items, b)
	}
	// Someone else's cart is their own.
	var other shop.Cart
	deploytest.Do(t, http.MethodGet, url+"/api/cart", deploytest.Token(t, d, "ivy", false), nil).JSON(t, &other)
	if len(other.Items) != 0 {
		t.Fatalf("another user's cart = %+v", other.Items)
	}
	res := deploytest.DoKeyed(t, http.MethodPost, url+"/api/orders", tok, "from-cart-1", map[string]bool{"fromCart": true})
	if res.Status != http.StatusAccepted {
		t.Fatalf("order from cart = %d %s", res.Status, res.Body)
	}
	var o shop.Order
	if err := json.Unmarshal(res.Body, &o); err != nil || len(o.Lines) != 1 || o.Lines[0].Quantity != 3 {
		t.Fatalf("order from cart = %+v, %v", o, err)
	}
	deploytest.Do(t, http.MethodGet, url+"/api/cart", tok, nil).JSON(t, &cart)
	if len(cart.Items) != 0 {
		t.Fatalf("cart after ordering = %+v, want empty", cart.Items)
	}
	// Replaying the same key returns the same order even though the cart is now empty.
	res = deploytest.DoKeyed(t, http.MethodPost, url+"/api/orders", tok, "from-cart-1", map[string]bool{"fromCart": true})
	var again shop.Order
	if res.Status >= 300 || json.Unmarshal(res.Body, &again) != nil || again.ID != o.ID {
		t.Fatalf("replay = %d %s, want order %s", res.Status, res.Body, o.ID)
	}
	if res := deploytest.Do(t, http.MethodDelete, url+"/api/cart", tok, nil); res.Status != http.StatusNoContent {
		t.Fatalf("DELETE cart = %d", res.Status)
	}
}

func TestReplayWithLinesInAnotherOrderIsTheSameOrder(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	url := d.Regions()["westeurope"]
	tok := deploytest.Token(t, d, "jane", false)
	p := shop.SeedCatalog()[11]
	a, b := shop.Line{SKU: shop.SKU(p.ID, p.Sizes[0]), Quantity: 1}, shop.Line{SKU: shop.SKU(p.ID, p.Sizes[1]), Quantity: 2}
	var first, again shop.Order
	res := deploytest.DoKeyed(t, http.MethodPost, url+"/api/orders", tok, "two-lines", map[string]any{"items": []shop.Line{b, a}})
	if res.Status != http.StatusAccepted || json.Unmarshal(res.Body, &first) != nil {
		t.Fatalf("first = %d %s", res.Status, res.Body)
	}
	res = deploytest.DoKeyed(t, http.MethodPost, url+"/api/orders", tok, "two-lines", map[string]any{"items": []shop.Line{a, b}})
	if res.Status >= 300 || json.Unmarshal(res.Body, &again) != nil || again.ID != first.ID {
		t.Fatalf("replay in another line order = %d %s, want order %s", res.Status, res.Body, first.ID)
	}
}

func TestCommentWithIdempotencyKeyIsStoredOnce(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	url := d.Regions()["westeurope"]
	tok := deploytest.Token(t, d, "kim", false)
	id := shop.SeedCatalog()[12].ID
	post := func(key, text string) deploytest.Response {
		return deploytest.DoKeyed(t, http.MethodPost, url+"/api/products/"+id+"/comments", tok, key, map[string]string{"text": text})
	}
	first := post("c-1", "Comfortable from day one.")
	again := post("c-1", "Comfortable from day one.")
	if first.Status != http.StatusAccepted || again.Status != http.StatusAccepted || first.Header.Get("Location") != again.Header.Get("Location") {
		t.Fatalf("retried comment: %d %q then %d %q, want the same Location", first.Status, first.Header.Get("Location"), again.Status, again.Header.Get("Location"))
	}
	if res := post("c-1", "Something else."); res.Status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other text = %d, want 422", res.Status)
	}
	deploytest.Eventually(t, 10*time.Second, func() error {
		if res := deploytest.Do(t, http.MethodGet, url+first.Header.Get("Location"), "", nil); res.Status != http.StatusOK {
			return fmt.Errorf("comment not processed: %d", res.Status)
		}
		return nil
	})
	var page struct{ Items []shop.Comment }
	deploytest.Do(t, http.MethodGet, url+"/api/products/"+id+"/comments", "", nil).JSON(t, &page)
	if len(page.Items) != 1 {
		t.Fatalf("%d comments after one comment posted twice with one key", len(page.Items))
	}
}

// GET /api/orders pages with nextCursor: every order once, newest first,
// no cursor after the last page.
func TestListOrdersPages(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	base := d.Regions()["westeurope"]
	tok := deploytest.Token(t, d, "collector", false)
	p := shop.SeedCatalog()[6]
	body := map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[0]), Quantity: 1}}}
	var ids []string // newest first
	for i := range 5 {
		res := deploytest.DoKeyed(t, http.MethodPost, base+"/api/orders", tok, fmt.Sprint("pages-", i), body)
		var o shop.Order
		if res.Status != http.StatusAccepted || json.Unmarshal(res.Body, &o) != nil {
			t.Fatalf("order %d = %d %s", i, res.Status, res.Body)
		}
		ids = append([]string{o.ID}, ids...)
	}
	type page struct {
		Items      []shop.Order `json:"items"`
		NextCursor string       `json:"nextCursor"`
	}
	// The list shows the orders a processor has recorded: an order is
	// missing from it for the moment after its 202.
	deploytest.Eventually(t, 10*time.Second, func() error {
		var all page
		if err := deploytest.Do(t, http.MethodGet, base+"/api/orders?limit=10", tok, nil).Decode(&all); err != nil {
			return err
		}
		if len(all.Items) != len(ids) {
			return fmt.Errorf("%d of %d orders listed", len(all.Items), len(ids))
		}
		return nil
	})
	var got []string
	cursor := ""
	for n := 0; ; n++ {
		if n == 3 {
			t.Fatalf("more than 3 pages of 2 for 5 orders: %v", got)
		}
		var pg page
		deploytest.Do(t, http.MethodGet, base+"/api/orders?limit=2&cursor="+url.QueryEscape(cursor), tok, nil).JSON(t, &pg)
		for _, o := range pg.Items {
			got = append(got, o.ID)
		}
		if pg.NextCursor == "" {
			break
		}
		cursor = pg.NextCursor
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("pages list %v, want %v", got, ids)
	}
	var past page
	res := deploytest.Do(t, http.MethodGet, base+"/api/orders?cursor="+url.QueryEscape(httpapi.EncodeCursor(shop.NewID(time.Now().Add(-time.Hour)))), tok, nil)
	res.JSON(t, &past)
	if res.Status != http.StatusOK || past.Items == nil || len(past.Items) != 0 || past.NextCursor != "" {
		t.Fatalf("a cursor past the end = %d %s, want an empty page", res.Status, res.Body)
	}
}
