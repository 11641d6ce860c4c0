package main

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/telemetry"
)

// Environment variables holding the partner stand-in's credentials (the
// alternatives to -api-key-file and -signing-key-file).
const (
	envPartnerAPIKey     = "CONTOSO_PARTNER_API_KEY"
	envPartnerSigningKey = "CONTOSO_PARTNER_SIGNING_KEY"
)

// runPartner runs the fulfilment partner's stand-in alone: it takes the
// stamps' order notifications, checks their API key and signature, and has
// the chaos switch (/v1/mode) of the stand-in that up runs.
func runPartner(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("partner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logs        logFlags
		serve       tlsFlags
		listen      = fs.String("listen", "127.0.0.1:8300", "address of the partner stand-in")
		apiKeyFile  = fs.String("api-key-file", "", "file holding the API key notifications must carry (mode 0600); instead of "+envPartnerAPIKey)
		signingFile = fs.String("signing-key-file", "", "file holding the key notifications must be signed with (mode 0600); instead of "+envPartnerSigningKey)
	)
	logs.register(fs)
	serve.register(fs, "the partner stand-in")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("partner takes no arguments, only flags")
	}
	apiKey, err := envOrFileSecret("the partner API key", envPartnerAPIKey, getenv(envPartnerAPIKey), "api-key-file", *apiKeyFile)
	if err != nil {
		return err
	}
	signingKey, err := envOrFileSecret("the partner signing key", envPartnerSigningKey, getenv(envPartnerSigningKey), "signing-key-file", *signingFile)
	if err != nil {
		return err
	}
	tlsCfg, err := serve.config()
	if err != nil {
		return err
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	tel, log, stopTelemetry, err := startTelemetry(telemetry.ServicePartner, "", getenv, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	standIn := partner.NewStandIn(partner.StandInConfig{
		APIKey:     func() string { return apiKey },
		SigningKey: func() string { return signingKey },
		Logger:     log.With("component", "partner"),
	})
	return serveEndpoints(ctx, stdout, log, tlsCfg, map[string]string{"event": "ready"},
		endpoint{name: "url", addr: *listen, handler: tel.Middleware("partner", "global", nil)(standIn.Handler())})
}
