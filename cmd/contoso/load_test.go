package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/loadtest"
)

func noEnv(string) string { return "" }

// TestLoad runs `contoso load` against a real deployment, with tokens from
// the deployment's data directory, and reads the report it wrote. The
// deployment runs with TLS, so the load also trusts the CA it finds there.
func TestLoad(t *testing.T) {
	data := t.TempDir()
	d := deploytest.MustStart(t, deploytest.Options{DataDir: data, EdgeRate: 1e6, EdgeBurst: 1e6, TLS: true}, "westeurope", "northeurope", "eastus")
	out := filepath.Join(t.TempDir(), "report")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"load", "--edge", d.EdgeURL(), "--data", data, "--out", out,
		"--rate", "40", "--ramp", "500ms", "--duration", "1s", "--spike", "500ms", "--users", "20"}, noEnv, &stdout, &stderr)
	if err != nil {
		t.Fatalf("load: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep loadtest.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if rep.Error != "" || rep.Total.Requests == 0 || rep.Edge != d.EdgeURL() {
		t.Errorf("report: edge %q, error %q, %d requests", rep.Edge, rep.Error, rep.Total.Requests)
	}
	// Tokens from --data are the deployment's: no request is refused as
	// unauthenticated.
	if n := rep.Total.Codes["401"]; n > 0 {
		t.Errorf("%d requests answered 401: the tokens are not the deployment's", n)
	}
	if rep.Profile.Rate != 40 || rep.Profile.HoldSeconds != 1 || rep.Profile.SpikeRate != 80 || rep.Profile.Users != 20 {
		t.Errorf("the flags did not reach the run: %+v", rep.Profile)
	}
	page, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "<svg") {
		t.Error("report.html has no plot")
	}
	if !strings.Contains(stdout.String(), "verdict:") || !strings.Contains(stdout.String(), "report.html") {
		t.Errorf("stdout lacks the summary or the report's place:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "achieved") {
		t.Errorf("no progress lines on stderr:\n%s", stderr.String())
	}
}

// TestLoadUnreachable: when the edge does not answer, the command fails
// and still writes a report saying why.
func TestLoadUnreachable(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report")
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"load", "--edge", "http://127.0.0.1:1", "--data", t.TempDir(), "--out", out, "--quiet"}, noEnv, &stdout, &bytes.Buffer{})
	if err == nil {
		t.Fatal("load against a closed port succeeded")
	}
	b, rerr := os.ReadFile(filepath.Join(out, "report.json"))
	if rerr != nil {
		t.Fatalf("no report.json after a failed run: %v", rerr)
	}
	var rep loadtest.Report
	if err := json.Unmarshal(b, &rep); err != nil || rep.Error == "" {
		t.Errorf("report.json of a failed run: %v, error %q", err, rep.Error)
	}
	if _, err := os.Stat(filepath.Join(out, "report.html")); err != nil {
		t.Errorf("no report.html after a failed run: %v", err)
	}
	if strings.Contains(stdout.String(), "verdict") {
		t.Errorf("--quiet printed the summary:\n%s", stdout.String())
	}
}

func TestLoadBadFlags(t *testing.T) {
	data := t.TempDir()
	tests := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"--nope"}},
		{"rate not a number", []string{"--rate", "fast"}},
		{"zero rate", []string{"--rate", "0"}},
		{"negative duration", []string{"--duration", "-1s"}},
		{"nothing to run", []string{"--ramp", "0", "--duration", "0", "--spike", "0"}},
		{"bad edge", []string{"--edge", "127.0.0.1:8080"}},
		{"negative users", []string{"--users", "-3"}},
		{"stray argument", []string{"now"}},
		{"no data directory", []string{"--data", filepath.Join(data, "missing")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "report")
			args := append([]string{"load", "--data", data, "--out", out, "--edge", "http://127.0.0.1:1"}, tt.args...)
			if err := run(context.Background(), args, noEnv, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
				t.Fatalf("load %v succeeded", tt.args)
			}
			// A rejected command line makes no run and writes no report.
			if _, err := os.Stat(out); err == nil {
				t.Errorf("load %v wrote a report", tt.args)
			}
		})
	}
}

// load and verify against a running deployment mint tokens with its
// issuer: a -data that is no deployment's directory is refused, not
// filled with a new key that the deployment would not trust.
func TestClientsOfADeploymentNeedItsDataDirectory(t *testing.T) {
	for _, cmd := range []string{"load", "verify"} {
		missing := filepath.Join(t.TempDir(), "no-deployment")
		args := []string{cmd, "--edge", "http://127.0.0.1:1", "--data", missing}
		if cmd == "load" {
			args = append(args, "--out", t.TempDir())
		} else {
			args = append(args, "--ops", "http://127.0.0.1:1")
		}
		err := run(t.Context(), args, noEnv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "is not the data directory of a deployment") {
			t.Errorf("%s with -data %s = %v, want a clear refusal", cmd, missing, err)
		}
		if _, statErr := os.Stat(missing); !os.IsNotExist(statErr) {
			t.Errorf("%s created %s", cmd, missing)
		}
	}
}
