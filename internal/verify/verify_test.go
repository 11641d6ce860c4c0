package verify_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/loadtest"
	"github.com/contoso/shoes/internal/verify"
)

// The verdicts are real: with the edge's retry of idempotent requests
// turned off, a crashed stamp's in-flight and next requests fail before its
// POP stops routing to it, and verify fails the experiment on exactly that
// expectation. (With the retry on, the same experiment passes: `contoso
// verify --profile ci` runs it in CI.)
func TestVerifyCatchesADisabledRetry(t *testing.T) {
	exps, err := verify.Parse([]byte(`experiments:
  - name: instance-kill-without-retry
    load: {rate: 50, ramp: 1s, hold: 12s}
    fault: {fault: instance-kill, target: westeurope, after: 4s, duration: 5s}
    expect:
      data: {idempotent_failures: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	// Up to three runs, each on a deployment of its own, one of which must
	// catch it: a crash can land with nothing in flight, and some
	// deployments let every run on them miss (not understood yet).
	for run := 1; run <= 3; run++ {
		caught := false
		t.Run(fmt.Sprintf("run %d", run), func(t *testing.T) { caught = catchesADisabledRetry(t, exps) })
		if caught || t.Failed() {
			return
		}
	}
	t.Fatal("verify passed an edge that does not retry idempotent requests three times")
}

// catchesADisabledRetry runs exps against a fresh deployment whose edge does
// not retry, and reports whether verify failed the idempotent-failures
// expectation.
func catchesADisabledRetry(t *testing.T, exps []verify.Experiment) bool {
	d := deploytest.MustStart(t, deploytest.Options{Latency: true, Probe: time.Second, EdgeRate: 1e9, EdgeBurst: 1e9, EdgeNoRetry: true},
		"westeurope", "northeurope", "eastus")
	admin := deploytest.Token(t, d, "verify", true)
	var log bytes.Buffer
	cfg := verify.Config{
		Ops: d.OpsURL(), AdminToken: admin, Log: &log,
		// The crash hits the region that serves the westeurope clients at
		// that moment: their own, unless their POP measures another stamp
		// as nearer (a busy stamp answers its probes more slowly).
		Chaos: servingRegion{verify.ChaosInjector{Client: &chaos.Client{BaseURL: d.OpsURL(), Token: admin}}, d, "westeurope"},
		// Every client in one region, and only idempotent flows (product
		// pages and keyed checkouts): the requests in flight when their
		// stamp crashes, and those that reach it before its POP's next
		// probe or three failures in a row eject it, fail without the
		// retry.
		Load: verify.LoadWith(loadtest.Config{Edge: d.EdgeURL(), Regions: []string{"westeurope"}, Mix: loadtest.Mix{Product: 40, Checkout: 60},
			Tokens: func(sub string, isAdmin bool) (string, error) {
				return d.Issuer().Mint(sub, isAdmin, time.Hour, time.Now())
			}}),
	}
	verdicts, err := verify.Run(context.Background(), cfg, exps)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	var table bytes.Buffer
	verify.PrintTable(&table, verdicts)
	t.Logf("\n%s\n%s", table.String(), log.String())
	for _, v := range verdicts {
		if strings.HasPrefix(v.Expectation, "steady state") && !v.Pass {
			t.Fatalf("the experiment did not run: %+v", v)
		}
	}
	for _, v := range verdicts {
		if strings.HasPrefix(v.Expectation, "failed idempotent requests") && !v.Pass {
			if !verify.Failed(verdicts) {
				t.Fatal("a failed verdict, yet Failed says no")
			}
			return true
		}
	}
	return false
}

// servingRegion injects a fault into the region that the POP of clients
// sends them to at the moment of injection, in place of the experiment's
// target.
type servingRegion struct {
	verify.ChaosInjector
	d       *deploy.Deployment
	clients string
}

func (s servingRegion) Inject(ctx context.Context, f verify.Fault) (string, error) {
	if routes := edge.Routes(s.d.Edge().Status())[s.clients]; len(routes) > 0 {
		f.Target = routes[0]
	}
	return s.ChaosInjector.Inject(ctx, f)
}

// The release verdicts are real: release-bad, as shipped, run against a
// release whose gate tolerates any error ratio (error_tolerance: 1) sees
// the defective version go through, and verify fails the experiment on
// its outcome.
func TestVerifyCatchesAReleaseGateThatCannotFail(t *testing.T) {
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
	exp.Name, exp.Release = "release-bad-with-a-gate-that-cannot-fail", &r

	d := deploytest.MustStart(t, deploytest.Options{Latency: true, Probe: time.Second, EdgeRate: 1e9, EdgeBurst: 1e9},
		"westeurope", "northeurope", "eastus")
	admin := deploytest.Token(t, d, "verify", true)
	var log bytes.Buffer
	cfg := verify.Config{
		Ops: d.OpsURL(), AdminToken: admin, Log: &log,
		Chaos: verify.ChaosInjector{Client: &chaos.Client{BaseURL: d.OpsURL(), Token: admin}},
		Load: verify.LoadWith(loadtest.Config{Edge: d.EdgeURL(),
			Tokens: func(sub string, isAdmin bool) (string, error) {
				return d.Issuer().Mint(sub, isAdmin, time.Hour, time.Now())
			}}),
	}
	verdicts, err := verify.Run(t.Context(), cfg, []verify.Experiment{exp})
	var table bytes.Buffer
	verify.PrintTable(&table, verdicts)
	t.Logf("\n%s\n%s", table.String(), log.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var outcome *verify.Verdict
	for i, v := range verdicts {
		if strings.HasPrefix(v.Expectation, "steady state") && !v.Pass {
			t.Fatalf("the experiment did not run: %+v", v)
		}
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
