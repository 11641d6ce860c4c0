package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestReportBeforeFirstRunIsUnhealthy(t *testing.T) {
	p := NewProber(Config{Region: "r1", Checks: []Check{{Name: "ok", Run: okCheck}}})
	rep := p.Report()
	if rep.Status != Unhealthy || rep.Reason != "starting" {
		t.Fatalf("report before any run = %s %q, want unhealthy starting", rep.Status, rep.Reason)
	}
}

func okCheck(context.Context) (string, error) { return "fine", nil }

func TestVerdicts(t *testing.T) {
	failing := func(context.Context) (string, error) { return "", errors.New("boom") }
	slow := func(context.Context) (string, error) { return "", fmt.Errorf("slow: %w", ErrDegraded) }
	for _, tc := range []struct {
		name   string
		checks []Check
		want   Status
	}{
		{"all healthy", []Check{{Name: "a", Run: okCheck}, {Name: "b", Run: okCheck}}, Healthy},
		{"one degraded", []Check{{Name: "a", Run: okCheck}, {Name: "b", Run: slow}}, Degraded},
		{"one failing", []Check{{Name: "a", Run: failing}, {Name: "b", Run: slow}}, Unhealthy},
		{"failing with degraded impact", []Check{{Name: "a", Run: okCheck}, {Name: "b", Run: failing, Impact: Degraded}}, Degraded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewProber(Config{Region: "r1", Checks: tc.checks})
			p.RunOnce(t.Context())
			if got := p.Report().Status; got != tc.want {
				t.Fatalf("status = %s, want %s (%+v)", got, tc.want, p.Report())
			}
		})
	}
}

// A check that hangs and ignores its context must not freeze the verdict
// at its last (healthy) value: the run times out, and if the prober itself
// stops running, the cached report goes stale and unhealthy.
func TestHungCheckTimesOutAndStaleReportIsUnhealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		hang := false
		check := func(ctx context.Context) (string, error) {
			if hang {
				<-release // ignores ctx, like a stuck driver call
			}
			return "", nil
		}
		p := NewProber(Config{Region: "r1", Interval: time.Second, Checks: []Check{{Name: "store", Run: check}}})
		p.RunOnce(t.Context())
		if got := p.Report().Status; got != Healthy {
			t.Fatalf("first run = %s, want healthy", got)
		}
		hang = true
		p.RunOnce(t.Context()) // returns after the timeout
		rep := p.Report()
		if rep.Status != Unhealthy || !strings.Contains(rep.Checks[0].Detail, "timed out") {
			t.Fatalf("after a hung run = %s %q, want unhealthy, timed out", rep.Status, rep.Checks[0].Detail)
		}
		// While the hung call has not returned, the next run reports it
		// instead of piling up another call.
		p.RunOnce(t.Context())
		if d := p.Report().Checks[0].Detail; !strings.Contains(d, "has not returned") {
			t.Fatalf("detail = %q, want the previous run reported as hung", d)
		}
		// No more runs (the prober is stuck): after three intervals the
		// cached report is stale.
		time.Sleep(3*time.Second + time.Millisecond)
		rep = p.Report()
		if rep.Status != Unhealthy || !strings.HasPrefix(rep.Reason, "stale") {
			t.Fatalf("old report = %s %q, want unhealthy stale", rep.Status, rep.Reason)
		}
		if _, ok := p.Result("store"); ok {
			t.Fatal("Result returned a stale check result")
		}
	})
}

func TestStaleHealthyReportBecomesUnhealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewProber(Config{Region: "r1", Interval: time.Second, Checks: []Check{{Name: "a", Run: okCheck}}})
		p.RunOnce(t.Context())
		time.Sleep(3 * time.Second)
		if got := p.Report().Status; got != Healthy {
			t.Fatalf("report exactly three intervals old = %s, want still healthy", got)
		}
		time.Sleep(time.Millisecond)
		if got := p.Report(); got.Status != Unhealthy || !strings.HasPrefix(got.Reason, "stale") {
			t.Fatalf("report older than three intervals = %s %q, want unhealthy stale", got.Status, got.Reason)
		}
	})
}

func TestRunKeepsReportFreshAndStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		runs := 0
		p := NewProber(Config{Region: "r1", Interval: time.Second, Checks: []Check{{Name: "a", Run: func(context.Context) (string, error) {
			runs++
			return "", nil
		}}}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		if got := p.Report().Status; got != Healthy {
			t.Fatalf("status with a running prober = %s, want healthy", got)
		}
		if runs != 11 {
			t.Fatalf("runs in 10 s at 1 s interval = %d, want 11", runs)
		}
		cancel()
		<-done
	})
}

// A kick runs the checks at once, between ticks.
func TestKickRunsTheChecksAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		runs := 0
		ready := false
		p := NewProber(Config{Region: "r1", Interval: time.Hour, Checks: []Check{{Name: "a", Run: func(context.Context) (string, error) {
			runs++
			if !ready {
				return "", errors.New("not yet")
			}
			return "", nil
		}}}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		synctest.Wait()
		if runs != 1 || p.Report().Status != Unhealthy {
			t.Fatalf("after start: %d runs, %s; want 1, unhealthy", runs, p.Report().Status)
		}
		ready = true
		p.Kick()
		synctest.Wait()
		if runs != 2 || p.Report().Status != Healthy {
			t.Fatalf("after a kick: %d runs, %s; want 2, healthy", runs, p.Report().Status)
		}
		cancel()
		<-done
	})
}

// A quick check's result is there as soon as it has run, while a slow
// check of the same round still runs: a stamp starting up waits for its
// store read probe, not for the slowest check of the round. The round's
// report comes when every check has answered.
func TestAResultIsThereBeforeTheRoundEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := make(chan struct{})
		p := NewProber(Config{Region: "r1", Interval: time.Second, Timeout: 10 * time.Second, Checks: []Check{
			{Name: "quick", Run: okCheck},
			{Name: "slow", Run: func(ctx context.Context) (string, error) {
				select {
				case <-slow:
				case <-ctx.Done():
				}
				return "", nil
			}},
		}})
		done := make(chan struct{})
		go func() { p.RunOnce(t.Context()); close(done) }()
		synctest.Wait()
		if r, ok := p.Result("quick"); !ok || r.Status != Healthy {
			t.Fatalf("quick's result while slow runs = %+v, %v; want healthy", r, ok)
		}
		if r, ok := p.Result("slow"); ok {
			t.Fatalf("slow's result while it runs = %+v; want none", r)
		}
		if rep := p.Report(); rep.Reason != "starting" {
			t.Fatalf("report while the round runs = %s %q; want the starting one", rep.Status, rep.Reason)
		}
		close(slow)
		<-done
		if rep := p.Report(); rep.Status != Healthy {
			t.Fatalf("report after the round = %s %q; want healthy", rep.Status, rep.Reason)
		}
		// Three intervals later the result is too old to count.
		time.Sleep(3*time.Second + time.Millisecond)
		if r, ok := p.Result("quick"); ok {
			t.Fatalf("quick's result after three intervals = %+v; want none", r)
		}
	})
}

// A drained stamp answers 503 with status unhealthy and "drained": true on
// the wire, beside a reason an operator can read; the field, not the
// reason, is what says drained.
func TestDrainTakesEffectAtOnceAndServes503(t *testing.T) {
	p := NewProber(Config{Region: "r1", Checks: []Check{{Name: "a", Run: okCheck}}})
	p.RunOnce(t.Context())
	srv := httptest.NewServer(p.StampHandler())
	defer srv.Close()
	type wire struct {
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Drained *bool  `json:"drained"`
	}
	get := func() (int, wire) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var w wire
		if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
			t.Fatal(err)
		}
		if h := resp.Header.Get("X-Health-Status"); h != w.Status {
			t.Fatalf("X-Health-Status %q, body status %q", h, w.Status)
		}
		return resp.StatusCode, w
	}
	if code, w := get(); code != http.StatusOK || w.Status != "healthy" || w.Drained == nil || *w.Drained {
		t.Fatalf("healthy stamp answered %d %+v, want 200 healthy, drained false", code, w)
	}
	p.SetDrained(true)
	if rep := p.Report(); !rep.Drained || rep.Status != Unhealthy || rep.Reason != "drained by an operator" {
		t.Fatalf("drained report = %s %q drained %v", rep.Status, rep.Reason, rep.Drained)
	}
	if code, w := get(); code != http.StatusServiceUnavailable || w.Status != "unhealthy" || w.Drained == nil || !*w.Drained || w.Reason != "drained by an operator" {
		t.Fatalf("drained stamp answered %d %+v, want 503 unhealthy, drained true", code, w)
	}
	p.SetDrained(false)
	if code, w := get(); code != http.StatusOK || w.Status != "healthy" || *w.Drained || w.Reason != "" {
		t.Fatalf("undrained stamp answered %d %+v, want 200 healthy, drained false", code, w)
	}
}

// Drained wins over every other reason a report can have, and is the only
// thing that sets the field: a failing, stale or starting stamp is
// unhealthy without it.
func TestDrainedOverridesStartingStaleAndFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failing := func(context.Context) (string, error) { return "", errors.New("drained") }
		p := NewProber(Config{Region: "r1", Interval: time.Second, Checks: []Check{{Name: "a", Run: failing}}})
		if rep := p.Report(); rep.Drained || rep.Reason != "starting" {
			t.Fatalf("starting report = %+v, want not drained", rep)
		}
		p.SetDrained(true)
		if rep := p.Report(); !rep.Drained || rep.Status != Unhealthy || rep.Reason != "drained by an operator" {
			t.Fatalf("drained before the first run = %+v", rep)
		}
		p.SetDrained(false)
		p.RunOnce(t.Context())
		if rep := p.Report(); rep.Drained || rep.Status != Unhealthy || rep.Reason != "a unhealthy" || rep.Checks[0].Detail != "drained" {
			t.Fatalf("failing report = %+v, want unhealthy, not drained", rep)
		}
		time.Sleep(4 * time.Second) // synctest: the fake clock moves; no run happens
		if rep := p.Report(); rep.Drained || !strings.HasPrefix(rep.Reason, "stale: ") {
			t.Fatalf("stale report = %+v, want stale, not drained", rep)
		}
		p.SetDrained(true)
		if rep := p.Report(); !rep.Drained || rep.Reason != "drained by an operator" {
			t.Fatalf("stale and drained report = %+v, want drained", rep)
		}
	})
}

func TestDegradedAnswers200(t *testing.T) {
	p := NewProber(Config{Region: "r1", Checks: []Check{{Name: "a", Run: func(context.Context) (string, error) {
		return "", fmt.Errorf("lagging: %w", ErrDegraded)
	}}}})
	p.RunOnce(t.Context())
	rec := httptest.NewRecorder()
	p.StampHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/health/stamp", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("X-Health-Status") != "degraded" || rec.Body.Len() != 0 {
		t.Fatalf("HEAD degraded = %d %q body %d bytes", rec.Code, rec.Header().Get("X-Health-Status"), rec.Body.Len())
	}
}

// A check with a grace period reports a failure as degraded until it has
// failed for the whole grace, then unhealthy; one success resets it.
func TestCheckGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fail atomic.Bool
		fail.Store(true)
		p := NewProber(Config{Region: "r", Interval: time.Second, Checks: []Check{{
			Name: "writes", Grace: 3 * time.Second,
			Run: func(context.Context) (string, error) {
				if fail.Load() {
					return "", errors.New("no leader")
				}
				return "", nil
			},
		}}})
		status := func() Status {
			p.RunOnce(t.Context())
			r, _ := p.Result("writes")
			return r.Status
		}
		for i, want := range []Status{Degraded, Degraded, Degraded, Unhealthy, Unhealthy} {
			if got := status(); got != want {
				t.Fatalf("after %d s failing: %s, want %s", i, got, want)
			}
			time.Sleep(time.Second)
		}
		fail.Store(false)
		if got := status(); got != Healthy {
			t.Fatalf("recovered: %s", got)
		}
		fail.Store(true)
		if got := status(); got != Degraded {
			t.Fatalf("failing again after a success: %s, want degraded (the grace starts over)", got)
		}
	})
}

// A check that tolerates a stall reports it healthy (saying so in its
// detail) until it has lasted Tolerate, then degraded until Grace, then
// unhealthy; one success starts it over.
func TestCheckTolerate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fail atomic.Bool
		fail.Store(true)
		p := NewProber(Config{Region: "r", Interval: time.Second, Checks: []Check{{
			Name: "writes", Tolerate: 2 * time.Second, Grace: 4 * time.Second,
			Run: func(context.Context) (string, error) {
				if fail.Load() {
					return "", errors.New("no leader")
				}
				return "", nil
			},
		}}})
		result := func() CheckResult {
			p.RunOnce(t.Context())
			r, _ := p.Result("writes")
			return r
		}
		for i, want := range []Status{Healthy, Healthy, Degraded, Degraded, Unhealthy} {
			r := result()
			if r.Status != want {
				t.Fatalf("after %d s failing: %s (%s), want %s", i, r.Status, r.Detail, want)
			}
			if want == Healthy && !strings.Contains(r.Detail, "tolerated") {
				t.Fatalf("a tolerated failure's detail hides it: %q", r.Detail)
			}
			time.Sleep(time.Second)
		}
		fail.Store(false)
		if r := result(); r.Status != Healthy || strings.Contains(r.Detail, "tolerated") {
			t.Fatalf("recovered: %s (%s)", r.Status, r.Detail)
		}
		fail.Store(true)
		if r := result(); r.Status != Healthy {
			t.Fatalf("failing again after a success: %s, want healthy (tolerated from the start again)", r.Status)
		}
	})
}

// The grace holds for a check that hangs too: a run still stuck from the
// round before counts as failing, not as unhealthy at once.
func TestCheckGraceCoversAHungRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		p := NewProber(Config{Region: "r", Interval: time.Second, Timeout: 500 * time.Millisecond, Checks: []Check{{
			Name: "writes", Grace: 10 * time.Second,
			Run: func(context.Context) (string, error) {
				<-release // ignores its context
				return "", nil
			},
		}}})
		for i := range 3 {
			p.RunOnce(t.Context())
			r, _ := p.Result("writes")
			if r.Status != Degraded {
				t.Fatalf("round %d of a hung check within its grace: %s (%s), want degraded", i, r.Status, r.Detail)
			}
			time.Sleep(time.Second)
		}
	})
}

// A held stamp with passing (or degraded) checks reports unhealthy with the
// hold's reason and answers 503; a failing check keeps its own reason; a
// drain wins over the hold; once the hold is lifted the checks decide. The
// report names the stamp's release throughout.
func TestHoldKeepsAPassingStampUnhealthy(t *testing.T) {
	var held atomic.Value
	held.Store("warming up")
	fail := atomic.Bool{}
	check := func(context.Context) (string, error) {
		if fail.Load() {
			return "", errors.New("down")
		}
		return "", fmt.Errorf("slow: %w", ErrDegraded)
	}
	p := NewProber(Config{Region: "r1", Release: "v2", Checks: []Check{{Name: "a", Run: check}},
		Hold: func() string { return held.Load().(string) }})
	if rep := p.Report(); rep.Reason != "starting" || rep.Release != "v2" {
		t.Fatalf("starting report = %+v, want reason starting, release v2", rep)
	}
	p.RunOnce(t.Context())
	rec := httptest.NewRecorder()
	p.StampHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health/stamp", nil))
	var rep Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || rep.Status != Unhealthy || rep.Reason != "warming up" || rep.Release != "v2" {
		t.Fatalf("held stamp answered %d %+v, want 503 unhealthy, reason warming up, release v2", rec.Code, rep)
	}
	fail.Store(true)
	p.RunOnce(t.Context())
	if rep := p.Report(); rep.Status != Unhealthy || rep.Reason != "a unhealthy" {
		t.Fatalf("held and failing report = %s %q, want the failing check's reason", rep.Status, rep.Reason)
	}
	p.SetDrained(true)
	if rep := p.Report(); !rep.Drained || rep.Reason != "drained by an operator" {
		t.Fatalf("held and drained report = %+v, want drained", rep)
	}
	p.SetDrained(false)
	fail.Store(false)
	held.Store("")
	p.RunOnce(t.Context())
	if rep := p.Report(); rep.Status != Degraded || rep.Reason != "a degraded" {
		t.Fatalf("released report = %s %q, want the checks' verdict (degraded)", rep.Status, rep.Reason)
	}
}

// Config.Load is called once per run, after the checks, and its result is
// the report's load, served under "load" with the field names the
// autoscaler reads; before the first run and without Config.Load the
// report has none, and "load" is left out of its JSON.
func TestLoadIsReadOncePerRunIntoTheReport(t *testing.T) {
	calls := 0
	p := NewProber(Config{Region: "r1", Checks: []Check{{Name: "a", Run: okCheck}}, Load: func() *Load {
		calls++
		return &Load{Bulkhead: Bulkhead{InFlight: 1.5, Peak: 3, Capacity: 4, Utilisation: 0.375, Waiting: 1, Shed: 2,
			Requests: int64(10 * calls), P99Ms: 12.5}, CPU: 0.25, WindowMs: 1000}
	}})
	if rep := p.Report(); rep.Load != nil || calls != 0 {
		t.Fatalf("starting report has load %+v after %d calls, want none and none", rep.Load, calls)
	}
	p.RunOnce(t.Context())
	p.RunOnce(t.Context())
	if calls != 2 {
		t.Fatalf("Load called %d times in two runs, want 2", calls)
	}
	if l := p.Report().Load; l == nil || l.Requests != 20 {
		t.Fatalf("report load = %+v, want the second run's (20 requests)", l)
	}
	rec := httptest.NewRecorder()
	p.StampHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health/stamp", nil))
	var raw struct {
		Load map[string]float64 `json:"load"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"inFlight": 1.5, "peak": 3, "capacity": 4, "utilisation": 0.375, "waiting": 1, "shed": 2,
		"requests": 20, "p99Ms": 12.5, "cpu": 0.25, "windowMs": 1000}
	if len(raw.Load) != len(want) {
		t.Errorf("load fields = %v, want %v", raw.Load, want)
	}
	for k, v := range want {
		if got, ok := raw.Load[k]; !ok || got != v {
			t.Errorf("load[%q] = %v (present: %v), want %v", k, got, ok, v)
		}
	}

	none := NewProber(Config{Region: "r1", Checks: []Check{{Name: "a", Run: okCheck}}})
	none.RunOnce(t.Context())
	rec = httptest.NewRecorder()
	none.StampHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health/stamp", nil))
	if strings.Contains(rec.Body.String(), `"load"`) {
		t.Errorf("a report without a load names one: %s", rec.Body.String())
	}
}

// A round that starts the moment the last one ended finds its checks
// returned, not hung: many probers each run rounds back to back (so the
// scheduler is busy), and every round of a check that returns at once is
// healthy. Mutation tried: the check's goroutine clearing its running
// mark after handing over its outcome (a deferred clear) turns this red
// within a few hundred rounds.
func TestARoundRightAfterAnotherFindsItsChecksReturned(t *testing.T) {
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			p := NewProber(Config{Region: "r1", Checks: []Check{{Name: "a", Run: okCheck}}})
			for i := range 2000 {
				p.RunOnce(t.Context())
				if r := p.Report(); r.Status != Healthy {
					t.Errorf("round %d right after another: %s %q", i, r.Status, r.Reason)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A check with Every runs at most that often: the rounds between report
// its last result, with the time it was really taken, and the first round
// after Every runs it again. The other checks run every round.
func TestCheckEveryRunsAtMostThatOften(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var writes, reads atomic.Int32
		var fail atomic.Bool
		p := NewProber(Config{Region: "r", Interval: 200 * time.Millisecond, Checks: []Check{
			{Name: "write", Every: time.Second, Run: func(context.Context) (string, error) {
				writes.Add(1)
				if fail.Load() {
					return "", errors.New("no leader")
				}
				return "", nil
			}},
			{Name: "read", Run: func(context.Context) (string, error) { reads.Add(1); return "", nil }},
		}})
		first := time.Now()
		for range 5 { // 0, 200, 400, 600 and 800 ms
			p.RunOnce(t.Context())
			time.Sleep(200 * time.Millisecond)
		}
		if w, r := writes.Load(), reads.Load(); w != 1 || r != 5 {
			t.Fatalf("in five rounds within a second: %d writes and %d reads, want 1 and 5", w, r)
		}
		if r, _ := p.Result("write"); !r.CheckedAt.Equal(first) || r.Status != Healthy {
			t.Fatalf("a round between runs reported %+v, want the result taken at %s", r, first)
		}
		fail.Store(true)
		p.RunOnce(t.Context()) // 1 s after the first run
		if r, _ := p.Result("write"); writes.Load() != 2 || r.Status != Unhealthy {
			t.Fatalf("a second after its run: %d writes, status %s; want it run again and failing", writes.Load(), r.Status)
		}
		if rep := p.Report(); rep.Status != Unhealthy {
			t.Fatalf("the report says %s with the write check failing", rep.Status)
		}
	})
}

// A round waits up to the check timeout for a slow check, and with a probe
// interval shorter than the timeout (200 ms against 500 ms) every round
// may: a report that old is not stale. A slow dependency whose check only
// degrades (the partner, answering in 5 s) must not take the stamp out of
// rotation. (With staleness at three intervals, 600 ms, a machine that ran
// a round 100 ms late reported the stamp unhealthy.) Three timeouts on, it is.
func TestASlowCheckAtAShortIntervalDoesNotMakeTheReportStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := func(ctx context.Context) (string, error) {
			<-ctx.Done()
			return "", fmt.Errorf("%w: %w", ctx.Err(), ErrDegraded)
		}
		p := NewProber(Config{Region: "r", Interval: 200 * time.Millisecond, Timeout: 500 * time.Millisecond,
			Checks: []Check{{Name: "partner", Impact: Degraded, Run: slow}}})
		p.RunOnce(t.Context())             // takes the whole timeout
		time.Sleep(700 * time.Millisecond) // the next round, late
		if rep := p.Report(); rep.Status != Degraded {
			t.Fatalf("a report 700 ms old with 500 ms check timeouts = %s %q, want degraded", rep.Status, rep.Reason)
		}
		time.Sleep(800*time.Millisecond + time.Millisecond) // past three timeouts
		if rep := p.Report(); rep.Status != Unhealthy || !strings.HasPrefix(rep.Reason, "stale") {
			t.Fatalf("a report just over 1.5 s old = %s %q, want unhealthy stale", rep.Status, rep.Reason)
		}
	})
}
