package store

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/contoso/shoes/internal/shop"
)

// Releases is the releases bucket as the operations plane's release
// controller uses it: its records, read from the stream leader and written
// with compare-and-set, and the traffic table every POP follows. It finds
// the bucket on first use (stamps declare it), so it can be made before
// the deployment's assets exist.
type Releases struct {
	cfg Config

	mu sync.Mutex // guards s
	s  *Store     // nil until the bucket was found
}

// NewReleases returns the releases bucket reached through cfg's
// connection; only cfg's Conn and Logger are used.
func NewReleases(cfg Config) *Releases { return &Releases{cfg: cfg} }

// store finds the bucket, once.
func (r *Releases) store(ctx context.Context) (*Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s != nil {
		return r.s, nil
	}
	cfg, js, err := r.cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("releases: %w", err)
	}
	kv, err := js.KeyValue(ctx, BucketReleases)
	if err != nil {
		return nil, fmt.Errorf("releases: find the bucket: %w", err)
	}
	r.s = &Store{nc: cfg.Conn, js: js, log: cfg.Logger, cfg: cfg, releases: kv}
	return r.s, nil
}

// Load returns a key's value and revision, read from the stream leader;
// nil and 0 when absent.
func (r *Releases) Load(ctx context.Context, key string) ([]byte, uint64, error) {
	s, err := r.store(ctx)
	if err != nil {
		return nil, 0, err
	}
	data, rev, err := s.readLeader(ctx, BucketReleases, key)
	if isNotFound(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load %s: %w", key, err)
	}
	return data, rev, nil
}

// Save writes key if its revision is still rev (0: if it does not exist)
// and returns the new revision. A lost race is shop.KindConflict; a key
// that already holds exactly data is not one (an earlier attempt of this
// save landed, its answer lost).
func (r *Releases) Save(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	s, err := r.store(ctx)
	if err != nil {
		return 0, err
	}
	ctx, span := kvSpan(ctx, "update", BucketReleases)
	n, err := retrying(ctx, s, func(ctx context.Context) (uint64, error) {
		if rev == 0 {
			return s.releases.Create(ctx, key, data)
		}
		return s.releases.Update(ctx, key, data, rev)
	})
	if isExists(err) {
		// An attempt whose answer was lost may have landed, and the
		// retry after it then reads as a conflict: the record stored
		// is ours.
		if stored, srev, lerr := s.readLeader(ctx, BucketReleases, key); lerr == nil && bytes.Equal(stored, data) {
			n, err = srev, nil
		}
	}
	endSpan(span, err)
	switch {
	case isExists(err):
		return 0, &shop.Error{Kind: shop.KindConflict, Detail: "the release record " + key + " changed meanwhile", Err: err}
	case err != nil:
		return 0, refused("the store did not accept the release record", fmt.Errorf("save %s: %w", key, err))
	}
	return n, nil
}

// Keys lists every key of the bucket.
func (r *Releases) Keys(ctx context.Context) ([]string, error) {
	s, err := r.store(ctx)
	if err != nil {
		return nil, err
	}
	return s.listKeys(ctx, s.releases, ">")
}

// SetTraffic writes the traffic table for release (PutTraffic), or
// clears it when split is nil (ClearTraffic).
func (r *Releases) SetTraffic(ctx context.Context, release string, split map[string]map[string]int) error {
	s, err := r.store(ctx)
	if err != nil {
		return err
	}
	if split == nil {
		return s.ClearTraffic(ctx)
	}
	return s.PutTraffic(ctx, Traffic{Release: release, Regions: split})
}
