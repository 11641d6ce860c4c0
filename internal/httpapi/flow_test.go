package httpapi

import "testing"

func TestFlow(t *testing.T) {
	for in, want := range map[string]string{
		"GET /api/products":                FlowBrowse,
		"GET /api/products/{id}":           FlowBrowse,
		"HEAD /api/products/x":             FlowBrowse,
		"GET /api/products/{id}/comments":  FlowBrowse,
		"PUT /api/products/{id}":           FlowBrowse,
		"POST /api/products/{id}/comments": FlowComment,
		"POST /api/products/x/ratings":     FlowComment,
		"GET /api/cart":                    FlowCheckout,
		"PUT /api/cart/items/{sku}":        FlowCheckout,
		"POST /api/orders":                 FlowCheckout,
		"GET /api/orders/x":                FlowCheckout,
		"PUT /api/inventory/{sku}":         FlowCheckout,
		"GET /health/stamp":                "",
		"POST /ops/drain":                  "",
		"":                                 "",
		"/api/products":                    "",
		"GET /apix/products":               "",
		"POST /api/productsx/comments":     "",
	} {
		if got := Flow(in); got != want {
			t.Errorf("Flow(%q) = %q, want %q", in, got, want)
		}
	}
}
