package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/secrets/secretstore"
	"github.com/contoso/shoes/internal/telemetry"
)

// minStoreTokenLen is the shortest bearer token the secret store takes:
// a guessable token would open every secret.
const minStoreTokenLen = 16

// runSecrets runs the secret store alone: the global secret store of a
// multi-host deployment, its values kept in a file that survives restarts.
func runSecrets(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("secrets", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logs      logFlags
		serve     tlsFlags
		listen    = fs.String("listen", "127.0.0.1:8200", "address of the secret store")
		values    = fs.String("values", "", `JSON file of the secret values, {"name": "value", ...} (mode 0600); loaded at start, rewritten atomically on every PUT /v1/secrets/{name}; required`)
		tokenFile = fs.String("token-file", "", "file holding the bearer token every client must send (mode 0600); instead of "+envSecretsToken)
	)
	logs.register(fs)
	serve.register(fs, "the secret store")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("secrets takes no arguments, only flags")
	}
	if *values == "" {
		return errors.New(`-values is required: a JSON file of the secret values, {"name": "value", ...}, of mode 0600 ('{}' to start empty)`)
	}
	token, err := envOrFileSecret("the secret store's bearer token", envSecretsToken, getenv(envSecretsToken), "token-file", *tokenFile)
	if err != nil {
		return err
	}
	if len(token) < minStoreTokenLen {
		return fmt.Errorf("the secret store's bearer token is %d characters long: at least %d are required (make one with: openssl rand -hex 32)", len(token), minStoreTokenLen)
	}
	tlsCfg, err := serve.config()
	if err != nil {
		return err
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	file, err := secretstore.LoadValues(*values)
	if err != nil {
		return fmt.Errorf("-values: %w", err)
	}
	tel, log, stopTelemetry, err := startTelemetry(telemetry.ServiceSecrets, "", getenv, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	store := secretstore.New(secretstore.Config{Token: token, Logger: log.With("component", "secretstore"), Persist: file.Set})
	all := file.All()
	for name, v := range all {
		store.Set(name, v)
	}
	log.Info("secret store loaded", "secrets", len(all), "values", file.Path())
	// Requests held by the hang mode would hold the drain until its bound:
	// when told to stop while it hangs, the store answers them 503.
	stopHang := context.AfterFunc(ctx, func() {
		if store.Mode() == secretstore.Hang {
			store.SetMode(secretstore.Unavailable)
		}
	})
	defer stopHang()
	return serveEndpoints(ctx, stdout, log, tlsCfg, map[string]string{"event": "ready"},
		endpoint{name: "url", addr: *listen, handler: tel.Middleware("secrets", "global", nil)(store.Handler())})
}

// envOrFileSecret is a secret a command takes from the environment
// variable envName (whose value is envValue) or from the file the flag
// flagName names, read through keyfile so that a file others can read is
// refused: one of the two, not both, and not empty. Surrounding white
// space is ignored. what names the secret in errors.
func envOrFileSecret(what, envName, envValue, flagName, file string) (string, error) {
	envValue = strings.TrimSpace(envValue)
	switch {
	case file != "" && envValue != "":
		return "", fmt.Errorf("%s is given twice: use %s or -%s, not both", what, envName, flagName)
	case file != "":
		b, err := keyfile.Read(file, maxTokenFileBytes)
		if err != nil {
			return "", fmt.Errorf("-%s: %w", flagName, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("-%s: %s is empty", flagName, file)
		}
		return v, nil
	case envValue != "":
		return envValue, nil
	}
	return "", fmt.Errorf("%s is required: set %s or -%s PATH (a file of mode 0600)", what, envName, flagName)
}
