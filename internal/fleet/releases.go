package fleet

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/contoso/shoes/internal/child"
	"github.com/contoso/shoes/internal/launch"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/store"
)

// launcher is the fleet as a release agent sees it: it starts stamp
// processes of a release next to the region's others, each from the
// release's binary, and drains them.
type launcher struct{ *Fleet }

var _ release.Launcher = launcher{}

// agentRun is the fleet's release agent and its taker of the
// autoscaler's starts and drains, running until stop.
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

// startAgent runs a release agent for every region of the fleet, and takes
// the autoscaler's starts and drains for every region it carries. It reads
// the release records as the agents' user, through the registry view's
// connection: that user may read the releases bucket, take starts and
// drains and answer them, and write nothing.
func (f *Fleet) startAgent() error {
	agent, err := release.NewAgent(release.AgentConfig{
		Records:  store.NewReleases(store.Config{Conn: f.registry.nc, Logger: f.log.With("component", "fleet-releases")}),
		Launcher: launcher{f},
		Hosts:    f.regionUp,
		Settled:  f.settled,
		Logger:   f.log,
	})
	if err != nil {
		return err
	}
	taker, err := launch.Serve(launch.ServeConfig{Conn: f.registry.nc, Launcher: launcher{f}, Carries: f.regionUp,
		Logger: f.log.With("component", "fleet-launch")})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agentRun{cancel: cancel, done: make(chan struct{}), launch: taker}
	go func() {
		defer close(a.done)
		_ = agent.Run(ctx)
	}()
	f.agent = a
	return nil
}

// Start starts one stamp process of spec's release in its region (without
// a version, of the region's release), in the zone that runs the fewest,
// with the flags, credentials and secrets of the region's first stamp plus
// --release and --fault; with spec.Image, it runs the binary of that
// artifact (extracted once per digest into <data>/releases/<digest>/).
// It returns the stamp's registry id once the stamp announces itself:
// whether it becomes ready is the release controller's to judge.
func (l launcher) Start(ctx context.Context, spec release.Spec) (string, error) {
	f := l.Fleet
	r, err := f.region(spec.Region)
	if err != nil {
		return "", fmt.Errorf("start stamp: %w", err)
	}
	if spec.Fault != "" && f.cfg.Environment == release.EnvProd {
		return "", fmt.Errorf("start stamp %s: injected faults are refused in the prod environment", spec.Region)
	}
	binary := f.bin.contoso
	if spec.Image != "" {
		if binary, err = f.extract(ctx, spec.Image); err != nil {
			return "", fmt.Errorf("start stamp %s of %s: %w", spec.Region, spec.Version, err)
		}
	}
	f.mu.Lock()
	if spec.Version == "" && spec.Image == "" {
		// The autoscaler's start: one more of what the region runs.
		spec.Version, binary = r.release, r.binary
	}
	f.nextID++
	i := f.nextID
	port, err := f.ports.take()
	if err == nil {
		f.releaseBins[spec.Version] = binary
	}
	zone := f.emptiestZone(r)
	f.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("start stamp %s: %w", spec.Region, err)
	}
	s := &stampProc{url: fmt.Sprintf("http://127.0.0.1:%d", port), region: spec.Region, zone: zone, release: spec.Version, binary: binary, starting: true}
	s.Process = f.stampProc(s, i, spec.Fault)
	s.Check = f.announced(s.url)
	// Listed before it starts, so Close stops it even while it starts.
	f.mu.Lock()
	r.stamps = append(r.stamps, s)
	f.mu.Unlock()
	if err := s.Start(ctx); err != nil {
		f.mu.Lock()
		r.stamps = slices.DeleteFunc(r.stamps, func(x *stampProc) bool { return x == s })
		f.mu.Unlock()
		return "", fmt.Errorf("start stamp %s of %s: %w", spec.Region, spec.Version, err)
	}
	id := f.registry.id(s.url)
	f.mu.Lock()
	s.id, s.starting = id, false
	f.mu.Unlock()
	return id, nil
}

// announced is the ready check of a stamp a release starts: it is in the
// stamps registry.
func (f *Fleet) announced(url string) func(context.Context) error {
	return func(context.Context) error {
		if f.registry.id(url) == "" {
			return fmt.Errorf("%s is not in the stamps registry yet", url)
		}
		return nil
	}
}

// Stop drains the stamp process with registry id id: SIGTERM, upon which
// the stamp leaves the registry, completes the requests in flight and
// stops its processor (what it had not acknowledged is redelivered to
// another stamp); after child.StopGrace it is killed. It returns once the
// process is gone, with an error unless it exited with status 0.
func (l launcher) Stop(ctx context.Context, id string) error {
	f := l.Fleet
	f.mu.Lock()
	var victim *stampProc
	for _, r := range f.regions {
		i := slices.IndexFunc(r.stamps, func(s *stampProc) bool { return !s.starting && s.Running() && f.stampID(s) == id })
		if i < 0 {
			continue
		}
		victim = r.stamps[i]
		victim.id = id
		if i == 0 {
			// The first stamp's place (its address, which the other
			// regions' POPs reach through the links) stays: a stamp of
			// the region's settled release takes it when the region is
			// revived.
			r.stamps[0] = f.baseStamp(r, victim.url)
		} else {
			r.stamps = slices.Delete(r.stamps, i, i+1)
		}
		f.retired = append(f.retired, victim)
		break
	}
	f.mu.Unlock()
	if victim == nil {
		return fmt.Errorf("stop stamp %s: no such stamp process", id)
	}
	if err := victim.Drain(ctx, child.StopGrace); err != nil {
		return fmt.Errorf("stop stamp %s (%s): %w", id, victim.Name, err)
	}
	return nil
}

// Running lists every stamp process that runs, with its region and
// release; one still starting, or not in the registry, is left out.
func (l launcher) Running() []release.Instance {
	f := l.Fleet
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []release.Instance
	for _, r := range f.regions {
		for _, s := range r.stamps {
			if s.starting || !s.Running() {
				continue
			}
			if id := f.stampID(s); id != "" {
				out = append(out, release.Instance{ID: id, Region: r.name, Release: s.release})
			}
		}
	}
	return out
}

// stampID is s's registry id: the one a release's start read, else the
// registry's for its URL (a first stamp's id changes when it restarts).
func (f *Fleet) stampID(s *stampProc) string {
	if s.id != "" {
		return s.id
	}
	return f.registry.id(s.url)
}

// baseStamp is a new, not yet started first stamp of r at url, of the
// region's release and binary; f.mu is held.
func (f *Fleet) baseStamp(r *region, url string) *stampProc {
	s := &stampProc{url: url, region: r.name, release: r.release, binary: r.binary}
	s.Process = f.stampProc(s, 0, "")
	return s
}

// settled records the release a region runs after a release ended: what
// the stamps the fleet starts by itself there from now on (a revived
// region's, an added instance) run.
func (f *Fleet) settled(region, version string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.regions[region]
	if !ok {
		return
	}
	r.release, r.binary = version, cmp.Or(f.releaseBins[version], f.bin.contoso)
	if first := r.stamps[0]; !first.Running() {
		r.stamps[0] = f.baseStamp(r, first.url)
	}
	f.log.Info("release settled", "region", region, "release", version, "binary", r.binary)
}

// extract is the binary of image (REPOSITORY@sha256:...), extracted
// once per digest to <data>/releases/<digest>/contoso.
func (f *Fleet) extract(ctx context.Context, image string) (string, error) {
	path, meta, err := f.releases.Binary(ctx, image)
	if err != nil {
		return "", err
	}
	f.log.Info("release binary ready", "image", image, "version", meta.Version, "path", path)
	return path, nil
}

// Stamp is one stamp process the fleet started: running, or ended after a
// release stopped it.
type Stamp struct {
	Region  string `json:"region"`
	ID      string `json:"id,omitempty"` // its registry id; empty while not known
	Release string `json:"release"`      // the version it runs and announces
	Binary  string `json:"binary"`       // the program it runs
	PID     int    `json:"pid"`          // its process id (the last, once it ended)
	Running bool   `json:"running"`
	// Exit is how it ended, once it has: "exit status 0" when it drained
	// and exited cleanly, else the status or the signal that ended it.
	Exit string `json:"exit,omitempty"`
}

// Stamps lists every stamp process of the fleet: those of its regions
// and those a release stopped.
func (f *Fleet) Stamps() []Stamp {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Stamp
	add := func(s *stampProc) {
		if !s.Ran() {
			return
		}
		st := Stamp{Region: s.region, ID: f.stampID(s), Release: s.release, Binary: s.binary, PID: s.LastPID(), Running: s.Running()}
		if !st.Running {
			st.Exit = "exit status 0"
			if err := s.ExitErr(); err != nil {
				st.Exit = err.Error()
			}
		}
		out = append(out, st)
	}
	for _, name := range f.order {
		for _, s := range f.regions[name].stamps {
			add(s)
		}
	}
	for _, s := range f.retired {
		add(s)
	}
	return out
}

// regionUp reports whether the fleet's agent acts on a region: its store
// server runs (a lost region's agent is lost with it, so nothing starts
// there until it is revived) and no other supervisor carries its stamps.
func (f *Fleet) regionUp(name string) bool {
	r, err := f.region(name)
	return err == nil && r.nats != nil && r.nats.Running() && !f.handedOver(name)
}
