package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/shop"
)

// BucketReleases holds release records (written by the operations plane's
// release controller) and, under key TrafficKey, the traffic table every
// POP follows.
const (
	BucketReleases = "releases"
	TrafficKey     = "traffic"
)

// TrafficSchema is the schema version of Traffic.
const TrafficSchema = 1

// Traffic is how each region's traffic is split between the releases its
// stamps run while a release is under way. A region with no entry is
// routed as if there were no table: every stamp takes its default weight.
type Traffic struct {
	Schema  int    `json:"schema"`
	Release string `json:"release"` // id of the release that set it
	// Regions maps a region to the percent of its traffic each release
	// (StampEntry.Release) takes, 0 to 100, summing to 100. A stamp whose
	// release is at 0 % or not listed takes no traffic in a listed region.
	Regions   map[string]map[string]int `json:"regions"`
	UpdatedAt time.Time                 `json:"updatedAt"`
}

// Validate checks t as PutTraffic stores it: a known schema (zero counts as
// TrafficSchema), and for every region listed a non-empty region name and
// releases whose percents are 0 to 100 and sum to 100. An error is
// shop.KindInvalid and names what is wrong.
func (t Traffic) Validate() error {
	if t.Schema < 0 || t.Schema > TrafficSchema {
		return shop.Invalid("schema", "traffic table schema %d is unknown; this version writes and reads schema %d", t.Schema, TrafficSchema)
	}
	for _, region := range slices.Sorted(maps.Keys(t.Regions)) {
		split := t.Regions[region]
		if region == "" {
			return shop.Invalid("regions", "a region of the traffic table has no name")
		}
		if len(split) == 0 {
			return shop.Invalid("regions", "region %q lists no release; leave a region out of the table for default weights", region)
		}
		sum := 0
		for _, release := range slices.Sorted(maps.Keys(split)) {
			pct := split[release]
			if release == "" {
				return shop.Invalid("regions", "region %q: a release has no name", region)
			}
			if pct < 0 || pct > 100 {
				return shop.Invalid("regions", "region %q: release %q takes %d %%, want 0 to 100", region, release, pct)
			}
			sum += pct
		}
		if sum != 100 {
			return shop.Invalid("regions", "region %q: percents sum to %d, want 100", region, sum)
		}
	}
	return nil
}

// PutTraffic validates t (see Traffic.Validate), sets its schema (and its
// UpdatedAt when zero), and stores it as the table every POP follows.
// Acknowledged means a quorum of regions has it; a POP's watch delivers it
// at once.
func (s *Store) PutTraffic(ctx context.Context, t Traffic) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("put traffic table: %w", err)
	}
	t.Schema = TrafficSchema
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = time.Now().UTC()
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("put traffic table: %w", err)
	}
	ctx, span := kvSpan(ctx, "put", BucketReleases)
	_, err = retrying(ctx, s, func(ctx context.Context) (uint64, error) {
		return s.releases.Put(ctx, TrafficKey, b)
	})
	endSpan(span, err)
	if err != nil {
		return refused("the store did not accept the traffic table", fmt.Errorf("put traffic table: %w", err))
	}
	return nil
}

// ClearTraffic deletes the traffic table: every stamp takes its default
// weight again.
func (s *Store) ClearTraffic(ctx context.Context) error {
	ctx, span := kvSpan(ctx, "delete", BucketReleases)
	_, err := retrying(ctx, s, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.releases.Delete(ctx, TrafficKey)
	})
	endSpan(span, err)
	if err != nil {
		return refused("the store did not clear the traffic table", fmt.Errorf("clear traffic table: %w", err))
	}
	return nil
}

// Traffic reads the traffic table from the stream leader (so it sees every
// acknowledged write); nil, nil when there is none. A stored table this
// version cannot read is an error; one of a newer schema matches
// ErrSchema.
func (s *Store) Traffic(ctx context.Context) (*Traffic, error) {
	data, _, err := s.readLeader(ctx, BucketReleases, TrafficKey)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read traffic table: %w", err)
	}
	t, err := decodeTraffic(data)
	if err != nil {
		return nil, fmt.Errorf("read traffic table: %w", err)
	}
	return t, nil
}

// WatchTraffic streams the traffic table to fn until ctx is done, as
// Registry.WatchTraffic does.
func (s *Store) WatchTraffic(ctx context.Context, fn func(t *Traffic)) error {
	return watchTraffic(ctx, s.releases, s.log, fn)
}

// WatchTraffic streams the traffic table to fn until ctx is done: the
// current table first (nil when there is none), then every change (nil
// when cleared). A stored table this version cannot read (a schema above
// TrafficSchema, or one that fails Validate) is refused with a logged
// error and fn is not called for it, so the caller keeps the last table it
// had. It waits for the releases bucket while it is missing (a deployment
// whose stamps have not declared it yet). fn must not block for long.
func (r *Registry) WatchTraffic(ctx context.Context, fn func(t *Traffic)) error {
	kv, err := findBucket(ctx, r.js, BucketReleases, r.log)
	if err != nil {
		return fmt.Errorf("watch traffic table: %w", err)
	}
	return watchTraffic(ctx, kv, r.log, fn)
}

// findBucket looks bucket up until it exists or ctx is done, backing off
// from 100 ms to 2 s.
func findBucket(ctx context.Context, js jetstream.JetStream, bucket string, log *slog.Logger) (jetstream.KeyValue, error) {
	if js == nil {
		return nil, errors.New("no JetStream context")
	}
	var kv jetstream.KeyValue
	err := notReady.Retry(ctx, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		var err error
		kv, err = js.KeyValue(actx, bucket)
		return err
	}, func(err error, wait time.Duration) {
		log.Info("bucket not ready; retrying", "bucket", bucket, "error", err, "retry_in", wait)
	})
	if err != nil {
		return nil, fmt.Errorf("find bucket %s: %w", bucket, err)
	}
	return kv, nil
}

func watchTraffic(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger, fn func(t *Traffic)) error {
	return watchKey(ctx, kv, TrafficKey, "traffic table", decodeTraffic, log, fn)
}

// watchKey streams key of kv to fn until ctx is done: the current value
// first (nil when there is none), then every change (nil when deleted).
// A value decode refuses is logged as what and fn is not called for it, so
// the caller keeps the last one it had. fn must not block for long.
func watchKey[T any](ctx context.Context, kv jetstream.KeyValue, key, what string, decode func([]byte) (*T, error), log *slog.Logger, fn func(*T)) error {
	w, err := kv.Watch(ctx, key)
	if err != nil {
		return fmt.Errorf("watch %s: %w", what, err)
	}
	defer w.Stop()
	told := false // fn has heard of the current value (or it was refused)
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: closed", what)
			}
			if u == nil { // the current value came, or there is none
				if !told {
					fn(nil)
					told = true
				}
				continue
			}
			told = true
			if u.Operation() != jetstream.KeyValuePut {
				fn(nil)
				continue
			}
			v, err := decode(u.Value())
			if err != nil {
				log.Error("refusing a "+what+"; keeping the last one", "revision", u.Revision(), "error", err)
				continue
			}
			fn(v)
		}
	}
}

// decodeTraffic reads a stored table, refusing one this version cannot
// follow: undecodable, of a newer schema (a *SchemaError, matching
// ErrSchema), or invalid. A table without a schema member is version 1,
// as every record is.
func decodeTraffic(data []byte) (*Traffic, error) {
	var t Traffic
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if t.Schema > TrafficSchema {
		return nil, &SchemaError{Record: "traffic table", Schema: t.Schema, Reads: TrafficSchema}
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	t.Schema = TrafficSchema
	return &t, nil
}
