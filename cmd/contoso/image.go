package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/contoso/shoes/internal/artifact"
)

// Environment variables holding registry credentials (for Azure Container
// Registry: the user 00000000-0000-0000-0000-000000000000 and the token of
// `az acr login --expose-token`). Unset: ~/.docker/config.json.
const (
	envRegistryUsername = "CONTOSO_REGISTRY_USERNAME"
	envRegistryPassword = "CONTOSO_REGISTRY_PASSWORD"
)

const imageUsage = `usage: contoso image <subcommand> [flags]

subcommands:
  build     build the release image and push it:
              build --version V --push REGISTRY/REPO:TAG [--bin PATH | --src DIR]
  inspect   print a release's metadata: inspect REGISTRY/REPO@sha256:...
  pull      write a release's binary to a file: pull REGISTRY/REPO@sha256:... --out PATH
  attest    record a verification of a release: attest REGISTRY/REPO@sha256:... --env dev --profile ci
  verified  print a release's passing verification, or fail saying why there is none:
              verified REGISTRY/REPO@sha256:...
  registry  run a development registry (plain HTTP, loopback only): registry [--listen 127.0.0.1:5000] [--dir DIR]

Releases are read by digest only. Registry credentials come from $` + envRegistryUsername + `
and $` + envRegistryPassword + ` when set, else from ~/.docker/config.json (az acr login,
docker login) and its credential helpers. See docs/releases.md.
`

// runImage is `contoso image`: the release artifact's tooling.
func runImage(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, imageUsage)
		return errors.New("image: a subcommand is required")
	}
	rest := args[1:]
	switch args[0] {
	case "build":
		return runImageBuild(ctx, rest, getenv, stdout, stderr)
	case "inspect":
		return runImageRead(ctx, "inspect", artifact.Inspect, rest, getenv, stdout, stderr)
	case "pull":
		return runImagePull(ctx, rest, getenv, stdout, stderr)
	case "attest":
		return runImageAttest(ctx, rest, getenv, stdout, stderr)
	case "verified":
		return runImageRead(ctx, "verified", artifact.Verified, rest, getenv, stdout, stderr)
	case "registry":
		return runImageRegistry(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, imageUsage)
		return nil
	}
	fmt.Fprint(stderr, imageUsage)
	return fmt.Errorf("image: unknown subcommand %q", args[0])
}

// registryFlags are the flags of every subcommand that speaks to a
// registry.
type registryFlags struct {
	insecure bool
	timeout  time.Duration
}

func (f *registryFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.insecure, "insecure", false, "speak plain HTTP to a registry on loopback (the development registry)")
	fs.DurationVar(&f.timeout, "timeout", artifact.DefaultTimeout, "bound on the whole exchange with the registry")
}

// options turns the flags and the credentials in the environment into
// the artifact package's options.
func (f *registryFlags) options(getenv func(string) string) ([]artifact.Option, error) {
	return registryOptions(f.insecure, f.timeout, getenv)
}

// registryOptions are the artifact package's options of a command that
// pulls or pushes: plain HTTP to a loopback registry when insecure, its
// timeout (zero: the package's default), and the registry credentials in
// the environment.
func registryOptions(insecure bool, timeout time.Duration, getenv func(string) string) ([]artifact.Option, error) {
	opts := []artifact.Option{artifact.WithTimeout(timeout)}
	if insecure {
		opts = append(opts, artifact.WithInsecure())
	}
	user, password := getenv(envRegistryUsername), getenv(envRegistryPassword)
	switch {
	case user != "" && password != "":
		opts = append(opts, artifact.WithAuth(&authn.Basic{Username: user, Password: password}))
	case user != "" || password != "":
		return nil, fmt.Errorf("set both %s and %s, or neither", envRegistryUsername, envRegistryPassword)
	}
	return opts, nil
}

// parseInterleaved parses fs from args, with flags before, between or
// after the positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// oneRef parses a subcommand that takes one image reference.
func oneRef(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("%s: one image reference is required (REGISTRY/REPO@sha256:...), got %d arguments", fs.Name(), len(pos))
	}
	return pos[0], nil
}

func printJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// runImageBuild builds the release image of a binary, or of the source
// tree with the Go toolchain, and pushes it.
func runImageBuild(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		reg      registryFlags
		bin      = fs.String("bin", "", "the static linux binary to pack; empty: build ./cmd/contoso of -src (needs the Go toolchain)")
		src      = fs.String("src", ".", "the module's root to build from when -bin is empty")
		version  = fs.String("version", "", "the release's version, e.g. v1.4.0; required")
		revision = fs.String("revision", "", "the source revision; empty: the one the binary's build recorded, if any")
		source   = fs.String("source", "", "URL of the source repository, for the image's source label")
		push     = fs.String("push", "", "where to push: REGISTRY/REPO:TAG, e.g. contoso.azurecr.io/contoso/shoes:v1.4.0; required")
	)
	reg.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return errors.New("image build takes no arguments, only flags")
	case *version == "":
		return errors.New("image build: -version is required")
	case *push == "":
		return errors.New("image build: -push REGISTRY/REPO:TAG is required")
	}
	opts, err := reg.options(getenv)
	if err != nil {
		return err
	}
	if *bin == "" {
		dir, err := os.MkdirTemp("", "contoso-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*bin = filepath.Join(dir, "contoso")
		if err := artifact.GoBuild(ctx, artifact.GoBuildConfig{Dir: *src, Out: *bin, Version: *version}); err != nil {
			return err
		}
	}
	img, err := artifact.Build(artifact.BuildConfig{Binary: *bin, Version: *version, Revision: *revision, Source: *source})
	if err != nil {
		return err
	}
	ref, err := artifact.Push(ctx, img, *push, opts...)
	if err != nil {
		return err
	}
	return printJSON(stdout, map[string]string{"event": "pushed", "ref": ref, "version": *version})
}

// runImageRead is a subcommand that reads one release by reference and
// prints what read returns as JSON: inspect (its metadata) and verified
// (its passing verification, or why there is none).
func runImageRead[T any](ctx context.Context, name string, read func(context.Context, string, ...artifact.Option) (T, error),
	args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var reg registryFlags
	reg.register(fs)
	ref, err := oneRef(fs, args)
	if err != nil {
		return err
	}
	opts, err := reg.options(getenv)
	if err != nil {
		return err
	}
	v, err := read(ctx, ref, opts...)
	if err != nil {
		return err
	}
	return printJSON(stdout, v)
}

// runImagePull writes a release's binary to a file.
func runImagePull(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var reg registryFlags
	reg.register(fs)
	out := fs.String("out", "", "where to write the binary (mode 0755); required")
	ref, err := oneRef(fs, args)
	if err != nil {
		return err
	}
	if *out == "" {
		return errors.New("image pull: -out PATH is required")
	}
	opts, err := reg.options(getenv)
	if err != nil {
		return err
	}
	meta, err := artifact.Extract(ctx, ref, *out, opts...)
	if err != nil {
		return err
	}
	return printJSON(stdout, map[string]string{"event": "pulled", "ref": meta.Ref, "version": meta.Version, "path": *out})
}

// runImageAttest records, for operators, that a release passed (or
// failed) verification in an environment.
func runImageAttest(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image attest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		reg         registryFlags
		env         = fs.String("env", "", "the environment the experiments ran in, e.g. dev; required")
		profile     = fs.String("profile", "", "the verify profile that ran, e.g. ci; required")
		passed      = fs.Bool("passed", true, "whether every experiment passed (-passed=false records a failure)")
		experiments = fs.Int("experiments", 0, "how many experiments ran")
		by          = fs.String("by", "", "who attests; empty: $USER")
	)
	reg.register(fs)
	ref, err := oneRef(fs, args)
	if err != nil {
		return err
	}
	if *env == "" || *profile == "" {
		return errors.New("image attest: -env and -profile are required")
	}
	if *by == "" {
		*by = getenv("USER")
	}
	opts, err := reg.options(getenv)
	if err != nil {
		return err
	}
	a := artifact.Attestation{Env: *env, Profile: *profile, Passed: *passed, Experiments: *experiments, By: *by}
	if err := artifact.Attest(ctx, ref, a, opts...); err != nil {
		return err
	}
	return printJSON(stdout, map[string]any{"event": "attested", "ref": ref, "env": *env, "profile": *profile, "passed": *passed})
}

// runImageRegistry runs go-containerregistry's registry as the
// development registry: plain HTTP on loopback, everything in memory (or
// the blobs in -dir), until told to stop.
func runImageRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image registry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var logs logFlags
	listen := fs.String("listen", "127.0.0.1:5000", "loopback address of the registry")
	dir := fs.String("dir", "", "keep blobs (layers, configs) in this directory instead of memory; manifests and tags stay in memory")
	logs.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("image registry takes no arguments, only flags")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", *listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-listen %s: the development registry serves plain HTTP, on loopback only; between hosts use a registry with TLS (docs/releases.md)", *listen)
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	opts := []registry.Option{registry.Logger(slog.NewLogLogger(log.Handler(), slog.LevelDebug))}
	if *dir != "" {
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return err
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)))
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("registry: listen %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           registry.New(opts...),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if err := printJSON(stdout, map[string]string{"event": "ready", "registry": ln.Addr().String()}); err != nil {
		srv.Close()
		return err
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	log.Info("stopping: finishing the requests in flight", "grace", shutdownGrace)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdownCtx))
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
