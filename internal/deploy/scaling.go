package deploy

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/launch"
	"github.com/contoso/shoes/internal/opsplane"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// ScaleConfig configures the operations plane's autoscaler.
type ScaleConfig struct {
	// Launcher starts and drains instances; nil: launch.Remote, the
	// supervisors and hosts of a deployment of processes, reached through
	// the store's servers.
	Launcher release.Launcher
	// Max is the most instances the autoscaler runs in a region; zero:
	// 3 × the plane's Instances (its min).
	Max int
	// Policy is the damping; zero: autoscale.DefaultPolicy.
	Policy autoscale.Policy
}

// newScaler builds the operations plane's autoscaler: it reads the
// instances' load from the plane and starts and drains instances through
// cfg's launcher, holding while a release is under way; min is the
// plane's count of instances per region.
func newScaler(cfg ScaleConfig, instances int, nc *nats.Conn, plane *opsplane.Plane, releases *release.Controller, ic autoscale.InstanceControl, regions func() []string, log *slog.Logger) (*autoscale.Scaler, error) {
	lo := max(instances, 1)
	hi := cmp.Or(cfg.Max, 3*lo)
	l := cfg.Launcher
	if l == nil {
		l = launch.Remote{Conn: nc, Instances: plane.Instances}
	}
	return autoscale.New(autoscale.Config{
		Launcher:  l,
		Observer:  plane,
		Regions:   regions,
		Hold:      func(ctx context.Context) string { return releaseUnderWay(ctx, releases) },
		Default:   autoscale.Limits{Min: lo, Max: max(hi, lo)},
		Policy:    cfg.Policy,
		Instances: ic,
		Logger:    log,
	})
}

// releaseUnderWay names the release under way, if any: the scaler holds
// while one runs, since the release agent owns the counts until it ends.
// A release record that cannot be read holds too.
func releaseUnderWay(ctx context.Context, releases *release.Controller) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cur, err := releases.Current(ctx)
	switch {
	case err != nil:
		return "the release record cannot be read"
	case cur != nil && !cur.Phase.Final():
		return "release " + cur.ID + " is under way"
	}
	return ""
}

// storedInstances gives every stamp instance its capacity and simulated
// work through the store (store.InstanceKey), which every stamp follows,
// in process or not: the one way both compositions set them. What it set
// lasts until the operations plane starts again, which clears it.
type storedInstances struct {
	records *store.Releases
	prod    bool // simulated work is refused, as injected faults are

	cur atomic.Pointer[autoscale.InstanceSettings] // what it set last; nil: each instance's own configuration

	writing sync.Mutex // serialises the writes to the store, SetInstanceSettings's and clearStale's, and guards touched
	touched bool       // an operator set or reset them since the plane started
}

// setTimeout bounds one write of the settings.
const setTimeout = 10 * time.Second

// InstanceSettings are the settings it set, if any.
func (s *storedInstances) InstanceSettings() (autoscale.InstanceSettings, bool) {
	if is := s.cur.Load(); is != nil {
		return *is, true
	}
	return autoscale.InstanceSettings{}, false
}

// SetInstanceSettings stores is for every instance, or clears the
// settings when is is nil. Simulated work is refused in prod.
func (s *storedInstances) SetInstanceSettings(is *autoscale.InstanceSettings) error {
	if is != nil && is.WorkMs > 0 && s.prod {
		return shop.Errorf(shop.KindForbidden, "", "simulated work is refused in the prod environment")
	}
	var v *store.InstanceSettings
	if is != nil {
		v = &store.InstanceSettings{Capacity: is.Capacity, WorkMs: is.WorkMs}
	}
	s.writing.Lock()
	defer s.writing.Unlock()
	// The scaling API's Apply has no context of its own: the write is
	// bounded here.
	ctx, cancel := context.WithTimeout(context.Background(), setTimeout)
	defer cancel()
	if err := s.records.SetInstance(ctx, v); err != nil {
		return err
	}
	s.touched = true
	if is != nil {
		c := *is
		is = &c
	}
	s.cur.Store(is)
	return nil
}

// clearStale deletes the settings a previous run of the operations plane
// left in the store, unless an operator has set or reset them since this
// one started: run-time settings last as long as the plane that set them,
// as in a deployment in one process.
func (s *storedInstances) clearStale(ctx context.Context) error {
	s.writing.Lock()
	defer s.writing.Unlock()
	if s.touched {
		return nil
	}
	if err := s.records.SetInstance(ctx, nil); err != nil {
		return err
	}
	s.touched = true
	return nil
}

var _ autoscale.InstanceControl = (*storedInstances)(nil)
