package opstest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// outcome records how Browser ended a test without ending this one.
type outcome struct {
	testing.TB
	skipped, failed string
}

func (o *outcome) Helper() {}

func (o *outcome) Skip(args ...any) {
	o.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}

func (o *outcome) Fatalf(format string, args ...any) {
	o.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestBrowserWithoutChromium(t *testing.T) {
	for _, tc := range []struct {
		name, require string
		skip, fail    bool
	}{
		{"skips", "", true, false},
		{"skips unless required", "0", true, false},
		{"fails when required", "1", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir()) // nothing to find
			t.Setenv(EnvRequireBrowser, tc.require)
			o := &outcome{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Browser(o)
			}()
			<-done
			if (o.skipped != "") != tc.skip || (o.failed != "") != tc.fail {
				t.Fatalf("skipped %q, failed %q; want skip %v, fail %v", o.skipped, o.failed, tc.skip, tc.fail)
			}
			if tc.skip && !strings.Contains(o.skipped, "apt-get install chromium") {
				t.Errorf("skip message %q does not say how to install chromium", o.skipped)
			}
		})
	}
}

// TestConsoleErrors: what the dashboard tests assert is empty does fill up
// when a page misbehaves.
func TestConsoleErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>t</title><link rel="icon" href="data:,">
<p id="p" style="height:3000px">tall</p>
<img src="/missing.png" alt="">
<script>console.log("fine"); console.error("boom"); setTimeout(() => { throw new Error("kaboom") });</script>`)
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	ctx := Browser(t)
	if errs := ConsoleErrors(ctx); len(errs) != 0 {
		t.Fatalf("errors before any page: %q", errs)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL)); err != nil {
		t.Fatal(err)
	}

	want := []string{"console.error: boom", "kaboom", "404"}
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		errs := strings.Join(ConsoleErrors(ctx), "\n")
		missing := ""
		for _, w := range want {
			if !strings.Contains(errs, w) {
				missing = w
			}
		}
		if missing == "" {
			t.Logf("reported:\n%s", errs)
			if strings.Contains(errs, "fine") {
				t.Errorf("console.log reported as an error:\n%s", errs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error with %q after 5 s; got:\n%s", missing, errs)
		}
	}

	if err := WaitFor(ctx, `document.getElementById("p") !== null`, time.Second); err != nil {
		t.Errorf("WaitFor a true expression: %v", err)
	}
	if err := WaitFor(ctx, `false`, 100*time.Millisecond); err == nil {
		t.Error("WaitFor a false expression returned no error")
	}

	path := filepath.Join(t.TempDir(), "page.png")
	if err := Screenshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || !strings.HasPrefix(string(b), "\x89PNG") {
		t.Fatalf("screenshot is not a PNG (%v)", err)
	}
}

func TestConsoleErrorsOfOtherContext(t *testing.T) {
	if errs := ConsoleErrors(context.Background()); errs != nil {
		t.Fatalf("ConsoleErrors of a plain context = %q, want nil", errs)
	}
}
