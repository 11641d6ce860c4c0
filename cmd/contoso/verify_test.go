package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/artifact/artifacttest"
	"github.com/contoso/shoes/internal/deploy/deploytest"
)

// drainExperiment is a short experiment that passes on a sound
// deployment; with impossible set, it also asks for a browse p99 no
// deployment reaches.
func drainExperiment(t *testing.T, impossible bool) string {
	t.Helper()
	y := `experiments:
  - name: short-drain
    profiles: [ci]
    load: {rate: 20, ramp: 1s, hold: 8s}
    fault: {fault: stamp-drain, target: northeurope, after: 3s, duration: 3s}
    expect:
      data: {oversell: false}
`
	if impossible {
		y += "      slo: [{flow: browse, p99: 1us}]\n"
	}
	path := filepath.Join(t.TempDir(), "experiments.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// verify --attest records the outcome as the image's verification: a
// pass after a run whose every expectation passed, with the deployment's
// environment, the profile and the number of experiments; a failure
// (which replaces it) after a run that failed one.
func TestVerifyAttestsTheOutcome(t *testing.T) {
	reg := artifacttest.NewRegistry(t)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := artifact.Push(t.Context(), img, reg+"/contoso/shoes:verify-test", artifact.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	d := deploytest.MustStart(t, deploytest.Options{DataDir: data, EdgeRate: 1e9, EdgeBurst: 1e9}, "westeurope", "northeurope", "eastus")
	env := map[string]string{"USER": "ci-bot"}
	verifyWith := func(file string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"verify", "--edge", d.EdgeURL(), "--ops", d.OpsURL(), "--data", data, "--file", file,
			"--attest", ref, "--registry-insecure", "--log-level", "error"}, func(k string) string { return env[k] }, &stdout, &stderr)
		t.Logf("verify: %v\n%s\n%s", err, stdout.String(), stderr.String())
		return err
	}

	if err := verifyWith(drainExperiment(t, false)); err != nil {
		t.Fatalf("verify of a sound deployment: %v", err)
	}
	a, err := artifact.Verified(t.Context(), ref, artifact.WithInsecure())
	if err != nil {
		t.Fatalf("after a passing verify: %v", err)
	}
	if !a.Passed || a.Env != "dev" || a.Profile != "ci" || a.Experiments != 1 || a.By != "ci-bot" || a.Digest != strings.SplitN(ref, "@", 2)[1] ||
		time.Since(a.At) > 10*time.Minute {
		t.Fatalf("attestation %+v", a)
	}

	if err := verifyWith(drainExperiment(t, true)); !errors.Is(err, errVerifyFailed) {
		t.Fatalf("verify with an impossible expectation = %v, want %v", err, errVerifyFailed)
	}
	a, err = artifact.Verified(t.Context(), ref, artifact.WithInsecure())
	if !errors.Is(err, artifact.ErrNotVerified) || a.Passed || a.Experiments != 1 || a.Env != "dev" {
		t.Fatalf("after a failing verify: %+v, %v; want a recorded failure", a, err)
	}
}

// A bad -attest, -run or -skip is refused before any deployment starts,
// and so is a selection that leaves no experiment.
func TestVerifyRefusesBadAttestFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--attest", "127.0.0.1:5000/contoso/shoes:v1"}, "by digest"},
		{[]string{"--attest", "127.0.0.1:5000/contoso/shoes@sha256:abc"}, "by digest"},
		{[]string{"--registry-insecure"}, "goes with -attest"},
		{[]string{"--skip", "("}, "-skip"},
		{[]string{"--skip", "."}, "no experiment"},
		{[]string{"--run", "["}, "-run"},
		{[]string{"--run", "^no-such-experiment$"}, "no experiment"},
		{[]string{"--run", "^release-", "--skip", "^release-"}, "no experiment"},
	} {
		err := run(t.Context(), append([]string{"verify"}, tt.args...), noEnv, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("verify %v = %v, want an error saying %q", tt.args, err, tt.want)
		}
	}
}

// The switches that break a guarantee or inject a defect apply to the
// deployment verify starts in process: with a deployment it does not
// start, or one of separate processes, verify refuses them before
// anything runs, as it refuses a defect it cannot read.
func TestVerifyRefusesBrokenGuaranteesItCannotApply(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--break-stock-cas", "--edge", "http://127.0.0.1:1", "--ops", "http://127.0.0.1:2"}, "not with -edge"},
		{[]string{"--break-edge-retry", "--edge", "http://127.0.0.1:1", "--ops", "http://127.0.0.1:2"}, "not with -edge"},
		{[]string{"--break-stock-cas", "--processes"}, "-break-stock-cas"},
		{[]string{"--break-edge-retry", "--processes"}, "-break-edge-retry"},
		{[]string{"--stamp-fault", "latency=1s", "--edge", "http://127.0.0.1:1", "--ops", "http://127.0.0.1:2"}, "not with -edge"},
		{[]string{"--stamp-fault", "latency=1s", "--processes"}, "-stamp-fault"},
		{[]string{"--stamp-fault", "latency=soon"}, "-stamp-fault"},
		{[]string{"--stamp-fault", "error=2"}, "-stamp-fault"},
		{[]string{"--stamp-fault", "route=comment"}, "-stamp-fault"},
	} {
		var stdout bytes.Buffer
		err := run(t.Context(), append([]string{"verify"}, tt.args...), noEnv, &stdout, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("verify %v = %v, want an error saying %q", tt.args, err, tt.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("verify %v printed %q before refusing", tt.args, stdout.String())
		}
	}
}
