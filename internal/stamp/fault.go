package stamp

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// Fault is a defect injected into a stamp on purpose, for the experiments
// that prove a release is stopped by its gates (health, SLOs): a release
// whose stamps answer errors, answer slowly, crash at start or never
// become ready. The zero Fault injects nothing. `contoso stamp` refuses
// any other in the prod environment.
type Fault struct {
	// ErrorRatio is the share of matching API requests answered 500
	// (problem+json, detail "injected fault"), from 0 to 1. They are
	// recorded in the stamp's metrics like any other 5xx.
	ErrorRatio float64
	// Route names the requests the fault touches by their user flow
	// (httpapi.Flow of the route): "browse" (reading the catalog, its
	// comments and ratings), "checkout" (inventory, cart and orders: POST
	// /api/orders and what leads to it), "comment" (writing a comment or a
	// rating); empty: every API request.
	Route string
	// Latency is added to every matching request before it is handled.
	Latency time.Duration
	// CrashOnStart makes Serve fail as soon as it is called, with the
	// listener open, before the stamp announces itself (ErrInjectedCrash):
	// a release whose binary dies at start.
	CrashOnStart bool
	// NeverReady keeps the stamp running and heartbeating but never ready:
	// /health/ready answers 503 and /health/stamp reports unhealthy with
	// reason "injected fault: never ready", whatever its dependencies say.
	NeverReady bool
}

// Fault routes: the user flows ParseFault accepts for route=.
var faultRoutes = []string{httpapi.FlowBrowse, httpapi.FlowCheckout, httpapi.FlowComment}

// ErrInjectedCrash is Serve's error for a stamp with Fault.CrashOnStart.
var ErrInjectedCrash = errors.New("injected fault: crash on start")

// errNeverReady is Ready's error, and the health report's reason, for a
// stamp with Fault.NeverReady.
var errNeverReady = errors.New("injected fault: never ready")

// Zero reports whether f injects nothing.
func (f Fault) Zero() bool { return f == Fault{} }

// String is f in the form ParseFault reads back: its parts in a fixed
// order (error, route, latency, crash-on-start, never-ready), zero parts
// left out; "" for the zero Fault.
func (f Fault) String() string {
	var parts []string
	if f.ErrorRatio != 0 {
		parts = append(parts, "error="+strconv.FormatFloat(f.ErrorRatio, 'g', -1, 64))
	}
	if f.Route != "" {
		parts = append(parts, "route="+f.Route)
	}
	if f.Latency != 0 {
		parts = append(parts, "latency="+f.Latency.String())
	}
	if f.CrashOnStart {
		parts = append(parts, "crash-on-start")
	}
	if f.NeverReady {
		parts = append(parts, "never-ready")
	}
	return strings.Join(parts, ",")
}

// ParseFault reads a fault from its comma-separated parts:
//
//	error=RATIO     share of matching requests answered 500, 0 to 1 (error=0.05)
//	route=FLOW      which requests: browse, checkout or comment; default every API request
//	latency=DUR     added to every matching request (latency=300ms)
//	crash-on-start  the stamp fails as it starts
//	never-ready     the stamp runs but never becomes ready
//
// Each part at most once; route only with error or latency. "" is the zero
// Fault.
func ParseFault(s string) (Fault, error) {
	var f Fault
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		key, value, hasValue := strings.Cut(strings.TrimSpace(part), "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if key == "" {
			return Fault{}, fmt.Errorf("fault %q: an empty part (want parts such as error=0.05,route=checkout)", s)
		}
		if seen[key] {
			return Fault{}, fmt.Errorf("fault %q: %s given twice", s, key)
		}
		seen[key] = true
		switch key {
		case "error", "route", "latency":
			if !hasValue || value == "" {
				return Fault{}, fmt.Errorf("fault %q: %s needs a value (%s=...)", s, key, key)
			}
		case "crash-on-start", "never-ready":
			if hasValue {
				return Fault{}, fmt.Errorf("fault %q: %s takes no value", s, key)
			}
		}
		switch key {
		case "error":
			r, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return Fault{}, fmt.Errorf("fault %q: error=%s is not a number (want a share from 0 to 1, e.g. error=0.05)", s, value)
			}
			f.ErrorRatio = r
		case "route":
			f.Route = value
		case "latency":
			d, err := time.ParseDuration(value)
			if err != nil {
				return Fault{}, fmt.Errorf("fault %q: latency=%s is not a duration (e.g. latency=300ms)", s, value)
			}
			f.Latency = d
		case "crash-on-start":
			f.CrashOnStart = true
		case "never-ready":
			f.NeverReady = true
		default:
			return Fault{}, fmt.Errorf("fault %q: unknown part %q (want error=RATIO, route=FLOW, latency=DURATION, crash-on-start or never-ready)", s, key)
		}
	}
	if err := f.validate(); err != nil {
		return Fault{}, fmt.Errorf("fault %q: %w", s, err)
	}
	return f, nil
}

// validate reports what makes f a fault no stamp can inject.
func (f Fault) validate() error {
	switch {
	case !(f.ErrorRatio >= 0 && f.ErrorRatio <= 1):
		return fmt.Errorf("error=%v is not a share from 0 to 1", f.ErrorRatio)
	case f.Route != "" && !slices.Contains(faultRoutes, f.Route):
		return fmt.Errorf("route=%s is not a user flow (want %s)", f.Route, strings.Join(faultRoutes, ", "))
	case f.Latency < 0:
		return fmt.Errorf("latency=%s is negative", f.Latency)
	case f.Route != "" && f.ErrorRatio == 0 && f.Latency == 0:
		return fmt.Errorf("route=%s selects the requests for error= or latency=, and neither is given", f.Route)
	}
	return nil
}

// injectFault is the middleware that applies Config.Fault's error ratio and
// latency to the API routes it wraps: inside the telemetry middleware, so
// that what it does is measured like any other answer, and after the mux,
// so that it knows the route (and flow) a request is for.
func (s *Stamp) injectFault(next http.Handler) http.Handler {
	f := s.cfg.Fault
	if f.ErrorRatio == 0 && f.Latency == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.Route != "" && httpapi.Flow(r.Pattern) != f.Route {
			next.ServeHTTP(w, r)
			return
		}
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done(): // the client left; the handler sees it
				t.Stop()
			}
		}
		if f.ErrorRatio > 0 && rand.Float64() < f.ErrorRatio {
			writeInjectedError(w, r, s.log)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeInjectedError answers r as an internal error would be answered,
// except that the problem's detail says the error was injected (an
// internal error's detail never reaches the client otherwise).
func writeInjectedError(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	p := httpapi.ProblemFor(&shop.Error{Kind: shop.KindInternal})
	p.Detail, p.Instance, p.RequestID = "injected fault", r.URL.Path, w.Header().Get(httpapi.HeaderRequestID)
	log.LogAttrs(r.Context(), slog.LevelError, "request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", p.Status), slog.String("error", "injected fault"),
		slog.String("request_id", p.RequestID))
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
