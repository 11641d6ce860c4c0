package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys this package records.
const (
	AttrRegion     = "region"
	AttrComponent  = "component"
	AttrFlow       = "flow"
	AttrDependency = "dependency"
	AttrOutcome    = "outcome"
	AttrMethod     = "http.request.method"
	AttrRoute      = "http.route"
	AttrStatusCode = "http.response.status_code"
	// AttrDependencyRegion is the region of the instance a call went to
	// (the stamp an edge POP forwarded to); AttrDependencyInstance its id,
	// on spans only: instance ids are not bounded over time.
	AttrDependencyRegion   = "dependency.region"
	AttrDependencyInstance = "dependency.instance"
)

// RouteUnmatched is the http.route of a request that no pattern matched.
const RouteUnmatched = "unmatched"

// HeaderTraceID carries the trace id of a request back to its client, so a
// support request can name the trace (GET /ops/traces/{id}).
const HeaderTraceID = "X-Trace-Id"

// Middleware returns server middleware for one component in one region.
//
// For each request it extracts W3C trace context from the headers, starts a
// server span whose context the inner handler's request carries (so slog
// calls made with r.Context() through LogHandler carry trace_id and
// span_id: middleware that logs belongs inside it), and when the handler
// returns records http.server.request.duration (seconds) with
// http.request.method, http.route, http.response.status_code, region,
// component and flow, and counts a 429 answer in contoso.requests.throttled
// with the same labels but the status and method.
//
// The route is the ServeMux pattern that served the request: the one
// SetRoute named, else r.Pattern after the inner handler ran (Go's ServeMux
// sets it on the request it is given, so without SetRoute Middleware must
// wrap the mux itself, or middleware that passes the same *http.Request
// on). The method prefix and host of the pattern are dropped ("GET
// /api/products/{id}" gives http.route "/api/products/{id}"); a request no
// pattern matched has http.route "unmatched". flow is flowOf of the full
// pattern when it names a method, of the request's method and path
// otherwise ("" allowed; flowOf nil: ""). region is the one SetRegion
// named, else region. The span is named "METHOD route" once the route is
// known, marked as an error on 5xx responses and on panics (which are
// recorded as 500 and re-raised).
//
// On a nil *Telemetry the middleware passes requests through untouched.
func (t *Telemetry) Middleware(component, region string, flowOf func(pattern string) string) func(http.Handler) http.Handler {
	if t == nil {
		return func(next http.Handler) http.Handler { return next }
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			method := methodOf(r.Method)
			ctx := t.p.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			st := &serverState{region: region}
			ctx = context.WithValue(ctx, serverStateKey{}, st)
			// The span's attributes are set once, when it ends (finishServer):
			// the samplers read none, and a span they drop gets none.
			ctx, span := t.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
			w.Header()[HeaderTraceID] = []string{span.SpanContext().TraceID().String()}
			sw := &statusWriter{ResponseWriter: w}
			inner := r.WithContext(ctx)
			finished := false
			defer func() {
				if finished {
					return
				}
				// The handler panicked (record a 500 and let the panic go
				// on) or called runtime.Goexit (record what it wrote).
				v := recover()
				status := sw.status
				if v != nil || status == 0 {
					status = http.StatusInternalServerError
				}
				t.finishServer(inner, st, span, start, method, status, component, flowOf)
				if v != nil {
					panic(v)
				}
			}()
			next.ServeHTTP(sw, inner)
			finished = true
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			t.finishServer(inner, st, span, start, method, status, component, flowOf)
		})
	}
}

func (t *Telemetry) finishServer(r *http.Request, st *serverState, span trace.Span, start time.Time, method string, status int, component string, flowOf func(string) string) {
	pattern := r.Pattern
	if p := st.get(); p != "" {
		pattern = p
	}
	route := routeOf(pattern)
	flow := ""
	if flowOf != nil {
		// A proxy has no pattern of its own, or one without a method: it
		// classifies by method and path.
		if strings.ContainsAny(pattern, " \t") {
			flow = flowOf(pattern)
		} else {
			flow = flowOf(r.Method + " " + r.URL.Path)
		}
	}
	region := st.getRegion()
	// A span the sampler dropped records nothing: its name and attributes
	// are not even made.
	if span.IsRecording() {
		if route != RouteUnmatched {
			span.SetName(method + " " + route)
		}
		scratch := t.p.scratch.Get().(*[]attribute.KeyValue)
		defer t.p.scratch.Put(scratch)
		attrs := append((*scratch)[:0],
			attribute.String(AttrMethod, method),
			attribute.String("url.path", r.URL.Path),
			attribute.String(AttrRegion, region),
			attribute.String(AttrComponent, component),
			attribute.String(AttrRoute, route),
			attribute.Int(AttrStatusCode, status),
		)
		if flow != "" {
			attrs = append(attrs, attribute.String(AttrFlow, flow))
		}
		span.SetAttributes(attrs...)
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	end := time.Now()
	span.End(trace.WithTimestamp(end))
	key := serverKey{method: method, route: route, status: status, region: region, component: component, flow: flow}
	t.serverHist.Record(r.Context(), end.Sub(start).Seconds(), t.serverOptions.get(key).record...)
	if status == http.StatusTooManyRequests {
		t.throttled.Add(r.Context(), 1, t.throttledOptions.get(throttledKey{key}).add...)
	}
}

// serverKey is what a server request's metrics are labelled with.
type serverKey struct {
	method, route string
	status        int
	region        string
	component     string
	flow          string
}

// options are those of http.server.request.duration.
func (k serverKey) options() measureOptions {
	return optionsOf(attribute.NewSet(
		attribute.String(AttrMethod, k.method),
		attribute.String(AttrRoute, k.route),
		attribute.Int(AttrStatusCode, k.status),
		attribute.String(AttrRegion, k.region),
		attribute.String(AttrComponent, k.component),
		attribute.String(AttrFlow, k.flow),
	))
}

// throttledKey labels contoso.requests.throttled: a serverKey without its
// method and status (it is 429).
type throttledKey struct{ serverKey }

func (k throttledKey) options() measureOptions {
	return optionsOf(attribute.NewSet(
		attribute.String(AttrRoute, k.route),
		attribute.String(AttrRegion, k.region),
		attribute.String(AttrComponent, k.component),
		attribute.String(AttrFlow, k.flow),
	))
}

// serverState is what a handler tells the Middleware around it about its
// request (SetRoute, SetRegion).
type serverState struct {
	mu      sync.Mutex // the handler may set while Middleware reads after a panic
	pattern string
	region  string
}

type serverStateKey struct{}

func (st *serverState) get() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pattern
}

func (st *serverState) getRegion() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.region
}

// SetRoute names the route of the request whose context ctx is (or is
// derived from), for the Middleware that serves it: a ServeMux pattern
// ("GET /api/products/{id}", whose method also classifies the flow) or a
// route template ("/api/*"). It is for handlers that Middleware cannot see
// through: a mux behind middleware that replaces the request, or a proxy
// that matches the routes it forwards itself. The route must come from a
// bounded set (patterns, never raw paths): it is a metric label. Without a
// Middleware in ctx it does nothing.
func SetRoute(ctx context.Context, pattern string) {
	if st, ok := ctx.Value(serverStateKey{}).(*serverState); ok && pattern != "" {
		st.mu.Lock()
		st.pattern = pattern
		st.mu.Unlock()
	}
}

// SetRegion names the region label of the request whose context ctx is,
// for the Middleware that serves it, instead of the Middleware's own: a
// point of presence of an edge that serves several regions learns which
// one serves a request only once it has read it. Without a Middleware in
// ctx it does nothing.
func SetRegion(ctx context.Context, region string) {
	if st, ok := ctx.Value(serverStateKey{}).(*serverState); ok && region != "" {
		st.mu.Lock()
		st.region = region
		st.mu.Unlock()
	}
}

// routeOf turns a ServeMux pattern ("[METHOD ][HOST]/[PATH]") into an
// http.route: the path part, or "unmatched" when empty.
func routeOf(pattern string) string {
	if pattern == "" {
		return RouteUnmatched
	}
	p := pattern
	if i := strings.IndexAny(p, " \t"); i >= 0 {
		p = strings.TrimLeft(p[i:], " \t")
	}
	if i := strings.IndexByte(p, '/'); i > 0 {
		p = p[i:]
	}
	if p == "" {
		return RouteUnmatched
	}
	return p
}

// methodOf bounds the method attribute's cardinality: a method outside the
// standard set is recorded as "_OTHER".
func methodOf(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes flushes on, so streaming handlers keep working.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Transport returns a client transport for calls to one dependency from one
// region. Each request gets a client span named "<dependency> METHOD"
// (a child of the span in the request's context), carries its trace context
// in a traceparent header (the caller's request is not modified), and
// records contoso.dependency.duration (seconds, until the response headers
// arrive) with dependency, region and outcome: "ok", or "error" for
// transport errors and 5xx responses. A request whose context says more
// of the call (WithCall) is recorded from the caller's region it names,
// with dependency.region, the region called (and, on the span,
// dependency.instance). base nil: http.DefaultTransport. On a nil
// *Telemetry it returns base unchanged.
func (t *Telemetry) Transport(base http.RoundTripper, dependency, region string) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if t == nil {
		return base
	}
	tr := &transport{t: t, base: base, dependency: dependency, region: region, names: map[string]string{}}
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace, "_OTHER"} {
		tr.names[m] = dependency + " " + m
	}
	return tr
}

type transport struct {
	t                  *Telemetry
	base               http.RoundTripper
	dependency, region string
	names              map[string]string // span name by method (methodOf); read only
	outcomes           optionCache[outcomeKey]
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	method := methodOf(req.Method)
	region := tr.region
	call, _ := req.Context().Value(callKey{}).(Call)
	if call.From != "" {
		region = call.From
	}
	// The span's attributes are set once, when it ends.
	ctx, span := tr.t.tracer.Start(req.Context(), tr.names[method], trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start))
	// The caller's request is not modified: its copy has a header map of
	// its own, whose values (never changed, only replaced) it shares.
	out := req.WithContext(ctx)
	out.Header = make(http.Header, len(req.Header)+2)
	for k, vs := range req.Header {
		out.Header[k] = vs
	}
	tr.t.p.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := tr.base.RoundTrip(out)
	end := time.Now()
	failed := err != nil || resp.StatusCode >= 500
	if span.IsRecording() {
		outcome := "ok"
		if failed {
			outcome = "error"
		}
		scratch := tr.t.p.scratch.Get().(*[]attribute.KeyValue)
		defer tr.t.p.scratch.Put(scratch)
		attrs := append((*scratch)[:0],
			attribute.String(AttrDependency, tr.dependency),
			attribute.String(AttrRegion, region),
			attribute.String(AttrMethod, method),
			attribute.String("server.address", req.URL.Host),
			attribute.String("url.path", req.URL.Path),
			attribute.String(AttrOutcome, outcome),
		)
		if call.Region != "" {
			attrs = append(attrs, attribute.String(AttrDependencyRegion, call.Region))
		}
		if call.Instance != "" {
			attrs = append(attrs, attribute.String(AttrDependencyInstance, call.Instance))
		}
		switch {
		case err != nil:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		case resp.StatusCode >= 500:
			span.SetStatus(codes.Error, strconv.Itoa(resp.StatusCode)+" "+http.StatusText(resp.StatusCode))
			fallthrough
		default:
			attrs = append(attrs, attribute.Int(AttrStatusCode, resp.StatusCode))
		}
		span.SetAttributes(attrs...)
	}
	span.End(trace.WithTimestamp(end))
	key := outcomeKey{dependency: tr.dependency, region: region, called: call.Region, failed: failed}
	tr.t.clientHist.Record(ctx, end.Sub(start).Seconds(), tr.outcomes.get(key).record...)
	return resp, err
}

// outcomeKey labels contoso.dependency.duration: a call to dependency
// from region to an instance in called ("": none), and its outcome.
type outcomeKey struct {
	dependency, region, called string
	failed                     bool
}

func (k outcomeKey) options() measureOptions {
	outcome := "ok"
	if k.failed {
		outcome = "error"
	}
	kvs := []attribute.KeyValue{attribute.String(AttrDependency, k.dependency), attribute.String(AttrRegion, k.region), attribute.String(AttrOutcome, outcome)}
	if k.called != "" {
		kvs = append(kvs, attribute.String(AttrDependencyRegion, k.called))
	}
	return optionsOf(attribute.NewSet(kvs...))
}

// Call says more of one call made through a Transport than the Transport
// knows: a caller that serves several regions (an edge with several POPs)
// and calls instances in several regions.
type Call struct {
	// From is the region the call is made from; empty: the Transport's.
	From string
	// Region is the region of the instance called (a metric label, as
	// dependency.region); empty: none.
	Region string
	// Instance is the id of the instance called, on the span only;
	// empty: none.
	Instance string
}

type callKey struct{}

// WithCall returns ctx carrying c, for the Transport that sends a request
// made with it.
func WithCall(ctx context.Context, c Call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}
