package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/contoso/shoes/internal/httpapi"
)

// makeTrace records a root span with one child and returns the trace id.
// The child fails when failed is set.
func makeTrace(tel *Telemetry, name string, start time.Time, failed bool) string {
	tr := tel.Tracer("test")
	ctx, root := tr.Start(context.Background(), name, trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String(AttrRegion, "westeurope")))
	_, child := tr.Start(ctx, name+" child", trace.WithTimestamp(start.Add(time.Millisecond)))
	if failed {
		child.SetStatus(codes.Error, "store unavailable")
	}
	child.End(trace.WithTimestamp(start.Add(3 * time.Millisecond)))
	root.End(trace.WithTimestamp(start.Add(5 * time.Millisecond)))
	return root.SpanContext().TraceID().String()
}

func TestSinkTraces(t *testing.T) {
	tel := mustNew(t, Config{TraceCapacity: 3})
	sink := tel.Sink()
	var ids []string
	for i := range 5 {
		ids = append(ids, makeTrace(tel, fmt.Sprintf("op%d", i), t0.Add(time.Duration(i)*time.Second), i == 3))
	}

	// The two oldest were evicted whole.
	for i, id := range ids {
		spans, ok := sink.Trace(id)
		if want := i >= 2; ok != want || (ok && len(spans) != 2) {
			t.Errorf("Trace(op%d) = %d spans, %v; want kept=%v with 2 spans", i, len(spans), ok, want)
		}
	}
	spans, _ := sink.Trace(ids[3])
	if spans[0].Name != "op3" || spans[1].Name != "op3 child" || spans[1].ParentID != spans[0].SpanID ||
		spans[1].Status != "error" || spans[1].StatusMessage != "store unavailable" || spans[0].Status != "" ||
		spans[0].DurationMs != 5 || spans[0].Kind != "internal" || spans[0].Attributes[AttrRegion] != "westeurope" {
		t.Errorf("spans of op3 = %+v", spans)
	}

	recent := sink.RecentTraces(0, false)
	if got := summaryRoots(recent); !slices.Equal(got, []string{"op4", "op3", "op2"}) {
		t.Errorf("RecentTraces roots = %v, want newest first op4 op3 op2", got)
	}
	if got := summaryRoots(sink.RecentTraces(2, false)); !slices.Equal(got, []string{"op4", "op3"}) {
		t.Errorf("RecentTraces(2) roots = %v", got)
	}
	errs := sink.RecentTraces(10, true)
	if len(errs) != 1 {
		t.Fatalf("RecentTraces(onlyErrors) = %+v, want op3 only", errs)
	}
	want := TraceSummary{TraceID: ids[3], Root: "op3", Start: t0.Add(3 * time.Second), DurationMs: 5, Spans: 2, Error: true, Region: "westeurope"}
	if errs[0] != want {
		t.Errorf("error summary = %+v, want %+v", errs[0], want)
	}
}

func summaryRoots(s []TraceSummary) []string {
	var out []string
	for _, x := range s {
		out = append(out, x.Root)
	}
	return out
}

func TestSinkSpansPerTraceBound(t *testing.T) {
	tel := mustNew(t, Config{})
	tr := tel.Tracer("test")
	ctx, root := tr.Start(context.Background(), "batch")
	for range MaxSpansPerTrace + 10 {
		_, sp := tr.Start(ctx, "item")
		sp.End()
	}
	root.End()
	sum := tel.Sink().RecentTraces(1, false)
	if len(sum) != 1 || sum[0].Spans != MaxSpansPerTrace || sum[0].Dropped != 11 {
		t.Fatalf("summary = %+v, want %d spans kept and 11 dropped", sum, MaxSpansPerTrace)
	}
}

func TestTraceHandler(t *testing.T) {
	tel := mustNew(t, Config{})
	id := makeTrace(tel, "checkout", t0, false)
	mux := http.NewServeMux()
	mux.Handle("GET /ops/traces/{id}", tel.Sink().TraceHandler())

	for _, tc := range []struct {
		name, id string
		status   int
	}{
		{"known", id, http.StatusOK},
		{"unknown", "0af7651916cd43dd8448eb211c80319c", http.StatusNotFound},
		{"malformed", "not-a-trace", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ops/traces/"+tc.id, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status != http.StatusOK {
				var p httpapi.Problem
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("content type %q, want problem+json", ct)
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != tc.status {
					t.Errorf("problem = %+v, %v", p, err)
				}
				return
			}
			var body struct {
				TraceID string `json:"traceId"`
				Spans   []Span `json:"spans"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.TraceID != id || len(body.Spans) != 2 || body.Spans[0].Name != "checkout" || body.Spans[1].TraceID != id {
				t.Errorf("body = %+v", body)
			}
		})
	}
}

func TestSinkLogs(t *testing.T) {
	clock := newFakeClock(t0)
	tel := mustNew(t, Config{LogCapacity: 3, Now: clock.Now})
	sink := tel.Sink()
	log := slog.New(LogHandler(slog.DiscardHandler, sink))
	log.Info("not kept")
	for i := range 4 {
		log.Warn("slow", "i", i)
	}
	log.Error("failed", "i", 4)
	log.Debug("not kept either")

	all := sink.RecentLogs(0, slog.LevelDebug)
	var got []string
	for _, r := range all {
		got = append(got, r.Level+" "+r.Message+" "+r.Attrs["i"])
	}
	if want := []string{"ERROR failed 4", "WARN slow 3", "WARN slow 2"}; !slices.Equal(got, want) {
		t.Errorf("RecentLogs = %q, want %q (newest first, capacity 3)", got, want)
	}
	if errs := sink.RecentLogs(0, slog.LevelError); len(errs) != 1 || errs[0].Message != "failed" {
		t.Errorf("RecentLogs(Error) = %+v", errs)
	}
	if two := sink.RecentLogs(2, slog.LevelWarn); len(two) != 2 {
		t.Errorf("RecentLogs(2) = %d records", len(two))
	}
	if all[0].Time.IsZero() || all[0].TraceID != "" {
		t.Errorf("record = %+v, want a time and no trace", all[0])
	}
}

func TestLogHandlerFlattensAttributes(t *testing.T) {
	tel := mustNew(t, Config{})
	tr := tel.Tracer("test")
	ctx, span := tr.Start(context.Background(), "op")
	defer span.End()
	sc := span.SpanContext()

	for _, tc := range []struct {
		name string
		log  func(*slog.Logger)
		want map[string]string
	}{
		{"plain", func(l *slog.Logger) { l.WarnContext(ctx, "m", "region", "westeurope", "n", 3) },
			map[string]string{"region": "westeurope", "n": "3"}},
		{"with", func(l *slog.Logger) { l.With("request_id", "r1").WarnContext(ctx, "m", "k", "v") },
			map[string]string{"request_id": "r1", "k": "v"}},
		{"group", func(l *slog.Logger) {
			l.With("region", "eastus").WithGroup("http").With("route", "/x").WarnContext(ctx, "m", slog.Int("status", 503))
		}, map[string]string{"region": "eastus", "http.route": "/x", "http.status": "503"}},
		{"group attr and inline group", func(l *slog.Logger) {
			l.WarnContext(ctx, "m", slog.Group("order", "id", "o1", slog.Group("", "sku", "s1")), slog.Group("empty"))
		}, map[string]string{"order.id": "o1", "order.sku": "s1"}},
		{"values", func(l *slog.Logger) {
			l.WarnContext(ctx, "m", "err", fmt.Errorf("boom"), "d", 1500*time.Millisecond, "ok", true, "at", t0, slog.Any("", "ignored"))
		}, map[string]string{"err": "boom", "d": "1.5s", "ok": "true", "at": "2030-01-01T12:00:00Z"}},
		{"long value cut", func(l *slog.Logger) { l.WarnContext(ctx, "m", "v", string(make([]byte, 5000))) },
			map[string]string{"v": string(make([]byte, maxLogValueBytes))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := mustNew(t, Config{}).Sink()
			tc.log(slog.New(LogHandler(slog.DiscardHandler, sink)))
			recs := sink.RecentLogs(0, slog.LevelWarn)
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			r := recs[0]
			if len(r.Attrs) != len(tc.want) {
				t.Errorf("attrs = %v, want %v", r.Attrs, tc.want)
			}
			for k, v := range tc.want {
				if r.Attrs[k] != v {
					t.Errorf("attr %s = %.40q, want %.40q", k, r.Attrs[k], v)
				}
			}
			if r.TraceID != sc.TraceID().String() || r.SpanID != sc.SpanID().String() {
				t.Errorf("trace %s span %s, want %s %s", r.TraceID, r.SpanID, sc.TraceID(), sc.SpanID())
			}
		})
	}
}
