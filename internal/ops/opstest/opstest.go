// Package opstest drives pages in headless Chromium for tests: it starts a
// browser with no background network traffic, records what the page logs
// as errors, and takes full-page screenshots.
package opstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// EnvRequireBrowser, set to 1, makes Browser fail instead of skip when no
// Chromium is installed (CI sets it).
const EnvRequireBrowser = "CONTOSO_REQUIRE_BROWSER"

// browsers are the executables Browser looks for on PATH, in order.
var browsers = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

type consoleKey struct{}

// console collects the errors a page reports.
type console struct {
	mu     sync.Mutex // guards errors
	errors []string
}

func (c *console) add(s string) {
	c.mu.Lock()
	c.errors = append(c.errors, s)
	c.mu.Unlock()
}

// listen runs on the loop that reads the tab's messages: it must return
// fast and send no command.
func (c *console) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			c.add(fmt.Sprintf("console.%s: %s", ev.Type, remoteText(ev.Args)))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		if d == nil {
			c.add("exception")
			return
		}
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		c.add(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *log.EventEntryAdded:
		if e := ev.Entry; e != nil && e.Level == log.EntryLevelError {
			c.add(fmt.Sprintf("log %s: %s %s", e.Source, e.Text, e.URL))
		}
	}
}

func remoteText(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case a.Description != "":
			parts = append(parts, a.Description)
		case len(a.Value) > 0:
			parts = append(parts, strings.Trim(string(a.Value), `"`))
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

// Browser starts headless Chromium for the test and returns a chromedp
// context with one tab; the browser stops when the test ends. It skips the
// test when no Chromium is on PATH, unless CONTOSO_REQUIRE_BROWSER=1, in
// which case it fails it. The browser gets a fresh profile in tb.TempDir()
// and flags that keep it off the network except for the pages it is sent
// to. ConsoleErrors reads what the tab reported from its start.
func Browser(tb testing.TB) context.Context {
	tb.Helper()
	exe := findBrowser()
	if exe == "" {
		if os.Getenv(EnvRequireBrowser) == "1" {
			tb.Fatalf("chromium not installed (looked for %s on PATH) and %s=1", strings.Join(browsers, ", "), EnvRequireBrowser)
		}
		tb.Skip("chromium not installed: apt-get install chromium to run the browser tests")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("force-color-profile", "srgb"),
	}
	// The browser's own output goes to the test log, and only when the
	// test failed: it is noise otherwise.
	output := &syncBuffer{}
	opts = append(opts, chromedp.CombinedOutput(output))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	c := &console{}
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(c.listen))
	ctx = context.WithValue(ctx, consoleKey{}, c)
	tb.Cleanup(func() {
		cancel()
		cancelAlloc()
		if tb.Failed() {
			tb.Logf("%s output:\n%s", exe, output)
		}
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser and opens the tab
		tb.Fatalf("start %s: %v", exe, err)
	}
	return ctx
}

// syncBuffer is a buffer the browser's output goroutine and the test
// share.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func findBrowser() string {
	for _, name := range browsers {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// ConsoleErrors returns what the tab of ctx (from Browser) reported as
// errors so far: console.error and failed console.assert calls, uncaught
// exceptions and rejections, and error entries of the browser log (failed
// loads, CSP violations). It returns nil for a context not made by Browser.
func ConsoleErrors(ctx context.Context) []string {
	c, _ := ctx.Value(consoleKey{}).(*console)
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errors...)
}

// WaitFor evaluates the JavaScript expression in the tab of ctx until it is
// true, and fails when timeout passes first; the error then holds the last
// evaluation error, if any. It polls from Go, so it works on pages whose
// Content-Security-Policy forbids eval.
func WaitFor(ctx context.Context, expression string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expression))
		if err == nil && ok {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			if lastErr != nil {
				return fmt.Errorf("wait for %s: not true after %s: %w", expression, timeout, lastErr)
			}
			return fmt.Errorf("wait for %s: not true after %s", expression, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", expression, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Screenshot writes a PNG of the whole page of the tab of ctx, beyond the
// viewport, to path. It scrolls the page to the top first, so that sticky
// elements sit where a reader expects them.
func Screenshot(ctx context.Context, path string) error {
	png, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		if _, err := chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)(ctx, t); err != nil {
			return nil, fmt.Errorf("scroll to the top: %w", err)
		}
		m, err := cdp.Call(ctx, t, page.GetLayoutMetrics, cdp.Empty{})
		if err != nil {
			return nil, fmt.Errorf("layout metrics: %w", err)
		}
		if m.CSSContentSize == nil {
			return nil, errors.New("layout metrics: no content size")
		}
		r, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format:                page.CaptureScreenshotFormatPng,
			CaptureBeyondViewport: new(true),
			FromSurface:           new(true),
			Clip: &page.Viewport{
				Width:  m.CSSContentSize.Width,
				Height: m.CSSContentSize.Height,
				Scale:  1,
			},
		})
		if err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
		return r.Data, nil
	})
	if err != nil {
		return fmt.Errorf("screenshot %s: %w", path, err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return nil
}
