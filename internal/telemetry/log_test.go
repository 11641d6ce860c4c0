package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"
)

// TestLogHandlerContract runs the slog handler conformance tests through
// LogHandler, with and without a sink.
func TestLogHandlerContract(t *testing.T) {
	for _, withSink := range []bool{false, true} {
		t.Run(map[bool]string{false: "no sink", true: "sink"}[withSink], func(t *testing.T) {
			var sink *Sink
			if withSink {
				sink = mustNew(t, Config{}).Sink()
			}
			var buf *bytes.Buffer
			slogtest.Run(t, func(*testing.T) slog.Handler {
				buf = new(bytes.Buffer)
				return LogHandler(slog.NewJSONHandler(buf, nil), sink)
			}, func(t *testing.T) map[string]any {
				var m map[string]any
				if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
					t.Fatalf("%q: %v", buf, err)
				}
				return m
			})
		})
	}
}

func TestLogHandlerTraceIDs(t *testing.T) {
	tel := mustNew(t, Config{})
	var buf bytes.Buffer
	inner := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})
	log := slog.New(LogHandler(inner, tel.Sink()))
	ctx, span := tel.Tracer("test").Start(context.Background(), "op")
	defer span.End()

	log.InfoContext(ctx, "below both")
	log.WarnContext(ctx, "sink only")
	log.ErrorContext(ctx, "both")
	log.Error("no span")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("inner got %d lines, want the two errors:\n%s", len(lines), buf.String())
	}
	var withSpan, without map[string]any
	json.Unmarshal([]byte(lines[0]), &withSpan)
	json.Unmarshal([]byte(lines[1]), &without)
	sc := span.SpanContext()
	if withSpan[LogTraceID] != sc.TraceID().String() || withSpan[LogSpanID] != sc.SpanID().String() {
		t.Errorf("line %s: want trace_id %s span_id %s", lines[0], sc.TraceID(), sc.SpanID())
	}
	if _, ok := without[LogTraceID]; ok {
		t.Errorf("line %s has a trace_id without a span", lines[1])
	}
	var msgs []string
	for _, r := range tel.Sink().RecentLogs(0, slog.LevelWarn) {
		msgs = append(msgs, r.Message)
	}
	if strings.Join(msgs, ",") != "no span,both,sink only" {
		t.Errorf("sink messages = %q", msgs)
	}
}
