package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketRegistry holds the stamps registry: one key per running stamp
// instance, refreshed by its heartbeat. A key not refreshed for
// RegistryTTL expires, and watchers are told, so a dead stamp disappears
// from the registry within seconds without anyone deleting it.
const (
	BucketRegistry = "registry"
	RegistryTTL    = 5 * time.Second
)

// StampEntry is what a stamp instance announces about itself.
type StampEntry struct {
	ID          string    `json:"id"` // "<region>.<instance>", unique per running instance
	Region      string    `json:"region"`
	URL         string    `json:"url"`            // where the edge reaches it
	Release     string    `json:"release"`        // the release it runs
	Zone        string    `json:"zone,omitempty"` // its failure domain in the region, e.g. "westeurope-2"; empty: unknown (an older release)
	StartedAt   time.Time `json:"startedAt"`
	HeartbeatAt time.Time `json:"heartbeatAt"`
}

// Heartbeat announces (or re-announces) a stamp instance.
func (s *Store) Heartbeat(ctx context.Context, e StampEntry) error {
	b, err := s.encode(kindStampEntry, e)
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", e.ID, err)
	}
	if _, err := s.reg.Put(ctx, e.ID, b); err != nil {
		return fmt.Errorf("heartbeat %s: %w", e.ID, err)
	}
	return nil
}

// Deregister removes a stamp instance at once (a clean shutdown).
func (s *Store) Deregister(ctx context.Context, id string) error {
	if err := s.reg.Delete(ctx, id); err != nil {
		return fmt.Errorf("deregister %s: %w", id, err)
	}
	return nil
}

// WatchRegistry streams the registry to fn until ctx is done: every
// current entry, then every change; e is nil when an instance deregistered
// or its heartbeat expired. loaded is called once after the current entries.
func (s *Store) WatchRegistry(ctx context.Context, fn func(id string, e *StampEntry), loaded func()) error {
	return (&Registry{kv: s.reg, log: s.log}).Watch(ctx, fn, loaded)
}

// Registry reads the stamps registry and the traffic table (WatchTraffic)
// and nothing else: all an edge needs, and all a user with RoleEdge may do.
type Registry struct {
	kv  jetstream.KeyValue
	js  jetstream.JetStream // finds the releases bucket (WatchTraffic); nil for a Store's
	log *slog.Logger
	// ownExpiry: Watch reports deregistrations only, not expiries
	// (OwnExpiry).
	ownExpiry bool
}

// OwnExpiry is r for a watcher that expires stamps on its own clock, as
// the edge does: its Watch reports a stamp gone when it deregistered,
// never when the registry expired its key. The registry expires a key
// RegistryTTL after its last heartbeat was written, and no heartbeat can
// be written while the bucket elects a leader (seconds, after the server
// that led it was lost with its region): an election longer than the TTL
// expires every stamp at once, the live ones too, until their next
// heartbeats announce them again. A watcher that forgot them all would
// route nowhere meanwhile.
func (r *Registry) OwnExpiry() *Registry {
	own := *r
	own.ownExpiry = true
	return &own
}

// OpenRegistry finds the stamps registry (the deployment's set-up step or
// its first stamp declares it), retrying until ctx is done. Only cfg's
// Conn and Logger are used.
func OpenRegistry(ctx context.Context, cfg Config) (*Registry, error) {
	if cfg.Conn == nil {
		return nil, errors.New("open registry: a NATS connection is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	kv, err := findBucket(ctx, js, BucketRegistry, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	return &Registry{kv: kv, js: js, log: cfg.Logger}, nil
}

// RegistryQuiet is how long a registry watch that has announced stamps
// may then hear nothing before it is set up again: three missed
// heartbeats of every running stamp (each heartbeats every second). A
// watch that stopped delivering (its consumer was on a server lost with
// its region) is replaced within seconds, so that the stamps started
// meanwhile are seen; a watch set up again replays every entry but not
// the deletes it missed (the expiry of stamps that all stopped at once),
// so its callers keep their own expiry, as the edge does.
const RegistryQuiet = 3 * time.Second

// errWatchQuiet: a watch that delivered heard nothing more for too long.
var errWatchQuiet = errors.New("watch went quiet")

// Watch streams the registry to fn until ctx is done, as
// Store.WatchRegistry does (for an OwnExpiry registry, without the
// expiries). It returns an error (and the caller watches
// again) when the watch breaks, when its first values stall, or when,
// after it announced stamps, nothing arrives for RegistryQuiet: a watch
// set up again replays every entry, but not the deletes it missed, so a
// caller keeps its own expiry as the edge does.
func (r *Registry) Watch(ctx context.Context, fn func(id string, e *StampEntry), loaded func()) error {
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch registry: %w", err)
	}
	defer w.Stop()
	stall := time.NewTimer(watchStallTimeout) // as Store.Watch: a stalled first load is set up again
	defer stall.Stop()
	marker, heard := false, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stall.C:
			if !marker {
				return fmt.Errorf("watch registry: %w for %s", errWatchStalled, watchStallTimeout)
			}
			if heard {
				// Every running stamp heartbeats each second: a registry
				// that announced stamps and then says nothing for this
				// long is a watch that stopped delivering (seen after a
				// region's server was lost), or no stamp is left; set up
				// again either way.
				return fmt.Errorf("watch registry: %w: nothing heard for %s", errWatchQuiet, RegistryQuiet)
			}
		case u, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch registry: closed")
			}
			if !marker {
				stall.Reset(watchStallTimeout)
			} else {
				stall.Reset(RegistryQuiet)
			}
			if u == nil {
				marker = true
				if loaded != nil {
					loaded()
					loaded = nil
				}
				continue
			}
			switch u.Operation() {
			case jetstream.KeyValuePut:
			case jetstream.KeyValuePurge: // the TTL's marker: the key expired
				if !r.ownExpiry {
					fn(u.Key(), nil)
				}
				continue
			default: // deleted: the instance deregistered
				fn(u.Key(), nil)
				continue
			}
			heard = true
			var e StampEntry
			err := decodeRecord(kindStampEntry, u.Key(), u.Value(), &e)
			if errors.Is(err, ErrSchema) {
				// Nothing is routed on an entry this release cannot read:
				// to this watcher the instance is gone.
				r.log.Warn("forgetting a registry entry written by a newer release", "key", u.Key(), "error", err)
				fn(u.Key(), nil)
				continue
			}
			if err != nil || e.ID != u.Key() {
				r.log.Warn("skipping undecodable registry entry", "key", u.Key(), "error", err)
				continue
			}
			fn(u.Key(), &e)
		}
	}
}

// RegistryID makes the registry id of an instance of region.
func RegistryID(region, instance string) string {
	return region + "." + strings.ReplaceAll(instance, ".", "-")
}

// RegistryIndex follows the stamps registry and knows each running stamp
// instance's id by the URL it announces: how a supervisor of stamp
// processes names the instance a process runs (a stamp makes its id when
// it starts). A watch that ends is set up again after a second.
type RegistryIndex struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex        // guards byURL
	byURL map[string]string // stamp URL → registry id
}

// FollowRegistry opens the registry through cfg's connection, retrying
// until ctx is done as OpenRegistry does, and follows it until Close.
// Only cfg's Conn and Logger are used.
func FollowRegistry(ctx context.Context, cfg Config) (*RegistryIndex, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	reg, err := OpenRegistry(ctx, cfg)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	x := &RegistryIndex{cancel: stop, done: make(chan struct{}), byURL: map[string]string{}}
	go func() {
		defer close(x.done)
		for runCtx.Err() == nil {
			err := reg.Watch(runCtx, x.apply, nil)
			if err != nil && runCtx.Err() == nil {
				cfg.Logger.Warn("stamps registry watch ended; watching again", "error", err)
				select {
				case <-runCtx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return x, nil
}

func (x *RegistryIndex) apply(id string, e *StampEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e == nil {
		for u, known := range x.byURL {
			if known == id {
				delete(x.byURL, u)
			}
		}
		return
	}
	x.byURL[e.URL] = e.ID
}

// ID is the registry id of the stamp that announces url; empty when none
// does.
func (x *RegistryIndex) ID(url string) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byURL[url]
}

// Close stops following the registry; the connection stays open.
func (x *RegistryIndex) Close() {
	x.cancel()
	<-x.done
}
