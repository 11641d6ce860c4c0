package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/contoso/shoes/internal/host"
	"github.com/contoso/shoes/internal/release"
)

// stampEnvNames are the variables a host passes on from its own
// environment to every stamp it starts (a stamp gets no other): the keys
// of its last-known-good file and of the edge, the secret store's token,
// the partner's credentials when there is no secret store, and the
// OpenTelemetry settings.
var stampEnvNames = func() []string {
	names := []string{envLKGKey, envEdgeCredential, envSecretsToken, envPartnerSecret("API_KEY"), envPartnerSecret("SIGNING_KEY"),
		"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_METRIC_EXPORT_INTERVAL"}
	for _, signal := range []string{"", "TRACES_", "METRICS_"} {
		for _, key := range []string{"ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION"} {
			names = append(names, "OTEL_EXPORTER_OTLP_"+signal+key)
		}
	}
	return names
}()

// stampEnv is the environment of the host's stamps: the variables of
// stampEnvNames that are set.
func stampEnv(getenv func(string) string) []string {
	var env []string
	for _, name := range stampEnvNames {
		if v := getenv(name); v != "" {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// envPartnerSecret names the variable a stamp without a secret store reads
// a partner credential from (secrets.EnvProvider).
func envPartnerSecret(key string) string { return "CONTOSO_SECRET_PARTNER_" + key }

// runHost is `contoso host`: one region's stamps on this host, kept
// running, restarted when they exit, and replaced by a release's
// (internal/host). The flags after -- are every stamp's.
func runHost(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: contoso host --region R [flags] -- <contoso stamp flags>")
		fs.PrintDefaults()
	}
	var (
		logs      logFlags
		conn      natsFlags
		region    = fs.String("region", "", "the region whose stamps this host runs; required")
		instances = fs.Int("instances", 1, "stamp processes this host keeps, and during a release of each version: its share of the region")
		data      = fs.String("data", ".contoso-host", "directory of the stamps' logs (logs/) and the releases' binaries (releases/<digest>/contoso)")
		listen    = fs.String("listen", "127.0.0.1:8081", "address of the first stamp: the stamp in slot k listens on its port + k (a release runs up to twice -instances stamps); port 0: a free port each")
		advertise = fs.String("advertise", "", "scheme and host the edge reaches this host's stamps at, without a port (each stamp announces its own), e.g. https://stamp-weu-1.contoso.example; empty: each stamp's listen address")
		env       = fs.String("env", "", "the environment: dev or prod (every stamp's --env); empty: "+envEnv+", else dev")
		insecure  = fs.Bool("registry-insecure", false, "speak plain HTTP to a release registry on loopback (a development registry)")
	)
	conn.register(fs, "nats://127.0.0.1:4222", "the store servers, nearest first; the host reads the stamps registry and the releases and takes the autoscaler's starts and drains as the agents' user (-nats-nkey, agent.nk)")
	logs.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	stampFlags := fs.Args()
	if n := len(args) - len(stampFlags); len(stampFlags) > 0 && (n == 0 || args[n-1] != "--") {
		return fmt.Errorf("host: %q: the stamps' flags go after --", stampFlags[0])
	}
	switch {
	case *region == "":
		return errors.New("-region is required")
	case *instances < 1:
		return fmt.Errorf("-instances %d: want 1 or more", *instances)
	}
	creds, err := conn.credentials()
	if err != nil {
		return err
	}
	pull, err := registryOptions(*insecure, 0, getenv)
	if err != nil {
		return err
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	h, err := host.Start(ctx, host.Config{
		Region: *region, Instances: *instances, DataDir: *data, Listen: *listen, Advertise: *advertise,
		StampFlags: slices.Clone(stampFlags), Env: stampEnv(getenv), Environment: cmp.Or(*env, getenv(envEnv), release.EnvDev),
		NATSURL: conn.url, NATS: creds, Registry: pull, Logger: log,
	})
	if err != nil {
		return err
	}
	line, _ := json.Marshal(map[string]any{"event": "ready", "region": *region, "stamps": h.Stamps()})
	fmt.Fprintf(stdout, "%s\n", line)
	<-ctx.Done()
	log.Info("stopping: draining every stamp")
	return h.Close()
}
