package deploy_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/ops"
	"github.com/contoso/shoes/internal/ops/opstest"
	"github.com/contoso/shoes/internal/shop"
)

// The operations dashboard of a real deployment, in headless Chromium:
// it loads without console errors and shows every region; a drained stamp
// turns red on screen within seconds, without a reload.
func TestDashboardShowsADrainedStampInRed(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{NoTLS: true}, regions3...)
	ctx := opstest.Browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.OpsURL()+"/ops/dashboard/")); err != nil {
		t.Fatal(err)
	}
	if err := opstest.WaitFor(ctx, `document.querySelectorAll('[data-region]').length === 3 && document.querySelectorAll('[data-stamp]').length === 3`, 15*time.Second); err != nil {
		t.Fatalf("the dashboard does not show three regions with their stamps: %v", err)
	}
	for _, r := range regions3 {
		if err := opstest.WaitFor(ctx, fmt.Sprintf(`!!document.querySelector('[data-region=%q]')`, r), time.Second); err != nil {
			t.Fatalf("region %s missing: %v", r, err)
		}
	}
	st, _ := d.Stamp("northeurope")
	sel := fmt.Sprintf(`document.querySelector('[data-stamp=%q]')`, st.ID())
	admin := deploytest.Token(t, d, "ops", true)
	if res := deploytest.Do(t, http.MethodPost, d.Regions()["northeurope"]+"/ops/drain", admin, nil); res.Status != http.StatusOK {
		t.Fatalf("drain = %d", res.Status)
	}
	drained := time.Now()
	if err := opstest.WaitFor(ctx, `(e => e && e.dataset.state === "drained" && getComputedStyle(e).backgroundColor === "rgb(220, 38, 38)")(`+sel+`)`, 5*time.Second); err != nil {
		t.Fatalf("the drained stamp did not turn red within 5 s: %v", err)
	}
	t.Logf("drained stamp red on screen after %s", time.Since(drained).Round(10*time.Millisecond))
	// The health model follows (trip after two evaluations): the region
	// card turns red too.
	if err := opstest.WaitFor(ctx, `document.querySelector('[data-region="northeurope"]').dataset.state === "unhealthy"`, 10*time.Second); err != nil {
		t.Fatalf("the region card did not turn unhealthy: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if dir := os.Getenv("CONTOSO_SCREENSHOT_DIR"); dir != "" {
		shot = filepath.Join(dir, "dashboard-deployment.png")
	}
	if err := opstest.Screenshot(ctx, shot); err != nil {
		t.Fatal(err)
	}
	if errs := opstest.ConsoleErrors(ctx); len(errs) > 0 {
		t.Fatalf("console errors: %v", errs)
	}
}

// The dashboard's snapshot of a real deployment shows a release: none
// before the first; while it runs its phase, each region's split as the
// POPs apply it (the new release at 100 % where its step is under way or
// passed, 0 % where it has not begun) and the stamps announcing it; at the
// end, done, with every step passed on the gate's readings.
func TestDashboardShowsAReleaseAndItsSplit(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{NoTLS: true}, regions3...)
	old := d.Release()
	snapshot := func() ops.Snapshot {
		t.Helper()
		res := deploytest.Do(t, http.MethodGet, d.OpsURL()+"/ops/dashboard/snapshot", "", nil)
		if res.Status != http.StatusOK {
			t.Fatalf("GET /ops/dashboard/snapshot = %d %s", res.Status, res.Body)
		}
		var s ops.Snapshot
		res.JSON(t, &s)
		return s
	}
	deploytest.Eventually(t, 15*time.Second, func() error {
		s := snapshot()
		if s.Release != nil {
			return fmt.Errorf("a release before any was run: %+v", s.Release)
		}
		if n := len(stampReleases(s)[old]); n != len(regions3) {
			return fmt.Errorf("stamps by release %v, want %d on %s", stampReleases(s), len(regions3), old)
		}
		return nil
	})

	// Reads from every region, enough for the gate (5 requests a step)
	// and light on a busy machine.
	load := startReads(t, d, 50*time.Millisecond)
	res := deploytest.Do(t, http.MethodPost, d.OpsURL()+"/ops/releases", "",
		`{"version":"v-dash","steps":[100],"gate":{"minHold":1000000000,"minRequests":5}}`)
	if res.Status != http.StatusCreated {
		t.Fatalf("POST /ops/releases = %d %s", res.Status, res.Body)
	}

	// Under way: one snapshot where a region's POPs send everything to
	// v-dash while another's still send it nothing.
	var shifting ops.Snapshot
	phases := map[string]bool{}
	deploytest.EventuallyEvery(t, 3*time.Minute, 100*time.Millisecond, func() error {
		s := snapshot()
		if s.Release == nil {
			return errors.New("no release in the snapshot")
		}
		phases[s.Release.Phase] = true
		resumeAfterOutage(t, d, s.Release)
		if s.Release.Phase == "done" && shifting.Release == nil {
			t.Fatalf("the release ended before a snapshot showed it shifting; phases seen %v", phases)
		}
		if s.Release.Phase != "shifting" || s.Release.Version != "v-dash" || s.Release.From["eastus"] != old {
			return fmt.Errorf("release %s %s (paused %v: %q) from %v", s.Release.Version, s.Release.Phase, s.Release.Paused, s.Release.Reason, s.Release.From)
		}
		var at100, at0 bool
		for _, sp := range s.Release.Split {
			at100 = at100 || sp.Settled && sp.Percents["v-dash"] == 100 && sp.Percents[old] == 0
			at0 = at0 || sp.Settled && sp.Percents["v-dash"] == 0 && sp.Percents[old] == 100
		}
		if !at100 || !at0 || len(stampReleases(s)["v-dash"]) == 0 {
			return fmt.Errorf("split %+v, stamps by release %v", s.Release.Split, stampReleases(s))
		}
		shifting = s
		return nil
	})
	t.Logf("shifting: split %+v, steps %d of %d", shifting.Release.Split, len(shifting.Release.Steps), len(shifting.Release.Plan))

	var end ops.Snapshot
	deploytest.EventuallyEvery(t, 3*time.Minute, 200*time.Millisecond, func() error {
		end = snapshot()
		resumeAfterOutage(t, d, end.Release)
		if ph := end.Release.Phase; ph != "done" {
			if ph == "rolled-back" || ph == "failed" {
				t.Fatalf("the release ended %s: %s", ph, end.Release.Reason)
			}
			return fmt.Errorf("phase %s (paused %v: %q)", ph, end.Release.Paused, end.Release.Reason)
		}
		return nil
	})
	r := end.Release
	if r.EndedAt.IsZero() || len(r.Steps) != len(regions3) || len(r.Plan) != len(regions3) {
		t.Fatalf("done release: ended %v, %d steps of a %d-stage plan", r.EndedAt, len(r.Steps), len(r.Plan))
	}
	for _, st := range r.Steps {
		var served float64
		for _, f := range st.New.Flows {
			served += f.Requests
		}
		if st.Verdict != "passed" || st.Percent != 100 || st.New.Instances != 1 || served < 5 {
			t.Errorf("step %s: %s at %d %% on %d new stamps that served %v requests", st.Region, st.Verdict, st.Percent, st.New.Instances, served)
		}
	}
	for _, sp := range r.Split { // the table is cleared once the old stamps are gone
		if len(sp.Percents) != 0 && sp.Percents["v-dash"] != 100 {
			t.Errorf("split of %s after the release: %v", sp.Region, sp.Percents)
		}
	}
	if failures := load.end(); len(failures) > 0 {
		t.Errorf("%d requests failed during the release, e.g. %v", len(failures), failures[:min(5, len(failures))])
	}
}

// reads is a product read through the edge from every region at a steady
// pace, until ended.
type reads struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	failures []string
}

func startReads(t *testing.T, d *deploy.Deployment, every time.Duration) *reads {
	t.Helper()
	r := &reads{stop: make(chan struct{})}
	url := d.EdgeURL() + "/api/products/" + shop.SeedCatalog()[0].ID
	client := deploytest.PlainClient(d)
	for _, region := range regions3 {
		r.wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-r.stop:
					return
				case <-tick.C:
				}
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("X-Client-Region", region)
				res, err := client.Do(req)
				if err == nil {
					res.Body.Close()
					if res.StatusCode >= 300 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err != nil {
					r.mu.Lock()
					r.failures = append(r.failures, fmt.Sprintf("GET from %s: %v", region, err))
					r.mu.Unlock()
				}
			}
		})
	}
	t.Cleanup(func() { r.end() })
	return r
}

// end stops the reads and returns what failed.
func (r *reads) end() []string {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.failures)
}

// resumeAfterOutage resumes a release its controller paused for an
// outage (a region with no stamp announced, or unhealthy on both
// versions), as an operator would once it is over: on a machine this busy
// a heartbeat or a probe can miss its deadline. The controller refuses
// while the outage lasts; the next poll asks again.
func resumeAfterOutage(t *testing.T, d *deploy.Deployment, r *ops.Release) {
	t.Helper()
	if r == nil || !r.Paused || !(strings.HasPrefix(r.Reason, "region lost") || strings.Contains(r.Reason, "unhealthy on both versions")) {
		return
	}
	res := deploytest.Do(t, http.MethodPost, d.OpsURL()+"/ops/releases/current/resume", "", nil)
	t.Logf("release paused (%s); resume = %d", r.Reason, res.Status)
}

// stampReleases lists the stamps of a snapshot by the release they
// announce.
func stampReleases(s ops.Snapshot) map[string][]string {
	out := map[string][]string{}
	for _, r := range s.Regions {
		for _, st := range r.Stamps {
			out[st.Release] = append(out[st.Release], st.ID)
		}
	}
	return out
}
