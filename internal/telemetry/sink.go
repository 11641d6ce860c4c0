package telemetry

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// MaxSpansPerTrace bounds the spans the sink keeps of one trace; later spans
// of that trace are counted (TraceSummary.Dropped) but not kept. With
// Config.TraceCapacity it bounds the sink's trace memory.
const MaxSpansPerTrace = 256

// Sink is the in-process, bounded store of recent telemetry that the
// dashboard and the health model query: the last TraceCapacity traces, the
// last LogCapacity log records at Warn and above, and a tiered history of
// metric snapshots. A nil *Sink holds nothing: queries answer empty or
// not-ok, and Collect does nothing.
//
// Memory is bounded by configuration:
//   - traces: TraceCapacity traces of at most MaxSpansPerTrace spans each;
//   - logs: LogCapacity records, attribute values cut at 1 KiB;
//   - metrics: the latest snapshot plus, per tier,
//     ceil(Retention/Resolution)+2 snapshots (302+362+74 with the default
//     tiers), each at most 8 bytes times the width of
//     all tracked series (1 value per sum or gauge series, 2+buckets+1 per
//     histogram series), with at most MaxSeries series; tiers share
//     snapshots they both keep.
type Sink struct {
	now func() time.Time

	readerMu sync.Mutex    // guards readers
	readers  []localReader // one per part of the process

	traceMu  sync.Mutex // guards traces, order, seq
	traceCap int
	traces   map[trace.TraceID]*traceEntry
	order    ring[trace.TraceID] // trace ids, oldest first
	seq      uint64              // insertion counter, orders traces

	logMu sync.Mutex // guards logs
	logs  ring[LogRecord]

	hist   *history     // metric snapshots; has its own locks
	remote remoteSeries // series other processes export to this sink (OTLPHandler)
}

func newSink(cfg Config) (*Sink, error) {
	h, err := newHistory(cfg.Tiers, cfg.MaxSeries)
	if err != nil {
		return nil, err
	}
	return &Sink{
		now:      cfg.Now,
		traceCap: cfg.TraceCapacity,
		traces:   make(map[trace.TraceID]*traceEntry, cfg.TraceCapacity),
		order:    newRing[trace.TraceID](cfg.TraceCapacity),
		logs:     newRing[LogRecord](cfg.LogCapacity),
		hist:     h,
		remote:   remoteSeries{points: map[string]*remotePoint{}},
	}, nil
}

// localReader reads the metrics of one part of the process.
type localReader struct {
	reader *sdkmetric.ManualReader
	who    []attribute.KeyValue // the part's identity, added to each of its series
}

// addReader adds the metric reader of a part, whose series carry who.
func (s *Sink) addReader(r *sdkmetric.ManualReader, who []attribute.KeyValue) {
	s.readerMu.Lock()
	s.readers = append(s.readers, localReader{reader: r, who: who})
	s.readerMu.Unlock()
}

func (s *Sink) localReaders() []localReader {
	s.readerMu.Lock()
	defer s.readerMu.Unlock()
	return slices.Clone(s.readers)
}

// Span is one ended span as the sink keeps it.
type Span struct {
	TraceID       string            `json:"traceId"`
	SpanID        string            `json:"spanId"`
	ParentID      string            `json:"parentId,omitempty"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"` // "server", "client", "internal", "producer", "consumer"
	Start         time.Time         `json:"start"`
	End           time.Time         `json:"end"`
	DurationMs    float64           `json:"durationMs"`
	Status        string            `json:"status"` // "ok", "error" or "" (unset)
	StatusMessage string            `json:"statusMessage,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
}

// TraceSummary describes one kept trace.
type TraceSummary struct {
	TraceID string `json:"traceId"`
	// Root is the name of the root span: the span without a parent in the
	// trace, or whose parent is not kept (a remote caller's span).
	Root       string    `json:"root"`
	Start      time.Time `json:"start"`      // earliest span start
	DurationMs float64   `json:"durationMs"` // earliest start to latest end
	Spans      int       `json:"spans"`      // spans kept
	Dropped    int       `json:"dropped,omitempty"`
	Error      bool      `json:"error"` // some span has status error
	// Region is the region attribute of the root span, or else of the
	// first kept span that has one.
	Region string `json:"region,omitempty"`
}

// LogRecord is one log record as the sink keeps it.
type LogRecord struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"` // slog level name: "WARN", "ERROR", "ERROR+2"
	Message string            `json:"message"`
	TraceID string            `json:"traceId,omitempty"`
	SpanID  string            `json:"spanId,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	level   slog.Level
}

type traceEntry struct {
	id      trace.TraceID
	seq     uint64
	spans   []keptSpan
	dropped int
	start   time.Time
	end     time.Time
	errored bool
}

// spanRecorder is the sink's span processor, which every part of the
// process shares: it keeps ended spans.
type spanRecorder struct {
	s *Sink
}

var _ sdktrace.SpanProcessor = spanRecorder{}

func (spanRecorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p spanRecorder) OnEnd(s sdktrace.ReadOnlySpan)                 { p.s.addLocal(s) }
func (spanRecorder) Shutdown(context.Context) error                  { return nil }
func (spanRecorder) ForceFlush(context.Context) error                { return nil }

// spanOf is s as the sink keeps it, with the identity attributes of the
// part that made it (its resource's service.name, service.instance.id,
// cloud.region and service.version, as for spans received over OTLP).
func spanOf(s sdktrace.ReadOnlySpan) Span {
	sc := s.SpanContext()
	sp := Span{
		TraceID:    sc.TraceID().String(),
		SpanID:     sc.SpanID().String(),
		Name:       s.Name(),
		Kind:       s.SpanKind().String(),
		Start:      s.StartTime(),
		End:        s.EndTime(),
		DurationMs: float64(s.EndTime().Sub(s.StartTime()).Microseconds()) / 1000,
	}
	if p := s.Parent(); p.IsValid() {
		sp.ParentID = p.SpanID().String()
	}
	switch st := s.Status(); st.Code {
	case codes.Error:
		sp.Status, sp.StatusMessage = "error", st.Description
	case codes.Ok:
		sp.Status = "ok"
	}
	attrs := s.Attributes()
	sp.Attributes = make(map[string]string, len(attrs)+len(spanIdentityKeys))
	for _, kv := range attrs {
		sp.Attributes[string(kv.Key)] = kv.Value.Emit()
	}
	if res := s.Resource(); res != nil {
		set := res.Set()
		for _, k := range spanIdentityKeys {
			if v, ok := set.Value(k); ok {
				sp.Attributes[string(k)] = v.Emit()
			}
		}
	}
	return sp
}

// keptSpan is one span of a kept trace: a span this process ended, as
// the SDK handed it over, made a Span only when it is read (spanOf), or a
// span another process sent, already one. Keeping a span so costs the
// same whatever its attributes; the spans nobody reads, most of them,
// are never converted.
type keptSpan struct {
	local    sdktrace.ReadOnlySpan // nil: received holds the span
	received *Span
}

func (k keptSpan) span() Span {
	if k.local != nil {
		return spanOf(k.local)
	}
	return *k.received
}

// addLocal keeps a span this process ended.
func (s *Sink) addLocal(sp sdktrace.ReadOnlySpan) {
	s.keep(sp.SpanContext().TraceID(), keptSpan{local: sp}, sp.StartTime(), sp.EndTime(), sp.Status().Code == codes.Error)
}

// addSpan keeps a span another process sent.
func (s *Sink) addSpan(sp Span) {
	id, err := trace.TraceIDFromHex(sp.TraceID)
	if err != nil {
		return
	}
	s.keep(id, keptSpan{received: &sp}, sp.Start, sp.End, sp.Status == "error")
}

// keep adds span k of trace id, which ran from start to end.
func (s *Sink) keep(id trace.TraceID, k keptSpan, start, end time.Time, errored bool) {
	s.traceMu.Lock()
	defer s.traceMu.Unlock()
	e, ok := s.traces[id]
	if !ok {
		if evicted, full := s.order.push(id); full {
			delete(s.traces, evicted)
		}
		s.seq++
		// Room for a request's usual spans (server, client, the next
		// server) from the start.
		e = &traceEntry{id: id, seq: s.seq, start: start, end: end, spans: make([]keptSpan, 0, 4)}
		s.traces[id] = e
	}
	if len(e.spans) >= MaxSpansPerTrace {
		e.dropped++
		return
	}
	e.spans = append(e.spans, k)
	if start.Before(e.start) {
		e.start = start
	}
	if end.After(e.end) {
		e.end = end
	}
	if errored {
		e.errored = true
	}
}

// Trace returns the kept spans of the trace with the given hex id, sorted by
// start time, and false when the trace is unknown (never seen or evicted).
func (s *Sink) Trace(id string) ([]Span, bool) {
	if s == nil {
		return nil, false
	}
	tid, err := trace.TraceIDFromHex(id)
	if err != nil {
		return nil, false
	}
	s.traceMu.Lock()
	e, ok := s.traces[tid]
	var kept []keptSpan
	if ok {
		kept = slices.Clone(e.spans)
	}
	s.traceMu.Unlock()
	if !ok {
		return nil, false
	}
	spans := make([]Span, len(kept))
	for i, k := range kept {
		spans[i] = k.span()
	}
	slices.SortStableFunc(spans, func(a, b Span) int { return a.Start.Compare(b.Start) })
	return spans, true
}

// RecentTraces summarises the kept traces, latest start first, at most n
// (n <= 0: all of them). With onlyErrors, only traces with an error span.
func (s *Sink) RecentTraces(n int, onlyErrors bool) []TraceSummary {
	if s == nil {
		return nil
	}
	type item struct {
		sum TraceSummary
		seq uint64
	}
	// The entries are copied under the lock and summarised after it, so
	// that spans keep being recorded meanwhile. A copy is a snapshot: its
	// spans slice is only ever appended to beyond its length.
	s.traceMu.Lock()
	entries := make([]traceEntry, 0, len(s.traces))
	for _, e := range s.traces {
		if onlyErrors && !e.errored {
			continue
		}
		entries = append(entries, *e)
	}
	s.traceMu.Unlock()
	items := make([]item, len(entries))
	for i := range entries {
		items[i] = item{entries[i].summary(), entries[i].seq}
	}
	slices.SortFunc(items, func(a, b item) int {
		if c := b.sum.Start.Compare(a.sum.Start); c != 0 {
			return c
		}
		return cmp.Compare(b.seq, a.seq)
	})
	if n > 0 && len(items) > n {
		items = items[:n]
	}
	out := make([]TraceSummary, len(items))
	for i, it := range items {
		out[i] = it.sum
	}
	return out
}

// summary describes e, a copy made under traceMu.
func (e *traceEntry) summary() TraceSummary {
	sum := TraceSummary{
		TraceID:    e.id.String(),
		Start:      e.start,
		DurationMs: float64(e.end.Sub(e.start).Microseconds()) / 1000,
		Spans:      len(e.spans),
		Dropped:    e.dropped,
		Error:      e.errored,
	}
	spans := make([]Span, len(e.spans))
	ids := make(map[string]bool, len(e.spans))
	for i, k := range e.spans {
		spans[i] = k.span()
		ids[spans[i].SpanID] = true
	}
	var root *Span
	for i := range spans {
		sp := &spans[i]
		if (sp.ParentID == "" || !ids[sp.ParentID]) && (root == nil || sp.Start.Before(root.Start)) {
			root = sp
		}
	}
	if root != nil {
		sum.Root = root.Name
		sum.Region = root.Attributes[AttrRegion]
	}
	for i := 0; sum.Region == "" && i < len(spans); i++ {
		sum.Region = spans[i].Attributes[AttrRegion]
	}
	return sum
}

func (s *Sink) addLog(r LogRecord) {
	s.logMu.Lock()
	s.logs.push(r)
	s.logMu.Unlock()
}

// RecentLogs returns the kept log records at minLevel and above, newest
// first, at most n (n <= 0: all of them). The sink keeps only records at
// Warn and above.
func (s *Sink) RecentLogs(n int, minLevel slog.Level) []LogRecord {
	if s == nil {
		return nil
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	var out []LogRecord
	for i := s.logs.len() - 1; i >= 0 && (n <= 0 || len(out) < n); i-- {
		if r := s.logs.at(i); r.level >= minLevel {
			out = append(out, r)
		}
	}
	return out
}

// TraceHandler serves one kept trace as JSON {"traceId": ..., "spans":
// [...]} (spans sorted by start). The caller registers it with a pattern
// that has an {id} wildcard ("GET /ops/traces/{id}"). A malformed id is a
// 400 problem, an unknown (or evicted) trace a 404 problem.
func (s *Sink) TraceHandler() http.Handler {
	return httpapi.Handle(nil, func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		if _, err := trace.TraceIDFromHex(id); err != nil {
			return shop.Invalid("id", "trace id must be 32 lower-case hex digits, not all zero")
		}
		spans, ok := s.Trace(id)
		if !ok {
			return shop.NotFound("trace", id)
		}
		w.Header().Set("Cache-Control", "no-store")
		httpapi.WriteJSON(w, http.StatusOK, struct {
			TraceID string `json:"traceId"`
			Spans   []Span `json:"spans"`
		}{id, spans})
		return nil
	})
}

// ring is a fixed-capacity FIFO that overwrites its oldest element.
type ring[T any] struct {
	buf   []T
	start int // index of the oldest element
	n     int
}

func newRing[T any](capacity int) ring[T] { return ring[T]{buf: make([]T, capacity)} }

// push appends v; when the ring was full it returns the evicted oldest
// element and true.
func (r *ring[T]) push(v T) (evicted T, full bool) {
	if len(r.buf) == 0 {
		return v, true
	}
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = v
		r.n++
		return evicted, false
	}
	evicted = r.buf[r.start]
	r.buf[r.start] = v
	r.start = (r.start + 1) % len(r.buf)
	return evicted, true
}

func (r *ring[T]) len() int { return r.n }
func (r *ring[T]) cap() int { return len(r.buf) }

// at returns the i-th element, 0 being the oldest.
func (r *ring[T]) at(i int) T { return r.buf[(r.start+i)%len(r.buf)] }
