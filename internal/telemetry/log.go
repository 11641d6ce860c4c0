package telemetry

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys LogHandler adds.
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
)

// maxLogValueBytes bounds each attribute value a sink log record keeps.
const maxLogValueBytes = 1024

// LogHandler wraps inner. It adds trace_id and span_id attributes when the
// record's context carries a valid span context (inside any groups opened
// with WithGroup, like every attribute added to a record), and copies
// records at level Warn and above into sink's log ring (sink nil: none are
// copied): time, level, message, trace and span id, and the record's
// attributes, including those added with With, flattened to strings with
// dotted group prefixes ("http.status"). Records at Warn and above reach the
// sink even when inner is not enabled for them.
func LogHandler(inner slog.Handler, sink *Sink) slog.Handler {
	if inner == nil {
		inner = slog.DiscardHandler
	}
	return &logHandler{inner: inner, sink: sink}
}

type logHandler struct {
	inner  slog.Handler
	sink   *Sink
	prefix string     // dotted group prefix of keys added from now on ("a.b.")
	attrs  []flatAttr // attributes added with WithAttrs, flattened; only kept with a sink
}

type flatAttr struct{ key, value string }

func (h *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return (h.sink != nil && level >= slog.LevelWarn) || h.inner.Enabled(ctx, level)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	var traceID, spanID string
	if sc.IsValid() {
		traceID, spanID = sc.TraceID().String(), sc.SpanID().String()
	}
	if h.sink != nil && r.Level >= slog.LevelWarn {
		attrs := make(map[string]string, len(h.attrs)+r.NumAttrs())
		for _, a := range h.attrs {
			attrs[a.key] = a.value
		}
		r.Attrs(func(a slog.Attr) bool {
			flatten(h.prefix, a, func(k, v string) { attrs[k] = v })
			return true
		})
		at := r.Time
		if at.IsZero() {
			at = h.sink.now()
		}
		h.sink.addLog(LogRecord{
			Time: at, Level: r.Level.String(), Message: r.Message,
			TraceID: traceID, SpanID: spanID, Attrs: attrs, level: r.Level,
		})
	}
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	if traceID != "" {
		r = r.Clone()
		r.AddAttrs(slog.String(LogTraceID, traceID), slog.String(LogSpanID, spanID))
	}
	return h.inner.Handle(ctx, r)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.inner = h.inner.WithAttrs(attrs)
	if h.sink != nil {
		h2.attrs = slices.Clip(h.attrs)
		for _, a := range attrs {
			flatten(h.prefix, a, func(k, v string) { h2.attrs = append(h2.attrs, flatAttr{k, v}) })
		}
	}
	return &h2
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.inner = h.inner.WithGroup(name)
	h2.prefix = h.prefix + name + "."
	return &h2
}

// flatten calls emit for each leaf of a with its dotted key, following the
// slog rules: values are resolved, attributes with an empty key are
// ignored, groups with an empty key are inlined and empty groups vanish.
func flatten(prefix string, a slog.Attr, emit func(k, v string)) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, ga := range v.Group() {
			flatten(p, ga, emit)
		}
		return
	}
	if a.Key == "" {
		return
	}
	emit(prefix+a.Key, logValueString(v))
}

func logValueString(v slog.Value) string {
	var s string
	switch v.Kind() {
	case slog.KindTime:
		s = v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok && err != nil {
			s = err.Error()
		} else {
			s = v.String()
		}
	default:
		s = v.String()
	}
	return truncate(s, maxLogValueBytes)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.Clone(s[:n])
}
