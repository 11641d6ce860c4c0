package artifact_test

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/artifact/artifacttest"
)

// inTransit replaces the body of every successful GET whose path ends in
// path with what alter makes of it: a registry, or something between, that
// answers other bytes than those asked for, or fewer.
type inTransit struct {
	next    http.RoundTripper
	path    string
	alter   func(body []byte) io.Reader
	altered atomic.Bool
}

func (a *inTransit) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.HasSuffix(req.URL.Path, a.path) || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	a.altered.Store(true)
	resp.Body = io.NopCloser(a.alter(body))
	return resp, nil
}

// flipByte changes the middle byte of a body.
func flipByte(body []byte) io.Reader {
	body[len(body)/2] ^= 0xff
	return bytes.NewReader(body)
}

// cutShort ends a body with an error after half of it, as a dropped
// connection or a deadline would.
func cutShort(body []byte) io.Reader {
	return io.MultiReader(bytes.NewReader(body[:len(body)/2]), iotest.ErrReader(errConnectionDropped))
}

var errConnectionDropped = errors.New("connection dropped")

func mutateConfig(img v1.Image, cf *v1.ConfigFile) (v1.Image, error) {
	return mutate.ConfigFile(img, cf)
}

func TestBuildRefusesWhatCannotRunAlone(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  artifact.BuildConfig
		want string
	}{
		{"no binary", artifact.BuildConfig{Version: "v1.0.0"}, "binary is required"},
		{"no version", artifact.BuildConfig{Binary: text}, "version"},
		{"a version that cannot be linked in", artifact.BuildConfig{Binary: text, Version: "v1 -X main.x=y"}, "version"},
		{"a missing file", artifact.BuildConfig{Binary: filepath.Join(dir, "missing"), Version: "v1.0.0"}, "no such file"},
		{"a script", artifact.BuildConfig{Binary: text, Version: "v1.0.0"}, "not a linux executable"},
		{"another OS", artifact.BuildConfig{Binary: text, Version: "v1.0.0", Platform: v1.Platform{OS: "windows", Architecture: "amd64"}}, "runs on linux"},
	}
	if dyn := dynamicELF(); dyn != "" {
		cases = append(cases, struct {
			name string
			cfg  artifact.BuildConfig
			want string
		}{"a dynamically linked binary (" + dyn + ")", artifact.BuildConfig{Binary: dyn, Version: "v1.0.0"}, "dynamically linked"})
	} else {
		t.Log("no dynamically linked executable of this architecture found: that case is not run")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := artifact.Build(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Build: %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// dynamicELF finds an executable of this machine that needs an ELF
// interpreter (shared libraries), or "".
func dynamicELF() string {
	for _, p := range []string{"/bin/sh", "/bin/ls", "/usr/bin/env"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				f.Close()
				if b, err := os.ReadFile(p); err == nil && machineIsOurs(b) {
					return p
				}
				break
			}
		}
		f.Close()
	}
	return ""
}

func machineIsOurs(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	return f.Machine == want
}

func TestReleasesAreReferencedByDigest(t *testing.T) {
	reg := artifacttest.NewRegistry(t)
	ctx := context.Background()
	missing := reg + "/contoso/shoes@sha256:" + strings.Repeat("ab", 32)
	cases := []struct {
		name, ref string
		insecure  bool
		want      string
		is        error
	}{
		{name: "a tag", ref: reg + "/contoso/shoes:v1.4.0", want: "names a tag", is: artifact.ErrNotByDigest},
		{name: "a repository alone", ref: reg + "/contoso/shoes", is: artifact.ErrNotByDigest},
		{name: "no registry", ref: "contoso/shoes@sha256:" + strings.Repeat("ab", 32), want: "registry"},
		{name: "a malformed digest", ref: reg + "/contoso/shoes@sha256:abc", want: "not an image reference by digest"},
		{name: "another algorithm", ref: reg + "/contoso/shoes@sha512:" + strings.Repeat("ab", 64), want: "only sha256"},
		{name: "garbage", ref: "::::", is: artifact.ErrNotByDigest},
		{name: "plain HTTP off loopback", ref: "registry.example.com/contoso/shoes@sha256:" + strings.Repeat("ab", 32), insecure: true, want: "only to a registry on loopback"},
		{name: "a digest the registry does not have", ref: missing, insecure: true, want: "no image sha256:abab"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var opts []artifact.Option
			if c.insecure {
				opts = append(opts, artifact.WithInsecure())
			}
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s %q: no error", what, c.ref)
				}
				if c.want != "" && !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s %q: %v, want it to say %q", what, c.ref, err, c.want)
				}
				if c.is != nil && !errors.Is(err, c.is) {
					t.Errorf("%s %q: %v, want it to wrap %v", what, c.ref, err, c.is)
				}
			}
			_, err := artifact.Inspect(ctx, c.ref, opts...)
			check("inspect", err)
			_, err = artifact.Extract(ctx, c.ref, filepath.Join(t.TempDir(), "contoso"), opts...)
			check("extract", err)
			if c.ref != missing {
				err = artifact.Attest(ctx, c.ref, artifact.Attestation{Env: "dev", Profile: "ci"}, opts...)
				check("attest", err)
				_, err = artifact.Verified(ctx, c.ref, opts...)
				check("verified", err)
			}
		})
	}
}

func TestPushGoesToATag(t *testing.T) {
	reg := artifacttest.NewRegistry(t)
	img := randomImage(t)
	for _, ref := range []string{
		reg + "/contoso/shoes",
		reg + "/contoso/shoes@sha256:" + strings.Repeat("ab", 32),
		"contoso/shoes:v1",
		"registry.example.com/contoso/shoes:v1", // with WithInsecure: not loopback
	} {
		if got, err := artifact.Push(context.Background(), img, ref, artifact.WithInsecure()); err == nil {
			t.Errorf("push to %q: %s, want an error", ref, got)
		}
	}
}
