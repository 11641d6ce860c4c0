package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/contoso/shoes/internal/shop"
)

// InstanceKey is the key of the releases bucket that holds the instance
// settings every stamp instance follows.
const InstanceKey = "instance"

// InstanceSchema is the schema version of InstanceSettings.
const InstanceSchema = 1

// InstanceSettings are what every stamp instance of the deployment serves
// with, set at run time by the operations plane: its capacity (API
// requests of each kind at once) and the simulated work of each request.
// While there are none, each instance serves with its own configuration.
type InstanceSettings struct {
	Schema    int       `json:"schema"`
	Capacity  int       `json:"capacity"`
	WorkMs    int       `json:"workMs"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Validate checks is as SetInstance stores it: a known schema (zero counts
// as InstanceSchema) and the bounds of shop.ValidateInstanceSettings. An
// error is shop.KindInvalid.
func (is InstanceSettings) Validate() error {
	switch {
	case is.Schema < 0 || is.Schema > InstanceSchema:
		return shop.Invalid("schema", "instance settings schema %d is unknown; this version writes and reads schema %d", is.Schema, InstanceSchema)
	}
	return shop.ValidateInstanceSettings(is.Capacity, is.WorkMs)
}

// decodeInstance reads stored settings, refusing what this version cannot
// follow: undecodable, of a newer schema (a *SchemaError), or invalid.
func decodeInstance(data []byte) (*InstanceSettings, error) {
	var is InstanceSettings
	if err := json.Unmarshal(data, &is); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if is.Schema > InstanceSchema {
		return nil, &SchemaError{Record: "instance settings", Schema: is.Schema, Reads: InstanceSchema}
	}
	if err := is.Validate(); err != nil {
		return nil, err
	}
	is.Schema = InstanceSchema
	return &is, nil
}

// SetInstance stores is as the settings every stamp instance follows (its
// watch delivers them at once), or deletes them when is is nil: every
// instance goes back to its own configuration. Acknowledged means a quorum
// of regions has them.
func (r *Releases) SetInstance(ctx context.Context, is *InstanceSettings) error {
	s, err := r.store(ctx)
	if err != nil {
		return err
	}
	var data []byte
	if is != nil {
		v := *is
		if err := v.Validate(); err != nil {
			return fmt.Errorf("set instance settings: %w", err)
		}
		v.Schema = InstanceSchema
		if v.UpdatedAt.IsZero() {
			v.UpdatedAt = time.Now().UTC()
		}
		if data, err = json.Marshal(v); err != nil {
			return fmt.Errorf("set instance settings: %w", err)
		}
	}
	op := "put"
	if is == nil {
		op = "delete"
	}
	ctx, span := kvSpan(ctx, op, BucketReleases)
	_, err = retrying(ctx, s, func(ctx context.Context) (struct{}, error) {
		if is == nil {
			return struct{}{}, s.releases.Delete(ctx, InstanceKey)
		}
		_, err := s.releases.Put(ctx, InstanceKey, data)
		return struct{}{}, err
	})
	endSpan(span, err)
	if err != nil {
		return refused("the store did not accept the instance settings", fmt.Errorf("set instance settings: %w", err))
	}
	return nil
}

// WatchInstance streams the instance settings to fn until ctx is done: the
// current ones first (nil when there are none), then every change (nil
// when deleted). Settings this version cannot read are refused with a
// logged error and fn is not called for them. It waits for the releases
// bucket while it is missing. fn must not block for long.
func (s *Store) WatchInstance(ctx context.Context, fn func(*InstanceSettings)) error {
	kv := s.releases
	if kv == nil {
		var err error
		if kv, err = findBucket(ctx, s.js, BucketReleases, s.log); err != nil {
			return fmt.Errorf("watch instance settings: %w", err)
		}
	}
	return watchKey(ctx, kv, InstanceKey, "instance settings", decodeInstance, s.log, fn)
}
