package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
)

func runStamp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stamp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logs     logFlags
		region   = fs.String("region", "", "the stamp's region; required")
		natsURL  = fs.String("nats", "nats://127.0.0.1:4222", "comma-separated URLs of the region's NATS servers")
		listen   = fs.String("listen", "127.0.0.1:8081", "HTTP listen address")
		replicas = fs.Int("replicas", 3, "replicas of every store asset (3 in production, 1 for a single-server development cluster)")
		seed     = fs.Bool("seed", true, "store the seed catalog if this deployment has never been seeded")
		interval = fs.Duration("probe-interval", time.Second, "health probe interval")
		jwks     = fs.String("jwks", "", "JWKS of the token issuer: an https:// URL or a file; empty: the development issuer in -data")
		issuer   = fs.String("issuer", auth.DevIssuer, "expected token issuer (iss) with -jwks")
		audience = fs.String("audience", auth.DevAudience, "expected token audience (aud) with -jwks")
		data     = fs.String("data", ".contoso", "data directory holding the development issuer key (without -jwks)")
	)
	logs.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *region == "" {
		return errors.New("-region is required")
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	log = log.With("region", *region)
	vcfg, err := verifierConfig(*jwks, *issuer, *audience, *data)
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(vcfg)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL,
		nats.Name("stamp-"+*region),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(true),
	)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *natsURL, err)
	}
	defer nc.Close()
	openCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err := store.Open(openCtx, store.Config{Conn: nc, Replicas: *replicas, Logger: log.With("component", "store")})
	if err != nil {
		return err
	}
	s, err := stamp.New(stamp.Config{Region: *region, Store: st, Verifier: verifier, Logger: log, ProbeInterval: *interval, Seed: *seed})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	line, _ := json.Marshal(map[string]string{"event": "listening", "region": *region, "url": "http://" + ln.Addr().String()})
	fmt.Fprintf(stdout, "%s\n", line)
	return s.Serve(ctx, ln)
}

// verifierConfig builds the token verifier's configuration from the flags:
// an external issuer's JWKS (URL or file), or the development issuer.
func verifierConfig(jwks, issuer, audience, data string) (auth.VerifierConfig, error) {
	switch {
	case jwks == "":
		iss, err := auth.LoadOrCreateIssuer(data)
		if err != nil {
			return auth.VerifierConfig{}, err
		}
		return iss.VerifierConfig(), nil
	case strings.HasPrefix(jwks, "https://") || strings.HasPrefix(jwks, "http://"):
		return auth.VerifierConfig{Issuer: issuer, Audience: audience, JWKSURL: jwks}, nil
	default:
		b, err := os.ReadFile(jwks)
		if err != nil {
			return auth.VerifierConfig{}, fmt.Errorf("-jwks: %w", err)
		}
		return auth.VerifierConfig{Issuer: issuer, Audience: audience, JWKS: b}, nil
	}
}
