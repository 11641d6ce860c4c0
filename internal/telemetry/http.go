package telemetry

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
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
// span_id), and when the handler returns records
// http.server.request.duration (seconds) with http.request.method,
// http.route, http.response.status_code, region, component and flow.
//
// The route is read from r.Pattern after the inner handler ran: Go's
// ServeMux sets it on the request it is given, so Middleware must wrap the
// mux itself, or middleware that passes the same *http.Request on. The
// method prefix and host of the pattern are dropped ("GET /api/products/{id}"
// gives http.route "/api/products/{id}"); a request no pattern matched has
// http.route "unmatched". flow is flowOf(r.Pattern) with the full pattern
// ("" allowed; flowOf nil: ""). The span is named "METHOD route" once the
// route is known, marked as an error on 5xx responses and on panics (which
// are recorded as 500 and re-raised).
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
			ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, span := t.tracer.Start(ctx, method,
				trace.WithSpanKind(trace.SpanKindServer),
				trace.WithTimestamp(start),
				trace.WithAttributes(
					attribute.String(AttrMethod, method),
					attribute.String("url.path", r.URL.Path),
					attribute.String(AttrRegion, region),
					attribute.String(AttrComponent, component),
				))
			w.Header().Set(HeaderTraceID, span.SpanContext().TraceID().String())
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
				t.finishServer(inner, span, start, method, status, component, region, flowOf)
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
			t.finishServer(inner, span, start, method, status, component, region, flowOf)
		})
	}
}

func (t *Telemetry) finishServer(r *http.Request, span trace.Span, start time.Time, method string, status int, component, region string, flowOf func(string) string) {
	route := routeOf(r.Pattern)
	flow := ""
	if flowOf != nil {
		// A proxy has no pattern of its own: it classifies by method and path.
		if r.Pattern != "" {
			flow = flowOf(r.Pattern)
		} else {
			flow = flowOf(r.Method + " " + r.URL.Path)
		}
	}
	if route != RouteUnmatched {
		span.SetName(method + " " + route)
	}
	if flow != "" {
		span.SetAttributes(attribute.String(AttrRoute, route), attribute.Int(AttrStatusCode, status), attribute.String(AttrFlow, flow))
	} else {
		span.SetAttributes(attribute.String(AttrRoute, route), attribute.Int(AttrStatusCode, status))
	}
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	end := time.Now()
	span.End(trace.WithTimestamp(end))
	t.serverHist.Record(r.Context(), end.Sub(start).Seconds(), metric.WithAttributeSet(attribute.NewSet(
		attribute.String(AttrMethod, method),
		attribute.String(AttrRoute, route),
		attribute.Int(AttrStatusCode, status),
		attribute.String(AttrRegion, region),
		attribute.String(AttrComponent, component),
		attribute.String(AttrFlow, flow),
	)))
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
// transport errors and 5xx responses. base nil: http.DefaultTransport. On a
// nil *Telemetry it returns base unchanged.
func (t *Telemetry) Transport(base http.RoundTripper, dependency, region string) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if t == nil {
		return base
	}
	return &transport{
		t: t, base: base, dependency: dependency, region: region,
		ok:  attribute.NewSet(attribute.String(AttrDependency, dependency), attribute.String(AttrRegion, region), attribute.String(AttrOutcome, "ok")),
		bad: attribute.NewSet(attribute.String(AttrDependency, dependency), attribute.String(AttrRegion, region), attribute.String(AttrOutcome, "error")),
	}
}

type transport struct {
	t                  *Telemetry
	base               http.RoundTripper
	dependency, region string
	ok, bad            attribute.Set // metric attributes per outcome
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	method := methodOf(req.Method)
	ctx, span := tr.t.tracer.Start(req.Context(), tr.dependency+" "+method,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(start),
		trace.WithAttributes(
			attribute.String(AttrDependency, tr.dependency),
			attribute.String(AttrRegion, tr.region),
			attribute.String(AttrMethod, method),
			attribute.String("server.address", req.URL.Host),
			attribute.String("url.path", req.URL.Path),
		))
	out := req.Clone(ctx)
	tr.t.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := tr.base.RoundTrip(out)
	end := time.Now()
	outcome := tr.ok
	switch {
	case err != nil:
		outcome = tr.bad
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	case resp.StatusCode >= 500:
		outcome = tr.bad
		span.SetAttributes(attribute.Int(AttrStatusCode, resp.StatusCode))
		span.SetStatus(codes.Error, strconv.Itoa(resp.StatusCode)+" "+http.StatusText(resp.StatusCode))
	default:
		span.SetAttributes(attribute.Int(AttrStatusCode, resp.StatusCode))
	}
	span.SetAttributes(attribute.String(AttrOutcome, outcomeName(outcome)))
	span.End(trace.WithTimestamp(end))
	tr.t.clientHist.Record(ctx, end.Sub(start).Seconds(), metric.WithAttributeSet(outcome))
	return resp, err
}

func outcomeName(s attribute.Set) string {
	v, _ := s.Value(AttrOutcome)
	return v.AsString()
}
