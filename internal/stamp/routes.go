package stamp

import (
	"net/http"
	"net/url"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/telemetry"
)

// Handler returns the stamp's HTTP handler: every route, wrapped in the
// middleware every response passes through. Telemetry comes first, so
// that every line the others log carries the request's trace;
// problemFallback tells it the route pattern the mux matched. The API
// routes, once the edge credential has been checked, take a slot of the
// stamp's capacity (admit) and hold it through the simulated work and the
// injected fault, if any (injectFault), to the handler's answer.
func (s *Stamp) Handler() http.Handler {
	mux := http.NewServeMux()
	s.routes(mux, func(h http.Handler) http.Handler { return httpapi.Chain(h, s.admit, s.injectFault) })
	return httpapi.Chain(problemFallback(mux, s),
		s.cfg.Telemetry.Middleware("stamp", s.cfg.Region, httpapi.Flow),
		httpapi.RequestIDs,
		httpapi.ServedRegion(s.cfg.Region, s.cfg.Release),
		httpapi.AccessLog(s.log),
		httpapi.Recover(s.log),
		httpapi.RequireCredential(httpapi.HeaderEdgeCredential, s.cfg.EdgeCredential, "/api/", s.log),
	)
}

// route is one route of the public API.
type route struct {
	pattern string
	handle  httpapi.HandlerFunc
}

// api is every route of the public API: what the edge forwards.
func (s *Stamp) api() []route {
	return []route{
		{"GET /api/products", s.listProducts},
		{"GET /api/products/{id}", s.getProduct},
		{"PUT /api/products/{id}", s.putProduct},
		{"GET /api/products/{id}/comments", s.listComments},
		{"POST /api/products/{id}/comments", s.postComment},
		{"GET /api/products/{id}/comments/{commentId}", s.getComment},
		{"POST /api/products/{id}/ratings", s.postRating},
		{"GET /api/products/{id}/ratings/{ratingId}", s.getRating},

		{"GET /api/inventory/{sku}", s.getInventory},
		{"PUT /api/inventory/{sku}", s.putInventory},
		{"GET /api/cart", s.getCart},
		{"PUT /api/cart/items/{sku}", s.putCartItem},
		{"DELETE /api/cart", s.deleteCart},
		{"POST /api/orders", s.postOrder},
		{"GET /api/orders", s.listOrders},
		{"GET /api/orders/{id}", s.getOrder},
	}
}

// APIRoutes returns the patterns of the public API ("GET
// /api/products/{id}"): the routes the edge names the requests it forwards
// by (edge.Config.Routes).
func APIRoutes() []string {
	var none *Stamp // the handlers are only named, never called
	var out []string
	for _, r := range none.api() {
		out = append(out, r.pattern)
	}
	return out
}

// warmHandler is the handler the warm-up's synthetic requests go through:
// the stamp's routes behind the middleware that shapes their answers,
// without what would count them as traffic (telemetry, the access log, the
// capacity's slots: the warm-up is never refused) and without the
// simulated work and the injected fault, which are for users' requests (a
// stamp that must fail its warm-up has Fault.NeverReady).
func (s *Stamp) warmHandler() http.Handler {
	mux := http.NewServeMux()
	s.routes(mux, nil)
	return httpapi.Chain(problemFallback(mux, s),
		httpapi.RequestIDs,
		httpapi.ServedRegion(s.cfg.Region, s.cfg.Release),
		httpapi.Recover(s.log),
		httpapi.RequireCredential(httpapi.HeaderEdgeCredential, s.cfg.EdgeCredential, "/api/", s.log),
	)
}

// routes registers every route of the stamp, the API routes wrapped in
// api (nil: none). GET patterns also match HEAD.
func (s *Stamp) routes(mux *http.ServeMux, api httpapi.Middleware) {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(s.log, f) }

	mux.Handle("GET /health/live", health.LiveHandler())
	mux.Handle("GET /health/ready", health.ReadyHandler(s.Ready))
	mux.Handle("GET /health/stamp", s.prober.StampHandler())
	mux.Handle("GET /metrics", s.cfg.Telemetry.MetricsHandler())

	for _, r := range s.api() {
		if api != nil {
			mux.Handle(r.pattern, api(h(r.handle)))
		} else {
			mux.Handle(r.pattern, h(r.handle))
		}
	}

	// The operations routes, and only they, answer only requests meant
	// for this listener, before their admin check: /api/ and /health/ are
	// reached by the edge through addresses other than the listener's.
	ops := s.opsGuard()
	mux.Handle("POST /ops/drain", ops(h(s.drain(true))))
	mux.Handle("DELETE /ops/drain", ops(h(s.drain(false))))
	mux.Handle("GET /ops/drain", ops(h(s.drainState)))
	if s.cfg.Pprof {
		prof := httpapi.Profiling()
		mux.Handle(httpapi.ProfilingPrefix, ops(h(func(w http.ResponseWriter, r *http.Request) error {
			if err := s.requireAdmin(r); err != nil {
				return err
			}
			prof.ServeHTTP(w, r)
			return nil
		})))
	}
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
			telemetry.SetRoute(r.Context(), pattern)
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
