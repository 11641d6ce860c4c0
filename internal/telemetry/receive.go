package telemetry

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// Paths of the OTLP/HTTP receiver, as the exporters post to them.
const (
	OTLPTracesPath  = "/v1/traces"
	OTLPMetricsPath = "/v1/metrics"
)

// maxOTLPBytes bounds one OTLP request body, after decompression: far more
// than one process exports in one batch (the SDK's batches are 512 spans
// or one collection of every metric).
const maxOTLPBytes = 16 << 20

// remoteTTL is how long a series received over OTLP stays in the metric
// history after its sender's last export: a process that stopped
// exporting (it ended, or its network did) leaves the snapshots then.
const remoteTTL = 5 * time.Minute

// OTLPHandler receives OTLP over HTTP (protobuf, optionally gzip) from
// other processes: POST OTLPTracesPath keeps their spans with the sink's
// own, and POST OTLPMetricsPath adds their cumulative sums, gauges and
// histograms to the metric history (delta temporality is refused in the
// answer's partial success, not stored). Anything else is a problem+json
// 4xx. It authenticates nobody: serve it behind the caller's check.
func (s *Sink) OTLPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+OTLPTracesPath, func(w http.ResponseWriter, r *http.Request) {
		var req coltracepb.ExportTraceServiceRequest
		if err := readOTLP(w, r, &req); err != nil {
			httpapi.WriteError(w, r, nil, err)
			return
		}
		s.receiveSpans(req.GetResourceSpans())
		writeOTLP(w, &coltracepb.ExportTraceServiceResponse{})
	})
	mux.HandleFunc("POST "+OTLPMetricsPath, func(w http.ResponseWriter, r *http.Request) {
		var req colmetricpb.ExportMetricsServiceRequest
		if err := readOTLP(w, r, &req); err != nil {
			httpapi.WriteError(w, r, nil, err)
			return
		}
		resp := &colmetricpb.ExportMetricsServiceResponse{}
		if rejected, why := s.receiveMetrics(req.GetResourceMetrics()); rejected > 0 {
			resp.PartialSuccess = &colmetricpb.ExportMetricsPartialSuccess{RejectedDataPoints: rejected, ErrorMessage: why}
		}
		writeOTLP(w, resp)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			httpapi.WriteError(w, r, nil, shop.NotFound("OTLP endpoint", r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// readOTLP decodes an OTLP/HTTP protobuf request body into m.
func readOTLP(w http.ResponseWriter, r *http.Request, m proto.Message) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-protobuf" {
		return shop.Errorf(shop.KindUnsupported, "", "OTLP over HTTP is accepted as Content-Type application/x-protobuf only")
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, maxOTLPBytes)
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return shop.Invalid("", "the gzip body does not decompress")
		}
		defer zr.Close()
		body = io.LimitReader(zr, maxOTLPBytes+1)
	default:
		return shop.Errorf(shop.KindUnsupported, "", "Content-Encoding must be gzip or none")
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return httpapi.BodyError(err)
	}
	if len(b) > maxOTLPBytes {
		return httpapi.BodyTooLarge()
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return shop.Invalid("", "the body is not an OTLP protobuf message")
	}
	return nil
}

func writeOTLP(w http.ResponseWriter, m proto.Message) {
	b, _ := proto.Marshal(m)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

// identity is the sender's identity attributes of a resource
// (identityAttributeKeys), which the receiver copies onto every span and
// data point it keeps, so that series of two processes never collide and a
// trace shows which part made each span. Spans also keep the sender's zone
// (spanIdentityKeys): a trace says where each span ran, while a metric
// series stays one per instance, not one more per zone.
func identity(attrs []*commonpb.KeyValue, keys []attribute.Key) []attribute.KeyValue {
	var out []attribute.KeyValue
	for _, kv := range attrs {
		for _, k := range keys {
			if kv.GetKey() == string(k) {
				out = append(out, attribute.String(string(k), anyString(kv.GetValue())))
			}
		}
	}
	return out
}

// anyString renders an attribute value the way attribute.Value.Emit does.
func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case nil:
		return ""
	}
	return fmt.Sprint(v.GetValue())
}

var spanKinds = map[tracepb.Span_SpanKind]string{
	tracepb.Span_SPAN_KIND_INTERNAL: "internal", tracepb.Span_SPAN_KIND_SERVER: "server",
	tracepb.Span_SPAN_KIND_CLIENT: "client", tracepb.Span_SPAN_KIND_PRODUCER: "producer",
	tracepb.Span_SPAN_KIND_CONSUMER: "consumer",
}

func (s *Sink) receiveSpans(rss []*tracepb.ResourceSpans) {
	if s == nil {
		return
	}
	for _, rs := range rss {
		who := identity(rs.GetResource().GetAttributes(), spanIdentityKeys)
		for _, ss := range rs.GetScopeSpans() {
			for _, p := range ss.GetSpans() {
				if len(p.GetTraceId()) != 16 || len(p.GetSpanId()) != 8 {
					continue
				}
				start, end := time.Unix(0, int64(p.GetStartTimeUnixNano())), time.Unix(0, int64(p.GetEndTimeUnixNano()))
				sp := Span{
					TraceID: hex.EncodeToString(p.GetTraceId()), SpanID: hex.EncodeToString(p.GetSpanId()),
					Name: p.GetName(), Kind: spanKinds[p.GetKind()], Start: start, End: end,
					DurationMs: float64(end.Sub(start).Microseconds()) / 1000,
				}
				if len(p.GetParentSpanId()) == 8 {
					sp.ParentID = hex.EncodeToString(p.GetParentSpanId())
				}
				switch p.GetStatus().GetCode() {
				case tracepb.Status_STATUS_CODE_ERROR:
					sp.Status, sp.StatusMessage = "error", p.GetStatus().GetMessage()
				case tracepb.Status_STATUS_CODE_OK:
					sp.Status = "ok"
				}
				sp.Attributes = make(map[string]string, len(p.GetAttributes())+len(who))
				for _, kv := range p.GetAttributes() {
					sp.Attributes[kv.GetKey()] = anyString(kv.GetValue())
				}
				for _, kv := range who {
					sp.Attributes[string(kv.Key)] = kv.Value.Emit()
				}
				s.addSpan(sp)
			}
		}
	}
}

// remotePoint is the latest value of one series another process exports.
type remotePoint struct {
	scope, name string
	attrs       attribute.Set
	kind        seriesKind
	bounds      []float64
	vals        []float64 // as setPoints and setHistogram lay them out
	at          time.Time // when it was received, on the sink's clock
}

// remoteSeries are the series received over OTLP; Collect adds them to
// every snapshot until they are remoteTTL old.
type remoteSeries struct {
	mu     sync.Mutex // guards points
	points map[string]*remotePoint
}

func (s *Sink) receiveMetrics(rms []*metricpb.ResourceMetrics) (rejected int64, why string) {
	if s == nil {
		return 0, ""
	}
	now := s.now()
	put := func(scope, name string, attrs []*commonpb.KeyValue, who []attribute.KeyValue, kind seriesKind, bounds []float64, vals ...float64) {
		kvs := make([]attribute.KeyValue, 0, len(attrs)+len(who))
		for _, kv := range attrs {
			kvs = append(kvs, attribute.String(kv.GetKey(), anyString(kv.GetValue())))
		}
		kvs = append(kvs, who...)
		set := attribute.NewSet(kvs...)
		key := scope + "\x00" + name + "\x00" + set.Encoded(attribute.DefaultEncoder())
		s.remote.mu.Lock()
		s.remote.points[key] = &remotePoint{scope: scope, name: name, attrs: set, kind: kind, bounds: bounds, vals: vals, at: now}
		s.remote.mu.Unlock()
	}
	cumulative := func(t metricpb.AggregationTemporality, points int) bool {
		if t == metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
			return true
		}
		rejected += int64(points)
		why = "only cumulative temporality is kept"
		return false
	}
	for _, rm := range rms {
		who := identity(rm.GetResource().GetAttributes(), identityAttributeKeys)
		for _, sm := range rm.GetScopeMetrics() {
			scope := sm.GetScope().GetName()
			for _, m := range sm.GetMetrics() {
				switch d := m.GetData().(type) {
				case *metricpb.Metric_Sum:
					if !cumulative(d.Sum.GetAggregationTemporality(), len(d.Sum.GetDataPoints())) {
						continue
					}
					for _, dp := range d.Sum.GetDataPoints() {
						put(scope, m.GetName(), dp.GetAttributes(), who, kindSum, nil, numberValue(dp))
					}
				case *metricpb.Metric_Gauge:
					for _, dp := range d.Gauge.GetDataPoints() {
						put(scope, m.GetName(), dp.GetAttributes(), who, kindGauge, nil, numberValue(dp))
					}
				case *metricpb.Metric_Histogram:
					if !cumulative(d.Histogram.GetAggregationTemporality(), len(d.Histogram.GetDataPoints())) {
						continue
					}
					for _, dp := range d.Histogram.GetDataPoints() {
						if len(dp.GetBucketCounts()) != len(dp.GetExplicitBounds())+1 {
							rejected++
							why = "a histogram's buckets do not match its bounds"
							continue
						}
						vals := make([]float64, 0, 2+len(dp.GetBucketCounts()))
						vals = append(vals, float64(dp.GetCount()), dp.GetSum())
						for _, b := range dp.GetBucketCounts() {
							vals = append(vals, float64(b))
						}
						put(scope, m.GetName(), dp.GetAttributes(), who, kindHistogram, dp.GetExplicitBounds(), vals...)
					}
				default:
					// Exponential histograms and summaries are not kept, as
					// for the process's own metrics.
				}
			}
		}
	}
	return rejected, why
}

func numberValue(dp *metricpb.NumberDataPoint) float64 {
	if v, ok := dp.GetValue().(*metricpb.NumberDataPoint_AsInt); ok {
		return float64(v.AsInt)
	}
	return dp.GetAsDouble()
}

// addRemote puts every fresh received series into the snapshot being
// collected and forgets the stale ones. h.mu is held.
func (s *Sink) addRemote(h *history, set func(*series, ...float64), at time.Time) {
	s.remote.mu.Lock()
	defer s.remote.mu.Unlock()
	for key, p := range s.remote.points {
		if at.Sub(p.at) > remoteTTL {
			delete(s.remote.points, key)
			continue
		}
		if se := h.lookup(p.scope, p.name, p.attrs, p.kind, p.bounds); se != nil && len(p.vals) == se.width() {
			set(se, p.vals...)
		}
	}
}
