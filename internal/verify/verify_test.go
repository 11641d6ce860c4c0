package verify_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/loadtest"
	"github.com/contoso/shoes/internal/verify"
)

// The verdicts are real: with the edge's retry of idempotent requests
// turned off, a crashed stamp's in-flight and next requests fail before its
// POP stops routing to it, and verify fails the experiment on exactly that
// expectation. (With the retry on, the same experiment passes: `contoso
// verify --profile ci` runs it in CI.)
func TestVerifyCatchesADisabledRetry(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{Latency: true, Probe: time.Second, EdgeRate: 1e9, EdgeBurst: 1e9, EdgeNoRetry: true},
		"westeurope", "northeurope", "eastus")
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
	admin := deploytest.Token(t, d, "verify", true)
	cfg := verify.Config{
		Ops: d.OpsURL(), AdminToken: admin,
		Chaos: verify.ChaosInjector{Client: &chaos.Client{BaseURL: d.OpsURL(), Token: admin}},
		// Every client in the crashed region, and only idempotent flows
		// (product pages and keyed checkouts). A checkout takes a few
		// hundred milliseconds (quorum writes across the links), so at
		// 30 checkouts/s several are in flight at the stamp when it
		// crashes, however loaded the machine; requests arriving after the
		// crash are refused until three failures in a row eject it. Each of
		// those fails without the retry.
		Load: verify.LoadWith(loadtest.Config{Edge: d.EdgeURL(), Regions: []string{"westeurope"}, Mix: loadtest.Mix{Product: 40, Checkout: 60},
			Tokens: func(sub string, isAdmin bool) (string, error) {
				return d.Issuer().Mint(sub, isAdmin, time.Hour, time.Now())
			}}),
	}
	// Up to three runs, one of which must catch it: a crash could still
	// land in a lull between checkouts.
	for run := 1; run <= 3; run++ {
		var log bytes.Buffer
		cfg.Log = &log
		verdicts, err := verify.Run(context.Background(), cfg, exps)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, log.String())
		}
		var table bytes.Buffer
		verify.PrintTable(&table, verdicts)
		t.Logf("run %d:\n%s\n%s", run, table.String(), log.String())
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
				return // caught
			}
		}
	}
	t.Fatal("verify passed an edge that does not retry idempotent requests three times")
}
