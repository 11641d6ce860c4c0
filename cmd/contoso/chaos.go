package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/chaos"
)

// envAdminToken names the environment variable holding the admin bearer
// token that operations commands send.
const envAdminToken = "CONTOSO_ADMIN_TOKEN"

const chaosUsage = `usage:
  contoso chaos FAULT [TARGET] -duration 30s [-latency 200ms] [-jitter 0s] [-delay 3s] [-ops URL] [-token T]
  contoso chaos list [-ops URL] [-token T]
  contoso chaos heal ID [-ops URL] [-token T]

Injects a fault into a running deployment through its operations API, lists
the faults, or heals one early. A fault heals itself after its duration.
TARGET is a region, two regions joined by "-" for link faults, or "global"
(the default) for the secret store and partner faults.

faults: %s

flags:
`

// runChaos is `contoso chaos`: a client of the deployment's /ops/chaos API.
// It prints the API's answers as JSON; an API error is returned with the
// problem's detail.
func runChaos(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), chaosUsage, strings.Join(chaos.Faults(), ", "))
		fs.PrintDefaults()
	}
	var (
		ops      = fs.String("ops", "http://127.0.0.1:8090", "the deployment's operations address")
		token    = fs.String("token", "", "admin bearer token; empty: $"+envAdminToken)
		ca       = fs.String("ca", "", "PEM file of the CA of an https:// operations address (up --tls: <data>/config/tls/ca.pem); empty: the system's roots")
		duration = fs.Duration("duration", 0, "how long the fault lasts before it heals itself (1s to 1h); required to inject")
		latency  = fs.Duration("latency", 0, "link-latency: the link's latency (default 200ms)")
		jitter   = fs.Duration("jitter", 0, "link-latency: random extra latency up to this much (default 0s)")
		delay    = fs.Duration("delay", 0, "partner-slow: how late the partner answers (default 3s)")
	)
	// Flags may come before, between or after the positional arguments.
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return errors.New("chaos: a fault, list or heal is required")
	}
	if *token == "" {
		*token = getenv(envAdminToken) // not the flag's default: -h would print it
	}
	if *ops == "" {
		return errors.New("chaos: -ops is required")
	}
	tlsCfg, err := clientTLS("ca", *ca)
	if err != nil {
		return err
	}
	client := &chaos.Client{
		BaseURL: *ops,
		Token:   *token,
		// A heal may restart a region; the server bounds it at two minutes.
		HTTP: &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{TLSClientConfig: tlsCfg}},
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var out any
	switch pos[0] {
	case "list":
		if len(pos) != 1 {
			return fmt.Errorf("chaos: list takes no arguments, got %q", pos[1:])
		}
		out, err = client.List(ctx)
	case "heal":
		if len(pos) != 2 {
			return errors.New("chaos: heal takes one fault id")
		}
		out, err = client.Heal(ctx, pos[1])
	default:
		if len(pos) > 2 {
			return fmt.Errorf("chaos: want FAULT [TARGET], got %q", pos)
		}
		if !set["duration"] {
			return errors.New("chaos: -duration is required (1s to 1h)")
		}
		s := chaos.Spec{Fault: pos[0], Duration: chaos.Duration(*duration)}
		if len(pos) == 2 {
			s.Target = pos[1]
		}
		for name, v := range map[string]time.Duration{"latency": *latency, "jitter": *jitter, "delay": *delay} {
			if set[name] {
				if s.Params == nil {
					s.Params = map[string]string{}
				}
				s.Params[name] = v.String()
			}
		}
		out, err = client.Inject(ctx, s)
	}
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return printIndented(stdout, out)
}
