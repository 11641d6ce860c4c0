package verify_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/verify"
)

// The verdicts are real: with the edge's retry of idempotent requests
// turned off (verify --break-edge-retry), the requests in flight to a
// stamp when it crashes fail, and verify fails the experiment on exactly
// that expectation; with the retry on, the same experiment passes. Every
// stamp holds each comment, a keyed request, for a second before handling
// it (verify --stamp-fault latency=1s,route=comment), so about
// twenty-five are in flight to the crashed stamp at the moment of the
// crash however loaded the machine; the crash hits the region that serves
// the clients at that moment (serving:westeurope): their own, unless
// their POP measures another stamp as nearer. One run decides.
func TestVerifyCatchesADisabledRetry(t *testing.T) {
	t.Parallel()
	exps, err := verify.Parse([]byte(`experiments:
  - name: instance-kill-under-held-requests
    load: {rate: 50, ramp: 1s, hold: 12s, regions: [westeurope], mix: {product: 30, comment: 50, checkout: 20}}
    fault: {fault: instance-kill, target: "serving:westeurope", after: 5s, duration: 5s}
    expect:
      data: {idempotent_failures: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	held := []string{"--stamp-fault", "latency=1s,route=" + string(httpapi.FlowComment)}
	t.Run("retry off", func(t *testing.T) {
		t.Parallel()
		verdicts := runVerify(t, exps, append(held, "--break-edge-retry")...)
		v := verdictOf(t, verdicts, "failed idempotent requests")
		if v.Pass {
			t.Fatalf("verify passed an edge that does not retry idempotent requests: %+v", v)
		}
		if !verify.Failed(verdicts) {
			t.Fatal("a failed verdict, yet Failed says no")
		}
	})
	t.Run("retry on", func(t *testing.T) {
		t.Parallel()
		verdicts := runVerify(t, exps, held...)
		if v := verdictOf(t, verdicts, "failed idempotent requests"); !v.Pass {
			t.Fatalf("the edge's retry let idempotent requests fail: %+v", v)
		}
		if verify.Failed(verdicts) {
			t.Fatal("an expectation failed with every guarantee on")
		}
	})
}

// verdictOf returns the verdict whose expectation starts with prefix.
func verdictOf(t *testing.T, verdicts []verify.Verdict, prefix string) verify.Verdict {
	t.Helper()
	for _, v := range verdicts {
		if strings.HasPrefix(v.Expectation, prefix) {
			return v
		}
	}
	t.Fatalf("no verdict %q in %+v", prefix, verdicts)
	return verify.Verdict{}
}

// The release verdicts are real: release-bad, as shipped, run against a
// release whose gate tolerates any error ratio (error_tolerance: 1) sees
// the defective version go through, and verify fails the experiment on
// its outcome. It runs the command an operator runs (runVerify).
func TestVerifyCatchesAReleaseGateThatCannotFail(t *testing.T) {
	t.Parallel()
	var exp verify.Experiment
	for _, e := range verify.Default() {
		if e.Name == "release-bad" {
			exp = e
		}
	}
	if exp.Release == nil {
		t.Fatal("no release-bad experiment with a release")
	}
	r := *exp.Release
	r.ErrorTolerance = 1
	r.LatencyFactor = 1000 // nor on latency, which a busy machine can stretch
	// A release that goes through takes every step in every region, each
	// held until the new version has served enough requests, not only the
	// first step that rolls the shipped one back: one step per region (all
	// the traffic at once) keeps that short, the load lasts for all of
	// them, and the bound allows them on a busy machine. (With the shipped
	// 30 s of load and two steps per region, a release slowed down by the
	// machine waited for requests that never came, and ran out its bound.)
	r.Steps = []int{100}
	exp.Load.Hold = verify.Duration(40 * time.Second)
	r.Expect.Within = verify.Duration(90 * time.Second)
	exp.Name, exp.Release = "release-bad-with-a-gate-that-cannot-fail", &r

	verdicts := runVerify(t, []verify.Experiment{exp})
	var outcome *verify.Verdict
	for i, v := range verdicts {
		if strings.HasPrefix(v.Expectation, "release.outcome") {
			outcome = &verdicts[i]
		}
	}
	if outcome == nil {
		t.Fatal("no release.outcome verdict")
	}
	if outcome.Pass || !strings.HasPrefix(outcome.Measured, "done") {
		t.Fatalf("release.outcome = %+v; want a fail, the release done", *outcome)
	}
	if !verify.Failed(verdicts) {
		t.Fatal("a failed verdict, yet Failed says no")
	}
}

// The data verdicts are real: launch-sellout, as shipped, races buyers for
// two pairs per size of the launch shoes; against stamps that write the
// inventory blindly, each from what it last wrote instead of with
// compare-and-set (verify --break-stock-cas), the stamps that sell one
// size write over each other's holds and sales, and verify fails the
// experiment on oversell or on the units that vanish or appear. With
// compare-and-set, the same experiment passes. Each run is the command an
// operator runs (runVerify), with a deployment of its own.
func TestVerifyCatchesBlindStockWrites(t *testing.T) {
	t.Parallel()
	var exp verify.Experiment
	for _, e := range verify.Default() {
		if e.Name == "launch-sellout" {
			exp = e
		}
	}
	if exp.Load.Stock == 0 || exp.Load.Spike == 0 {
		t.Fatalf("no launch-sellout experiment racing buyers for few units: %+v", exp)
	}
	t.Run("blind writes", func(t *testing.T) {
		t.Parallel()
		verdicts := runVerify(t, []verify.Experiment{exp}, "--break-stock-cas")
		oversell, conserved := verdictOf(t, verdicts, "no oversell"), verdictOf(t, verdicts, "stock conserved")
		if oversell.Pass && conserved.Pass {
			t.Fatalf("verify passed blind stock writes: %+v, %+v", oversell, conserved)
		}
		if !verify.Failed(verdicts) {
			t.Fatal("a failed verdict, yet Failed says no")
		}
	})
	t.Run("compare-and-set", func(t *testing.T) {
		t.Parallel()
		if verdicts := runVerify(t, []verify.Experiment{exp}); verify.Failed(verdicts) {
			t.Fatal("an expectation failed with every guarantee on")
		}
	})
}

// contosoBinary builds the contoso command once for the package's tests
// (deploytest.BuildCommand; TestMain removes it).
var contosoBinary = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return deploytest.BuildCommand(ctx, binDir)
})

// runVerify runs exps with `contoso verify` against a deployment that the
// command starts (three regions with simulated latency, one stamp each),
// with extra arguments (a broken guarantee, a defect), and returns the
// verdicts it wrote; it fails t unless the experiments ran (their steady
// state held). Past its bound the command is interrupted, and stops its
// deployment as an operator's Ctrl-C would.
// The command runs as an operator runs it: in a process of its own,
// without the race detector. In this test's process, under the race
// detector, one deployment with its load and a release starved on a
// two-core machine in full CI runs (the release's new stamps took 45 s to
// serve, its store's reads failed for tens of seconds), which proved
// nothing about verify.
func runVerify(t *testing.T, exps []verify.Experiment, args ...string) []verify.Verdict {
	t.Helper()
	bin, err := contosoBinary()
	if err != nil {
		t.Fatal(err)
	}
	exps = slices.Clone(exps)
	for i := range exps {
		exps[i].Profiles = []string{"ci"}
	}
	b, err := yaml.Marshal(map[string]any{"experiments": exps})
	if err != nil {
		t.Fatal(err)
	}
	if back, err := verify.Parse(b); err != nil || !reflect.DeepEqual(back, exps) {
		t.Fatalf("the experiments do not read back as written (%v):\n%s", err, b)
	}
	dir := t.TempDir()
	file, out := filepath.Join(dir, "experiments.yaml"), filepath.Join(dir, "verdicts.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"verify", "--file", file, "--profile", "ci",
		"--instances", "1", "--log-level", "error", "--out", out}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	output, runErr := cmd.CombinedOutput()
	t.Logf("contoso verify %s: %v\n%s", strings.Join(args, " "), runErr, output)
	var report struct {
		Verdicts []verify.Verdict `json:"verdicts"`
	}
	raw, err := os.ReadFile(out)
	if err == nil {
		err = json.Unmarshal(raw, &report)
	}
	if err != nil {
		t.Fatalf("no verdicts from contoso verify (%v): %v", runErr, err)
	}
	if v := verdictOf(t, report.Verdicts, "steady state"); !v.Pass {
		t.Fatalf("the experiment did not run: %+v", v)
	}
	return report.Verdicts
}
