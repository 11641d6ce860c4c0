package ops

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

func fixed(context.Context) (*Snapshot, error) { return fixture(), nil }

func newMux(tb testing.TB, cfg Config) (*Dashboard, *http.ServeMux) {
	tb.Helper()
	d, err := NewDashboard(cfg)
	if err != nil {
		tb.Fatalf("NewDashboard: %v", err)
	}
	mux := http.NewServeMux()
	d.Routes(mux)
	return d, mux
}

func TestNewDashboardConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		wantErr  bool
		interval time.Duration
	}{
		{"defaults", Config{Snapshot: fixed}, false, time.Second},
		{"interval kept", Config{Snapshot: fixed, Interval: 250 * time.Millisecond}, false, 250 * time.Millisecond},
		{"smallest interval", Config{Snapshot: fixed, Interval: 10 * time.Millisecond}, false, 10 * time.Millisecond},
		{"no snapshot func", Config{}, true, 0},
		{"negative interval", Config{Snapshot: fixed, Interval: -time.Second}, true, 0},
		{"interval too short", Config{Snapshot: fixed, Interval: time.Millisecond}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDashboard(tc.cfg)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("NewDashboard(%+v) = nil error, want one", tc.cfg)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewDashboard: %v", err)
			}
			if d.interval != tc.interval {
				t.Errorf("interval %s, want %s", d.interval, tc.interval)
			}
		})
	}
}

func TestAssets(t *testing.T) {
	_, mux := newMux(t, Config{Snapshot: fixed})
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
		contains     string
	}{
		{"GET", "/ops/dashboard/", 200, "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"GET", "/ops/dashboard/index.html", 200, "text/html; charset=utf-8", `href="app.css"`},
		{"GET", "/ops/dashboard/app.js", 200, "text/javascript; charset=utf-8", `new EventSource("events")`},
		{"GET", "/ops/dashboard/app.css", 200, "text/css; charset=utf-8", `.state-drained`},
		{"HEAD", "/ops/dashboard/app.css", 200, "text/css; charset=utf-8", ""},
		{"GET", "/ops/dashboard/nope.js", 404, "application/problem+json", `"status":404`},
		{"GET", "/ops/dashboard/assets/app.js", 404, "application/problem+json", `dashboard asset`},
		{"POST", "/ops/dashboard/", 405, "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %q", rec.Code, tc.status, rec.Body.String())
			}
			if ct := rec.Header().Get("Content-Type"); tc.contentType != "" && ct != tc.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tc.contentType)
			}
			if !strings.Contains(rec.Body.String(), tc.contains) {
				t.Errorf("body does not contain %q:\n%.300s", tc.contains, rec.Body.String())
			}
			if tc.status == 200 {
				for _, h := range []string{"ETag", "Content-Security-Policy", "X-Content-Type-Options"} {
					if rec.Header().Get(h) == "" {
						t.Errorf("no %s header", h)
					}
				}
			}
			if tc.method == "HEAD" && rec.Body.Len() != 0 {
				t.Errorf("HEAD answered a body of %d bytes", rec.Body.Len())
			}
		})
	}
}

func TestAssetRevalidation(t *testing.T) {
	_, mux := newMux(t, Config{Snapshot: fixed})
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/ops/dashboard/app.js", nil))
	etag := rec.Header().Get("ETag")
	if rec.Code != 200 || etag == "" {
		t.Fatalf("first request: %d, ETag %q", rec.Code, etag)
	}
	r := httptest.NewRequest("GET", "/ops/dashboard/app.js", nil)
	r.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Fatalf("revalidation answered %d with %d bytes, want 304 and none", rec.Code, rec.Body.Len())
	}
}

// TestAssetsAreSelfContained guards the rule that the page loads nothing
// from elsewhere and inserts no data as markup.
func TestAssetsAreSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href|action)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|@import`)
	markup := regexp.MustCompile(`\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write`)
	err := fs.WalkDir(assetFS, "assets", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assetFS, p)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s refers to another site: %q", p, m)
		}
		if m := markup.Find(b); m != nil {
			t.Errorf("%s inserts markup: %q", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRedirect(t *testing.T) {
	_, mux := newMux(t, Config{Snapshot: fixed})
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/ops/dashboard", nil))
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/ops/dashboard/" {
		t.Fatalf("GET /ops/dashboard = %d Location %q, want 301 to /ops/dashboard/", rec.Code, rec.Header().Get("Location"))
	}
}

func TestSnapshotEndpoint(t *testing.T) {
	zeroTime := fixture()
	zeroTime.Time = time.Time{}
	for _, tc := range []struct {
		name       string
		snap       *Snapshot
		err        error
		status     int
		detail     string // for errors: the problem's detail; "" means none may leak
		wantFilled bool   // the zero Time is set
	}{
		{name: "snapshot", snap: fixture(), status: 200},
		{name: "zero time is filled", snap: zeroTime, status: 200, wantFilled: true},
		{name: "unavailable", err: shop.Unavailable("health model not evaluated yet", errors.New("secret cause")), status: 503, detail: "health model not evaluated yet"},
		{name: "internal", err: errors.New("secret internal detail"), status: 500},
		{name: "nil without error", status: 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, mux := newMux(t, Config{Snapshot: func(context.Context) (*Snapshot, error) { return tc.snap, tc.err }})
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", "/ops/dashboard/snapshot", nil))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
			}
			if tc.status != 200 {
				var p httpapi.Problem
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Header().Get("Content-Type") != "application/problem+json" {
					t.Fatalf("want a problem document, got %q (%v)", rec.Body.String(), err)
				}
				if p.Detail != tc.detail || strings.Contains(rec.Body.String(), "secret") {
					t.Errorf("problem %+v, want detail %q and nothing secret", p, tc.detail)
				}
				return
			}
			if ct, cc := rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
				t.Errorf("Content-Type %q Cache-Control %q", ct, cc)
			}
			var got Snapshot
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			want := *tc.snap
			if tc.wantFilled {
				if got.Time.IsZero() {
					t.Fatal("zero Time was not filled")
				}
				want.Time = got.Time
			}
			if !got.Time.Equal(want.Time) {
				t.Errorf("time %v, want %v", got.Time, want.Time)
			}
			got.Time, want.Time = time.Time{}, time.Time{}
			if !reflect.DeepEqual(&got, &want) {
				t.Errorf("round trip changed the snapshot:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestSnapshotJSONContract pins the JSON names the page reads.
func TestSnapshotJSONContract(t *testing.T) {
	s := &Snapshot{
		Time:    fixtureTime,
		Regions: []Region{{Name: "r", State: health.Healthy, Reason: "x", Stamps: []Stamp{{ID: "s", State: health.Drained, Reason: "y", URL: "u", Release: "v1"}}, RPS: 1, ErrorRatio: 0.5, P99Ms: 2}},
		POPs:    []POP{{Region: "r", Routes: []string{"r"}, FailOpen: true}},
		Health: &HealthNode{ID: "system", Name: "n", Kind: "system", State: health.Healthy, Score: 1, Reason: "ok",
			Children: []*HealthNode{{ID: "c", Name: "c", Kind: "flow", Region: "r", State: health.Degraded, Score: 0.5, Reason: "z", Impact: "i",
				Signals: []Signal{{Name: "g", Value: 3, State: health.Degraded, Degraded: 2, Unhealthy: 4, Reason: "w"}}}}},
		SLOs:   []SLOStatus{{SLO: "o", Flow: "c", Kind: "availability", Objective: 0.999, Windows: []SLOWindow{{Window: "5m", Total: 10, Bad: 1, ErrorRatio: 0.1, BurnRate: 100, OK: false}}, BudgetRemaining: -0.5, Alerts: []string{"a"}}},
		Errors: []ErrorEntry{{Time: fixtureTime, Level: "ERROR", Message: "m", Region: "r", TraceID: "t", Attrs: map[string]string{"k": "v"}}},
		Release: &Release{ID: "i", Version: "v2", Image: "img", Env: "dev", From: map[string]string{"r": "v1"}, Phase: "shifting", Paused: true,
			Reason: "p", By: "b", Plan: []ReleaseStage{{Region: "r", Percent: 100}}, Stage: 0,
			Steps: []ReleaseStep{{Region: "r", Percent: 100, StartedAt: fixtureTime, EndedAt: fixtureTime, Verdict: "failed", Reason: "e",
				New: GateReading{Health: health.Unhealthy, Instances: 1, Flows: []FlowReading{{Flow: "browse", Requests: 10, ErrorRatio: 0.5, P99Ms: 3}}},
				Old: GateReading{Health: health.Healthy, Instances: 2}}},
			StartedAt: fixtureTime, EndedAt: fixtureTime, FirstBadAt: fixtureTime, RollbackAt: fixtureTime,
			Split: []RegionSplit{{Region: "r", Percents: map[string]int{"v1": 100, "v2": 0}, Settled: false}}},
		ReleaseProblem: "q",
		Scaling: &Scaling{Policy: ScalingPolicy{Target: 0.6, Tolerance: 0.1, ScaleOutAfterSeconds: 2, ScaleInAfterSeconds: 60}, Held: "h",
			Regions: []ScalingRegion{{Region: "r", Min: 1, Max: 4, PreScale: &ScalingPreScale{Min: 3, Until: fixtureTime, Active: true}, Want: 3, Reason: "u", Utilisation: 0.82,
				Inputs: ScalingInputs{Instances: 2, Reporting: 2, InFlight: 16.5, Capacity: 20, Requests: 900, Shed: 12, Waiting: 3, P99Ms: 180, Min: 3, Max: 4}}},
			Events: []ScalingEvent{
				{At: fixtureTime, Region: "r", Action: "scale-out", From: 2, To: 3, Reason: "u", Inputs: &ScalingInputs{Instances: 2, Capacity: 20}, ExceededAt: fixtureTime},
				{At: fixtureTime, Region: "r", Action: "serving", Instance: "i", ExceededAt: fixtureTime, ToTrafficMs: 3400},
				{At: fixtureTime, Action: "held", Reason: "h"},
			}},
	}
	const want = `{"time":"2026-05-01T12:00:00Z",
	"regions":[{"name":"r","state":"healthy","reason":"x","stamps":[{"id":"s","state":"drained","reason":"y","url":"u","release":"v1"}],"rps":1,"errorRatio":0.5,"p99Ms":2}],
	"pops":[{"region":"r","routes":["r"],"failOpen":true}],
	"health":{"id":"system","name":"n","kind":"system","state":"healthy","score":1,"reason":"ok",
		"children":[{"id":"c","name":"c","kind":"flow","region":"r","state":"degraded","score":0.5,"reason":"z","impact":"i",
			"signals":[{"name":"g","value":3,"state":"degraded","degraded":2,"unhealthy":4,"reason":"w"}]}]},
	"slos":[{"slo":"o","flow":"c","kind":"availability","objective":0.999,"windows":[{"window":"5m","total":10,"bad":1,"errorRatio":0.1,"burnRate":100,"ok":false}],"budgetRemaining":-0.5,"alerts":["a"]}],
	"errors":[{"time":"2026-05-01T12:00:00Z","level":"ERROR","message":"m","region":"r","traceId":"t","attrs":{"k":"v"}}],
	"release":{"id":"i","version":"v2","image":"img","env":"dev","from":{"r":"v1"},"phase":"shifting","paused":true,"reason":"p","by":"b",
		"plan":[{"region":"r","percent":100}],"stage":0,
		"steps":[{"region":"r","percent":100,"startedAt":"2026-05-01T12:00:00Z","endedAt":"2026-05-01T12:00:00Z","verdict":"failed","reason":"e",
			"new":{"health":"unhealthy","instances":1,"flows":[{"flow":"browse","requests":10,"errorRatio":0.5,"p99Ms":3}]},
			"old":{"health":"healthy","instances":2,"flows":null}}],
		"startedAt":"2026-05-01T12:00:00Z","endedAt":"2026-05-01T12:00:00Z","firstBadAt":"2026-05-01T12:00:00Z","rollbackAt":"2026-05-01T12:00:00Z",
		"split":[{"region":"r","percents":{"v1":100,"v2":0},"settled":false}]},
	"releaseProblem":"q",
	"scaling":{"policy":{"target":0.6,"tolerance":0.1,"scaleOutAfterSeconds":2,"scaleInAfterSeconds":60},"held":"h",
		"regions":[{"region":"r","min":1,"max":4,"preScale":{"min":3,"until":"2026-05-01T12:00:00Z","active":true},"want":3,"reason":"u","utilisation":0.82,
			"inputs":{"instances":2,"reporting":2,"inFlight":16.5,"capacity":20,"requests":900,"shed":12,"waiting":3,"p99Ms":180,"min":3,"max":4,"ordersInProcess":0,"ordersQueued":0,"ordersOldestMs":0}}],
		"events":[
			{"at":"2026-05-01T12:00:00Z","region":"r","action":"scale-out","from":2,"to":3,"reason":"u",
				"inputs":{"instances":2,"reporting":0,"inFlight":0,"capacity":20,"requests":0,"shed":0,"waiting":0,"p99Ms":0,"min":0,"max":0,"ordersInProcess":0,"ordersQueued":0,"ordersOldestMs":0},"exceededAt":"2026-05-01T12:00:00Z"},
			{"at":"2026-05-01T12:00:00Z","region":"r","action":"serving","instance":"i","exceededAt":"2026-05-01T12:00:00Z","toTrafficMs":3400},
			{"at":"2026-05-01T12:00:00Z","action":"held","reason":"h"}]}}`
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got, exp any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("JSON contract changed:\n got %s", b)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// parseEvents parses the complete events in b.
func parseEvents(b []byte) []sseEvent {
	var events []sseEvent
	blocks := strings.Split(string(b), "\n\n")
	for _, block := range blocks[:len(blocks)-1] { // the last is incomplete or empty
		var ev sseEvent
		for line := range strings.SplitSeq(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev.name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				ev.data += v
			}
		}
		if ev.data != "" {
			events = append(events, ev)
		}
	}
	return events
}

// readEvents sends each event read from r until r or ctx ends.
func readEvents(ctx context.Context, r io.Reader, out chan<- sseEvent) {
	defer close(out)
	br := bufio.NewReader(r)
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.data != "" {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

func nextEvent(t *testing.T, events <-chan sseEvent, within time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
	}
	panic("unreachable")
}

// TestEventsOverHTTP runs the stream through a real server and client: the
// first snapshot comes at once (the interval is an hour), flushed, with the
// streaming headers, and the handler returns when the client goes away.
func TestEventsOverHTTP(t *testing.T) {
	_, mux := newMux(t, Config{Snapshot: fixed, Interval: time.Hour})
	discard := slog.New(slog.DiscardHandler)
	// The middleware every server of the system has must not keep the
	// stream from flushing.
	h := httpapi.Chain(mux, httpapi.RequestIDs, httpapi.AccessLog(discard), httpapi.Recover(discard))
	ended := make(chan struct{}, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.URL.Path == pathEvents {
			ended <- struct{}{}
		}
	}))
	defer ts.Close()

	// The timeout only bounds a broken stream: cancel ends a good one.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", ts.URL+"/ops/dashboard/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for h, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	events := make(chan sseEvent)
	go readEvents(ctx, resp.Body, events)

	ev := nextEvent(t, events, 5*time.Second)
	if ev.name != "snapshot" {
		t.Fatalf("first event %q, want snapshot", ev.name)
	}
	var got Snapshot
	if err := json.Unmarshal([]byte(ev.data), &got); err != nil {
		t.Fatalf("snapshot data is not JSON: %v", err)
	}
	if !reflect.DeepEqual(&got, fixture()) {
		t.Errorf("streamed snapshot differs from the one given:\n got %+v", got)
	}

	cancel()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler still runs 5 s after the client went away")
	}
}

// TestEventsSurviveWriteTimeout: a server-wide WriteTimeout must not cut
// the stream, which lasts longer than any response.
func TestEventsSurviveWriteTimeout(t *testing.T) {
	var n atomic.Int64
	_, mux := newMux(t, Config{Interval: 20 * time.Millisecond, Snapshot: func(context.Context) (*Snapshot, error) {
		return &Snapshot{Time: fixtureTime, Regions: []Region{{Name: "r", RPS: float64(n.Add(1))}}}, nil
	}})
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.WriteTimeout = 100 * time.Millisecond
	ts.Start()
	defer ts.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/ops/dashboard/events", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan sseEvent)
	go readEvents(ctx, resp.Body, events)
	start := time.Now()
	prev := 0.0
	for i := 0; time.Since(start) < 4*ts.Config.WriteTimeout; i++ {
		ev := nextEvent(t, events, 5*time.Second)
		var s Snapshot
		if err := json.Unmarshal([]byte(ev.data), &s); err != nil || ev.name != "snapshot" {
			t.Fatalf("event %d: %q %q (%v)", i, ev.name, ev.data, err)
		}
		if rps := s.Regions[0].RPS; rps <= prev {
			t.Fatalf("event %d carries snapshot %v after %v; want a fresh one each time", i, rps, prev)
		} else {
			prev = rps
		}
	}
}

// streamRecorder is a ResponseWriter for a stream in a synctest bubble; it
// keeps only what was flushed, so unflushed events do not count.
type streamRecorder struct {
	header http.Header

	mu      sync.Mutex // guards the fields below
	status  int
	sent    http.Header // the header as of WriteHeader
	buf     bytes.Buffer
	flushed int // bytes of buf flushed
}

func newStreamRecorder() *streamRecorder { return &streamRecorder{header: http.Header{}} }

func (r *streamRecorder) Header() http.Header { return r.header }

func (r *streamRecorder) WriteHeader(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == 0 {
		r.status, r.sent = code, r.header.Clone()
	}
}

func (r *streamRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(b)
}

func (r *streamRecorder) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushed = r.buf.Len()
}

func (r *streamRecorder) result() (status int, h http.Header, events []sseEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, r.sent, parseEvents(r.buf.Bytes()[:r.flushed])
}

// startStream serves GET /ops/dashboard/events into a recorder; stop ends
// the request; done closes when the handler returned. Call it in the
// bubble, with a Dashboard made in the bubble.
func startStream(t *testing.T, mux *http.ServeMux) (rec *streamRecorder, stop func(), done <-chan struct{}) {
	ctx, cancel := context.WithCancel(t.Context())
	rec = newStreamRecorder()
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		mux.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/ops/dashboard/events", nil))
	}()
	return rec, cancel, ch
}

func rpsOf(t *testing.T, events []sseEvent) []float64 {
	t.Helper()
	var out []float64
	for _, ev := range events {
		if ev.name != "snapshot" {
			t.Fatalf("event %q, want snapshot", ev.name)
		}
		var s Snapshot
		if err := json.Unmarshal([]byte(ev.data), &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.Regions[0].RPS)
	}
	return out
}

// TestEventsCadence: one snapshot at once, then one every Interval, each
// flushed as it is written.
func TestEventsCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		_, mux := newMux(t, Config{Interval: time.Second, Snapshot: func(context.Context) (*Snapshot, error) {
			return &Snapshot{Time: time.Now(), Regions: []Region{{Name: "r", RPS: float64(n.Add(1))}}}, nil
		}})
		rec, stop, done := startStream(t, mux)

		for _, step := range []struct {
			advance time.Duration
			want    []float64
		}{
			{0, []float64{1}},
			{999 * time.Millisecond, []float64{1}},
			{time.Millisecond, []float64{1, 2}},
			{3 * time.Second, []float64{1, 2, 3, 4, 5}},
		} {
			time.Sleep(step.advance)
			synctest.Wait()
			_, _, events := rec.result()
			if got := rpsOf(t, events); !reflect.DeepEqual(got, step.want) {
				t.Fatalf("after %s more: snapshots %v, want %v", step.advance, got, step.want)
			}
		}
		status, h, _ := rec.result()
		if status != 200 || h.Get("Content-Type") != "text/event-stream" {
			t.Errorf("status %d, Content-Type %q", status, h.Get("Content-Type"))
		}

		stop()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the handler still runs after the request ended")
		}
	})
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// TestEventsSnapshotErrors: a failed snapshot becomes an "error" event
// holding the problem document, and the stream goes on. The failure is
// logged when it starts, not on every tick.
func TestEventsSnapshotErrors(t *testing.T) {
	ok := fixture()
	unavailable := shop.Unavailable("health model not evaluated yet", errors.New("secret cause"))
	internal := errors.New("secret internal detail")
	type outcome struct {
		snap *Snapshot
		err  error
	}
	type want struct {
		name   string
		status int    // of the problem, for "error"
		detail string // of the problem, for "error"
	}
	for _, tc := range []struct {
		name     string
		outcomes []outcome
		want     []want
		logged   int // "dashboard snapshot failed" records
	}{
		{
			name:     "recovers",
			outcomes: []outcome{{snap: ok}, {err: unavailable}, {snap: ok}},
			want:     []want{{name: "snapshot"}, {"error", 503, "health model not evaluated yet"}, {name: "snapshot"}},
			logged:   1,
		},
		{
			name:     "internal detail stays in the log",
			outcomes: []outcome{{err: internal}, {err: internal}, {err: internal}, {snap: ok}, {err: internal}},
			want:     []want{{"error", 500, ""}, {"error", 500, ""}, {"error", 500, ""}, {name: "snapshot"}, {"error", 500, ""}},
			logged:   2,
		},
		{
			name:     "nil snapshot",
			outcomes: []outcome{{}, {snap: ok}},
			want:     []want{{"error", 500, ""}, {name: "snapshot"}},
			logged:   1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls atomic.Int64
				logs := &lockedBuffer{}
				_, mux := newMux(t, Config{
					Interval: time.Second,
					Logger:   slog.New(slog.NewTextHandler(logs, nil)),
					Snapshot: func(context.Context) (*Snapshot, error) {
						o := tc.outcomes[min(int(calls.Add(1))-1, len(tc.outcomes)-1)]
						return o.snap, o.err
					},
				})
				rec, stop, done := startStream(t, mux)
				defer func() { stop(); <-done }()
				synctest.Wait()
				time.Sleep(time.Duration(len(tc.want)-1) * time.Second)
				synctest.Wait()

				_, _, events := rec.result()
				if len(events) != len(tc.want) {
					t.Fatalf("%d events, want %d: %v", len(events), len(tc.want), events)
				}
				for i, w := range tc.want {
					ev := events[i]
					if ev.name != w.name {
						t.Fatalf("event %d is %q, want %q", i, ev.name, w.name)
					}
					if w.name != "error" {
						continue
					}
					var p httpapi.Problem
					if err := json.Unmarshal([]byte(ev.data), &p); err != nil {
						t.Fatalf("event %d: data is not a problem: %v", i, err)
					}
					if p.Status != w.status || p.Detail != w.detail || p.Instance != pathEvents || strings.Contains(ev.data, "secret") {
						t.Errorf("event %d: problem %+v, want status %d detail %q and nothing secret", i, p, w.status, w.detail)
					}
				}
				if got := logs.count("dashboard snapshot failed"); got != tc.logged {
					t.Errorf("logged %d failures, want %d:\n%s", got, tc.logged, logs.String())
				}
			})
		})
	}
}

// TestCloseEndsStreams: Close ends open streams (so a graceful shutdown
// does not wait for them) and refuses new ones.
func TestCloseEndsStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, mux := newMux(t, Config{Snapshot: fixed, Interval: time.Second})
		rec, stop, done := startStream(t, mux)
		defer stop()
		synctest.Wait()
		if _, _, events := rec.result(); len(events) != 1 {
			t.Fatalf("%d events before Close, want 1", len(events))
		}

		d.Close()
		d.Close() // idempotent
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the stream still runs after Close")
		}

		after := httptest.NewRecorder()
		mux.ServeHTTP(after, httptest.NewRequest("GET", "/ops/dashboard/events", nil))
		if after.Code != http.StatusServiceUnavailable || after.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("new stream after Close: %d %q, want 503 problem", after.Code, after.Header().Get("Content-Type"))
		}
		page := httptest.NewRecorder()
		mux.ServeHTTP(page, httptest.NewRequest("GET", "/ops/dashboard/snapshot", nil))
		if page.Code != http.StatusOK {
			t.Errorf("snapshot after Close: %d, want 200", page.Code)
		}
	})
}

// unflushable is a ResponseWriter that cannot flush, as one hidden behind
// a middleware without Unwrap is.
type unflushable struct {
	header http.Header
	buf    bytes.Buffer
}

func (u *unflushable) Header() http.Header         { return u.header }
func (u *unflushable) WriteHeader(int)             {}
func (u *unflushable) Write(b []byte) (int, error) { return u.buf.Write(b) }

// TestEventsCannotFlush: a stream that cannot be flushed would never reach
// the client, so the handler gives up at once and says why.
func TestEventsCannotFlush(t *testing.T) {
	logs := &lockedBuffer{}
	_, mux := newMux(t, Config{Snapshot: fixed, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	done := make(chan struct{})
	go func() {
		defer close(done)
		mux.ServeHTTP(&unflushable{header: http.Header{}}, httptest.NewRequest("GET", "/ops/dashboard/events", nil))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler still runs 5 s after it could not flush")
	}
	if logs.count("cannot be flushed") != 1 {
		t.Errorf("log does not say the stream cannot be flushed:\n%s", logs.String())
	}
}
