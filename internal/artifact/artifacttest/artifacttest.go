// Package artifacttest has what the tests of releases need: a real OCI
// registry on loopback and the release binary built from this source tree.
package artifacttest

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/contoso/shoes/internal/artifact"
)

// NewRegistry starts go-containerregistry's in-memory registry on
// 127.0.0.1:0 and returns its host:port. It stops at the end of the test.
func NewRegistry(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	tb.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// MustBinary compiles ./cmd/contoso of this module as a release is built
// (artifact.GoBuild, version linked in) into a directory of the test and
// returns the binary's path. It skips the test under -short, since the
// build takes a while, and when the go command is not on PATH.
func MustBinary(tb testing.TB, version string) string {
	tb.Helper()
	goCmd := goCommand(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, goCmd, "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == "/dev/null" {
		tb.Fatalf("find the module's root: go env GOMOD = %q, %v", gomod, err)
	}
	out := filepath.Join(tb.TempDir(), "contoso")
	if err := artifact.GoBuild(ctx, artifact.GoBuildConfig{
		Dir:     filepath.Dir(strings.TrimSpace(string(gomod))),
		Out:     out,
		Version: version,
		Go:      goCmd,
	}); err != nil {
		tb.Fatal(err)
	}
	return out
}

// MustSmallBinary builds a tiny static linux program (a main that exits)
// and returns its path: an image whose binary is a megabyte rather than
// the release's tens, for tests of what carries an image (registries,
// credentials) rather than of what is in it. Skipped like MustBinary.
func MustSmallBinary(tb testing.TB) string {
	tb.Helper()
	goCmd := goCommand(tb)
	dir := tb.TempDir()
	for name, text := range map[string]string{"go.mod": "module small\n", "main.go": "package main\n\nfunc main() {}\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "small")
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build a small binary: %v\n%s", err, b)
	}
	return out
}

// goCommand is the go command's path, for the tests that build binaries;
// it skips them under -short (a build takes a while) and when the go
// command is not on PATH.
func goCommand(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: the release tests build binaries")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		tb.Skip("the go command is not on PATH: the release tests build binaries")
	}
	return goCmd
}
