package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/release"
)

const releaseUsage = `usage:
  contoso release start (-version V | -image REF@sha256:...) [-steps 10,50,100] [-regions a,b,c] [-hold 5s] [-min-requests 30] [-start-timeout 90s] [-fault SPEC] [-force] [-by NAME] [-wait]
  contoso release status
  contoso release pause|resume|promote|rollback [-by NAME]

Runs a release of a deployment through its operations API: new stamps of
the version start next to the old ones in every region, prewarm, and take
each region's traffic step by step, every step gated on the health model
and the new version's error ratio and p99 against the old one's; a gate
that fails rolls the release back. pause holds the current step, resume
goes on, promote ends the current step as if its gate passed, rollback
sends every region back to the old version.

flags:
`

// runRelease is `contoso release`: a client of /ops/releases. It prints
// the API's answers as JSON.
func runRelease(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), releaseUsage)
		fs.PrintDefaults()
	}
	var (
		ops         = fs.String("ops", "http://127.0.0.1:8090", "the deployment's operations address")
		token       = fs.String("token", "", "admin bearer token; empty: $"+envAdminToken)
		ca          = fs.String("ca", "", "PEM file of the CA of an https:// operations address; empty: the system's roots")
		version     = fs.String("version", "", "start: the version to release, run in process by `up`")
		image       = fs.String("image", "", "start: the artifact to release, by digest (REF@sha256:...)")
		steps       = fs.String("steps", "", "start: each region's traffic percents, rising to 100 (default 10,50,100)")
		regions     = fs.String("regions", "", "start: the order regions take each step in (default: the declared order)")
		hold        = fs.Duration("hold", 0, "start: the least time each step is held (default 5s)")
		minRequests = fs.Int("min-requests", 0, "start: requests the new version must serve in a step before it can pass (default 30)")
		fault       = fs.String("fault", "", "start: a defect the new stamps carry, to prove the gate (dev only): error=0.05,route=checkout | latency=300ms | crash-on-start | never-ready")
		startWithin = fs.Duration("start-timeout", 0, "start: how long the new stamps may take to be ready before the release fails, 1s to 10m (default: the deployment's, 90s)")
		force       = fs.Bool("force", false, "start: in prod, release an artifact that did not pass verification in dev")
		by          = fs.String("by", "", "who asks (recorded)")
		wait        = fs.Bool("wait", false, "start: wait until the release ends and print its record; exit non-zero unless it is done")
	)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("release: one of start, status, pause, resume, promote, rollback is required")
	}
	if *token == "" {
		*token = getenv(envAdminToken)
	}
	tlsCfg, err := clientTLS("ca", *ca)
	if err != nil {
		return err
	}
	client := &release.Client{API: httpapi.Client{BaseURL: *ops, Token: *token,
		HTTP: &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tlsCfg}}}}
	var out any
	switch cmd := pos[0]; cmd {
	case "start":
		req := release.Request{Version: *version, Image: *image, Fault: *fault, Force: *force, By: *by, StartTimeout: *startWithin,
			Gate: release.Gate{MinHold: *hold, MinRequests: *minRequests}}
		if *steps != "" {
			for _, s := range strings.Split(*steps, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return fmt.Errorf("release: -steps %q: %w", *steps, err)
				}
				req.Steps = append(req.Steps, n)
			}
		}
		if *regions != "" {
			req.Regions = strings.Split(*regions, ",")
		}
		rec, err := client.Start(ctx, req)
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		out = rec
		if *wait {
			last := ""
			end, err := client.Wait(ctx, time.Second, func(r *release.Record) {
				if line := progress(r); line != last {
					fmt.Fprintln(stderr, line)
					last = line
				}
			})
			if err != nil {
				return fmt.Errorf("release: %w", err)
			}
			if err := printIndented(stdout, end); err != nil {
				return err
			}
			if end.Phase != release.PhaseDone {
				return fmt.Errorf("release %s %s: %s", end.ID, end.Phase, end.Reason)
			}
			return nil
		}
	case "status":
		out, err = client.Status(ctx)
	case "pause", "resume", "promote", "rollback":
		out, err = client.Do(ctx, release.Action(cmd), *by)
	default:
		return fmt.Errorf("release: unknown subcommand %q", cmd)
	}
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return printIndented(stdout, out)
}

// progress is one line about where a release is.
func progress(r *release.Record) string {
	line := fmt.Sprintf("release %s: %s", r.ID, r.Phase)
	if r.Stage >= 0 && r.Stage < len(r.Plan) {
		line += fmt.Sprintf(", step %d/%d (%s %d %%)", r.Stage+1, len(r.Plan), r.Plan[r.Stage].Region, r.Plan[r.Stage].Percent)
	}
	if r.Paused {
		line += ", paused"
	}
	if r.Reason != "" {
		line += ": " + r.Reason
	}
	return line
}

// printIndented prints v as indented JSON: the answers of the operations API.
func printIndented(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
