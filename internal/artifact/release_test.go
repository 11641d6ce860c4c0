package artifact_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/artifact/artifacttest"
	"github.com/contoso/shoes/internal/buildinfo"
)

const testVersion = "v0.0.0-test"

// TestRelease builds the real contoso binary once and takes it through
// everything a release goes through: build, push, inspect, extract, run.
func TestRelease(t *testing.T) {
	bin := artifacttest.MustBinary(t, testVersion)
	reg := artifacttest.NewRegistry(t)
	ctx := context.Background()
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	img, err := artifact.Build(artifact.BuildConfig{Binary: bin, Version: testVersion, Revision: "abc123"})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := artifact.Push(ctx, img, reg+"/contoso/shoes:"+testVersion, artifact.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)

	t.Run("build, push, inspect, extract, run", func(t *testing.T) {
		if !strings.HasPrefix(ref, reg+"/contoso/shoes@sha256:") {
			t.Fatalf("push returned %q, want %s/contoso/shoes@sha256:...", ref, reg)
		}

		meta, err := artifact.Inspect(ctx, ref, artifact.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("binary %d bytes; image %d bytes to pull; build+push %v", len(want), meta.Size, took.Round(time.Millisecond))
		if meta.Ref != ref || meta.Digest != strings.SplitN(ref, "@", 2)[1] {
			t.Errorf("meta names %s (%s), want %s", meta.Ref, meta.Digest, ref)
		}
		if meta.User != "65532:65532" || !slices.Equal(meta.Entrypoint, []string{"/contoso"}) {
			t.Errorf("user %q entrypoint %q, want 65532:65532 [/contoso]", meta.User, meta.Entrypoint)
		}
		if meta.Version != testVersion || meta.Revision != "abc123" ||
			meta.Labels["org.opencontainers.image.version"] != testVersion || meta.Labels["org.opencontainers.image.revision"] != "abc123" {
			t.Errorf("meta %+v, want version %s and revision abc123 in fields and labels", meta, testVersion)
		}
		if meta.Platform != "linux/"+runtime.GOARCH {
			t.Errorf("platform %s, want linux/%s", meta.Platform, runtime.GOARCH)
		}

		// The image itself, read as any registry client would.
		d, err := name.NewDigest(ref)
		if err != nil {
			t.Fatal(err)
		}
		pulled, err := remote.Image(d)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := pulled.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if len(cf.Config.Env) != 0 || cf.Config.WorkingDir != "/" || len(cf.Config.Cmd) != 0 {
			t.Errorf("config env %q workdir %q cmd %q, want no env, / and no cmd", cf.Config.Env, cf.Config.WorkingDir, cf.Config.Cmd)
		}
		if !cf.Created.Time.Equal(time.Unix(0, 0)) {
			t.Errorf("created %v, want the Unix epoch", cf.Created.Time)
		}
		files := layerFiles(t, pulled)
		var names []string
		for _, f := range files {
			names = append(names, f.hdr.Name)
		}
		if !slices.Equal(names, []string{"contoso", "etc/group", "etc/passwd", "tmp/"}) {
			t.Fatalf("layer holds %q, want exactly the binary, etc/group, etc/passwd and tmp/ (no shell)", names)
		}
		checkEntry(t, files[0], tar.TypeReg, 0o555, 65532)
		checkEntry(t, files[1], tar.TypeReg, 0o644, 0)
		checkEntry(t, files[2], tar.TypeReg, 0o644, 0)
		checkEntry(t, files[3], tar.TypeDir, 0o1777, 0)
		if !bytes.Equal(files[0].body, want) {
			t.Error("the layer's /contoso differs from the built binary")
		}
		if !strings.Contains(string(files[2].body), "\ncontoso:x:65532:65532:") || !strings.Contains(string(files[1].body), "\ncontoso:x:65532:") {
			t.Errorf("passwd %q group %q lack the user contoso (65532)", files[2].body, files[1].body)
		}

		dst := filepath.Join(t.TempDir(), "contoso")
		got, err := artifact.Extract(ctx, ref, dst, artifact.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != meta.Digest || got.Version != testVersion {
			t.Errorf("extract's meta %+v, want %+v", got, meta)
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Fatal("the extracted binary differs from the built one")
		}
		if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o755 {
			t.Errorf("extracted with mode %v, want 0755", fi.Mode().Perm())
		}
		out, err := exec.Command(dst, "version", "--json").Output()
		if err != nil {
			t.Fatalf("run the extracted binary: %v", err)
		}
		var info buildinfo.Info
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatalf("version --json printed %q: %v", out, err)
		}
		if info.Version != testVersion {
			t.Errorf("the extracted binary says it is %q, want %q", info.Version, testVersion)
		}
	})

	t.Run("a cache extracts each digest once", func(t *testing.T) {
		dir := t.TempDir()
		reach := &gate{next: http.DefaultTransport}
		// The default bound on each call (a minute): the gate fails at
		// once when it is closed, and extracting the whole binary under
		// the race detector on a busy machine has taken over 10 s.
		cache := artifact.NewCache(dir, artifact.WithInsecure(), artifact.WithTransport(reach))
		path, meta, err := cache.Binary(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if wantPath := filepath.Join(dir, meta.Digest, "contoso"); path != wantPath || meta.Version != testVersion {
			t.Fatalf("cached at %s with version %q, want %s and %s", path, meta.Version, wantPath, testVersion)
		}
		if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("the cached binary differs from the built one (%v)", err)
		}
		// With the registry out of reach, the digest it holds is still
		// answered; a new cache over the same directory does not trust
		// a file it did not check, and fetches.
		reach.closed.Store(true)
		again, _, err := cache.Binary(ctx, ref)
		if err != nil || again != path {
			t.Fatalf("second call = %s, %v; want %s from the cache", again, err, path)
		}
		fresh := artifact.NewCache(dir, artifact.WithInsecure(), artifact.WithTransport(reach))
		if _, _, err := fresh.Binary(ctx, ref); err == nil {
			t.Fatal("a new cache answered without the registry")
		}
		tag := strings.SplitN(ref, "@", 2)[0] + ":" + testVersion
		if _, _, err := cache.Binary(ctx, tag); !errors.Is(err, artifact.ErrNotByDigest) {
			t.Errorf("a tag = %v, want ErrNotByDigest", err)
		}
	})

	t.Run("one binary gives one digest", func(t *testing.T) {
		// A copy elsewhere, with another modification time and mode: the
		// image depends on the bytes only.
		other := filepath.Join(t.TempDir(), "elsewhere")
		if err := os.WriteFile(other, want, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(other, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		digest := func(cfg artifact.BuildConfig) v1.Hash {
			t.Helper()
			img, err := artifact.Build(cfg)
			if err != nil {
				t.Fatal(err)
			}
			h, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		again, err := artifact.Build(artifact.BuildConfig{Binary: other, Version: testVersion, Revision: "abc123"})
		if err != nil {
			t.Fatal(err)
		}
		// Pushed again, under another tag: the same digest reference.
		ref2, err := artifact.Push(ctx, again, reg+"/contoso/shoes:again", artifact.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		if ref2 != ref {
			t.Fatalf("two builds of one binary pushed as %s and %s", ref, ref2)
		}
		first, _ := img.Digest()
		if v2 := digest(artifact.BuildConfig{Binary: bin, Version: "v0.0.1-test", Revision: "abc123"}); v2 == first {
			t.Error("another version gave the same digest")
		}
	})

	t.Run("a layer changed in transit is refused and nothing is written", func(t *testing.T) {
		layers, _ := img.Layers()
		layerDigest, _ := layers[0].Digest()
		dst := filepath.Join(t.TempDir(), "contoso")
		tamper := &inTransit{next: http.DefaultTransport, path: "/blobs/" + layerDigest.String(), alter: flipByte}
		_, err = artifact.Extract(ctx, ref, dst, artifact.WithInsecure(), artifact.WithTransport(tamper))
		if err == nil {
			t.Fatal("extracted a layer whose bytes were changed")
		}
		if !tamper.altered.Load() {
			t.Fatalf("the layer was not fetched (%v)", err)
		}
		t.Logf("refused: %v", err)
		if _, statErr := os.Stat(dst); !errors.Is(statErr, os.ErrNotExist) {
			t.Errorf("%s exists after a refused extract: %v", dst, statErr)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), "*")); len(left) != 0 {
			t.Errorf("files left behind: %q", left)
		}
	})

	t.Run("a layer cut short in transit is refused as cut short", func(t *testing.T) {
		layers, _ := img.Layers()
		layerDigest, _ := layers[0].Digest()
		dst := filepath.Join(t.TempDir(), "contoso")
		cut := &inTransit{next: http.DefaultTransport, path: "/blobs/" + layerDigest.String(), alter: cutShort}
		_, err := artifact.Extract(ctx, ref, dst, artifact.WithInsecure(), artifact.WithTransport(cut))
		if !cut.altered.Load() {
			t.Fatalf("the layer was not fetched (%v)", err)
		}
		if !errors.Is(err, errConnectionDropped) || !strings.Contains(err.Error(), "cut short") {
			t.Fatalf("extract of a layer cut short = %v; want it to say so, with the read's error", err)
		}
		if _, statErr := os.Stat(dst); !errors.Is(statErr, os.ErrNotExist) {
			t.Errorf("%s exists after a refused extract: %v", dst, statErr)
		}
	})

	t.Run("an image not made by Build is not a release", func(t *testing.T) {
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.Config.User = "0"
		other, err := mutateConfig(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := artifact.Push(ctx, other, reg+"/contoso/shoes:root", artifact.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := artifact.Inspect(ctx, ref, artifact.WithInsecure()); !errors.Is(err, artifact.ErrNotRelease) {
			t.Fatalf("inspect of an image running as root: %v, want ErrNotRelease", err)
		}
	})

	t.Run("a binary for another architecture is refused", func(t *testing.T) {
		arch := "arm64"
		if runtime.GOARCH == "arm64" {
			arch = "amd64"
		}
		_, err := artifact.Build(artifact.BuildConfig{Binary: bin, Version: testVersion, Platform: v1.Platform{OS: "linux", Architecture: arch}})
		if err == nil || !strings.Contains(err.Error(), "not "+arch) {
			t.Fatalf("build of a %s binary for %s: %v", runtime.GOARCH, arch, err)
		}
	})
}

type file struct {
	hdr  *tar.Header
	body []byte
}

// layerFiles lists the entries of an image's only layer.
func layerFiles(t *testing.T, img v1.Image) []file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var files []file
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, file{hdr: hdr, body: body})
	}
}

func checkEntry(t *testing.T, f file, typ byte, mode int64, owner int) {
	t.Helper()
	if f.hdr.Typeflag != typ || f.hdr.Mode != mode || f.hdr.Uid != owner || f.hdr.Gid != owner {
		t.Errorf("%s: type %c mode %o owner %d:%d, want type %c mode %o owner %d:%d",
			f.hdr.Name, f.hdr.Typeflag, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, typ, mode, owner, owner)
	}
	if !f.hdr.ModTime.Equal(time.Unix(0, 0)) {
		t.Errorf("%s: modified %v, want the Unix epoch", f.hdr.Name, f.hdr.ModTime)
	}
}

// BenchmarkBuildAndPush measures what a release costs to make: Build of
// the real binary and its Push to an empty registry on loopback.
func BenchmarkBuildAndPush(b *testing.B) {
	bin := artifacttest.MustBinary(b, testVersion)
	fi, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for b.Loop() {
		b.StopTimer()
		reg := artifacttest.NewRegistry(b)
		b.StartTimer()
		img, err := artifact.Build(artifact.BuildConfig{Binary: bin, Version: testVersion})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := artifact.Push(context.Background(), img, reg+"/contoso/shoes:"+testVersion, artifact.WithInsecure()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if size == 0 {
			layers, _ := img.Layers()
			size, _ = layers[0].Size()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(fi.Size()), "binary-bytes")
	b.ReportMetric(float64(size), "layer-bytes")
}

// gate passes requests to next until closed.
type gate struct {
	next   http.RoundTripper
	closed atomic.Bool
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	if g.closed.Load() {
		return nil, errors.New("the registry is out of reach")
	}
	return g.next.RoundTrip(r)
}
