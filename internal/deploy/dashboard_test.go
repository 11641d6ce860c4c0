package deploy_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/ops/opstest"
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
