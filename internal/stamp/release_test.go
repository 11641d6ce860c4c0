package stamp_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/buildinfo"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/telemetry"
)

// testCredential is the edge credential of the stamps serveStamp starts.
const testCredential = "edge-credential"

// testStamp is a stamp serving on 127.0.0.1:0 against a real store.
type testStamp struct {
	*stamp.Stamp
	base   string
	store  *store.Store
	issuer *auth.Issuer
	logs   *lineBuffer
}

// testIssuer is a development token issuer of the test's own and a
// verifier of its tokens, as every stamp is given one.
func testIssuer(t *testing.T) (*auth.Issuer, *auth.Verifier) {
	t.Helper()
	iss, err := auth.LoadOrCreateIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(iss.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	return iss, verifier
}

// serveStamp starts a westeurope stamp with cfg on the store of c's first
// server: seeding, probing every 100 ms unless cfg says otherwise,
// expecting testCredential, logging JSON into logs. It stops at cleanup.
func serveStamp(t *testing.T, c *storetest.Cluster, cfg stamp.Config) *testStamp {
	t.Helper()
	st, _ := c.MustOpen(t, 0)
	iss, verifier := testIssuer(t)
	logs := &lineBuffer{}
	cfg.Region, cfg.Store, cfg.Verifier, cfg.Seed, cfg.EdgeCredential = "westeurope", st, verifier, true, testCredential
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 100 * time.Millisecond
	}
	s, err := stamp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return &testStamp{Stamp: s, base: "http://" + ln.Addr().String(), store: st, issuer: iss, logs: logs}
}

// do sends a request to the stamp as the edge would (with its
// credential), with a user token and an Idempotency-Key when given, and
// returns the answer and its body.
func (ts *testStamp) do(t *testing.T, method, path, token, key, body string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := ts.send(method, path, token, key, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// send is do for any goroutine: it returns the error do fails the test
// with.
func (ts *testStamp) send(method, path, token, key, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, ts.base+path, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set(httpapi.HeaderEdgeCredential, testCredential)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b, err
}

// token is a user token the stamp accepts.
func (ts *testStamp) token(t *testing.T, user string) string {
	t.Helper()
	tok, err := ts.issuer.Mint(user, false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// report is the stamp's /health/stamp answer.
func (ts *testStamp) report(t *testing.T) (int, health.Report) {
	t.Helper()
	resp, body := ts.do(t, http.MethodGet, "/health/stamp", "", "", "")
	var rep health.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("/health/stamp = %d %s: %v", resp.StatusCode, body, err)
	}
	return resp.StatusCode, rep
}

// ready is the stamp's /health/ready answer: its status and reason.
func (ts *testStamp) ready(t *testing.T) (int, string) {
	t.Helper()
	resp, body := ts.do(t, http.MethodGet, "/health/ready", "", "", "")
	var r struct{ Reason string }
	_ = json.Unmarshal(body, &r)
	return resp.StatusCode, r.Reason
}

// waitReady polls /health/ready until it answers 200, for up to 30 s.
func (ts *testStamp) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, reason := ts.ready(t)
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stamp is not ready within 30 s: %d %s", code, reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// registered reports the stamps registry's entry for the stamp, if any.
func (ts *testStamp) registered(t *testing.T) (store.StampEntry, bool) {
	t.Helper()
	return registryEntry(t, ts.store, ts.ID())
}

func registryEntry(t *testing.T, st *store.Store, id string) (store.StampEntry, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		entry *store.StampEntry
	)
	loaded := make(chan struct{})
	go func() {
		_ = st.WatchRegistry(ctx, func(key string, e *store.StampEntry) {
			mu.Lock()
			defer mu.Unlock()
			if key == id {
				entry = e
			}
		}, func() { close(loaded) })
	}()
	select {
	case <-loaded:
	case <-ctx.Done():
		t.Fatal("the registry did not load within 10 s")
	}
	mu.Lock()
	defer mu.Unlock()
	if entry == nil {
		return store.StampEntry{}, false
	}
	return *entry, true
}

// A stamp does not report ready, to its readiness probe or in its health
// report (what the edge routes by), until it has answered its warm-up's
// synthetic requests, although its dependencies pass before; it then
// reports how many it answered and how long they took. A stamp given no
// release runs this binary's.
func TestStampIsNotReadyUntilWarmed(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	// Enough requests that the warm-up lasts long enough to be watched.
	const warmRequests = 1000
	ts := serveStamp(t, c, stamp.Config{WarmRequests: warmRequests})
	sawWarming := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, reason := ts.ready(t)
		if code == http.StatusOK {
			if n, _ := ts.Warmed(); n != warmRequests {
				t.Fatalf("ready after %d warm-up requests, want %d", n, warmRequests)
			}
			break
		}
		if strings.HasPrefix(reason, "warming up") {
			sawWarming = true
			// Its dependencies pass, but the edge is told to stay away
			// (unless the warm-up ended between the two probes).
			code, rep := ts.report(t)
			if n, _ := ts.Warmed(); n == 0 && (code != http.StatusServiceUnavailable || !strings.HasPrefix(rep.Reason, "warming up") && !isCheckReason(rep)) {
				t.Fatalf("/health/stamp while warming = %d %+v, want 503 warming up", code, rep)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stamp is not ready within 60 s: %d %s", code, reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawWarming {
		t.Fatal("/health/ready never said the stamp was warming up before it was ready")
	}
	n, took := ts.Warmed()
	if n != warmRequests || took <= 0 {
		t.Fatalf("Warmed = %d, %s; want %d requests that took some time", n, took, warmRequests)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, rep := ts.report(t)
		if rep.Gauges["warm.requests"] == warmRequests && rep.Gauges["warm.ms"] > 0 {
			if rep.Release != buildinfo.Version() || rep.Zone != "westeurope-1" {
				t.Errorf("report's release = %q and zone %q, want the binary's %q and the region's first zone", rep.Release, rep.Zone, buildinfo.Version())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the report's gauges are %v, want warm.requests %d and warm.ms", rep.Gauges, warmRequests)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e, ok := ts.registered(t); !ok || e.Release != buildinfo.Version() || e.Zone != "westeurope-1" {
		t.Errorf("registry entry = %+v (%v), want release %q in zone westeurope-1", e, ok, buildinfo.Version())
	}
}

// A stamp that reports ready has the whole seed catalog in its read model:
// its watches start after the seed is stored, so a watch that has loaded
// holds it. (Started before, as they once were, a watch could report
// itself loaded on the empty bucket and the stamp be ready a moment before
// the seed reached its read model: a SKU of the catalog was then "not
// found" by the first request after ready, under load. That race shows
// only on a busy machine; this test goes red at once when readiness stops
// waiting for the seed or the watches, e.g. serving() without its seeded
// check.)
func TestAReadyStampServesTheSeedCatalog(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	ts := serveStamp(t, c, stamp.Config{WarmRequests: 1})
	ts.waitReady(t)
	for _, p := range shop.SeedCatalog() {
		if resp, body := ts.do(t, http.MethodGet, "/api/products/"+p.ID, "", "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET /api/products/%s when first ready = %d %.200s", p.ID, resp.StatusCode, body)
		}
	}
}

// isCheckReason reports whether rep is unhealthy because of one of its
// checks (a probe can fail for a moment on a loaded machine), which wins
// over the warm-up's hold.
func isCheckReason(rep health.Report) bool {
	for _, c := range rep.Checks {
		if strings.HasPrefix(rep.Reason, c.Name+" ") {
			return true
		}
	}
	return false
}

// A stamp of release v7 in zone westeurope-2 says both in the registry and
// its health report, and
// its HTTP server metric in the sink carries service.version v7, so the
// requests of one release can be selected beside another's.
func TestStampVersionNamesItsReleaseInTheSink(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	var mu sync.Mutex
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tel, err := telemetry.New(t.Context(), telemetry.Config{Service: telemetry.ServiceStamp, Region: "westeurope", Version: "v7", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	ts := serveStamp(t, c, stamp.Config{Release: "v7", Zone: "westeurope-2", Telemetry: tel})
	ts.waitReady(t)
	if err := tel.Sink().Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range shop.SeedCatalog()[:3] {
		if resp, body := ts.do(t, http.MethodGet, "/api/products/"+p.ID, "", "", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET product = %d %s", resp.StatusCode, body)
		}
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	if err := tel.Sink().Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	match := telemetry.Labels{"component": "stamp", "region": "westeurope", "service.version": "v7", "http.route": "/api/products/{id}"}
	if got, ok := tel.Sink().Increase(telemetry.MetricHTTPServerDuration, match, time.Minute); !ok || got != 3 {
		t.Errorf("requests of release v7 = %v (%v), want 3", got, ok)
	}
	match["service.version"] = "v6"
	if got, ok := tel.Sink().Increase(telemetry.MetricHTTPServerDuration, match, time.Minute); ok && got != 0 {
		t.Errorf("requests of release v6 = %v, want none", got)
	}
	if _, rep := ts.report(t); rep.Release != "v7" || rep.Zone != "westeurope-2" {
		t.Errorf("health report's release = %q and zone %q, want v7 in westeurope-2", rep.Release, rep.Zone)
	}
	if e, ok := ts.registered(t); !ok || e.Release != "v7" || e.Zone != "westeurope-2" {
		t.Errorf("registry entry = %+v (%v), want release v7 in zone westeurope-2", e, ok)
	}
}
