package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/fleet"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/loadtest"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/verify"
)

// errVerifyFailed is returned when an expectation failed: the verdicts say
// which.
var errVerifyFailed = errors.New("verify: expectations failed")

// runVerify runs experiments and judges them: against a deployment it
// starts itself (the default), or against a running one (-edge, -ops).
func runVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logs    logFlags
		profile = fs.String("profile", "ci", "experiments to run: ci (fits in 5 minutes), full (every fault) or all")
		file    = fs.String("file", "", "experiments file (YAML, docs/verify.md); empty: the built-in experiments")
		edge    = fs.String("edge", "", "the edge of a running deployment; empty: start one in this process")
		ops     = fs.String("ops", "", "the operations address of that deployment (with -edge)")
		data    = fs.String("data", ".contoso", "its data directory, whose development issuer signs the shoppers' tokens (with -edge)")
		out     = fs.String("out", "", "file for the verdicts as JSON; empty: none")
		noRetry = fs.Bool("break-edge-retry", false, "start the deployment with the edge's retry off: a broken guarantee, to see verify catch it")
		noCAS   = fs.Bool("break-stock-cas", false, "start the deployment writing the inventory blindly, without compare-and-set: a broken guarantee, to see verify catch it")
		defect  = fs.String("stamp-fault", "", "start the deployment with a defect in every stamp (error=R[,route=FLOW], latency=D[,route=FLOW]; as a release's fault): to hold requests in flight, or see verify judge errors; empty: none")
		procs   = fs.Bool("processes", false, "start the deployment as separate OS processes (up --processes) instead of in this process")
		bin     = fs.String("bin", "", "with -processes: directory of prebuilt nats-server and toxiproxy-server binaries; empty: build them with the go command")
		only    = fs.String("run", "", "regular expression: run only the experiments whose name it matches (before -skip)")
		skip    = fs.String("skip", "", "regular expression: leave out the experiments whose name it matches")
		insts   = fs.Int("instances", 2, "stamp instances per region of the deployment it starts, one per zone (as up)")
		attest  = fs.String("attest", "", "REGISTRY/REPO@sha256:...: record the outcome as that image's verification (docs/releases.md); empty: none")
		regIns  = fs.Bool("registry-insecure", false, "with -attest: speak plain HTTP to a registry on loopback (the development registry)")
		by      = fs.String("by", "", "with -attest: who verifies; empty: $USER")
	)
	logs.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*edge == "") != (*ops == "") {
		return errors.New("verify: -edge and -ops go together")
	}
	if *procs && (*edge != "" || *noRetry || *noCAS || *defect != "") {
		return errors.New("verify: -processes starts a deployment of its own, with every guarantee on: not with -edge, -break-edge-retry, -break-stock-cas or -stamp-fault")
	}
	if *edge != "" && (*noRetry || *noCAS || *defect != "") {
		return errors.New("verify: -break-edge-retry, -break-stock-cas and -stamp-fault start a deployment of their own: not with -edge")
	}
	stampFault, err := stamp.ParseFault(*defect)
	if err != nil {
		return fmt.Errorf("verify: -stamp-fault: %w", err)
	}
	exps := verify.Default()
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if exps, err = verify.Parse(b); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	exps, err = verify.Match(verify.Select(exps, *profile), *only, *skip)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if len(exps) == 0 {
		return fmt.Errorf("verify: no experiment in profile %q left by -run and -skip", *profile)
	}
	var attestOpts []artifact.Option
	if *attest != "" {
		if !imageByDigest.MatchString(*attest) {
			return fmt.Errorf("verify: -attest %q: name the image by digest, REGISTRY/REPO@sha256:<64 hex>", *attest)
		}
		if attestOpts, err = (&registryFlags{insecure: *regIns, timeout: artifact.DefaultTimeout}).options(getenv); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if *by == "" {
			*by = getenv("USER")
		}
	} else if *regIns {
		return errors.New("verify: -registry-insecure goes with -attest")
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	var (
		issuer *auth.Issuer
		tlsCfg *tls.Config // trusts a deployment's CA (up --tls)
	)
	if *edge == "" {
		dir, err := os.MkdirTemp("", "contoso-verify-")
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		defer os.RemoveAll(dir)
		startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		var closeDeployment func() error
		if *procs {
			f, err := fleet.Start(startCtx, fleet.Config{
				DataDir: dir, BinDir: *bin, OpsTrustLoopback: true, ClientRate: 1e9, ClientBurst: 1e9, Instances: *insts,
				Logger: log.With("component", "fleet"),
			})
			if err != nil {
				cancel()
				return fmt.Errorf("verify: start a deployment of processes: %w", err)
			}
			*edge, *ops, issuer, closeDeployment = f.EdgeURL(), f.OpsURL(), f.Issuer(), f.Close
		} else {
			d, err := deploy.Start(startCtx, deploy.Config{
				DataDir: dir, Network: netsim.Config{Latency: netsim.DefaultLatencies()}, OpsTrustLoopback: true, Instances: *insts,
				EdgeClientRate: 1e9, EdgeClientBurst: 1e9, EdgeNoRetry: *noRetry, UnsafeBlindStockWrites: *noCAS, StampFault: stampFault, Getenv: getenv,
				Logger: log.With("component", "deployment"),
			})
			if err != nil {
				cancel()
				return fmt.Errorf("verify: start a deployment: %w", err)
			}
			*edge, *ops, issuer, closeDeployment = d.EdgeURL(), d.OpsURL(), d.Issuer(), d.Close
		}
		cancel()
		defer closeDeployment()
		fmt.Fprintf(stderr, "verify: started a deployment: edge %s, ops %s\n", *edge, *ops)
	} else if issuer, err = deploymentIssuer("verify", *data); err != nil {
		return err
	} else if tlsCfg, err = deploymentTLS(*data); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	admin, err := issuer.Mint("verify", true, 2*time.Hour, time.Now())
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	opsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	cfg := verify.Config{
		Ops: *ops, AdminToken: admin, Log: stderr, HTTP: opsClient,
		Chaos: verify.ChaosInjector{Client: &chaos.Client{BaseURL: *ops, Token: admin, HTTP: opsClient}},
		Load: verify.LoadWith(loadtest.Config{
			Edge: *edge,
			TLS:  tlsCfg,
			Tokens: func(sub string, isAdmin bool) (string, error) {
				return issuer.Mint(sub, isAdmin, 2*time.Hour, time.Now())
			},
		}),
	}
	verdicts, runErr := verify.Run(ctx, cfg, exps)
	verify.PrintTable(stdout, verdicts)
	if *attest != "" {
		a := artifact.Attestation{Profile: *profile, Passed: runErr == nil && !verify.Failed(verdicts), Experiments: len(exps), By: *by}
		if a.Env, err = deploymentEnv(ctx, *ops, admin, opsClient); err == nil {
			err = artifact.Attest(ctx, *attest, a, attestOpts...)
		}
		if err != nil {
			return errors.Join(runErr, fmt.Errorf("verify: attest %s: %w", *attest, err))
		}
		fmt.Fprintf(stderr, "verify: attested %s: passed %t in %s (profile %s, %d experiments)\n", *attest, a.Passed, a.Env, a.Profile, a.Experiments)
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		err = verify.WriteJSON(f, verdicts)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	if runErr != nil {
		return runErr
	}
	if verify.Failed(verdicts) {
		return errVerifyFailed
	}
	return nil
}

// imageByDigest is an image reference by digest: what an attestation is
// about.
var imageByDigest = regexp.MustCompile(`^[^\s@]{1,255}@sha256:[0-9a-f]{64}$`)

// deploymentEnv is the environment of the deployment verified, as its
// operations API names it (GET /ops/releases).
func deploymentEnv(ctx context.Context, ops, token string, hc *http.Client) (string, error) {
	c := release.Client{API: httpapi.Client{BaseURL: ops, Token: token, HTTP: hc}}
	s, err := c.Status(ctx)
	if err != nil {
		return "", err
	}
	if s.Env == "" {
		return "", errors.New("the deployment names no environment")
	}
	return s.Env, nil
}
