package stamp_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/shop"
)

// FuzzWriteBodies sends arbitrary bodies to every endpoint that decodes
// one, against a real stamp: the answer is never a 5xx, and every 4xx is
// problem+json.
func FuzzWriteBodies(f *testing.F) {
	for _, s := range []string{
		`{"text":"nice"}`, `{"stars":3}`, `{"stars":3.5}`, `{"text":null}`, `[]`, `{}`, `null`,
		`{"brand":"B","model":"M","category":"running","price":{"amountCents":1,"currency":"EUR"},"sizes":["42"],"colour":"c"}`,
		"\xff\xfe", `{"text":"\u0000"}`, `{"sizes":[1,2]}`,
		`{"items":[{"sku":"x","quantity":1}]}`, `{"fromCart":true}`, `{"quantity":3}`, `{"stock":5}`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(2))
		f.Add([]byte(s), uint8(3))
		f.Add([]byte(s), uint8(4))
		f.Add([]byte(s), uint8(5))
	}
	d := deploytest.MustStart(f, deploytest.Options{}, "westeurope")
	base := d.Regions()["westeurope"]
	user := deploytest.Token(f, d, "fuzzer", false)
	admin := deploytest.Token(f, d, "fuzz-admin", true)
	id := shop.SeedCatalog()[3].ID
	sku := shop.SKU(id, shop.SeedCatalog()[3].Sizes[0])
	targets := []struct{ method, path, token string }{
		{"POST", "/api/products/" + id + "/comments", user},
		{"POST", "/api/products/" + id + "/ratings", user},
		{"PUT", "/api/products/fuzzed-shoe", admin},
		{"POST", "/api/orders", user},
		{"PUT", "/api/cart/items/" + sku, user},
		{"PUT", "/api/inventory/" + sku, admin},
	}
	var orders atomic.Int64
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		tgt := targets[int(which)%len(targets)]
		req, err := http.NewRequest(tgt.method, base+tgt.path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tgt.token)
		req.Header.Set("Idempotency-Key", fmt.Sprint("fuzz-", orders.Add(1)))
		resp, err := deploytest.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s with %q = %d %s", tgt.method, tgt.path, body, resp.StatusCode, b)
		}
		if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%d without problem+json: %q", resp.StatusCode, b)
		}
	})
}
