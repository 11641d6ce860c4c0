// Command contoso runs the Contoso Shoes store: the whole multi-region
// system on one machine (up), or each part as its own process for a
// deployment on many machines — one region's stamp against an external
// NATS cluster (stamp), the supervisor of a region's stamps on one host
// (host), the global entry point (edge) or one point of
// presence (pop), the operations plane (ops), the secret store (secrets),
// the partner stand-in (partner) — and the tooling: development tokens and
// their JWKS (token), the SLO rules (health), load tests (load), faults
// (chaos) and experiments with verdicts (verify).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "contoso:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage: contoso <command> [flags]

commands:
  up        run the whole multi-region system on this machine
  stamp     run one region's stamp against an external NATS cluster
  host      run one region's stamps on this host: keep them running, restart them, replace them in a release
  edge      run the global entry point alone, following the stamps registry
  pop       run one region's point of presence alone, following the stamps registry
  ops       run the operations plane alone: health model, SLOs, dashboard and the OTLP receiver, read over the network
  secrets   run the secret store alone, its values kept in a file
  partner   run the fulfilment partner's stand-in alone
  token     print a development bearer token; 'token jwks' prints the issuer's public JWKS
  store     store tooling: 'store users' (nkeys and the servers' authorization), 'store provision' (declare the assets)
  certs     make a deployment CA and issue a certificate from it
  health    health tooling: 'health rules' writes the Prometheus SLO and alert rules
  chaos     inject a fault into a running deployment, list faults, heal one early
  scale     the autoscaler: print its status, change a region's limits, pre-scale for a launch
  release   release a new version without downtime: start, status, pause, resume, promote, rollback
  load      launch-day load test through the edge; writes report.json and report.html
  verify    run the experiments (load + one fault + expectations) and print the verdicts
  image     the release artifact: build and push the OCI image, inspect, pull, attest; a development registry
  version   print this binary's version, source revision and toolchain

Run 'contoso <command> -h' for a command's flags.
`

// run is the whole program; main only supplies the process's environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return runUp(ctx, rest, getenv, stdout, stderr)
	case "stamp":
		return runStamp(ctx, rest, getenv, stdout, stderr)
	case "host":
		return runHost(ctx, rest, getenv, stdout, stderr)
	case "edge":
		return runEdge(ctx, rest, getenv, stdout, stderr)
	case "pop":
		return runPop(ctx, rest, getenv, stdout, stderr)
	case "ops":
		return runOps(ctx, rest, getenv, stdout, stderr)
	case "secrets":
		return runSecrets(ctx, rest, getenv, stdout, stderr)
	case "partner":
		return runPartner(ctx, rest, getenv, stdout, stderr)
	case "token":
		return runToken(rest, stdout, stderr)
	case "store":
		return runStore(ctx, rest, stdout, stderr)
	case "certs":
		return runCerts(rest, stdout, stderr)
	case "health":
		return runHealth(rest, stdout, stderr)
	case "chaos":
		return runChaos(ctx, rest, getenv, stdout, stderr)
	case "scale":
		return runScale(ctx, rest, getenv, stdout, stderr)
	case "release":
		return runRelease(ctx, rest, getenv, stdout, stderr)
	case "load":
		return runLoad(ctx, rest, getenv, stdout, stderr)
	case "verify":
		return runVerify(ctx, rest, getenv, stdout, stderr)
	case "image":
		return runImage(ctx, rest, getenv, stdout, stderr)
	case "version":
		return runVersion(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
