package stamp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// One user posting comments (or ratings) as fast as possible gets the
// burst, then 429 problems with Retry-After; another user is not affected.
func TestCommentsAndRatingsAreLimitedPerUser(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	base := d.Regions()["westeurope"]
	prod := "/api/products/" + shop.SeedCatalog()[4].ID
	for _, tc := range []struct {
		what, path string
		body       any
		burst      int
	}{
		{"comments", prod + "/comments", map[string]string{"text": "Light and quick."}, 5},
		{"ratings", prod + "/ratings", map[string]int{"stars": 4}, 10},
	} {
		t.Run(tc.what, func(t *testing.T) {
			hasty := deploytest.Token(t, d, "hasty-"+tc.what, false)
			accepted, limited := 0, 0
			for i := range 3 * tc.burst {
				res := deploytest.Do(t, http.MethodPost, base+tc.path, hasty, tc.body)
				switch res.Status {
				case http.StatusAccepted:
					accepted++
				case http.StatusTooManyRequests:
					limited++
					var p httpapi.Problem
					if err := json.Unmarshal(res.Body, &p); err != nil || res.Header.Get("Content-Type") != "application/problem+json" ||
						res.Header.Get("Retry-After") != "1" || p.Type != httpapi.ProblemTypeBase+"too-many-requests" ||
						p.Detail != "too many "+tc.what+" from this user; retry in a second" {
						t.Fatalf("429 = %v %s", res.Header, res.Body)
					}
				default:
					t.Fatalf("POST %d = %d %s", i, res.Status, res.Body)
				}
			}
			// The posts take well under a second: the burst, and about
			// nothing more, is accepted.
			if accepted < tc.burst || limited < tc.burst {
				t.Fatalf("%d of %d back-to-back %s accepted and %d limited; want the burst of %d accepted, then at least %d limited",
					accepted, 3*tc.burst, tc.what, limited, tc.burst, tc.burst)
			}
			calm := deploytest.Token(t, d, "calm-"+tc.what, false)
			if res := deploytest.Do(t, http.MethodPost, base+tc.path, calm, tc.body); res.Status != http.StatusAccepted {
				t.Fatalf("another user's POST = %d %s", res.Status, res.Body)
			}
		})
	}
}

// When the store refuses writes because an asset is full, the client gets
// a 503 problem that says so, and every order accepted before stays. The
// orders bucket fills first: the processor cannot record what it takes,
// so accepted orders stay on the order stream until it is full too.
func TestAFullStoreAnswers503AndKeepsAcceptedOrders(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	base := d.Regions()["westeurope"]
	js, _ := jetstream.New(deploytest.StoreConn(t, d, "westeurope"))
	for name, size := range map[string]int64{
		"KV_" + store.BucketOrders: 4 << 10, // about ten orders
		store.StreamOrders:         8 << 10, // about fifteen order messages
	} {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		cfg.MaxBytes = size
		if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	p := shop.SeedCatalog()[8]
	body := map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[0]), Quantity: 1}}}
	type accepted struct{ token, id string }
	var orders []accepted
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 orders fitted in 4 KiB")
		}
		tok := deploytest.Token(t, d, fmt.Sprint("shopper-", i), false) // each within its own admission
		res := deploytest.DoKeyed(t, http.MethodPost, base+"/api/orders", tok, "full-1", body)
		if res.Status == http.StatusAccepted {
			var o shop.Order
			res.JSON(t, &o)
			orders = append(orders, accepted{tok, o.ID})
			continue
		}
		var pr httpapi.Problem
		if err := json.Unmarshal(res.Body, &pr); err != nil || res.Status != http.StatusServiceUnavailable ||
			res.Header.Get("Content-Type") != "application/problem+json" || res.Header.Get("Retry-After") == "" ||
			!strings.HasPrefix(pr.Detail, "the store is full: ") {
			t.Fatalf("order %d into a full bucket = %d %v %s, want 503 problem+json saying the store is full", i, res.Status, res.Header, res.Body)
		}
		break
	}
	if len(orders) == 0 {
		t.Fatal("not one order fitted")
	}
	for _, o := range orders {
		if res := deploytest.Do(t, http.MethodGet, base+"/api/orders/"+o.id, o.token, nil); res.Status != http.StatusOK {
			t.Fatalf("accepted order %s = %d %s", o.id, res.Status, res.Body)
		}
	}
}
