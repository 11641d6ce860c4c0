package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/stamp"
)

// stopTimeout bounds the drain of one instance a release stops.
const stopTimeout = 30 * time.Second

// launcher is the deployment as a release agent sees it: it starts
// instances of a version in process and drains them.
type launcher struct{ d *Deployment }

var _ release.Launcher = launcher{}

// Start starts one instance of spec's version in its region. In process
// the instance runs this binary's code and announces spec.Version: `up`
// releases versions, not images.
func (l launcher) Start(ctx context.Context, spec release.Spec) (string, error) {
	if spec.Image != "" {
		return "", fmt.Errorf("start %s: up runs its stamps in process and cannot run image %s", spec.Region, spec.Image)
	}
	fault, err := stamp.ParseFault(spec.Fault)
	if err != nil {
		return "", fmt.Errorf("start %s: %w", spec.Region, err)
	}
	if !fault.Zero() && l.d.cfg.Env == release.EnvProd {
		return "", fmt.Errorf("start %s: injected faults are refused in the prod environment", spec.Region)
	}
	l.d.mu.Lock()
	r, ok := l.d.regions[spec.Region]
	l.d.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("start: unknown region %q", spec.Region)
	}
	in, err := l.d.startInstance(ctx, r, instanceSpec{release: spec.Version, fault: fault})
	if err != nil {
		return "", err
	}
	return in.stamp.ID(), nil
}

// Stop drains one instance: it leaves the registry, its requests in
// flight complete and its processor stops pulling, so what it had not
// acknowledged is redelivered to another instance.
func (l launcher) Stop(ctx context.Context, id string) error {
	l.d.mu.Lock()
	var in *instance
	for _, r := range l.d.regions {
		for i, x := range r.instances {
			if x.stamp.ID() == id {
				in = x
				r.instances = append(r.instances[:i:i], r.instances[i+1:]...)
				break
			}
		}
	}
	l.d.mu.Unlock()
	if in == nil {
		return fmt.Errorf("stop %s: no such instance", id)
	}
	in.cancel()
	select {
	case err := <-in.done:
		return err
	case <-time.After(stopTimeout):
		return fmt.Errorf("stop %s: still draining after %s", id, stopTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Running lists every instance of the deployment with its release.
func (l launcher) Running() []release.Instance {
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	var out []release.Instance
	for name, r := range l.d.regions {
		for _, in := range r.instances {
			out = append(out, release.Instance{ID: in.stamp.ID(), Region: name, Release: in.release})
		}
	}
	return out
}

// settled records the version a region runs after a release ended: what
// its instances started later (a revived region, a scale-out) run.
func (d *Deployment) settled(region, version string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.versions == nil {
		d.versions = map[string]string{}
	}
	d.versions[region] = version
}

// versionOf is the version a region's new instances run; d.mu is held.
func (d *Deployment) versionOf(region string) string {
	if v, ok := d.versions[region]; ok {
		return v
	}
	return d.cfg.Release
}

// InstanceReleases is the release of every running instance, by region.
func (d *Deployment) InstanceReleases() map[string][]string {
	out := map[string][]string{}
	for _, in := range (launcher{d}).Running() {
		out[in.Region] = append(out[in.Region], in.Release)
	}
	return out
}

// regionUp reports whether a region's store server runs (a region without
// one, stamps only, is up): a lost region's agent is lost with it, so
// nothing starts there until it is revived.
func (d *Deployment) regionUp(name string) bool {
	node, ok := d.storeNode(name)
	return ok && (node == nil || node.Server().Running())
}
