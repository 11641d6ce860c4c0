package stamp_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/shop"
)

// FuzzWriteBodies sends arbitrary bodies to every endpoint that decodes
// one, against a real stamp: the answer is never a 5xx, every 4xx is
// problem+json, and each endpoint's valid body is accepted (2xx). Every
// request from a user comes from a user of its own, so per-user limits
// never turn a valid body away.
func FuzzWriteBodies(f *testing.F) {
	d := deploytest.MustStart(f, deploytest.Options{}, "westeurope")
	base := d.Regions()["westeurope"]
	admin := deploytest.Token(f, d, "fuzz-admin", true)
	id := shop.SeedCatalog()[3].ID
	sku := shop.SKU(id, shop.SeedCatalog()[3].Sizes[0])
	targets := []struct {
		method, path string
		admin        bool
		valid        string // a body the endpoint accepts
	}{
		{"POST", "/api/products/" + id + "/comments", false, `{"text":"nice"}`},
		{"POST", "/api/products/" + id + "/ratings", false, `{"stars":3}`},
		{"PUT", "/api/products/fuzzed-shoe", true,
			`{"brand":"B","model":"M","category":"running","price":{"amountCents":1,"currency":"EUR"},"sizes":["42"],"colour":"c"}`},
		{"POST", "/api/orders", false, `{"items":[{"sku":"` + sku + `","quantity":1}]}`},
		{"PUT", "/api/cart/items/" + sku, false, `{"quantity":3}`},
		{"PUT", "/api/inventory/" + sku, true, `{"stock":5}`},
	}
	var requests atomic.Int64
	send := func(which uint8, body []byte) (deploytest.Response, error) {
		n := requests.Add(1)
		tgt := targets[int(which)%len(targets)]
		token := admin
		if !tgt.admin {
			var err error
			if token, err = deploytest.NewToken(d, fmt.Sprint("fuzzer-", n), false); err != nil {
				return deploytest.Response{}, err
			}
		}
		req, err := deploytest.NewRequest(tgt.method, base+tgt.path, token, fmt.Sprint("fuzz-", n), body) // sent as is, as JSON
		if err != nil {
			return deploytest.Response{}, err
		}
		return deploytest.Exchange(req)
	}
	for i, tgt := range targets {
		res, err := send(uint8(i), []byte(tgt.valid))
		if err != nil || res.Status/100 != 2 {
			f.Fatalf("%s %s with its valid body %s = %d %s, %v", tgt.method, tgt.path, tgt.valid, res.Status, res.Body, err)
		}
	}
	for _, s := range []string{
		`{"text":"nice"}`, `{"stars":3}`, `{"stars":3.5}`, `{"text":null}`, `[]`, `{}`, `null`,
		targets[2].valid, targets[3].valid,
		"\xff\xfe", `{"text":"\u0000"}`, `{"sizes":[1,2]}`,
		`{"items":[{"sku":"x","quantity":1}]}`, `{"fromCart":true}`, `{"quantity":3}`, `{"stock":5}`,
	} {
		for which := range len(targets) {
			f.Add([]byte(s), uint8(which))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		tgt := targets[int(which)%len(targets)]
		res, err := send(which, body)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status >= 500 {
			t.Fatalf("%s %s with %q = %d %s", tgt.method, tgt.path, body, res.Status, res.Body)
		}
		if res.Status >= 400 && res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%d without problem+json: %q", res.Status, res.Body)
		}
		if string(body) == tgt.valid && res.Status/100 != 2 {
			t.Fatalf("%s %s with its valid body %s = %d %s", tgt.method, tgt.path, body, res.Status, res.Body)
		}
	})
}
