package stamp_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// badTokens are tokens a stamp must refuse with 401, by name.
func badTokens(t *testing.T, issuer *auth.Issuer) map[string]string {
	t.Helper()
	expired, err := issuer.Mint("alice", true, time.Hour, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.LoadOrCreateIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := other.Mint("alice", true, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(issuer.JWKS(), &jwks); err != nil || len(jwks.Keys) == 0 {
		t.Fatalf("issuer JWKS: %v", err)
	}
	kid := jwks.Keys[0].Kid
	claims := jwt.MapClaims{
		"iss": auth.DevIssuer, "aud": auth.DevAudience, "sub": "mallory", "roles": []string{"admin"},
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}
	// Same kid, another key: a forged signature.
	forgedKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = kid
	forged, err := tok.SignedString(forgedKey)
	if err != nil {
		t.Fatal(err)
	}
	// HS256 keyed with the public JWKS: the algorithm-confusion attack.
	tok = jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = kid
	hs256, err := tok.SignedString(issuer.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	tok = jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	tok.Header["kid"] = kid
	none, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"expired": expired, "wrong key": wrongKey, "forged signature": forged,
		"wrong algorithm HS256": hs256, "algorithm none": none, "garbage": "not.a.jwt",
	}
}

type badCase struct {
	name, method, path, token string
	body                      any
	contentType               string
	status                    int
	field                     string
}

func TestBadInputsGetProblemJSON(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	base := d.Regions()["westeurope"]
	user := deploytest.Token(t, d, "alice", false)
	admin := deploytest.Token(t, d, "ops", true)
	id := shop.SeedCatalog()[0].ID
	prod := "/api/products/" + id
	goodProduct := map[string]any{
		"brand": "Contoso", "model": "X", "category": "running",
		"price": map[string]any{"amountCents": 100, "currency": "EUR"}, "sizes": []string{"42"}, "colour": "red",
	}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for key, val := range goodProduct {
			m[key] = val
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	huge := `{"text":"` + strings.Repeat("x", httpapi.MaxBodyBytes) + `"}`
	sku := shop.SKU(shop.SeedCatalog()[0].ID, shop.SeedCatalog()[0].Sizes[0])
	last := shop.SeedCatalog()[len(shop.SeedCatalog())-1]
	lastSKU := shop.SKU(last.ID, last.Sizes[0])
	order := func(sku string, q int) map[string]any {
		return map[string]any{"items": []map[string]any{{"sku": sku, "quantity": q}}}
	}
	// keyed marks a case that sends an Idempotency-Key.
	const keyed = "|keyed"
	validID := shop.NewID(time.Now())

	cases := []badCase{
		// catalog reads
		{"list limit zero", "GET", "/api/products?limit=0", "", nil, "", 400, "limit"},
		{"list limit over 100", "GET", "/api/products?limit=101", "", nil, "", 400, "limit"},
		{"list limit not a number", "GET", "/api/products?limit=ten", "", nil, "", 400, "limit"},
		{"list forged cursor", "GET", "/api/products?cursor=AAAA", "", nil, "", 400, "cursor"},
		{"list unknown category", "GET", "/api/products?category=spaceboots", "", nil, "", 400, "category"},
		{"list oversized brand", "GET", "/api/products?brand=" + strings.Repeat("b", 300), "", nil, "", 400, "brand"},
		{"product bad id", "GET", "/api/products/NOT_AN_ID", "", nil, "", 400, "id"},
		{"product overlong id", "GET", "/api/products/" + strings.Repeat("a", 65), "", nil, "", 400, "id"},
		{"product unknown", "GET", "/api/products/no-such-shoe", "", nil, "", 404, ""},
		// admin product writes
		{"put no token", "PUT", prod, "", goodProduct, "", 401, ""},
		{"put user token", "PUT", prod, user, goodProduct, "", 403, ""},
		{"put malformed", "PUT", prod, admin, `{"brand":`, "", 400, ""},
		{"put wrong type", "PUT", prod, admin, with("price", map[string]any{"amountCents": "cheap", "currency": "EUR"}), "", 400, "price.amountCents"},
		{"put negative price", "PUT", prod, admin, with("price", map[string]any{"amountCents": -1, "currency": "EUR"}), "", 400, "price.amountCents"},
		{"put bad currency", "PUT", prod, admin, with("price", map[string]any{"amountCents": 1, "currency": "euro"}), "", 400, "price.currency"},
		{"put unknown category", "PUT", prod, admin, with("category", "spaceboots"), "", 400, "category"},
		{"put no sizes", "PUT", prod, admin, with("sizes", []string{}), "", 400, "sizes"},
		{"put bad size", "PUT", prod, admin, with("sizes", []string{"huge"}), "", 400, "sizes"},
		{"put missing brand", "PUT", prod, admin, with("brand", nil), "", 400, "brand"},
		{"put unknown field", "PUT", prod, admin, with("rating", 5), "", 400, "rating"},
		{"put oversized", "PUT", prod, admin, huge, "", 413, ""},
		{"put text/plain", "PUT", prod, admin, goodProduct, "text/plain", 415, ""},
		{"put bad id", "PUT", "/api/products/Bad_Id", admin, goodProduct, "", 400, "id"},
		// comments
		{"comment no token", "POST", prod + "/comments", "", map[string]string{"text": "hi"}, "", 401, ""},
		{"comment unknown product", "POST", "/api/products/no-such-shoe/comments", user, map[string]string{"text": "hi"}, "", 404, ""},
		{"comment empty", "POST", prod + "/comments", user, map[string]string{"text": ""}, "", 400, "text"},
		{"comment blank", "POST", prod + "/comments", user, map[string]string{"text": "   "}, "", 400, "text"},
		{"comment too long", "POST", prod + "/comments", user, map[string]string{"text": strings.Repeat("é", 2001)}, "", 400, "text"},
		{"comment wrong type", "POST", prod + "/comments", user, `{"text":42}`, "", 400, "text"},
		{"comment malformed", "POST", prod + "/comments", user, `{"text":"hi"`, "", 400, ""},
		{"comment no body", "POST", prod + "/comments", user, nil, "", 400, ""},
		{"comment oversized", "POST", prod + "/comments", user, huge, "", 413, ""},
		{"comment control chars", "POST", prod + "/comments", user, map[string]string{"text": "a\x00b"}, "", 400, "text"},
		{"comments limit", "GET", prod + "/comments?limit=1000", "", nil, "", 400, "limit"},
		{"comments bad cursor", "GET", prod + "/comments?cursor=***", "", nil, "", 400, "cursor"},
		{"comments cursor not an id", "GET", prod + "/comments?cursor=" + httpapi.EncodeCursor("x"), "", nil, "", 400, "cursor"},
		{"comments unknown product", "GET", "/api/products/no-such-shoe/comments", "", nil, "", 404, ""},
		{"comment bad id", "GET", prod + "/comments/nope", "", nil, "", 400, "commentId"},
		{"comment unknown id", "GET", prod + "/comments/" + validID, "", nil, "", 404, ""},
		// ratings
		{"rating no token", "POST", prod + "/ratings", "", map[string]int{"stars": 3}, "", 401, ""},
		{"rating zero", "POST", prod + "/ratings", user, map[string]int{"stars": 0}, "", 400, "stars"},
		{"rating six", "POST", prod + "/ratings", user, map[string]int{"stars": 6}, "", 400, "stars"},
		{"rating fraction", "POST", prod + "/ratings", user, `{"stars":4.5}`, "", 400, "stars"},
		{"rating string", "POST", prod + "/ratings", user, `{"stars":"5"}`, "", 400, "stars"},
		{"rating missing", "POST", prod + "/ratings", user, `{}`, "", 400, "stars"},
		{"rating huge", "POST", prod + "/ratings", user, `{"stars":99999999999999999999}`, "", 400, "stars"},
		{"rating unknown product", "POST", "/api/products/no-such-shoe/ratings", user, map[string]int{"stars": 3}, "", 404, ""},
		{"rating bad id", "GET", prod + "/ratings/x", "", nil, "", 400, "ratingId"},
		// inventory
		{"inventory no token", "PUT", "/api/inventory/" + sku, "", map[string]int{"stock": 1}, "", 401, ""},
		{"inventory user", "PUT", "/api/inventory/" + sku, user, map[string]int{"stock": 1}, "", 403, ""},
		{"inventory negative", "PUT", "/api/inventory/" + sku, admin, map[string]int{"stock": -1}, "", 400, "stock"},
		{"inventory huge", "PUT", "/api/inventory/" + sku, admin, map[string]int{"stock": 1 << 40}, "", 400, "stock"},
		{"inventory missing", "PUT", "/api/inventory/" + sku, admin, `{}`, "", 400, "stock"},
		{"inventory string", "PUT", "/api/inventory/" + sku, admin, `{"stock":"ten"}`, "", 400, "stock"},
		{"inventory unknown sku", "PUT", "/api/inventory/no-such-sku", admin, map[string]int{"stock": 1}, "", 404, ""},
		{"inventory bad sku", "PUT", "/api/inventory/BAD%20SKU", admin, map[string]int{"stock": 1}, "", 400, "sku"},
		{"inventory read user", "GET", "/api/inventory/" + sku, user, nil, "", 403, ""},
		// cart
		{"cart no token", "GET", "/api/cart", "", nil, "", 401, ""},
		{"cart item unknown sku", "PUT", "/api/cart/items/no-such-sku", user, map[string]int{"quantity": 1}, "", 400, "sku"},
		{"cart item negative", "PUT", "/api/cart/items/" + sku, user, map[string]int{"quantity": -1}, "", 400, "quantity"},
		{"cart item too many", "PUT", "/api/cart/items/" + sku, user, map[string]int{"quantity": 11}, "", 400, "quantity"},
		{"cart item missing quantity", "PUT", "/api/cart/items/" + sku, user, `{}`, "", 400, "quantity"},
		{"cart item no token", "PUT", "/api/cart/items/" + sku, "", map[string]int{"quantity": 1}, "", 401, ""},
		{"cart delete no token", "DELETE", "/api/cart", "", nil, "", 401, ""},
		// orders
		{"order no token", "POST", "/api/orders", "", order(sku, 1), "", 401, ""},
		{"order no idempotency key", "POST", "/api/orders", user, order(sku, 1), "", 400, "Idempotency-Key"},
		{"order zero quantity", "POST", "/api/orders", user + keyed, order(sku, 0), "", 400, "items[0].quantity"},
		{"order quantity too big", "POST", "/api/orders", user + keyed, order(sku, 11), "", 400, "items[0].quantity"},
		{"order unknown sku", "POST", "/api/orders", user + keyed, order("no-such-sku", 1), "", 400, "items[0].sku"},
		{"order second line unknown", "POST", "/api/orders", user + keyed, map[string]any{"items": []map[string]any{{"sku": lastSKU, "quantity": 1}, {"sku": "no-such-sku", "quantity": 1}}}, "", 400, "items[1].sku"},
		{"order malformed sku", "POST", "/api/orders", user + keyed, order("../etc", 1), "", 400, "items[0].sku"},
		{"order no lines", "POST", "/api/orders", user + keyed, map[string]any{"items": []any{}}, "", 400, "items"},
		{"order both items and cart", "POST", "/api/orders", user + keyed, map[string]any{"items": []map[string]any{{"sku": sku, "quantity": 1}}, "fromCart": true}, "", 400, "items"},
		{"order empty cart", "POST", "/api/orders", user + keyed, map[string]any{"fromCart": true}, "", 400, "fromCart"},
		{"order repeated sku", "POST", "/api/orders", user + keyed, map[string]any{"items": []map[string]any{{"sku": sku, "quantity": 1}, {"sku": sku, "quantity": 2}}}, "", 400, "items[1].sku"},
		{"order wrong type", "POST", "/api/orders", user + keyed, `{"items":[{"sku":"x","quantity":"1"}]}`, "", 400, "items.quantity"},
		{"order malformed", "POST", "/api/orders", user + keyed, `{"items":[`, "", 400, ""},
		{"order oversized", "POST", "/api/orders", user + keyed, huge, "", 413, ""},
		{"order get no token", "GET", "/api/orders/" + validID, "", nil, "", 401, ""},
		{"order get bad id", "GET", "/api/orders/x", user, nil, "", 400, "id"},
		{"order get unknown", "GET", "/api/orders/" + validID, user, nil, "", 404, ""},
		{"order list bad cursor", "GET", "/api/orders?cursor=" + httpapi.EncodeCursor("x"), user, nil, "", 400, "cursor"},
		{"order list no token", "GET", "/api/orders", "", nil, "", 401, ""},
		// operations
		{"drain no token", "POST", "/ops/drain", "", nil, "", 401, ""},
		{"drain user", "POST", "/ops/drain", user, nil, "", 403, ""},
		{"undrain user", "DELETE", "/ops/drain", user, nil, "", 403, ""},
		// routing
		{"unknown route", "GET", "/api/nothing", "", nil, "", 404, ""},
		{"wrong method", "DELETE", prod, admin, nil, "", 405, ""},
	}
	for name, tok := range badTokens(t, d.Issuer()) {
		cases = append(cases,
			badCase{"order token " + name, "POST", "/api/orders", tok + keyed, order(sku, 1), "", 401, ""},
			badCase{"cart token " + name, "GET", "/api/cart", tok, nil, "", 401, ""},
		)
	}
	for name, tok := range badTokens(t, d.Issuer()) {
		cases = append(cases,
			badCase{"comment token " + name, "POST", prod + "/comments", tok, map[string]string{"text": "hi"}, "", 401, ""},
			badCase{"put token " + name, "PUT", prod, tok, goodProduct, "", 401, ""},
			badCase{"drain token " + name, "POST", "/ops/drain", tok, nil, "", 401, ""},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, bodyReader(t, tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tok, ok := strings.CutSuffix(tc.token, keyed); ok {
				req.Header.Set("Idempotency-Key", "key-"+strings.ReplaceAll(tc.name, " ", "-"))
				tc.token = tok
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := deploytest.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p httpapi.Problem
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.status || p.Status != tc.status {
				t.Fatalf("status %d (problem %d), want %d: %+v", resp.StatusCode, p.Status, tc.status, p)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if p.Field != tc.field {
				t.Fatalf("field %q, want %q (%+v)", p.Field, tc.field, p)
			}
			if !strings.HasPrefix(p.Type, httpapi.ProblemTypeBase) || p.Title == "" || p.RequestID == "" {
				t.Fatalf("incomplete problem %+v", p)
			}
			if resp.Header.Get("X-Served-Region") != "westeurope" || resp.Header.Get("X-Request-Id") != p.RequestID {
				t.Fatalf("headers: region %q request id %q", resp.Header.Get("X-Served-Region"), resp.Header.Get("X-Request-Id"))
			}
		})
	}
}

func bodyReader(t *testing.T, body any) *strings.Reader {
	t.Helper()
	switch b := body.(type) {
	case nil:
		return strings.NewReader("")
	case string:
		return strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return strings.NewReader(string(enc))
	}
}

func TestRequestIDEchoed(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	req, _ := http.NewRequest("GET", d.Regions()["westeurope"]+"/api/products?limit=1", nil)
	req.Header.Set("X-Request-Id", "trace-me-123")
	resp, err := deploytest.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "trace-me-123" {
		t.Fatalf("X-Request-Id = %q, want echoed", got)
	}
}
