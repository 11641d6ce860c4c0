package deploy

import (
	"context"
	"time"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/shop"
)

// defaultCapacity is a stamp instance's capacity unless set
// (stamp.Config.Capacity's default).
const defaultCapacity = 256

// newScaler builds the deployment's autoscaler: it reads the instances'
// load from the operations plane and starts and drains this process's
// instances through the same launcher as the release agent, holding while
// a release is under way.
func (d *Deployment) newScaler(plane autoscale.Observer, releases *release.Controller) (*autoscale.Scaler, error) {
	hi := d.cfg.ScaleMax
	if hi == 0 {
		hi = 3 * d.instances()
	}
	return autoscale.New(autoscale.Config{
		Launcher:  launcher{d},
		Observer:  plane,
		Regions:   d.regionNames,
		Spec:      func(region string) release.Spec { return release.Spec{Region: region} },
		Hold:      func(ctx context.Context) string { return releaseUnderWay(ctx, releases) },
		Default:   autoscale.Limits{Min: d.instances(), Max: max(hi, d.instances())},
		Policy:    d.cfg.Scaling,
		Instances: d,
		Logger:    d.log,
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
