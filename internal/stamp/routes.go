package stamp

import (
	"net/http"
	"net/url"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// Handler returns the stamp's HTTP handler: every route, wrapped in the
// middleware every response passes through.
func (s *Stamp) Handler() http.Handler {
	mux := http.NewServeMux()
	s.routes(mux)
	// Telemetry wraps the mux (through problemFallback, which passes the
	// same request on) so that it sees the matched route pattern.
	traced := s.cfg.Telemetry.Middleware("stamp", s.cfg.Region, httpapi.Flow)(problemFallback(mux, s))
	return httpapi.Chain(traced,
		httpapi.RequestIDs,
		httpapi.ServedRegion(s.cfg.Region),
		httpapi.AccessLog(s.log),
		httpapi.Recover(s.log),
		httpapi.RequireCredential(httpapi.HeaderEdgeCredential, s.cfg.EdgeCredential, "/api/", s.log),
	)
}

// routes registers every route of the stamp. GET patterns also match HEAD.
func (s *Stamp) routes(mux *http.ServeMux) {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(s.log, f) }

	mux.Handle("GET /health/live", health.LiveHandler())
	mux.Handle("GET /health/ready", health.ReadyHandler(s.Ready))
	mux.Handle("GET /health/stamp", s.prober.StampHandler())
	mux.Handle("GET /metrics", s.cfg.Telemetry.MetricsHandler())

	mux.Handle("GET /api/products", h(s.listProducts))
	mux.Handle("GET /api/products/{id}", h(s.getProduct))
	mux.Handle("PUT /api/products/{id}", h(s.putProduct))
	mux.Handle("GET /api/products/{id}/comments", h(s.listComments))
	mux.Handle("POST /api/products/{id}/comments", h(s.postComment))
	mux.Handle("GET /api/products/{id}/comments/{commentId}", h(s.getComment))
	mux.Handle("POST /api/products/{id}/ratings", h(s.postRating))
	mux.Handle("GET /api/products/{id}/ratings/{ratingId}", h(s.getRating))

	mux.Handle("GET /api/inventory/{sku}", h(s.getInventory))
	mux.Handle("PUT /api/inventory/{sku}", h(s.putInventory))
	mux.Handle("GET /api/cart", h(s.getCart))
	mux.Handle("PUT /api/cart/items/{sku}", h(s.putCartItem))
	mux.Handle("DELETE /api/cart", h(s.deleteCart))
	mux.Handle("POST /api/orders", h(s.postOrder))
	mux.Handle("GET /api/orders", h(s.listOrders))
	mux.Handle("GET /api/orders/{id}", h(s.getOrder))

	// The operations routes, and only they, answer only requests meant
	// for this listener, before their admin check: /api/ and /health/ are
	// reached by the edge through addresses other than the listener's.
	ops := s.opsGuard()
	mux.Handle("POST /ops/drain", ops(h(s.drain(true))))
	mux.Handle("DELETE /ops/drain", ops(h(s.drain(false))))
	mux.Handle("GET /ops/drain", ops(h(s.drainState)))
}

// opsGuard is httpapi.OpsGuard for the stamp's operations routes: besides
// the listener's own address (and localhost on loopback), the Host of the
// URL the stamp advertises is its own.
func (s *Stamp) opsGuard() httpapi.Middleware {
	var hosts []string
	if u, err := url.Parse(s.cfg.AdvertiseURL); err == nil && u.Host != "" {
		hosts = append(hosts, u.Host)
	}
	guard, err := httpapi.OpsGuard(httpapi.OpsGuardConfig{Hosts: hosts, Logger: s.log})
	if err != nil {
		s.log.Error("the advertised URL's host is not a name the operations routes can answer to; they answer to the listener's address only", "advertise_url", s.cfg.AdvertiseURL, "error", err)
		guard, _ = httpapi.OpsGuard(httpapi.OpsGuardConfig{Logger: s.log})
	}
	return guard
}

// problemFallback answers requests that match no route (404) or no method
// of a route (405) with problem+json instead of the mux's plain text.
func problemFallback(mux *http.ServeMux, s *Stamp) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &headerRecorder{header: http.Header{}}
		mux.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			httpapi.WriteError(w, r, s.log, &shop.Error{Kind: shop.KindMethodNotAllowed, Detail: "method " + r.Method + " is not allowed here"})
			return
		}
		httpapi.WriteError(w, r, s.log, &shop.Error{Kind: shop.KindNotFound, Detail: "no such resource"})
	})
}

// headerRecorder captures what the mux would answer, writing nothing.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.status = code }
