package artifact

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Cache holds the binaries of releases that a supervisor of stamp
// processes runs: each image's binary is extracted (fetched by digest and
// checked, as Extract does) once per digest and Cache, to
// <dir>/<digest>/contoso.
type Cache struct {
	dir  string
	opts []Option

	mu   sync.Mutex // serialises extractions; guards bins
	bins map[string]cached
}

type cached struct {
	path string
	meta Meta
}

// NewCache is a cache of binaries under dir, fetched with opts.
func NewCache(dir string, opts ...Option) *Cache {
	return &Cache{dir: dir, opts: opts, bins: map[string]cached{}}
}

// Binary is the path of the binary of image (REPO@sha256:...) and what
// the image says about itself; the first call for a digest extracts it.
func (c *Cache) Binary(ctx context.Context, image string) (string, Meta, error) {
	d, err := newOptions(c.opts).digestRef(image)
	if err != nil {
		return "", Meta{}, fmt.Errorf("release binary: %w", err)
	}
	digest := d.DigestStr()
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.bins[digest]; ok {
		return b.path, b.meta, nil
	}
	dir := filepath.Join(c.dir, digest)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", Meta{}, fmt.Errorf("release binary %s: %w", image, err)
	}
	path := filepath.Join(dir, "contoso")
	meta, err := Extract(ctx, image, path, c.opts...)
	if err != nil {
		return "", Meta{}, err
	}
	c.bins[digest] = cached{path: path, meta: meta}
	return path, meta, nil
}
