package deploy

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/launch"
	"github.com/contoso/shoes/internal/opsplane"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/shop"
)

// defaultCapacity is a stamp instance's capacity unless set
// (stamp.Config.Capacity's default).
const defaultCapacity = 256

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
	// Instances sets every instance's capacity and simulated work; nil:
	// the scaling API refuses to (instances started as processes take
	// theirs from their flags).
	Instances autoscale.InstanceControl
}

// newScaler builds the operations plane's autoscaler: it reads the
// instances' load from the plane and starts and drains instances through
// cfg's launcher, holding while a release is under way; min is the
// plane's count of instances per region.
func newScaler(cfg ScaleConfig, instances int, nc *nats.Conn, plane *opsplane.Plane, releases *release.Controller, regions func() []string, log *slog.Logger) (*autoscale.Scaler, error) {
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
		Instances: cfg.Instances,
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

// InstanceSettings are the capacity and simulated work every stamp
// instance of the deployment serves with. It implements
// autoscale.InstanceControl.
func (d *Deployment) InstanceSettings() autoscale.InstanceSettings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.load
}

// SetInstanceSettings gives every running stamp instance, and those
// started later, a capacity and a simulated work per request. Simulated
// work is refused in the prod environment, as injected faults are.
func (d *Deployment) SetInstanceSettings(is autoscale.InstanceSettings) error {
	if is.WorkMs > 0 && d.cfg.Env == release.EnvProd {
		return shop.Errorf(shop.KindForbidden, "", "simulated work is refused in the prod environment")
	}
	d.mu.Lock()
	d.load = is
	var all []*instance
	for _, r := range d.regions {
		all = append(all, r.instances...)
	}
	d.mu.Unlock()
	for _, in := range all {
		if err := applyLoad(in, is); err != nil {
			return err
		}
	}
	return nil
}

// applyLoad gives one instance a capacity and a simulated work.
func applyLoad(in *instance, is autoscale.InstanceSettings) error {
	if err := in.stamp.SetCapacity(is.Capacity); err != nil {
		return err
	}
	return in.stamp.SetWork(time.Duration(is.WorkMs) * time.Millisecond)
}

var _ autoscale.InstanceControl = (*Deployment)(nil)
