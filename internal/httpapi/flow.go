package httpapi

import "strings"

// User flows, the unit of the health model and of the SLOs.
const (
	FlowBrowse   = "browse"   // the catalog: products, comments and ratings read
	FlowComment  = "comment"  // writing a comment or a rating
	FlowCheckout = "checkout" // inventory, cart and orders
)

// Flow names the user flow of a request from its route pattern ("POST
// /api/products/{id}/comments") or, where there is none (a proxy), its
// method and path ("POST /api/products/x/comments"). Health and
// operations requests belong to no flow: "".
func Flow(methodAndPath string) string {
	method, path, ok := strings.Cut(methodAndPath, " ")
	if !ok {
		return ""
	}
	switch {
	case strings.HasPrefix(path, "/api/cart"), strings.HasPrefix(path, "/api/orders"), strings.HasPrefix(path, "/api/inventory"):
		return FlowCheckout
	case path != "/api/products" && !strings.HasPrefix(path, "/api/products/"):
		return ""
	case method == "POST" && (strings.Contains(path, "/comments") || strings.Contains(path, "/ratings")):
		return FlowComment
	}
	return FlowBrowse
}
