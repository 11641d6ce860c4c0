package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/secrets/secretstore"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/telemetry"
)

// A stamp told to read its secrets from the secret store needs the store's
// token; without one (or with a token file others can read) it refuses to
// start, before it connects to anything, and says how to give it.
func TestStampWithSecretsRefusesToStartWithoutAToken(t *testing.T) {
	dir := t.TempDir()
	readable := filepath.Join(dir, "readable.token")
	if err := os.WriteFile(readable, []byte("tok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, "private.token")
	if err := os.WriteFile(private, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"stamp", "--region", "westeurope", "--nats", "nats://127.0.0.1:1", "--data", dir, "--listen", "127.0.0.1:0"}
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		wants []string
	}{
		{"no token", []string{"--secrets", "http://127.0.0.1:1"}, nil,
			[]string{"-secrets needs the secret store's bearer token", "CONTOSO_SECRETS_TOKEN", "-secrets-token-file"}},
		{"an empty variable", []string{"--secrets", "http://127.0.0.1:1"}, map[string]string{"CONTOSO_SECRETS_TOKEN": " "},
			[]string{"-secrets needs the secret store's bearer token"}},
		{"a token file others can read", []string{"--secrets", "http://127.0.0.1:1", "--secrets-token-file", readable}, nil,
			[]string{"-secrets-token-file", readable, "mode 0644", "chmod 600 " + readable}},
		{"a missing token file", []string{"--secrets", "http://127.0.0.1:1", "--secrets-token-file", filepath.Join(dir, "none")}, nil,
			[]string{"-secrets-token-file", "no such file"}},
		{"the token twice", []string{"--secrets", "http://127.0.0.1:1", "--secrets-token-file", private}, map[string]string{"CONTOSO_SECRETS_TOKEN": "tok"},
			[]string{"given twice"}},
		{"a token file without a store", []string{"--secrets-token-file", private}, nil,
			[]string{"-secrets-token-file needs -secrets"}},
	} {
		t.Run(tc.name, func(t *testing.T) { refusesToStart(t, append(base, tc.args...), tc.env, tc.wants...) })
	}
}

// With the token (from the variable or a private file), a standalone
// stamp loads its secrets from a store that requires it; with a wrong one
// it does not start, since it has no last-known-good copy to fall back on.
func TestStampLoadsItsSecretsWithTheStoreToken(t *testing.T) {
	const token = "the-deployment-secret-store-token"
	store := secretstore.New(secretstore.Config{Token: token})
	store.Set("partner-api-key", "api-key-1")
	store.Set("partner-signing-key", "signing-key-1")
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	c := storetest.NewCluster(t, "westeurope")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "secretstore.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "100ms", "--secrets", srv.URL}

	wrong := func(k string) string { return map[string]string{envSecretsToken: "not-the-token"}[k] }
	if err := run(t.Context(), args, wrong, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("stamp with a wrong token = %v, want the store's refusal", err)
	}

	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"variable": {env: map[string]string{envSecretsToken: token}},
		"file":     {args: []string{"--secrets-token-file", tokenFile}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			pr, pw := io.Pipe()
			errc := make(chan error, 1)
			go func() {
				errc <- run(ctx, append(args, tc.args...), func(k string) string { return tc.env[k] }, pw, io.Discard)
				pw.Close()
			}()
			var listening struct{ URL string }
			if err := json.NewDecoder(pr).Decode(&listening); err != nil {
				cancel()
				t.Fatalf("listening line: %v (run: %v)", err, <-errc)
			}
			go io.Copy(io.Discard, pr)
			deadline := time.Now().Add(30 * time.Second)
			for {
				var rep health.Report
				resp, err := http.Get(listening.URL + "/health/stamp")
				if err == nil {
					_ = json.NewDecoder(resp.Body).Decode(&rep)
					resp.Body.Close()
				}
				var check health.CheckResult
				for _, c := range rep.Checks {
					if c.Name == "secret-store" {
						check = c
					}
				}
				if check.Status == health.Healthy && strings.HasPrefix(check.Detail, "2 secrets from the store") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("secret-store check = %+v (%v)", check, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("stamp returned %v on shutdown", err)
			}
		})
	}
}

// refusesToStart runs a command that must not start: it returns an error
// saying every one of wants, and prints nothing on stdout first.
func refusesToStart(t *testing.T, args []string, env map[string]string, wants ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var stdout strings.Builder
	err := run(ctx, args, func(k string) string { return env[k] }, &stdout, io.Discard)
	if err == nil {
		t.Fatalf("%s started", args[0])
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("%s printed %q before refusing", args[0], stdout.String())
	}
}

// `contoso stamp --env prod` (or CONTOSO_ENV=prod) refuses any injected
// fault and any simulated work, before it connects to anything, and says
// why; a fault that does not parse, an unknown environment, a capacity
// outside 1 to 100000 and work outside 0 to 10s are refused too.
func TestStampRefusesFaultsAndWorkInProdAndBadValues(t *testing.T) {
	dir := t.TempDir()
	base := []string{"stamp", "--region", "westeurope", "--nats", "nats://127.0.0.1:1", "--data", dir, "--listen", "127.0.0.1:0"}
	prod := map[string]string{envEnvironment: "prod"}
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		wants []string
	}{
		{"--env prod", []string{"--env", "prod", "--fault", "error=0.1"}, nil,
			[]string{"--fault error=0.1", "injected faults are refused in the prod environment"}},
		{"CONTOSO_ENV=prod", []string{"--fault", "never-ready"}, prod,
			[]string{"injected faults are refused in the prod environment"}},
		{"--env wins over CONTOSO_ENV", []string{"--env", "prod", "--fault", "crash-on-start"}, map[string]string{envEnvironment: "dev"},
			[]string{"injected faults are refused in the prod environment"}},
		{"an unknown --env", []string{"--env", "staging"}, nil, []string{"--env staging", "want dev or prod"}},
		{"an unknown CONTOSO_ENV", nil, map[string]string{envEnvironment: "qa"}, []string{"CONTOSO_ENV=qa", "want dev or prod"}},
		{"a fault that does not parse", []string{"--fault", "error=2"}, nil, []string{"--fault", "not a share from 0 to 1"}},
		{"--work in prod", []string{"--env", "prod", "--work", "50ms"}, nil,
			[]string{"--work 50ms", "simulated work is refused in the prod environment"}},
		{"--work with CONTOSO_ENV=prod", []string{"--work", "1ms"}, prod, []string{"simulated work is refused in the prod environment"}},
		{"a capacity of 0", []string{"--capacity", "0"}, nil, []string{"--capacity 0: want 1 to 100000"}},
		{"a negative capacity", []string{"--capacity", "-3"}, nil, []string{"--capacity -3: want 1 to 100000"}},
		{"a capacity above the bound", []string{"--capacity", "100001"}, nil, []string{"--capacity 100001: want 1 to 100000"}},
		{"a capacity that is no number", []string{"--capacity", "many"}, nil, []string{"invalid value \"many\" for flag -capacity"}},
		{"negative work", []string{"--work", "-1ms"}, nil, []string{"--work -1ms: want 0 to 10s"}},
		{"too much work", []string{"--work", "11s"}, nil, []string{"--work 11s: want 0 to 10s"}},
		{"work that is no duration", []string{"--work", "300"}, nil, []string{"invalid value \"300\" for flag -work"}},
	} {
		t.Run(tc.name, func(t *testing.T) { refusesToStart(t, append(base, tc.args...), tc.env, tc.wants...) })
	}
}

// --release names the stamp's release in its health report and in the
// telemetry it exports (service.version, kept by the receiving sink);
// --warm-requests sets its warm-up; --fault injects a fault in dev (here:
// never ready, with the report saying so); --capacity is the capacity its
// report's load names.
func TestStampReleaseFaultAndWarmUpFlags(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	rx, err := telemetry.New(t.Context(), telemetry.Config{Service: "collector"})
	if err != nil {
		t.Fatal(err)
	}
	recv := httptest.NewServer(rx.Sink().OTLPHandler())
	t.Cleanup(recv.Close)
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL, "OTEL_METRIC_EXPORT_INTERVAL": "200"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
			"--listen", "127.0.0.1:0", "--data", t.TempDir(), "--probe-interval", "100ms",
			"--release", "v9", "--fault", "never-ready", "--warm-requests", "3", "--capacity", "3"},
			func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
	}()
	var listening struct{ URL string }
	if err := json.NewDecoder(pr).Decode(&listening); err != nil {
		cancel()
		t.Fatalf("listening line: %v (run: %v)", err, <-errc)
	}
	go io.Copy(io.Discard, pr)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rep health.Report
		code := 0
		resp, err := http.Get(listening.URL + "/health/stamp")
		if err == nil {
			code = resp.StatusCode
			_ = json.NewDecoder(resp.Body).Decode(&rep)
			resp.Body.Close()
		}
		_ = rx.Sink().Collect(t.Context())
		versions := rx.Sink().LabelValues(telemetry.MetricHTTPServerDuration, telemetry.AttrServiceVersion, telemetry.Labels{"component": "stamp"})
		if code == http.StatusServiceUnavailable && rep.Release == "v9" && rep.Reason == "injected fault: never ready" &&
			rep.Gauges["warm.requests"] == 3 && rep.Load != nil && rep.Load.Capacity == 3 && slices.Equal(versions, []string{"v9"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health/stamp = %d %+v (%v); service.version of the stamp's requests at the receiver: %q; "+
				"want 503, release v9, reason never ready, 3 warm-up requests, a load of capacity 3, v9", code, rep, err, versions)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The release names the process's one part: its series are not
	// labelled with an identity beside another part's.
	wantRequestMetrics(t, listening.URL+"/metrics", "", "stamp")
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("stamp returned %v on shutdown", err)
	}
}
