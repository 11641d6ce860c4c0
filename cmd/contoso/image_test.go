package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/artifact/artifacttest"
	"github.com/contoso/shoes/internal/buildinfo"
)

// runOnce runs one contoso command that prints one JSON line and returns,
// decoding the line into out.
func runOnce(t *testing.T, env map[string]string, out any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
		t.Fatalf("contoso %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if strings.Count(stdout.String(), "\n") != 1 {
		t.Fatalf("contoso %s printed %q, want one line", strings.Join(args, " "), stdout.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("contoso %s printed %q: %v", strings.Join(args, " "), stdout.String(), err)
	}
}

// runFails runs a command that must fail and returns its error's text.
func runFails(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	err := run(ctx, args, func(k string) string { return env[k] }, &stdout, io.Discard)
	if err == nil {
		t.Fatalf("contoso %s succeeded, printing %q", strings.Join(args, " "), stdout.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("contoso %s printed %q before failing", strings.Join(args, " "), stdout.String())
	}
	return err.Error()
}

func TestVersion(t *testing.T) {
	var info buildinfo.Info
	runOnce(t, nil, &info, "version", "--json")
	if want := buildinfo.Read(); info != want {
		t.Fatalf("version --json: %+v, want %+v", info, want)
	}
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"version"}, noEnv, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got, want := stdout.String(), "contoso "+info.Version+" ("; !strings.HasPrefix(got, want) || !strings.HasSuffix(got, runtime.Version()+")\n") {
		t.Fatalf("version printed %q, want %q...%s)", got, want, runtime.Version())
	}
}

func TestVersionLine(t *testing.T) {
	for _, c := range []struct {
		info buildinfo.Info
		want string
	}{
		{buildinfo.Info{Version: "v1.4.0", Revision: "abc123", Go: "go1.26.8"}, "contoso v1.4.0 (revision abc123, go1.26.8)"},
		{buildinfo.Info{Version: "dev+abc123.dirty", Revision: "abc123", Modified: true, Go: "go1.26.8"}, "contoso dev+abc123.dirty (revision abc123, modified, go1.26.8)"},
		{buildinfo.Info{Version: "dev", Go: "go1.26.8"}, "contoso dev (go1.26.8)"},
	} {
		if got := versionLine(c.info); got != c.want {
			t.Errorf("versionLine(%+v) = %q, want %q", c.info, got, c.want)
		}
	}
}

type pushedLine struct {
	Event, Ref, Version string
}

// TestImageCommands takes the real binary through the commands an
// operator uses: build and push, inspect, pull, attest, verified.
func TestImageCommands(t *testing.T) {
	bin := artifacttest.MustBinary(t, "v0.0.0-test")
	reg := artifacttest.NewRegistry(t)
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	var pushed pushedLine
	runOnce(t, nil, &pushed, "image", "build", "--bin", bin, "--version", "v0.0.0-test", "--revision", "abc123",
		"--push", reg+"/contoso/shoes:v0.0.0-test", "--insecure")
	if pushed.Event != "pushed" || pushed.Version != "v0.0.0-test" || !strings.HasPrefix(pushed.Ref, reg+"/contoso/shoes@sha256:") {
		t.Fatalf("build printed %+v", pushed)
	}
	ref := pushed.Ref

	var meta artifact.Meta
	runOnce(t, nil, &meta, "image", "inspect", ref, "--insecure")
	if meta.Ref != ref || meta.Version != "v0.0.0-test" || meta.Revision != "abc123" || meta.User != "65532:65532" || !slices.Equal(meta.Entrypoint, []string{"/contoso"}) {
		t.Fatalf("inspect printed %+v", meta)
	}

	out := filepath.Join(t.TempDir(), "contoso")
	var pulled map[string]string
	runOnce(t, nil, &pulled, "image", "pull", ref, "--out", out, "--insecure")
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("pull wrote %d bytes (%v), want the %d bytes built", len(got), err, len(want))
	}
	if pulled["event"] != "pulled" || pulled["ref"] != ref || pulled["version"] != "v0.0.0-test" {
		t.Errorf("pull printed %v", pulled)
	}

	t.Run("credentials from the environment", func(t *testing.T) {
		// A registry that wants a user and password, as Azure Container
		// Registry does with the token of az acr login --expose-token.
		srv := httptest.NewServer(basicAuth("00000000-0000-0000-0000-000000000000", "token", registry.New(registry.Logger(discardLog()))))
		t.Cleanup(srv.Close)
		host := strings.TrimPrefix(srv.URL, "http://")
		// What is carried does not matter here, only how: a small binary
		// (compressing the release binary twice more took 20 s under the
		// race detector).
		small := artifacttest.MustSmallBinary(t)
		args := []string{"image", "build", "--bin", small, "--version", "v0.0.0-test", "--revision", "abc123", "--push", host + "/contoso/shoes:v0.0.0-test", "--insecure"}
		if msg := runFails(t, nil, args...); !strings.Contains(msg, "401") && !strings.Contains(msg, "UNAUTHORIZED") {
			t.Errorf("push without credentials: %s, want a 401", msg)
		}
		env := map[string]string{envRegistryUsername: "00000000-0000-0000-0000-000000000000", envRegistryPassword: "token"}
		var line pushedLine
		runOnce(t, env, &line, args...)
		if !strings.HasPrefix(line.Ref, host+"/contoso/shoes@sha256:") {
			t.Fatalf("pushed %s with credentials, want %s/contoso/shoes@sha256:...", line.Ref, host)
		}
		var meta artifact.Meta
		runOnce(t, env, &meta, "image", "inspect", line.Ref, "--insecure")
		if meta.Ref != line.Ref || meta.Version != "v0.0.0-test" || meta.Revision != "abc123" {
			t.Fatalf("inspect with credentials printed %+v, want the image pushed as %s", meta, line.Ref)
		}
		if msg := runFails(t, nil, "image", "inspect", line.Ref, "--insecure"); !strings.Contains(msg, "401") && !strings.Contains(msg, "UNAUTHORIZED") {
			t.Errorf("inspect without credentials: %s, want a 401", msg)
		}
	})

	t.Run("build from the source tree", func(t *testing.T) {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			t.Fatal(err)
		}
		var line pushedLine
		runOnce(t, nil, &line, "image", "build", "--src", filepath.Dir(strings.TrimSpace(string(gomod))), "--version", "v0.0.0-test",
			"--revision", "abc123", "--push", reg+"/contoso/shoes:from-source", "--insecure")
		// The same release build of the same tree: the same bytes, the
		// same digest.
		if line.Ref != ref {
			t.Fatalf("built from source as %s, want %s (the release build is reproducible)", line.Ref, ref)
		}
	})
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

func basicAuth(user, password string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TestImageRegistryServesAttestsAndStops runs the development registry,
// keeps an image in it, records verifications there through the commands,
// and stops it.
func TestImageRegistryServesAttestsAndStops(t *testing.T) {
	dir := t.TempDir()
	var ready struct{ Event, Registry string }
	stop := startProcess(t, nil, &ready, "image", "registry", "--listen", "127.0.0.1:0", "--dir", dir)
	if ready.Event != "ready" || !strings.HasPrefix(ready.Registry, "127.0.0.1:") {
		t.Fatalf("ready line %+v", ready)
	}
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := artifact.Push(t.Context(), img, ready.Registry+"/contoso/shoes:any", artifact.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	layerDigest, _ := layers[0].Digest()
	if _, err := os.Stat(filepath.Join(dir, "sha256", layerDigest.Hex)); err != nil {
		t.Errorf("the layer is not in -dir: %v", err)
	}

	if msg := runFails(t, nil, "image", "verified", ref, "--insecure"); !strings.Contains(msg, " has no passing verification: no verification is recorded") {
		t.Errorf("verified before any attestation: %s", msg)
	}
	var attested map[string]any
	runOnce(t, map[string]string{"USER": "operator"}, &attested, "image", "attest", ref, "--env", "dev", "--profile", "ci", "--experiments", "5", "--insecure")
	if attested["event"] != "attested" || attested["passed"] != true {
		t.Errorf("attest printed %v", attested)
	}
	var a artifact.Attestation
	runOnce(t, nil, &a, "image", "verified", ref, "--insecure")
	if !a.Passed || a.Env != "dev" || a.Profile != "ci" || a.Experiments != 5 || a.By != "operator" || a.Digest != strings.SplitN(ref, "@", 2)[1] {
		t.Errorf("verified printed %+v", a)
	}
	runOnce(t, nil, &attested, "image", "attest", ref, "--env", "dev", "--profile", "ci", "--passed=false", "--insecure")
	if msg := runFails(t, nil, "image", "verified", ref, "--insecure"); !strings.Contains(msg, "failed") {
		t.Errorf("verified after a failure: %s", msg)
	}

	if err := stop(); err != nil {
		t.Fatalf("the registry returned %v when told to stop, want nil", err)
	}
}

func TestImageRefusesBadInput(t *testing.T) {
	digest := "@sha256:" + strings.Repeat("ab", 32)
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"image"}, nil, "subcommand is required"},
		{[]string{"image", "nope"}, nil, `unknown subcommand "nope"`},
		{[]string{"image", "build", "--push", "127.0.0.1:1/contoso/shoes:v1", "--bin", script}, nil, "-version is required"},
		{[]string{"image", "build", "--version", "v1.0.0", "--bin", script}, nil, "-push REGISTRY/REPO:TAG is required"},
		{[]string{"image", "build", "--version", "v1.0.0", "--push", "127.0.0.1:1/contoso/shoes:v1", "--bin", filepath.Join(dir, "missing")}, nil, "no such file"},
		{[]string{"image", "build", "--version", "v1.0.0", "--push", "127.0.0.1:1/contoso/shoes:v1", "--bin", script}, nil, "not a linux executable"},
		{[]string{"image", "build", "--version", "v1 -X x=y", "--push", "127.0.0.1:1/contoso/shoes:v1", "--bin", script}, nil, "version"},
		{[]string{"image", "build", "--version", "v1.0.0", "--push", "127.0.0.1:1/contoso/shoes:v1", "--bin", script, "extra"}, nil, "takes no arguments"},
		{[]string{"image", "inspect"}, nil, "one image reference is required"},
		{[]string{"image", "inspect", "127.0.0.1:1/a" + digest, "127.0.0.1:1/b" + digest}, nil, "one image reference is required"},
		{[]string{"image", "inspect", "127.0.0.1:1/contoso/shoes:v1.4.0", "--insecure"}, nil, "names a tag"},
		{[]string{"image", "inspect", "not a reference!"}, nil, "not an image reference by digest"},
		{[]string{"image", "inspect", "127.0.0.1:1/contoso/shoes@sha256:abc"}, nil, "not an image reference by digest"},
		{[]string{"image", "inspect", "127.0.0.1:1/contoso/shoes" + digest}, map[string]string{envRegistryUsername: "u"}, "set both"},
		{[]string{"image", "pull", "127.0.0.1:1/contoso/shoes" + digest}, nil, "-out PATH is required"},
		{[]string{"image", "pull", "127.0.0.1:1/contoso/shoes:v1.4.0", "--out", filepath.Join(dir, "x")}, nil, "names a tag"},
		{[]string{"image", "attest", "127.0.0.1:1/contoso/shoes" + digest, "--profile", "ci"}, nil, "-env and -profile are required"},
		{[]string{"image", "attest", "127.0.0.1:1/contoso/shoes:v1", "--env", "dev", "--profile", "ci"}, nil, "names a tag"},
		{[]string{"image", "verified", "127.0.0.1:1/contoso/shoes"}, nil, "not an image reference by digest"},
		{[]string{"image", "verified", "registry.example.com/contoso/shoes" + digest, "--insecure"}, nil, "only to a registry on loopback"},
		{[]string{"image", "registry", "--listen", "0.0.0.0:5000"}, nil, "loopback only"},
		{[]string{"image", "registry", "--listen", "nonsense"}, nil, "-listen"},
		{[]string{"image", "registry", "extra"}, nil, "takes no arguments"},
		{[]string{"version", "extra"}, nil, "takes no arguments"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			if msg := runFails(t, c.env, c.args...); !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not say %q", msg, c.want)
			}
		})
	}
}
