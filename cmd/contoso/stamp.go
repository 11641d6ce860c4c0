package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/buildinfo"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/secrets"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/telemetry"
)

// envLKGKey names the environment variable holding the hex AES-256 key of
// the stamp's last-known-good secrets copy.
const envLKGKey = "CONTOSO_LKG_KEY"

// envSecretsToken names the environment variable holding the secret
// store's bearer token (the alternative to -secrets-token-file).
const envSecretsToken = "CONTOSO_SECRETS_TOKEN"

// envEdgeCredential names the environment variable holding the credential
// the edge adds to every request; a stamp with it refuses API traffic that
// does not come through the edge.
const envEdgeCredential = "CONTOSO_EDGE_CREDENTIAL"

// envEnvironment names the environment variable that says which
// environment a stamp runs in (dev or prod) when --env does not.
const envEnvironment = "CONTOSO_ENV"

// errFaultInProd is the refusal of a stamp told to inject a fault in the
// prod environment.
var errFaultInProd = errors.New("injected faults are refused in the prod environment: they exist to prove the release gates in dev and test deployments")

func runStamp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stamp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logs       logFlags
		region     = fs.String("region", "", "the stamp's region; required")
		zone       = fs.String("zone", "", "the stamp's failure domain in its region (an availability zone, e.g. westeurope-2), announced in the registry, its health report and its telemetry; empty: <region>-1")
		conn       partFlags
		listen     = fs.String("listen", "127.0.0.1:8081", "HTTP listen address")
		advertise  = fs.String("advertise", "", "URL the edge reaches this stamp at, announced in the stamps registry: http://host:port, or https://host:port with -tls-cert; empty: the -listen address, which then must not be a wildcard (0.0.0.0, ::)")
		replicas   = fs.Int("replicas", 3, "replicas of every store asset (3 in production, 1 for a single-server development cluster)")
		seed       = fs.Bool("seed", true, "store the seed catalog if this deployment has never been seeded")
		interval   = fs.Duration("probe-interval", time.Second, "health probe interval")
		tokens     issuerFlags
		secretsURL = fs.String("secrets", "", "URL of the secret-store service; its bearer token comes from "+envSecretsToken+" or -secrets-token-file")
		tokenFile  = fs.String("secrets-token-file", "", "file holding the secret store's bearer token (mode 0600; refused when group or others can read it); instead of "+envSecretsToken)
		secretsDir = fs.String("secrets-dir", "", "directory of mounted secret files (one file per secret name); without -secrets, secrets also come from CONTOSO_SECRET_* variables")
		refresh    = fs.Duration("secret-refresh", 30*time.Second, "how often secrets are refreshed")
		lkg        = fs.String("lkg", "", "file for the encrypted last-known-good copy of the secrets; its key comes from "+envLKGKey+" (64 hex characters)")
		partnerURL = fs.String("partner", "", "the fulfilment partner's notification URL; empty: this stamp does not process orders")
		release    = fs.String("release", "", "the release this stamp runs, announced in the registry, its health report and its telemetry (service.version); empty: this binary's version ("+buildinfo.Version()+")")
		faultSpec  = fs.String("fault", "", "a defect to inject for a release experiment, e.g. error=0.05,route=checkout; latency=300ms; crash-on-start; never-ready (refused with --env prod)")
		env        = fs.String("env", "", "the environment: dev or prod; empty: "+envEnvironment+", else dev")
		warm       = fs.Int("warm-requests", 20, "synthetic requests the stamp answers through its own handler before it first reports ready; 0: none")
		capacity   = fs.Int("capacity", 256, "API requests the stamp handles at once, 1 to 100000; one beyond waits up to 500 ms for a slot, else is answered 429")
		work       = fs.Duration("work", 0, "simulated work every API request holds its slot for, up to 10s, for a test bench whose instances share one machine's cores (refused with --env prod)")
		profile    = fs.Bool("pprof", false, "serve the Go runtime's profiles at /debug/pprof/ beside the operations routes (/ops/drain), with their admin token check")
	)
	logs.register(fs)
	tokens.register(fs)
	conn.register(fs, "the region's NATS servers, nearest first", "the stamp", "ca", "to trust for the secret store and the partner (https)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *region == "" {
		return errors.New("-region is required")
	}
	environment, err := stampEnvironment(*env, getenv(envEnvironment))
	if err != nil {
		return err
	}
	fault, err := stampFault(*faultSpec, environment)
	if err != nil {
		return err
	}
	if err := checkStampCapacity(*capacity, *work, environment); err != nil {
		return err
	}
	p, err := conn.resolve("ca")
	if err != nil {
		return err
	}
	if err := checkAdvertise(*listen, *advertise, p.serverTLS != nil); err != nil {
		return err
	}
	storeToken, err := secretStoreToken(*secretsURL, *tokenFile, getenv(envSecretsToken))
	if err != nil {
		return err
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	vcfg, err := tokens.config()
	if err != nil {
		return err
	}
	// The identity NewInstance gives the stamp's part, so that the
	// process has that one part: its zone is the stamp's default too.
	tel, log, stopTelemetry, err := startTelemetryAs(telemetry.Identity{Service: telemetry.ServiceStamp, Region: *region, Version: *release,
		Zone: cmp.Or(*zone, *region+"-1")}, getenv, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	cfg := deploy.InstanceConfig{
		Region: *region, Zone: *zone, NATSURL: conn.nats.url, NATS: p.store, TLS: p.serverTLS, ClientTLS: p.clientTLS, Replicas: *replicas, Verifier: vcfg,
		SecretRefresh: *refresh, PartnerURL: *partnerURL, ProbeInterval: *interval, Seed: *seed, Logger: log,
		EdgeCredential: getenv(envEdgeCredential), Telemetry: tel, AdvertiseURL: *advertise,
		Release: *release, Fault: fault, WarmRequests: *warm, Pprof: *profile, Capacity: *capacity, Work: *work,
	}
	if *warm <= 0 {
		cfg.WarmRequests = -1 // none; the stamp's zero means its default
	}
	if cfg.EdgeCredential == "" {
		log.Warn("no edge credential (" + envEdgeCredential + "): the API answers anyone who can reach this stamp")
	}
	switch {
	case *secretsURL != "":
		cfg.Secrets = &secrets.HTTPProvider{BaseURL: *secretsURL, Token: storeToken, Client: &http.Client{Transport: deploy.ServiceTransport(p.clientTLS)}}
	case *secretsDir != "" || *partnerURL != "":
		cfg.Secrets = secrets.EnvProvider{Getenv: getenv, Dir: *secretsDir}
	}
	if *lkg != "" {
		key, err := hex.DecodeString(getenv(envLKGKey))
		if err != nil || len(key) != 32 {
			return fmt.Errorf("-lkg needs %s: 64 hex characters (a 32-byte key)", envLKGKey)
		}
		cfg.LKGPath, cfg.LKGKey = *lkg, key
	}
	openCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	in, err := deploy.NewInstance(openCtx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	url := httpapi.Scheme(p.serverTLS != nil) + "://" + ln.Addr().String()
	advertised := *advertise
	if advertised == "" {
		advertised = url
	}
	line, _ := json.Marshal(map[string]string{"event": "listening", "region": *region, "url": url, "advertise": advertised})
	fmt.Fprintf(stdout, "%s\n", line)
	return in.Serve(ctx, ln)
}

// stampEnvironment is the environment --env names (flagEnv), else
// CONTOSO_ENV (varEnv), else dev: dev or prod.
func stampEnvironment(flagEnv, varEnv string) (string, error) {
	env := cmp.Or(strings.TrimSpace(flagEnv), strings.TrimSpace(varEnv), "dev")
	if env != "dev" && env != "prod" {
		if flagEnv == "" {
			return "", fmt.Errorf("%s=%s: want dev or prod", envEnvironment, varEnv)
		}
		return "", fmt.Errorf("--env %s: want dev or prod", flagEnv)
	}
	return env, nil
}

// stampFault is the fault --fault asks a stamp to inject in env (dev or
// prod): in prod only the zero fault.
func stampFault(spec, env string) (stamp.Fault, error) {
	fault, err := stamp.ParseFault(spec)
	if err != nil {
		return stamp.Fault{}, fmt.Errorf("--fault: %w", err)
	}
	if env == "prod" && !fault.Zero() {
		return stamp.Fault{}, fmt.Errorf("--fault %s: %w", fault, errFaultInProd)
	}
	return fault, nil
}

// maxStampCapacity bounds --capacity.
const maxStampCapacity = 100000

// errWorkInProd is the refusal of a stamp told to simulate work in the
// prod environment.
var errWorkInProd = errors.New("simulated work is refused in the prod environment: it exists to give test-bench instances a cost their capacity bounds")

// checkStampCapacity refuses a --capacity outside 1 to 100000, a --work
// outside 0 to 10s, and any --work in prod (env).
func checkStampCapacity(capacity int, work time.Duration, env string) error {
	if capacity < 1 || capacity > maxStampCapacity {
		return fmt.Errorf("--capacity %d: want 1 to %d", capacity, maxStampCapacity)
	}
	if work < 0 || work > 10*time.Second {
		return fmt.Errorf("--work %s: want 0 to 10s", work)
	}
	if env == "prod" && work != 0 {
		return fmt.Errorf("--work %s: %w", work, errWorkInProd)
	}
	return nil
}

// checkAdvertise refuses, before the stamp connects to anything, a stamp
// that would announce an address the edge cannot reach: a malformed or
// wildcard -advertise URL, one whose scheme does not match whether the
// stamp serves TLS, or no -advertise at all while -listen is a wildcard.
// The stamp package applies the same rule when it starts.
func checkAdvertise(listen, advertise string, tls bool) error {
	if advertise != "" {
		if err := stamp.CheckAdvertiseURL(advertise, tls); err != nil {
			return fmt.Errorf("--advertise: %w", err)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	if stamp.WildcardHost(host) {
		return fmt.Errorf("-listen %s is a wildcard address, which an edge on another host would dial as itself: "+
			"pass --advertise %s://HOST:PORT, the URL the edge reaches this stamp at", listen, httpapi.Scheme(tls))
	}
	return nil
}

// maxTokenFileBytes bounds -secrets-token-file.
const maxTokenFileBytes = 4 << 10

// secretStoreToken is the bearer token a stamp sends to the secret store at
// url: from the environment (envToken) or from file, read through keyfile
// so that a file others can read is refused. With url set, a token is
// required: the store answers 401 to anyone without it, so a stamp without
// one could never fetch its secrets from it.
func secretStoreToken(url, file, envToken string) (string, error) {
	switch {
	case url == "" && file != "":
		return "", errors.New("-secrets-token-file needs -secrets (the secret store's URL)")
	case url == "":
		return "", nil
	}
	if file == "" && strings.TrimSpace(envToken) == "" {
		return "", fmt.Errorf("-secrets needs the secret store's bearer token: set %s or -secrets-token-file PATH (a file of mode 0600); "+
			"`contoso up` keeps its token in <data>/config/secretstore.token", envSecretsToken)
	}
	return envOrFileSecret("the secret store's token", envSecretsToken, envToken, "secrets-token-file", file)
}

// issuerFlags say whose tokens a command accepts: an external issuer's
// JWKS, or the development issuer in the data directory.
type issuerFlags struct {
	jwks, issuer, audience, data string
}

func (f *issuerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.jwks, "jwks", "", "JWKS of the token issuer: an https:// URL or a file; empty: the development issuer in -data")
	fs.StringVar(&f.issuer, "issuer", auth.DevIssuer, "expected token issuer (iss) with -jwks")
	fs.StringVar(&f.audience, "audience", auth.DevAudience, "expected token audience (aud) with -jwks")
	fs.StringVar(&f.data, "data", ".contoso", "data directory holding the development issuer key (without -jwks)")
}

func (f *issuerFlags) config() (auth.VerifierConfig, error) {
	return verifierConfig(f.jwks, f.issuer, f.audience, f.data)
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
