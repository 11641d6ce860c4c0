package host

import (
	"context"
	"fmt"
	"slices"

	"github.com/contoso/shoes/internal/child"
	"github.com/contoso/shoes/internal/launch"
	"github.com/contoso/shoes/internal/release"
)

// launcher is the host as its release agent sees it: it starts stamps of
// a release in the host's region, from the binary of the release's image,
// and drains them.
type launcher struct{ *Host }

var _ release.Launcher = launcher{}

// agentRun is the host's release agent and its taker of the autoscaler's
// starts and drains, running until stop.
type agentRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	launch *launch.Server
}

// stop ends the agent and waits for the starts and stops it began.
func (a *agentRun) stop() {
	a.launch.Close()
	a.cancel()
	<-a.done
}

// startAgent runs the release agent of the host's region: it keeps the
// host's share (Instances) of each version a release desires there. It
// also takes the autoscaler's starts (one host of the region takes each)
// and drains (of the stamps this host runs) for the region.
func (h *Host) startAgent(records release.Records) error {
	agent, err := release.NewAgent(release.AgentConfig{
		Records:   records,
		Launcher:  launcher{h},
		Hosts:     func(region string) bool { return region == h.cfg.Region },
		Instances: h.cfg.Instances,
		Settled:   h.settle,
		Logger:    h.log,
	})
	if err != nil {
		return err
	}
	taker, err := launch.Serve(launch.ServeConfig{Conn: h.nc, Launcher: launcher{h}, Regions: []string{h.cfg.Region}, Logger: h.log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agentRun{cancel: cancel, done: make(chan struct{}), launch: taker}
	go func() {
		defer close(a.done)
		_ = agent.Run(ctx)
	}()
	h.mu.Lock()
	h.agent = a
	h.mu.Unlock()
	return nil
}

// Start starts one stamp of spec's release: with spec.Image, the binary of
// that image (pulled by digest and checked, once per digest); without,
// the binary that already runs spec.Version here. It returns the stamp's
// registry id once it is announced: whether it becomes ready is the
// release controller's to judge.
func (l launcher) Start(ctx context.Context, spec release.Spec) (string, error) {
	h := l.Host
	if spec.Region != h.cfg.Region {
		return "", fmt.Errorf("start stamp: this host runs %s, not %s", h.cfg.Region, spec.Region)
	}
	if spec.Fault != "" && h.cfg.Environment == release.EnvProd {
		return "", fmt.Errorf("start stamp %s: injected faults are refused in the prod environment", spec.Region)
	}
	var t target
	switch {
	case spec.Version == "" && spec.Image == "":
		// The autoscaler's start: one more of what the region runs.
		h.mu.Lock()
		t = h.settled
		h.mu.Unlock()
	case spec.Image != "":
		binary, err := h.binary(ctx, spec.Image)
		if err != nil {
			return "", fmt.Errorf("start stamp %s of %s: %w", spec.Region, spec.Version, err)
		}
		t = target{version: spec.Version, binary: binary}
	default:
		h.mu.Lock()
		t = target{version: spec.Version, binary: h.bins[spec.Version]}
		h.mu.Unlock()
		if t.binary == "" {
			return "", fmt.Errorf("start stamp %s of %s: no image names it and no binary here runs it", spec.Region, spec.Version)
		}
	}
	h.mu.Lock()
	h.bins[t.version] = t.binary
	h.mu.Unlock()
	s, err := h.startStamp(ctx, t, spec.Fault)
	if err != nil {
		return "", fmt.Errorf("start stamp %s of %s: %w", spec.Region, t.version, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.id, nil
}

// Stop drains the stamp with registry id id: SIGTERM, upon which it leaves
// the registry, completes the requests in flight and stops its processor
// (what it had not acknowledged is redelivered to another stamp); after
// child.StopGrace it is killed. It returns once the process is gone, with
// an error unless it exited with status 0; a stamp that was waiting to be
// restarted is just not restarted.
func (l launcher) Stop(ctx context.Context, id string) error {
	h := l.Host
	h.mu.Lock()
	i := slices.IndexFunc(h.stamps, func(s *stamp) bool { return !s.starting && !s.stopping && s.id == id })
	if i < 0 {
		h.mu.Unlock()
		return fmt.Errorf("stop stamp %s: no such stamp here", id)
	}
	s := h.stamps[i]
	s.retire()
	h.stamps = slices.Delete(h.stamps, i, i+1)
	h.retired = append(h.retired, s)
	h.mu.Unlock()
	s.runMu.Lock() // a restart under way ends first: retire cancelled it
	defer s.runMu.Unlock()
	if !s.Running() {
		return nil
	}
	if err := s.Drain(ctx, child.StopGrace); err != nil {
		return fmt.Errorf("stop stamp %s (%s): %w", id, s.Name, err)
	}
	return nil
}

// Running lists the host's stamps with their release, those waiting to
// be restarted included (they are the host's to bring back); a stamp a
// release is still starting, or one never announced, is left out.
func (l launcher) Running() []release.Instance {
	h := l.Host
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []release.Instance
	for _, s := range h.stamps {
		if s.starting || s.stopping || s.id == "" {
			continue
		}
		out = append(out, release.Instance{ID: s.id, Region: h.cfg.Region, Release: s.version})
	}
	return out
}

// settle records the version a release left in the region: what a stamp
// the host restarts from now on runs.
func (h *Host) settle(region, version string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	bin, ok := h.bins[version]
	if region != h.cfg.Region || !ok {
		h.log.Warn("a release left a version this host never ran; restarted stamps keep theirs", "release", version)
		return
	}
	h.settled = target{version: version, binary: bin}
	h.epoch++
	h.log.Info("release settled", "release", version, "binary", bin)
}
