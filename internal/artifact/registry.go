package artifact

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Push writes img to ref, a tag such as "127.0.0.1:5000/contoso/shoes:v1.4.0"
// (the registry written out), and returns the digest reference
// "REPO@sha256:..." that names the release from then on.
func Push(ctx context.Context, img v1.Image, ref string, opts ...Option) (string, error) {
	o := newOptions(opts)
	tag, err := o.tagRef(ref)
	if err != nil {
		return "", fmt.Errorf("push: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	ctx, cancel := o.bound(ctx)
	defer cancel()
	if err := remote.Write(tag, img, o.remote(ctx)...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return tag.Context().Digest(digest.String()).String(), nil
}

// Meta is what a release image says about itself.
type Meta struct {
	Ref        string            `json:"ref"`    // REPO@sha256:...
	Digest     string            `json:"digest"` // sha256:...
	Version    string            `json:"version"`
	Revision   string            `json:"revision,omitempty"`
	User       string            `json:"user"`
	Entrypoint []string          `json:"entrypoint"`
	Labels     map[string]string `json:"labels,omitempty"`
	Platform   string            `json:"platform"` // e.g. "linux/amd64"
	Size       int64             `json:"size"`     // bytes a pull transfers: manifest, config and layer
}

// Inspect fetches the image ref names by digest (REPO@sha256:...; a tag is
// refused, wrapping ErrNotByDigest: releases are referenced by digest),
// checks that Build made it (entrypoint, user, one layer, version label;
// else the error wraps ErrNotRelease) and returns its metadata.
func Inspect(ctx context.Context, ref string, opts ...Option) (Meta, error) {
	o := newOptions(opts)
	d, err := o.digestRef(ref)
	if err != nil {
		return Meta{}, fmt.Errorf("inspect: %w", err)
	}
	ctx, cancel := o.bound(ctx)
	defer cancel()
	r, err := fetch(d, o.remote(ctx))
	if err != nil {
		return Meta{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	return r.meta, nil
}

// Extract fetches the image ref names by digest, as Inspect does, and
// writes its binary to dst (mode 0755). The layer's bytes are checked
// against the digest the manifest names for them, and their content
// against the config's diff ID, before dst is written: dst is either the
// release's binary or left as it was.
func Extract(ctx context.Context, ref, dst string, opts ...Option) (Meta, error) {
	o := newOptions(opts)
	d, err := o.digestRef(ref)
	if err != nil {
		return Meta{}, fmt.Errorf("extract: %w", err)
	}
	if dst == "" {
		return Meta{}, errors.New("extract: the destination path is required")
	}
	ctx, cancel := o.bound(ctx)
	defer cancel()
	r, err := fetch(d, o.remote(ctx))
	if err != nil {
		return Meta{}, fmt.Errorf("extract %s: %w", ref, err)
	}
	if err := r.extract(dst); err != nil {
		return Meta{}, fmt.Errorf("extract %s: %w", ref, err)
	}
	return r.meta, nil
}

// release is a release image read from a registry.
type release struct {
	img      v1.Image
	manifest *v1.Manifest
	config   *v1.ConfigFile
	meta     Meta
}

// fetch reads the manifest and config of the image d names and checks
// that it is a release.
func fetch(d name.Digest, ro []remote.Option) (*release, error) {
	desc, err := remote.Get(d, ro...)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("no image %s in %s (%w)", d.DigestStr(), d.Context(), err)
		}
		return nil, err
	}
	if sum := sha256.Sum256(desc.Manifest); "sha256:"+hex.EncodeToString(sum[:]) != d.DigestStr() {
		return nil, fmt.Errorf("the registry answered a manifest whose digest is not %s", d.DigestStr())
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%w: a %s, not one image (a release is one image for one platform)", ErrNotRelease, desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("the config: %w", err)
	}
	if err := checkRelease(m, cf); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotRelease, err)
	}
	size := desc.Size + m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	labels := cf.Config.Labels
	return &release{img: img, manifest: m, config: cf, meta: Meta{
		Ref:        d.String(),
		Digest:     d.DigestStr(),
		Version:    labels[LabelVersion],
		Revision:   labels[LabelRevision],
		User:       cf.Config.User,
		Entrypoint: cf.Config.Entrypoint,
		Labels:     labels,
		Platform:   cf.Platform().String(),
		Size:       size,
	}}, nil
}

// checkRelease says how an image differs from what Build makes.
func checkRelease(m *v1.Manifest, cf *v1.ConfigFile) error {
	switch {
	case cf.OS != "linux":
		return fmt.Errorf("built for %q, not linux", cf.OS)
	case !slices.Equal(cf.Config.Entrypoint, []string{BinaryPath}):
		return fmt.Errorf("entrypoint %q, want [%s]", cf.Config.Entrypoint, BinaryPath)
	case cf.Config.User != User:
		return fmt.Errorf("user %q, want %s", cf.Config.User, User)
	case cf.Config.Labels[LabelVersion] == "":
		return fmt.Errorf("no %s label", LabelVersion)
	case len(m.Layers) != 1 || len(cf.RootFS.DiffIDs) != 1:
		return fmt.Errorf("%d layers, want 1", len(m.Layers))
	case m.Layers[0].MediaType != types.OCILayer && m.Layers[0].MediaType != types.DockerLayer:
		return fmt.Errorf("layer of media type %s, want a gzipped tar", m.Layers[0].MediaType)
	}
	return nil
}

// extract writes the release's binary to dst, through a temporary file
// next to it that becomes dst only once every check has passed.
func (r *release) extract(dst string) error {
	desc := r.manifest.Layers[0]
	layer, err := r.img.LayerByDigest(desc.Digest)
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return fmt.Errorf("the layer: %w", err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	compressed, content := sha256.New(), sha256.New()
	var n int64
	src := &firstReadError{r: rc}
	counted := io.TeeReader(src, writerFunc(func(p []byte) (int, error) {
		n += int64(len(p))
		return compressed.Write(p)
	}))
	found, unpackErr := unpackBinary(counted, tmp, content)
	// Whatever unpacking made of them, read the layer's bytes to the end
	// and check their digest first: bytes other than those the manifest
	// names explain any other failure.
	_, readErr := io.Copy(io.Discard, counted)
	if src.err != nil && n < desc.Size {
		// A read that failed (a deadline, a dropped connection) cut the
		// layer short: that, not its bytes, is what went wrong.
		return fmt.Errorf("the layer %s: cut short after %d of its %d bytes: %w", desc.Digest, n, desc.Size, src.err)
	}
	if got := "sha256:" + hex.EncodeToString(compressed.Sum(nil)); got != desc.Digest.String() || n != desc.Size {
		return fmt.Errorf("the layer %s: the registry answered other bytes (%d bytes of digest %s, want %d bytes)", desc.Digest, n, got, desc.Size)
	}
	if err := errors.Join(readErr, unpackErr); err != nil {
		return fmt.Errorf("the layer %s: %w", desc.Digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(content.Sum(nil)); got != r.config.RootFS.DiffIDs[0].String() {
		return fmt.Errorf("the layer %s: its content has digest %s, the config names %s", desc.Digest, got, r.config.RootFS.DiffIDs[0])
	}
	if !found {
		return fmt.Errorf("the layer %s holds no %s", desc.Digest, BinaryPath)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	keep = true
	return nil
}

// unpackBinary reads a gzipped tar to its end, copies the one regular file
// at BinaryPath to w and hashes the uncompressed stream into content.
func unpackBinary(r io.Reader, w io.Writer, content hash.Hash) (found bool, err error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return false, err
	}
	uncompressed := io.TeeReader(zr, content)
	tr := tar.NewReader(uncompressed)
	want := strings.TrimPrefix(BinaryPath, "/")
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return found, err
		}
		if path.Clean(hdr.Name) != want {
			continue
		}
		if hdr.Typeflag != tar.TypeReg || found {
			return found, fmt.Errorf("%s is not one regular file", BinaryPath)
		}
		if hdr.Size > maxBinary {
			return found, fmt.Errorf("%s has %d bytes, more than a release binary may have", BinaryPath, hdr.Size)
		}
		found = true
		if _, err := io.Copy(w, tr); err != nil {
			return found, err
		}
	}
	// The end-of-archive blocks and padding are content too.
	_, err = io.Copy(io.Discard, uncompressed)
	return found, err
}

// firstReadError is r, remembering the first error other than io.EOF that
// a read of it returned.
type firstReadError struct {
	r   io.Reader
	err error
}

func (f *firstReadError) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF && f.err == nil {
		f.err = err
	}
	return n, err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
