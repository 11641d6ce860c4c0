package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/store/storetest"
)

// readyLine is the contract `contoso up` prints on stdout.
type readyLine struct {
	Event   string            `json:"event"`
	Regions map[string]string `json:"regions"`
	Data    string            `json:"data"`
	Edge    string            `json:"edge"`
}

// startUp runs `contoso up` in-process and returns its ready line and a
// function that stops it and returns run's error.
func startUp(t *testing.T, args ...string) (readyLine, func() error) {
	t.Helper()
	return startUpWith(t, nil, args...)
}

// startUpWith is startUp with environment variables.
func startUpWith(t *testing.T, env map[string]string, args ...string) (readyLine, func() error) {
	t.Helper()
	return startUpLogging(t, env, io.Discard, args...)
}

// startUpLogging is startUpWith, logging to stderr.
func startUpLogging(t *testing.T, env map[string]string, stderr io.Writer, args ...string) (readyLine, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"up"}, args...), func(k string) string { return env[k] }, pw, stderr)
		pw.Close()
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	var ready readyLine
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &ready); err != nil {
			t.Fatalf("ready line %q: %v", line, err)
		}
	case err := <-errc:
		cancel()
		t.Fatalf("up exited before ready: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		t.Fatal("no ready line within 90 s")
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(60 * time.Second):
			t.Fatal("up did not stop within 60 s of the signal")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return ready, stop
}

func TestUpPrintsReadyLineServesAndStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	// A stand-in OTLP collector: with the standard variable set, up's
	// traces reach it (at the latest when up flushes on the way out).
	collector, exported := otlpCollector(t)
	ready, stop := startUpWith(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector}, "--data", dir, "--latency", "off", "--log-format", "json", "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	if ready.Event != "ready" || ready.Data != dir || len(ready.Regions) != 3 {
		t.Fatalf("ready line = %+v", ready)
	}
	for _, region := range []string{"westeurope", "northeurope", "eastus"} {
		url := ready.Regions[region]
		if !strings.HasPrefix(url, "http://127.0.0.1:") {
			t.Fatalf("region %s url %q", region, url)
		}
		resp, err := http.Get(url + "/health/ready")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Served-Region") != region {
			t.Fatalf("%s ready = %d from %q", region, resp.StatusCode, resp.Header.Get("X-Served-Region"))
		}
	}
	// A token from `contoso token` on the same data directory is accepted.
	var out strings.Builder
	if err := run(t.Context(), []string{"token", "--data", dir, "--sub", "ops", "--admin"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, ready.Regions["eastus"]+"/ops/drain", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out.String()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("drain with a `contoso token` admin token = %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatalf("up returned %v after SIGINT-equivalent, want nil", err)
	}
	if exported.Load() == 0 {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT was set, yet no trace reached the collector")
	}
	if _, err := http.Get(ready.Regions["westeurope"] + "/health/live"); err == nil {
		t.Fatal("stamp still serving after up stopped")
	}
}

func TestTokenVerifiesAgainstTheDataDirectoryIssuer(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	if err := run(t.Context(), []string{"token", "--data", dir, "--sub", "alice", "--ttl", "5m"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(iss.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(t.Context(), strings.TrimSpace(out.String()))
	if err != nil || c.Subject != "alice" || c.Admin {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	if d := time.Until(c.ExpiresAt); d > 5*time.Minute || d < 4*time.Minute {
		t.Fatalf("expires in %s, want about 5m", d)
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nonsense"},
		{"token"},
		{"token", "--sub", "a", "--ttl", "-1h"},
		{"up", "--latency", "sometimes"},
		{"up", "--log-format", "xml"},
		{"up", "--regions", "a,b"},
		{"up", "--regions", "a,a,b"},
		{"up", "--latency-table", "westeurope=10ms"},
		{"up", "--gogc", "lots"},
		{"up", "--gogc", "5"},
		{"up", "--processes", "--gogc", "80"},
		{"stamp"},
		{"up", "--no-such-flag"},
	} {
		err := run(t.Context(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}

// otlpCollector is a stand-in OTLP/HTTP collector that counts the trace
// exports it receives.
func otlpCollector(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var exported atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			if body, _ := io.ReadAll(r.Body); len(body) > 0 {
				exported.Add(1)
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &exported
}

// wantRequestMetrics fails t unless url (with token, if any) serves
// Prometheus text holding component's request durations.
func wantRequestMetrics(t *testing.T, url, token, component string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(metrics), `http_server_request_duration_seconds_count{component="`+component+`"`) {
		t.Fatalf("%s /metrics = %d without its request durations:\n%.2000s", component, resp.StatusCode, metrics)
	}
}

func TestStampRunsAloneAgainstAnExternalCluster(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope", "northeurope", "eastus")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	// The partner stand-in checks the same credentials the stamp reads
	// from its environment.
	standIn := partner.NewStandIn(partner.StandInConfig{
		APIKey: func() string { return "api-key-1" }, SigningKey: func() string { return "signing-key-1" },
	})
	partnerSrv := httptest.NewServer(standIn.Handler())
	defer partnerSrv.Close()
	collector, exported := otlpCollector(t)
	env := map[string]string{
		"CONTOSO_SECRET_PARTNER_API_KEY":     "api-key-1",
		"CONTOSO_SECRET_PARTNER_SIGNING_KEY": "signing-key-1",
		"CONTOSO_LKG_KEY":                    strings.Repeat("ab", 32),
		"OTEL_EXPORTER_OTLP_ENDPOINT":        collector,
	}
	go func() {
		errc <- run(ctx, []string{"stamp", "--region", "northeurope", "--nats", c.Nodes[1].ClientURL(),
			"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms",
			"--partner", partnerSrv.URL + "/v1/orders", "--lkg", dir + "/secrets.lkg"},
			func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
	}()
	var listening struct {
		Event, Region, URL string
	}
	if err := json.NewDecoder(pr).Decode(&listening); err != nil {
		cancel()
		t.Fatalf("listening line: %v (run: %v)", err, <-errc)
	}
	go io.Copy(io.Discard, pr)
	if listening.Event != "listening" || listening.Region != "northeurope" {
		t.Fatalf("listening line = %+v", listening)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(listening.URL + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stamp not ready within 60 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get(listening.URL + "/api/products?limit=100")
	if err != nil {
		t.Fatal(err)
	}
	var page struct{ Items []json.RawMessage }
	_ = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if len(page.Items) != 50 || resp.Header.Get("X-Served-Region") != "northeurope" {
		t.Fatalf("standalone stamp serves %d products from %q", len(page.Items), resp.Header.Get("X-Served-Region"))
	}
	// It sells: an order is reserved, signed to the partner and confirmed.
	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := iss.Mint("standalone-buyer", false, time.Hour, time.Now())
	var first struct{ Sizes []struct{ SKU string } }
	resp, err = http.Get(listening.URL + "/api/products/contoso-skyline-1-launch-edition")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&first)
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, listening.URL+"/api/orders",
		strings.NewReader(`{"items":[{"sku":"`+first.Sizes[0].SKU+`","quantity":1}]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", "standalone-1")
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var o struct{ ID, Status string }
	_ = json.NewDecoder(resp.Body).Decode(&o)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("order = %d", resp.StatusCode)
	}
	deadline = time.Now().Add(30 * time.Second)
	for o.Status != "confirmed" {
		if time.Now().After(deadline) {
			t.Fatalf("order still %q after 30 s", o.Status)
		}
		time.Sleep(50 * time.Millisecond)
		req, _ := http.NewRequest(http.MethodGet, listening.URL+"/api/orders/"+o.ID, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
	}
	if standIn.Deliveries(o.ID) != 1 || standIn.Rejected() != 0 {
		t.Fatalf("partner deliveries %d, rejected %d", standIn.Deliveries(o.ID), standIn.Rejected())
	}
	// Its telemetry: Prometheus text with the requests just served, and
	// traces exported to the collector (flushed at the latest on shutdown).
	wantRequestMetrics(t, listening.URL+"/metrics", "", "stamp")
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("stamp returned %v on shutdown, want nil", err)
	}
	if exported.Load() == 0 {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT was set, yet the standalone stamp exported no trace")
	}
}

func TestOpsRefusesAScaleMaxOutOfRange(t *testing.T) {
	for _, v := range []string{"-1", "33"} {
		err := run(t.Context(), []string{"ops", "--scale-max", v}, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-scale-max must be from 0 to 32") {
			t.Errorf("ops --scale-max %s = %v, want the range named", v, err)
		}
	}
}
