package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// otlpSettings are the standard OTLP exporter variables of one signal
// ("TRACES" or "METRICS"): the signal's own form wins over the general one.
type otlpSettings struct {
	endpoint    string // the full URL to post to
	headers     map[string]string
	timeout     time.Duration // zero: the exporter's default
	compression string        // "", "gzip" or "none"
}

// readOTLPSettings reads the settings of signal; ok is false when export of
// that signal is off (no endpoint, or OTEL_<signal>_EXPORTER=none).
func readOTLPSettings(getenv func(string) string, signal string) (otlpSettings, bool, error) {
	var st otlpSettings
	if getenv == nil {
		return st, false, nil
	}
	env := func(key string) string {
		if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_" + signal + "_" + key)); v != "" {
			return v
		}
		return strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_" + key))
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_"+signal+"_EXPORTER")), "none") {
		return st, false, nil
	}
	st.endpoint = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT"))
	if st.endpoint == "" {
		base := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
		if base == "" {
			return st, false, nil
		}
		st.endpoint = strings.TrimSuffix(base, "/") + "/v1/" + strings.ToLower(signal)
	}
	name := strings.ToLower(signal)
	u, err := url.Parse(st.endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return st, false, fmt.Errorf("telemetry: OTLP %s endpoint %q is not an http(s) URL", name, st.endpoint)
	}
	if h := env("HEADERS"); h != "" {
		if st.headers, err = parseOTLPHeaders(h); err != nil {
			return st, false, fmt.Errorf("telemetry: OTLP headers: %w", err)
		}
	}
	if v := env("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return st, false, fmt.Errorf("telemetry: OTLP timeout %q is not a positive number of milliseconds", v)
		}
		st.timeout = time.Duration(ms) * time.Millisecond
	}
	switch v := strings.ToLower(env("COMPRESSION")); v {
	case "", "gzip", "none":
		st.compression = v
	default:
		return st, false, fmt.Errorf("telemetry: OTLP compression %q is not gzip or none", v)
	}
	return st, true, nil
}

// newOTLPExporter returns an OTLP/HTTP trace exporter when getenv names an
// endpoint, and nil otherwise.
func newOTLPExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	st, ok, err := readOTLPSettings(getenv, "TRACES")
	if !ok || err != nil {
		return nil, err
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(st.endpoint)}
	if st.headers != nil {
		opts = append(opts, otlptracehttp.WithHeaders(st.headers))
	}
	if st.timeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(st.timeout))
	}
	switch st.compression {
	case "gzip":
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	case "none":
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
	}
	return exp, nil
}

// defaultMetricInterval is how often metrics are exported over OTLP without
// OTEL_METRIC_EXPORT_INTERVAL: the SDK's one minute would leave an
// operations plane that judges 30 s windows every 2 s blind, so the
// default here is the health model's evaluation period.
const defaultMetricInterval = 2 * time.Second

// newOTLPMetricReader returns a periodic reader that exports every metric
// over OTLP/HTTP (cumulative temporality) when getenv names an endpoint,
// and nil otherwise. OTEL_METRIC_EXPORT_INTERVAL (milliseconds) sets its
// period.
func newOTLPMetricReader(ctx context.Context, getenv func(string) string) (sdkmetric.Reader, error) {
	st, ok, err := readOTLPSettings(getenv, "METRICS")
	if !ok || err != nil {
		return nil, err
	}
	opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpointURL(st.endpoint)}
	if st.headers != nil {
		opts = append(opts, otlpmetrichttp.WithHeaders(st.headers))
	}
	if st.timeout > 0 {
		opts = append(opts, otlpmetrichttp.WithTimeout(st.timeout))
	}
	switch st.compression {
	case "gzip":
		opts = append(opts, otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
	case "none":
		opts = append(opts, otlpmetrichttp.WithCompression(otlpmetrichttp.NoCompression))
	}
	interval, err := metricInterval(getenv)
	if err != nil {
		return nil, err
	}
	exp, err := otlpmetrichttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
	}
	return sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval)), nil
}

// metricInterval reads OTEL_METRIC_EXPORT_INTERVAL (milliseconds); unset:
// defaultMetricInterval.
func metricInterval(getenv func(string) string) (time.Duration, error) {
	if getenv == nil {
		return defaultMetricInterval, nil
	}
	v := strings.TrimSpace(getenv("OTEL_METRIC_EXPORT_INTERVAL"))
	if v == "" {
		return defaultMetricInterval, nil
	}
	ms, err := strconv.Atoi(v)
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("telemetry: OTEL_METRIC_EXPORT_INTERVAL %q is not a positive number of milliseconds", v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// parseOTLPHeaders parses the W3C-baggage-like "k1=v1,k2=v2" form of
// OTEL_EXPORTER_OTLP_HEADERS; values are URL-decoded.
func parseOTLPHeaders(s string) (map[string]string, error) {
	headers := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", pair)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", k, err)
		}
		headers[k] = dv
	}
	return headers, nil
}
