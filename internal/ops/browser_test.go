package ops

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/ops/opstest"
	"github.com/contoso/shoes/internal/shop"
)

// envScreenshotDir, when set, is a folder the browser tests also save
// their screenshots to.
const envScreenshotDir = "CONTOSO_SCREENSHOT_DIR"

// Computed colours of the states, as the style sheet defines them.
const (
	green = "rgb(22, 163, 74)"
	amber = "rgb(217, 119, 6)"
	red   = "rgb(220, 38, 38)"
	grey  = "rgb(107, 114, 128)"
)

// openDashboard starts a server and a browser and loads the dashboard,
// waiting for the first snapshot to be rendered.
func openDashboard(t *testing.T, live *liveSnapshot) context.Context {
	t.Helper()
	ts := newTestServer(t, live, 100*time.Millisecond)
	ctx := opstest.Browser(t) // after the server: its cleanup closes the browser first
	// Without the slash: the browser follows the redirect.
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/ops/dashboard")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	waitFor(t, ctx, `document.querySelectorAll("[data-region]").length > 0 && document.getElementById("conn").dataset.conn === "live"`, 10*time.Second)
	return ctx
}

func waitFor(t *testing.T, ctx context.Context, expr string, timeout time.Duration) {
	t.Helper()
	if err := opstest.WaitFor(ctx, expr, timeout); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").outerHTML`))
		t.Fatalf("%v\npage:\n%.4000s", err, html)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func assertNoConsoleErrors(t *testing.T, ctx context.Context) {
	t.Helper()
	if errs := opstest.ConsoleErrors(ctx); len(errs) > 0 {
		t.Errorf("the page reported %d errors:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

// saveScreenshot saves a full-page screenshot to the test's temporary
// folder, and to CONTOSO_SCREENSHOT_DIR when that is set.
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := opstest.Screenshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	height := eval[float64](t, ctx, `document.documentElement.scrollHeight`)
	if cfg.Width < 1000 || float64(cfg.Height) < height-1 {
		t.Errorf("screenshot is %dx%d, want the whole page (%v px high)", cfg.Width, cfg.Height, height)
	}
	if dir := os.Getenv(envScreenshotDir); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Errorf("save screenshot to %s: %v", envScreenshotDir, err)
		}
	}
}

func TestBrowserShowsSnapshot(t *testing.T) {
	want := fixture()
	ctx := openDashboard(t, newLiveSnapshot())

	type card struct {
		Region, State, Heading string
		Stamps                 []string
	}
	cards := eval[[]card](t, ctx, `[...document.querySelectorAll("[data-region]")].map(e => ({
		Region: e.dataset.region, State: e.dataset.state, Heading: e.querySelector("h3").textContent,
		Stamps: [...e.querySelectorAll("[data-stamp]")].map(s => s.dataset.stamp)}))`)
	var wantCards []card
	for _, r := range want.Regions {
		c := card{Region: r.Name, State: r.State.String(), Heading: r.Name}
		for _, s := range r.Stamps {
			c.Stamps = append(c.Stamps, s.ID)
		}
		wantCards = append(wantCards, c)
	}
	if !reflect.DeepEqual(cards, wantCards) {
		t.Errorf("region cards\n got %+v\nwant %+v", cards, wantCards)
	}

	for _, tc := range []struct {
		stamp  string
		state  health.Status
		colour string
	}{
		{"we-1", health.Healthy, green},
		{"ne-2", health.Degraded, amber},
		{"eus-1", health.Drained, red},
	} {
		type stamp struct{ State, Colour, Class string }
		got := eval[stamp](t, ctx, fmt.Sprintf(`(e => ({State: e.dataset.state, Colour: getComputedStyle(e).backgroundColor, Class: e.className}))(document.querySelector('[data-stamp=%q]'))`, tc.stamp))
		if got.State != tc.state.String() || got.Colour != tc.colour || !strings.Contains(got.Class, "state-"+tc.state.String()) {
			t.Errorf("stamp %s: %+v, want state %s in %s", tc.stamp, got, tc.state, tc.colour)
		}
	}

	pops := eval[[]string](t, ctx, `[...document.querySelectorAll("[data-pop]")].map(e => e.textContent)`)
	if len(pops) != 3 || !strings.Contains(pops[1], "POP northeurope → northeurope, westeurope") || !strings.Contains(pops[2], "fail-open") {
		t.Errorf("POP lines %q", pops)
	}

	system := eval[[]string](t, ctx, `[document.getElementById("system").dataset.state, document.getElementById("system-reason").textContent]`)
	if system[0] != want.Health.State.String() || system[1] != want.Health.Reason {
		t.Errorf("header shows %q, want %s: %s", system, want.Health.State, want.Health.Reason)
	}

	nodes := eval[map[string]string](t, ctx, `Object.fromEntries([...document.querySelectorAll("[data-entity]")].map(e => [e.dataset.entity, e.dataset.state]))`)
	if wantNodes := healthIDs(want.Health); !reflect.DeepEqual(nodes, wantNodes) {
		t.Errorf("health nodes\n got %v\nwant %v", nodes, wantNodes)
	}
	// A degraded component is open with its signals; a healthy one under a
	// flow is closed until the operator opens it.
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-entity="component:orders"] > details[open] [data-signal]').length`); n != 2 {
		t.Errorf("degraded component shows %d signals, want 2", n)
	}
	if eval[bool](t, ctx, `document.querySelector('[data-entity="component:catalog"] > details').open`) {
		t.Error("healthy component is open")
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-entity="component:catalog"] > details > summary`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, `document.querySelector('[data-entity="component:catalog"] [data-signal="p99 ms"]').checkVisibility()`, 5*time.Second)

	if c := eval[string](t, ctx, `getComputedStyle(document.querySelector('[data-entity="dependency:payments"] .light')).backgroundColor`); c != grey {
		t.Errorf("unknown dependency's light is %s, want %s", c, grey)
	}

	slo := eval[[]string](t, ctx, `[...document.querySelectorAll("tr.firing")].map(e => e.dataset.slo + ": " + e.querySelector(".alert").textContent)`)
	if !reflect.DeepEqual(slo, []string{"checkout-availability: checkout-availability fast burn"}) {
		t.Errorf("firing SLOs %q", slo)
	}
	if bad := eval[string](t, ctx, `getComputedStyle(document.querySelector('[data-slo="checkout-availability"] [data-window="5m"]')).backgroundColor`); bad != red {
		t.Errorf("burning window is %s, want %s", bad, red)
	}

	// Data is text, never markup.
	msg := eval[string](t, ctx, `document.querySelector("#errors tbody tr .message").textContent`)
	if msg != hostileMessage {
		t.Errorf("error message shown as %q, want %q", msg, hostileMessage)
	}
	if eval[bool](t, ctx, `document.querySelector("#errors img, #errors b") !== null || window.pwned !== undefined`) {
		t.Error("an error message was inserted as markup")
	}

	assertNoConsoleErrors(t, ctx)
	saveScreenshot(t, ctx, "dashboard.png")
}

func TestBrowserDrainedStampTurnsRed(t *testing.T) {
	live := newLiveSnapshot()
	ctx := openDashboard(t, live)
	const stamp = `document.querySelector('[data-stamp="we-2"]')`
	if c := eval[string](t, ctx, `getComputedStyle(`+stamp+`).backgroundColor`); c != green {
		t.Fatalf("healthy stamp is %s, want %s", c, green)
	}
	// A reload would lose this mark: the change must come over the stream.
	eval[chromedp.Void](t, ctx, `window.sameDocument = true`)

	live.update(t, func(s *Snapshot) {
		s.Regions[0].Stamps[1].State = health.Drained
		s.Regions[0].Stamps[1].Reason = "drained by an operator"
	})
	waitFor(t, ctx, `(e => e && e.dataset.state === "drained" && e.classList.contains("state-drained") && getComputedStyle(e).backgroundColor === "`+red+`")(`+stamp+`)`, 5*time.Second)

	if !eval[bool](t, ctx, `window.sameDocument === true`) {
		t.Error("the page reloaded instead of updating live")
	}
	if c := eval[string](t, ctx, `getComputedStyle(document.querySelector('[data-stamp="we-1"]')).backgroundColor`); c != green {
		t.Errorf("the other stamp turned %s", c)
	}
	assertNoConsoleErrors(t, ctx)
	saveScreenshot(t, ctx, "dashboard-drained.png")
}

func TestBrowserTraceWaterfall(t *testing.T) {
	ctx := openDashboard(t, newLiveSnapshot())
	if n := eval[int](t, ctx, `document.querySelectorAll("#errors tbody tr:not([data-trace]) a").length`); n != 0 {
		t.Errorf("%d links in rows without a trace", n)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#errors tr[data-trace="`+traceID+`"] td.time`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, `document.querySelectorAll("#waterfall [data-span-id]").length === 4`, 5*time.Second)

	type row struct {
		ID, Label, Colour string
		Left, Width       float64 // of the bar, as a share of the track
	}
	rows := eval[[]row](t, ctx, `[...document.querySelectorAll("#waterfall [data-span-id]")].map(e => {
		const bar = e.querySelector(".span-bar").getBoundingClientRect();
		const track = e.querySelector(".span-track").getBoundingClientRect();
		return {ID: e.dataset.spanId, Label: e.querySelector(".span-label").textContent,
			Colour: getComputedStyle(e.querySelector(".span-bar")).backgroundColor,
			Left: (bar.left - track.left) / track.width, Width: bar.width / track.width};
	})`)
	want := []struct {
		id, name, region string
		left, width      float64
		isError          bool
	}{ // parents before children, siblings by start
		{"s1", "POST /api/orders", "westeurope", 0, 1, true},
		{"s2", "proxy to northeurope", "westeurope", 0.05, 0.9, false},
		{"s3", "reserve inventory", "northeurope", 0.1, 0.2, false},
		{"s4", "charge payment", "northeurope", 0.5, 0.4, true},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		r := rows[i]
		if r.ID != w.id || !strings.Contains(r.Label, w.name) || !strings.Contains(r.Label, w.region) {
			t.Errorf("row %d: %+v, want span %s labelled %q in %s", i, r, w.id, w.name, w.region)
		}
		if math.Abs(r.Left-w.left) > 0.01 || math.Abs(r.Width-w.width) > 0.01 {
			t.Errorf("span %s: bar at %.3f wide %.3f, want %.3f wide %.3f", w.id, r.Left, r.Width, w.left, w.width)
		}
		if (r.Colour == red) != w.isError {
			t.Errorf("span %s: colour %s, error %v", w.id, r.Colour, w.isError)
		}
	}
	if h := eval[string](t, ctx, `location.hash`); h != "#trace/"+traceID {
		t.Errorf("location.hash %q", h)
	}
	saveScreenshot(t, ctx, "dashboard-trace.png")

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("trace-close"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, `document.getElementById("trace-panel").hidden && location.hash === ""`, 5*time.Second)
	assertNoConsoleErrors(t, ctx)
}

// TestBrowserSnapshotError: an "error" event shows the problem and keeps
// the stream (and the last snapshot) up; the next snapshot clears it.
func TestBrowserSnapshotError(t *testing.T) {
	live := newLiveSnapshot()
	ctx := openDashboard(t, live)

	live.fail(shop.Unavailable("health model not evaluated yet", nil))
	waitFor(t, ctx, `!document.getElementById("problem").hidden`, 5*time.Second)
	type header struct{ Problem, Conn string }
	got := eval[header](t, ctx, `({Problem: document.getElementById("problem").textContent, Conn: document.getElementById("conn").dataset.conn})`)
	if got.Problem != "snapshot failed: health model not evaluated yet" || got.Conn != "live" {
		t.Errorf("header during the failure: %+v", got)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("[data-region]").length`); n != 3 {
		t.Errorf("%d region cards during the failure, want the last 3 kept", n)
	}

	live.fail(nil)
	waitFor(t, ctx, `document.getElementById("problem").hidden`, 5*time.Second)
	assertNoConsoleErrors(t, ctx)
}

// TestBrowserShowsRelease: the Release panel shows the fixture's release
// at 50 %: its version and phase, each region's old and new share as a
// bar, every step of the plan with its verdict and gate readings, and each
// stamp its release; pausing it stands out, live, and its end shows.
func TestBrowserShowsRelease(t *testing.T) {
	live := newLiveSnapshot()
	ctx := openDashboard(t, live)
	waitFor(t, ctx, `document.querySelectorAll("#release [data-split]").length === 3`, 5*time.Second)

	type head struct{ Version, Phase, Paused string }
	got := eval[head](t, ctx, `({Version: document.querySelector("#release .release-version").textContent,
		Phase: document.querySelector("#release .phase").dataset.phase,
		Paused: document.querySelector("#release .release-summary").dataset.paused})`)
	if got != (head{"v2", "shifting", "false"}) {
		t.Errorf("release head %+v", got)
	}
	if eval[bool](t, ctx, `document.querySelector("#release .paused") !== null`) {
		t.Error("a release under way shows as paused")
	}

	type split struct {
		Region, Old, New, Label string
		NewShare, OldShare      float64 // of the bar's track
	}
	splits := eval[[]split](t, ctx, `[...document.querySelectorAll("#release [data-split]")].map(e => {
		const track = e.querySelector(".split-track").getBoundingClientRect();
		const share = (sel) => e.querySelector(sel).getBoundingClientRect().width / track.width;
		return {Region: e.dataset.split, Old: e.dataset.old, New: e.dataset.new, Label: e.querySelector(".split-label").textContent,
			NewShare: share(".split-new"), OldShare: share(".split-old")};
	})`)
	want := []split{
		{"westeurope", "50", "50", "v1 50% · v2 50%", 0.5, 0.5},
		{"northeurope", "50", "50", "v1 50% · v2 50%", 0.5, 0.5},
		{"eastus", "100", "0", "v1 100% · v2 0%", 0, 1},
	}
	if len(splits) != len(want) {
		t.Fatalf("splits %+v", splits)
	}
	for i, w := range want {
		s := splits[i]
		if s.Region != w.Region || s.Old != w.Old || s.New != w.New || s.Label != w.Label ||
			math.Abs(s.NewShare-w.NewShare) > 0.01 || math.Abs(s.OldShare-w.OldShare) > 0.01 {
			t.Errorf("split %d: %+v, want %+v", i, s, w)
		}
	}

	type step struct {
		Verdict, Region, Share string
		Current                bool
		NewFlows, OldFlows     []string
	}
	steps := eval[[]step](t, ctx, `[...document.querySelectorAll("#release [data-step]")].map(e => ({
		Verdict: e.dataset.verdict, Region: e.children[1].textContent, Share: e.children[2].textContent,
		Current: e.getAttribute("aria-current") === "step",
		NewFlows: [...e.children[4].querySelectorAll("[data-flow]")].map(f => f.textContent),
		OldFlows: [...e.children[5].querySelectorAll("[data-flow]")].map(f => f.textContent)}))`)
	wantVerdicts := []string{"passed", "holding", "pending", "pending", "pending", "pending"}
	if len(steps) != len(wantVerdicts) {
		t.Fatalf("%d steps shown, want %d: %+v", len(steps), len(wantVerdicts), steps)
	}
	for i, w := range wantVerdicts {
		s := steps[i]
		if s.Verdict != w || s.Current != (i == 1) {
			t.Errorf("step %d: %+v, want verdict %s, current %v", i, s, w, i == 1)
		}
	}
	if s := steps[0]; s.Region != "westeurope" || s.Share != "50%" ||
		!reflect.DeepEqual(s.NewFlows, []string{"browse412 req0%p99 31 ms", "checkout40 req2.5%p99 88 ms"}) ||
		!reflect.DeepEqual(s.OldFlows, []string{"browse398 req0%p99 29 ms", "checkout38 req2.6%p99 90 ms"}) {
		t.Errorf("first step's gate readings: %+v", s)
	}
	if len(steps[2].NewFlows) != 0 {
		t.Errorf("a pending step shows readings: %+v", steps[2])
	}
	// Data is text, never markup.
	if r := eval[string](t, ctx, `document.querySelector('#release [data-step="1"] .step-reason').textContent`); r != hostileReason {
		t.Errorf("step reason shown as %q, want %q", r, hostileReason)
	}
	if eval[bool](t, ctx, `document.querySelector("#release b") !== null`) {
		t.Error("a reason was inserted as markup")
	}

	releases := eval[map[string]string](t, ctx, `Object.fromEntries([...document.querySelectorAll("[data-stamp]")].map(e => [e.dataset.stamp, e.querySelector(".stamp-release").textContent]))`)
	if w := map[string]string{"we-1": "v1", "we-2": "v2", "ne-1": "v1", "ne-2": "v2", "eus-1": "v1"}; !reflect.DeepEqual(releases, w) {
		t.Errorf("stamp releases %v, want %v", releases, w)
	}
	saveScreenshot(t, ctx, "dashboard-release.png")

	// Paused: the badge and the summary's edge turn amber, over the stream.
	live.update(t, func(s *Snapshot) {
		s.Release.Paused, s.Release.Reason = true, "paused by ops@contoso"
	})
	waitFor(t, ctx, `(e => e && getComputedStyle(e).backgroundColor === "`+amber+`")(document.querySelector("#release .paused"))`, 5*time.Second)
	type paused struct{ Edge, Reason string }
	p := eval[paused](t, ctx, `({Edge: getComputedStyle(document.querySelector("#release .release-summary")).borderLeftColor,
		Reason: document.querySelector("#release .release-reason").textContent})`)
	if p != (paused{amber, "paused by ops@contoso"}) {
		t.Errorf("paused release: %+v", p)
	}

	// Done: the POPs cleared the table; every step passed.
	live.update(t, func(s *Snapshot) {
		r := s.Release
		r.Paused, r.Reason, r.Phase, r.Stage, r.EndedAt = false, "", "done", len(r.Plan)-1, fixtureTime
		r.Steps = r.Steps[:0]
		for _, st := range r.Plan {
			r.Steps = append(r.Steps, ReleaseStep{Region: st.Region, Percent: st.Percent, StartedAt: fixtureTime, EndedAt: fixtureTime, Verdict: "passed"})
		}
		for i := range r.Split {
			r.Split[i].Percents = map[string]int{}
		}
	})
	waitFor(t, ctx, `document.querySelector("#release .phase").dataset.phase === "done"`, 5*time.Second)
	if n := eval[int](t, ctx, `document.querySelectorAll('#release [data-verdict="passed"]').length`); n != 6 {
		t.Errorf("%d passed steps shown, want 6", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#release .split-none').length`); n != 3 {
		t.Errorf("%d regions say they have no split table, want 3", n)
	}
	if eval[bool](t, ctx, `document.querySelector("#release .paused, #release [aria-current]") !== null`) {
		t.Error("a finished release still shows as paused or with a step under way")
	}
	assertNoConsoleErrors(t, ctx)
}

// TestBrowserWithoutRelease: before any release the panel says so, and a
// release that could not be read says that instead.
func TestBrowserWithoutRelease(t *testing.T) {
	live := newLiveSnapshot()
	live.update(t, func(s *Snapshot) { s.Release = nil })
	ctx := openDashboard(t, live)
	waitFor(t, ctx, `document.querySelector("#release .empty")?.textContent === "No release has run."`, 5*time.Second)
	live.update(t, func(s *Snapshot) { s.ReleaseProblem = "the release could not be read" })
	waitFor(t, ctx, `document.querySelector("#release .release-problem")?.textContent === "the release could not be read"`, 5*time.Second)
	assertNoConsoleErrors(t, ctx)
}

// TestBrowserShowsScaling: the Autoscaling panel shows the fixture's
// scaler: a row per region with its count, what it wants, its bounds, its
// pre-scale, its utilisation, what it shed and its orders not yet
// processed; the events newest first,
// a scale-out with its change and the inputs behind it, a serving event
// with its time to traffic. A new event arrives over the stream; without
// a scaler the panel is hidden.
func TestBrowserShowsScaling(t *testing.T) {
	live := newLiveSnapshot()
	ctx := openDashboard(t, live)
	waitFor(t, ctx, `!document.getElementById("scaling-panel").hidden && document.querySelectorAll("#scaling [data-scaling-region]").length === 3`, 5*time.Second)

	type row struct {
		Region, Header, Instances, Want, Bounds, PreScale, Utilisation, Shed, Orders, Reason string
		Over                                                                                 bool
	}
	rows := eval[[]row](t, ctx, `[...document.querySelectorAll("#scaling [data-scaling-region]")].map(e => {
		const cell = (c) => e.querySelector('[data-cell="' + c + '"]').textContent;
		return {Region: e.dataset.scalingRegion, Header: e.querySelector('th[scope="row"]').textContent,
			Instances: cell("instances"), Want: cell("want"), Bounds: cell("bounds"), PreScale: cell("pre-scale"),
			Utilisation: cell("utilisation"), Shed: cell("shed"), Orders: cell("orders"), Reason: cell("reason"),
			Over: e.querySelector('[data-cell="utilisation"]').classList.contains("over")};
	})`)
	want := []row{
		{"eastus", "eastus", "1", "1", "1–4", "at least 3 until 11:00:00 UTC (ended)", "0%", "0", "0 queued, 0 in process", "", false},
		{"northeurope", "northeurope", "4", "4", "2–8", "at least 4 until 14:00:00 UTC", "35%", "0", "0 queued, 0 in process", "pre-scale: at least 4", false},
		{"westeurope", "westeurope", "2", "3 ▲ (scaling out)", "2–6", "–", "82%", "12", "40 queued (oldest 1.2 s), 5 in process", hostileScaleReason, true},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("scaling rows\n got %+v\nwant %+v", rows, want)
	}
	if got := eval[[]string](t, ctx, `[...document.querySelectorAll("#scaling .scaling-regions thead th")].map(e => e.getAttribute("scope") + ":" + e.textContent)`); !reflect.DeepEqual(got, []string{
		"col:region", "col:instances", "col:want", "col:min–max", "col:pre-scale until", "col:utilisation", "col:shed", "col:orders", "col:reason"}) {
		t.Errorf("region table headers %q", got)
	}
	if l := eval[string](t, ctx, `document.querySelector('#scaling [data-scaling-region="westeurope"] .meter').getAttribute("aria-label")`); l != "utilisation 82% of capacity, target 60%" {
		t.Errorf("utilisation meter's text alternative %q", l)
	}
	if c := eval[string](t, ctx, `getComputedStyle(document.querySelector('#scaling [data-scaling-region="westeurope"] .meter .fill')).backgroundColor`); c != amber {
		t.Errorf("utilisation above the target is %s, want %s", c, amber)
	}

	type event struct {
		Action, Region, Time, Change, Reason, Inputs, ToTraffic, From, To, ToTrafficMs string
	}
	const events = `[...document.querySelectorAll("#scaling [data-scaling-event]")].map(e => ({
		Action: e.dataset.action, Region: e.children[1].textContent, Time: e.children[0].textContent,
		Change: e.children[3].textContent, Reason: e.children[4].textContent, Inputs: e.children[5].textContent,
		ToTraffic: e.children[6].textContent, From: e.dataset.from || "", To: e.dataset.to || "", ToTrafficMs: e.dataset.toTrafficMs || ""}))`
	got := eval[[]event](t, ctx, events)
	wantEvents := []event{
		{"serving", "westeurope", "11:59:55.400", "we-3", "", "", "3.4 s", "", "", "3400"},
		{"started", "westeurope", "11:59:55.000", "we-3", "", "", "", "", "", ""},
		{"scale-out", "westeurope", "11:59:54.000", "2 → 3", hostileScaleReason,
			"2 instances, 2 reporting · 16.4 of 20 in flight · shed 12 · waiting 3 · p99 180 ms · orders 40 queued (oldest 1.2 s), 5 in process · bounds 2–6", "", "2", "3", ""},
		{"settings", "all", "11:59:00.000", "", `{"regions":{"northeurope":{"preScale":{"min":4}}}}`, "", "", "", "", ""},
	}
	if !reflect.DeepEqual(got, wantEvents) {
		t.Errorf("scaling events\n got %+v\nwant %+v", got, wantEvents)
	}
	// Data is text, never markup.
	if eval[bool](t, ctx, `document.querySelector("#scaling i") !== null`) {
		t.Error("a scaling reason was inserted as markup")
	}
	saveScreenshot(t, ctx, "dashboard-scaling.png")

	// Held, with a new scale-in on top: over the stream, not a reload.
	eval[chromedp.Void](t, ctx, `window.sameDocument = true`)
	live.update(t, func(s *Snapshot) {
		sc := s.Scaling
		sc.Held = "release 20260501T115900Z-v2 under way"
		in := ScalingInputs{Instances: 4, Reporting: 4, InFlight: 4, Capacity: 40, Min: 2, Max: 8}
		sc.Events = append([]ScalingEvent{{At: fixtureTime, Region: "northeurope", Action: "scale-in", From: 4, To: 3, Reason: "utilisation 10% below the target for 1m", Inputs: &in, Instance: "ne-4"}}, sc.Events...)
	})
	waitFor(t, ctx, `document.querySelector('#scaling [data-scaling-event="0"]').dataset.action === "scale-in"`, 5*time.Second)
	first := eval[event](t, ctx, `(`+events+`)[0]`)
	if first.From != "4" || first.To != "3" || first.Change != "4 → 3" || first.Region != "northeurope" {
		t.Errorf("new scale-in event %+v", first)
	}
	type held struct{ Held, Reason, Badge string }
	if h := eval[held](t, ctx, `({Held: document.querySelector("#scaling .scaling-summary").dataset.held,
		Reason: document.querySelector("#scaling .held-reason").textContent,
		Badge: getComputedStyle(document.querySelector("#scaling .held")).backgroundColor})`); h != (held{"true", "release 20260501T115900Z-v2 under way", amber}) {
		t.Errorf("held scaler: %+v", h)
	}
	if !eval[bool](t, ctx, `window.sameDocument === true`) {
		t.Error("the page reloaded instead of updating live")
	}

	live.update(t, func(s *Snapshot) { s.Scaling = nil })
	waitFor(t, ctx, `document.getElementById("scaling-panel").hidden`, 5*time.Second)
	if n := eval[int](t, ctx, `document.querySelectorAll("#scaling *").length`); n != 0 {
		t.Errorf("a hidden scaling panel keeps %d elements", n)
	}
	assertNoConsoleErrors(t, ctx)
}
