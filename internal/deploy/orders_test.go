package deploy_test

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/poll"
	"github.com/contoso/shoes/internal/shop"
)

type order struct {
	ID     string           `json:"id"`
	Status shop.OrderStatus `json:"status"`
	Reason string           `json:"reason"`
}

type stock struct {
	Available int `json:"available"`
	Held      int `json:"held"`
}

func setStock(t *testing.T, d *deploy.Deployment, sku string, n int) {
	t.Helper()
	admin := deploytest.Token(t, d, "ops", true)
	res := deploytest.Do(t, http.MethodPut, d.Regions()["westeurope"]+"/api/inventory/"+sku, admin, map[string]int{"stock": n})
	if res.Status != http.StatusOK {
		t.Fatalf("set stock %s = %d %s", sku, res.Status, res.Body)
	}
}

func getStock(t *testing.T, d *deploy.Deployment, region, sku string) stock {
	t.Helper()
	st, err := readStock(d, region, sku)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// readStock is getStock returning its error, for goroutines.
func readStock(d *deploy.Deployment, region, sku string) (stock, error) {
	var st stock
	admin, err := deploytest.NewToken(d, "ops", true)
	if err != nil {
		return st, err
	}
	req, err := deploytest.NewRequest(http.MethodGet, d.Regions()[region]+"/api/inventory/"+sku, admin, "", nil)
	if err != nil {
		return st, err
	}
	res, err := deploytest.Exchange(req)
	if err != nil {
		return st, err
	}
	if res.Status != http.StatusOK {
		return st, fmt.Errorf("stock %s in %s = %d %s", sku, region, res.Status, res.Body)
	}
	return st, res.Decode(&st)
}

// placeOrder posts an order and returns the answer.
func placeOrder(t *testing.T, url, token, key string, body any) (deploytest.Response, order) {
	t.Helper()
	res, o, err := postOrder(url, token, key, body)
	if err != nil {
		t.Fatal(err)
	}
	return res, o
}

// postOrder is placeOrder returning its error, for goroutines.
func postOrder(url, token, key string, body any) (deploytest.Response, order, error) {
	var o order
	req, err := deploytest.NewRequest(http.MethodPost, url+"/api/orders", token, key, body)
	if err != nil {
		return deploytest.Response{}, o, err
	}
	res, err := deploytest.Exchange(req)
	if err != nil {
		return res, o, err
	}
	if res.Status < 300 {
		err = res.Decode(&o)
	}
	return res, o, err
}

// waitFinal polls until every order is confirmed or rejected.
func waitFinal(t testing.TB, d *deploy.Deployment, tokens map[string]string, within time.Duration) map[string]order {
	t.Helper()
	final := map[string]order{}
	regions := []string{"westeurope", "northeurope", "eastus"}
	deploytest.Eventually(t, within, func() error {
		i := 0
		for id, tok := range tokens {
			if _, ok := final[id]; ok {
				continue
			}
			url := d.Regions()[regions[i%len(regions)]]
			i++
			var o order
			res := deploytest.Do(t, http.MethodGet, url+"/api/orders/"+id, tok, nil)
			if res.Status != http.StatusOK {
				return fmt.Errorf("order %s: %d %s", id, res.Status, res.Body)
			}
			res.JSON(t, &o)
			if o.Status.Final() {
				final[id] = o
			}
		}
		if len(final) < len(tokens) {
			return fmt.Errorf("%d of %d orders final", len(final), len(tokens))
		}
		return nil
	})
	return final
}

// buyOne orders one unit of sku as user through url and returns the
// accepted order's id and the user's token. A buyer whose request got no
// answer sends it again with the same Idempotency-Key, as a client does,
// up to three times: a pooled connection the server closed as the request
// went out failed one run of 200 buyers over TLS ("http: server closed
// idle connection"). The answer to a repeat may be the order already
// final (200).
func buyOne(d *deploy.Deployment, url, user, sku string) (id, token string, err error) {
	tok, err := deploytest.NewToken(d, user, false)
	if err != nil {
		return "", "", err
	}
	var (
		res deploytest.Response
		o   order
	)
	for attempt := 1; ; attempt++ {
		res, o, err = postOrder(url, tok, "launch-"+user, map[string]any{"items": []shop.Line{{SKU: sku, Quantity: 1}}})
		if err == nil || res.Status != 0 || attempt == 3 {
			break
		}
	}
	if err != nil {
		return "", "", err
	}
	accepted := res.Status == http.StatusAccepted && o.Status == shop.OrderAccepted
	if o.ID == "" || !accepted && res.Status != http.StatusOK {
		return "", "", fmt.Errorf("POST = %d %s", res.Status, res.Body)
	}
	return o.ID, tok, nil
}

func TestNoOversellWhen200BuyersRaceForTenUnits(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	sku := shop.SKU(shop.SeedCatalog()[0].ID, shop.SeedCatalog()[0].Sizes[0])
	setStock(t, d, sku, 10)
	deploytest.Eventually(t, 5*time.Second, func() error {
		if st := getStock(t, d, "eastus", sku); st.Available != 10 {
			return fmt.Errorf("stock %d", st.Available)
		}
		return nil
	})

	var (
		mu     sync.Mutex
		tokens = map[string]string{}
		failed []error
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	observed := make(chan error, 1)
	go func() { // watch stock while the race runs: never negative
		for {
			select {
			case <-stop:
				observed <- nil
				return
			default:
			}
			st, err := readStock(d, "northeurope", sku)
			if err != nil {
				observed <- fmt.Errorf("watch stock: %w", err)
				return
			}
			if st.Available < 0 || st.Held < 0 || st.Available+st.Held > 10 {
				observed <- fmt.Errorf("observed stock %+v", st)
				return
			}
		}
	}()
	watched := sync.OnceValue(func() error { close(stop); return <-observed })
	defer watched()
	for i := range 200 {
		wg.Go(func() {
			user := fmt.Sprintf("buyer-%03d", i)
			id, tok, err := buyOne(d, d.Regions()[regions3[i%3]], user, sku)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, fmt.Errorf("%s: %w", user, err))
				return
			}
			tokens[id] = tok
		})
	}
	wg.Wait()
	if err := errors.Join(failed...); err != nil {
		t.Fatal(err)
	}
	final := waitFinal(t, d, tokens, 90*time.Second)
	if err := watched(); err != nil {
		t.Fatal(err)
	}
	confirmed, rejected := 0, 0
	for _, o := range final {
		switch {
		case o.Status == shop.OrderConfirmed:
			confirmed++
		case o.Status == shop.OrderRejected && o.Reason == shop.ReasonOutOfStock:
			rejected++
		default:
			t.Errorf("order %s ended %s %q", o.ID, o.Status, o.Reason)
		}
	}
	if confirmed != 10 || rejected != 190 {
		t.Fatalf("confirmed %d, rejected %d; want 10 and 190", confirmed, rejected)
	}
	// A final order's holds are settled right after its status is written.
	poll.Until(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := getStock(t, d, "eastus", sku); st.Available != 0 || st.Held != 0 {
			return fmt.Errorf("final stock %+v, want 0 available, 0 held", st)
		}
		return nil
	})
	if got := len(d.Partner().Received()); got != 10 {
		t.Fatalf("partner received %d orders, want 10", got)
	}
}

func TestOrderWithOneShortLineHoldsNothing(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	p := shop.SeedCatalog()[1]
	a, b := shop.SKU(p.ID, p.Sizes[0]), shop.SKU(p.ID, p.Sizes[1])
	setStock(t, d, a, 5)
	setStock(t, d, b, 0)
	tok := deploytest.Token(t, d, "carol", false)
	res, o := placeOrder(t, d.Regions()["northeurope"], tok, "k1", map[string]any{"items": []shop.Line{{SKU: a, Quantity: 2}, {SKU: b, Quantity: 1}}})
	if res.Status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", res.Status, res.Body)
	}
	final := waitFinal(t, d, map[string]string{o.ID: tok}, 20*time.Second)
	if got := final[o.ID]; got.Status != shop.OrderRejected || got.Reason != shop.ReasonOutOfStock {
		t.Fatalf("order = %+v, want rejected out_of_stock", got)
	}
	// The rejection is written first, then the holds go back (another
	// processor of the same message may have marked the order reserved
	// with them): the stock follows the rejection within a write.
	poll.Until(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := getStock(t, d, "eastus", a); st.Available != 5 || st.Held != 0 {
			return fmt.Errorf("stock of the line that was available = %+v, want 5 available, none held", st)
		}
		return nil
	})
	if len(d.Partner().Received()) != 0 {
		t.Fatal("the partner heard of a rejected order")
	}
}

func TestIdempotentOrdersAcrossRegions(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	p := shop.SeedCatalog()[2]
	sku := shop.SKU(p.ID, p.Sizes[0])
	tok := deploytest.Token(t, d, "dave", false)
	body := map[string]any{"items": []shop.Line{{SKU: sku, Quantity: 1}}}
	res, first := placeOrder(t, d.Regions()["westeurope"], tok, "checkout-42", body)
	if res.Status != http.StatusAccepted || res.Header.Get("Location") != "/api/orders/"+first.ID {
		t.Fatalf("first POST = %d %s (Location %q)", res.Status, res.Body, res.Header.Get("Location"))
	}
	for _, region := range regions3 {
		res, again := placeOrder(t, d.Regions()[region], tok, "checkout-42", body)
		if (res.Status != http.StatusOK && res.Status != http.StatusAccepted) || again.ID != first.ID {
			t.Fatalf("%s replay = %d, order %q; want the same order %q", region, res.Status, again.ID, first.ID)
		}
	}
	res, _ = placeOrder(t, d.Regions()["eastus"], tok, "checkout-42", map[string]any{"items": []shop.Line{{SKU: sku, Quantity: 2}}})
	if res.Status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body = %d %s, want 422", res.Status, res.Body)
	}
	// Another user's identical key is another order.
	res, other := placeOrder(t, d.Regions()["eastus"], deploytest.Token(t, d, "erin", false), "checkout-42", body)
	if res.Status != http.StatusAccepted || other.ID == first.ID {
		t.Fatalf("another user's key = %d, order %q", res.Status, other.ID)
	}
	final := waitFinal(t, d, map[string]string{first.ID: tok}, 20*time.Second)
	if final[first.ID].Status != shop.OrderConfirmed {
		t.Fatalf("order = %+v", final[first.ID])
	}
	if n := d.Partner().Deliveries(first.ID); n < 1 {
		t.Fatalf("partner deliveries = %d", n)
	}
	// Someone else cannot see the order; an admin can.
	if res := deploytest.Do(t, http.MethodGet, d.Regions()["westeurope"]+"/api/orders/"+first.ID, deploytest.Token(t, d, "erin", false), nil); res.Status != http.StatusNotFound {
		t.Fatalf("another user's GET = %d, want 404", res.Status)
	}
	if res := deploytest.Do(t, http.MethodGet, d.Regions()["westeurope"]+"/api/orders/"+first.ID, deploytest.Token(t, d, "ops", true), nil); res.Status != http.StatusOK {
		t.Fatalf("admin GET = %d, want 200", res.Status)
	}
	var list struct{ Items []order }
	deploytest.Do(t, http.MethodGet, d.Regions()["northeurope"]+"/api/orders", tok, nil).JSON(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != first.ID {
		t.Fatalf("dave's orders = %+v", list.Items)
	}
}

func TestPartnerOutageLeavesOrdersReservedThenConfirmsEachOnce(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	d.Partner().SetMode(partner.Failing, 0)
	p := shop.SeedCatalog()[3]
	tokens := map[string]string{}
	for i := range 6 {
		tok := deploytest.Token(t, d, fmt.Sprintf("fan-%d", i), false)
		res, o := placeOrder(t, d.Regions()[regions3[i%3]], tok, "k", map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[i%len(p.Sizes)]), Quantity: 1}}})
		if res.Status != http.StatusAccepted {
			t.Fatalf("POST = %d %s", res.Status, res.Body)
		}
		tokens[o.ID] = tok
	}
	deploytest.Eventually(t, 20*time.Second, func() error {
		for id, tok := range tokens {
			var o order
			deploytest.Do(t, http.MethodGet, d.Regions()["westeurope"]+"/api/orders/"+id, tok, nil).JSON(t, &o)
			if o.Status != shop.OrderReserved {
				return fmt.Errorf("order %s is %s during the partner outage, want reserved", id, o.Status)
			}
		}
		return nil
	})
	d.Partner().SetMode(partner.Up, 0)
	final := waitFinal(t, d, tokens, 60*time.Second)
	for id, o := range final {
		if o.Status != shop.OrderConfirmed {
			t.Fatalf("order %s ended %s", id, o.Status)
		}
	}
	got := map[string]int{}
	for _, n := range d.Partner().Received() {
		got[n.OrderID]++
	}
	for id := range tokens {
		if got[id] != 1 {
			t.Fatalf("partner recorded order %s %d times, want exactly once", id, got[id])
		}
	}
	if r := d.Partner().Rejected(); r != 0 {
		t.Fatalf("partner rejected %d notifications (bad key or signature)", r)
	}
}

func TestAcceptedOrdersSurviveTheAcceptingRegionsServer(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	p := shop.SeedCatalog()[4]
	tokens := map[string]string{}
	for i := range 10 {
		tok := deploytest.Token(t, d, fmt.Sprintf("east-%d", i), false)
		res, o := placeOrder(t, d.Regions()["eastus"], tok, "k", map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[0]), Quantity: 1}}})
		if res.Status != http.StatusAccepted {
			t.Fatalf("POST = %d %s", res.Status, res.Body)
		}
		tokens[o.ID] = tok
	}
	// The accepting region's server dies right after answering.
	if err := d.StopServer("eastus"); err != nil {
		t.Fatal(err)
	}
	final := map[string]order{}
	deploytest.Eventually(t, 60*time.Second, func() error {
		for id, tok := range tokens {
			var o order
			res := deploytest.Do(t, http.MethodGet, d.Regions()["westeurope"]+"/api/orders/"+id, tok, nil)
			if res.Status != http.StatusOK {
				return fmt.Errorf("order %s: %d", id, res.Status)
			}
			res.JSON(t, &o)
			if !o.Status.Final() {
				return fmt.Errorf("order %s still %s", id, o.Status)
			}
			final[id] = o
		}
		return nil
	})
	if len(final) != 10 {
		t.Fatalf("%d of 10 accepted orders reached a final state", len(final))
	}
}
