package release

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Spec is one instance an agent is asked to start.
type Spec struct {
	Region  string
	Version string
	Image   string // REF@sha256:... of the artifact to run; empty: in process
	Fault   string // injected defect (experiments only)
}

// Launcher starts and stops stamp instances where an agent runs.
type Launcher interface {
	// Start starts one instance and returns its registry id once it runs
	// (ready or not: readiness is the controller's to wait for).
	Start(ctx context.Context, spec Spec) (id string, err error)
	// Stop drains one instance: requests in flight complete, background
	// work not acknowledged is redelivered to another instance; it returns
	// once the instance is gone.
	Stop(ctx context.Context, id string) error
	// Running lists the instances the launcher runs, with their region and
	// release.
	Running() []Instance
}

// AgentConfig configures an Agent.
type AgentConfig struct {
	Records  Records  // required: read only
	Launcher Launcher // required
	// Hosts reports whether this agent starts the instances of a region;
	// nil: every region.
	Hosts func(region string) bool
	// Instances, when more than zero, is how many instances of each
	// version the agent keeps in a region it hosts, whatever the region's
	// desired count of that version, as long as it is not zero: an agent
	// of one host among several that carry a region runs its own share
	// (the controller's counts are the whole region's). A version desired
	// at zero is drained all the same. Zero: the desired counts.
	Instances int
	// Settled is called once with the version a release left running, when
	// it ends (the new version when done, the old one after a rollback):
	// what later instances of the deployment should run. Nil: none.
	Settled func(region, version string)
	Tick    time.Duration // zero: 250 ms
	// Retry is the least time between two starts of one region's version
	// after a start failed; zero: 2 s.
	Retry  time.Duration
	Logger *slog.Logger // nil: discard
}

// Agent makes what runs match what the release under way desires.
type Agent struct {
	cfg AgentConfig
	log *slog.Logger

	mu       sync.Mutex // guards the fields below
	starting map[[2]string]int
	stopping map[string]bool
	failedAt map[[2]string]time.Time
	settled  string // the id of the last release whose end was reported
	wg       sync.WaitGroup
}

// NewAgent validates cfg.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Records == nil || cfg.Launcher == nil {
		return nil, errors.New("release agent: records and launcher are required")
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("component", "release-agent"),
		starting: map[[2]string]int{}, stopping: map[string]bool{}, failedAt: map[[2]string]time.Time{}}, nil
}

// Run reconciles until ctx is done, then waits for the starts and stops
// it began.
func (a *Agent) Run(ctx context.Context) error {
	defer a.wg.Wait()
	t := time.NewTicker(a.cfg.Tick)
	defer t.Stop()
	for {
		if err := a.reconcile(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("release agent", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// loadCurrent reads the current release (under way or the last one
// ended); nil when there was none.
func loadCurrent(ctx context.Context, records Records) (*Record, error) {
	data, _, err := records.Load(ctx, keyCurrent)
	if err != nil || data == nil {
		return nil, err
	}
	var cur struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &cur); err != nil {
		return nil, fmt.Errorf("current release: %w", err)
	}
	rdata, _, err := records.Load(ctx, keyPrefix+cur.ID)
	if err != nil || rdata == nil {
		return nil, err
	}
	return decodeRecord(rdata)
}

func (a *Agent) hosts(region string) bool { return a.cfg.Hosts == nil || a.cfg.Hosts(region) }

// reconcile is one pass: start what is missing, drain what is extra.
// Once the release has ended it only drains: an instance of the version it
// retired that was slow to stop is stopped still.
func (a *Agent) reconcile(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	r, err := loadCurrent(lctx, a.cfg.Records)
	cancel()
	if err != nil || r == nil {
		return err
	}
	if r.Phase.Final() {
		a.mu.Lock()
		first := a.settled != r.ID
		a.settled = r.ID
		a.mu.Unlock()
		if first && a.cfg.Settled != nil {
			for region, from := range r.From {
				if !a.hosts(region) {
					continue
				}
				v := from
				if r.Phase == PhaseDone {
					v = r.Version
				}
				a.cfg.Settled(region, v)
			}
		}
	}
	running := map[[2]string][]string{}
	for _, in := range a.cfg.Launcher.Running() {
		k := [2]string{in.Region, in.Release}
		running[k] = append(running[k], in.ID)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for region, versions := range r.Desired {
		if !a.hosts(region) {
			continue
		}
		for version, want := range versions {
			if a.cfg.Instances > 0 && want > 0 {
				want = a.cfg.Instances
			}
			k := [2]string{region, version}
			var live []string
			for _, id := range running[k] {
				if !a.stopping[id] {
					live = append(live, id)
				}
			}
			have := len(live) + a.starting[k]
			switch {
			case have < want:
				if r.Phase.Final() || now.Sub(a.failedAt[k]) < a.cfg.Retry {
					// An ended release starts nothing more; it only
					// goes on draining what it left behind.
					continue
				}
				// The old version too: a region lost and revived during
				// a release must get both back, or a rollback would leave
				// it empty.
				spec := Spec{Region: region, Version: version}
				if version == r.Version {
					spec.Image, spec.Fault = r.Image, r.Fault
				}
				for range want - have {
					a.starting[k]++
					a.wg.Go(func() { a.start(ctx, k, spec, r.ID) })
				}
			case len(live) > want && a.starting[k] == 0 && (want == 0 || !r.Phase.Final()):
				// After the end, only a retired version is drained: more
				// instances of the one that stays are a scale-out.
				for _, id := range live[want:] {
					a.stopping[id] = true
					a.wg.Go(func() { a.stop(ctx, id, r.ID) })
				}
			}
		}
	}
	return nil
}

func (a *Agent) start(ctx context.Context, k [2]string, spec Spec, release string) {
	id, err := a.cfg.Launcher.Start(ctx, spec)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.starting[k]--
	if err != nil {
		a.failedAt[k] = time.Now()
		if ctx.Err() == nil {
			a.log.Warn("release: start instance", "release", release, "region", spec.Region, "version", spec.Version, "error", err)
		}
		return
	}
	a.log.Info("release: instance started", "release", release, "region", spec.Region, "version", spec.Version, "instance", id)
}

func (a *Agent) stop(ctx context.Context, id, release string) {
	err := a.cfg.Launcher.Stop(ctx, id)
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.stopping, id)
	if err != nil {
		a.log.Warn("release: drain instance", "release", release, "instance", id, "error", err)
		return
	}
	a.log.Info("release: instance drained and stopped", "release", release, "instance", id)
}

// Left is what region runs by the releases' account: the version the last
// release left there (its new version when done, the old one after a
// rollback or a failure) or, while one is under way, the version it
// started from; with the image (REF@sha256:...) a done release of an
// image brought that version from, else an empty Image. ok is false when
// no release has named region. A supervisor that starts stamps by itself
// (after a restart, say) starts them of this version, so that the agent
// does not take them for a retired version's and drain them.
func Left(ctx context.Context, records Records, region string) (spec Spec, ok bool, err error) {
	r, err := loadCurrent(ctx, records)
	if err != nil || r == nil {
		return Spec{}, false, err
	}
	from, named := r.From[region]
	if !named {
		return Spec{}, false, nil
	}
	if r.Phase == PhaseDone {
		return Spec{Region: region, Version: r.Version, Image: r.Image}, true, nil
	}
	spec = Spec{Region: region, Version: from}
	// The old version's image, if a release of an image brought it: the
	// last such release that ended done.
	keys, err := records.Keys(ctx)
	if err != nil {
		return Spec{}, false, fmt.Errorf("releases of %s: %w", from, err)
	}
	var last time.Time
	for _, k := range keys {
		if !strings.HasPrefix(k, keyPrefix) || k == keyPrefix+r.ID {
			continue
		}
		data, _, err := records.Load(ctx, k)
		if err != nil {
			return Spec{}, false, fmt.Errorf("releases of %s: %w", from, err)
		}
		if data == nil {
			continue
		}
		past, err := decodeRecord(data)
		if err != nil {
			return Spec{}, false, fmt.Errorf("releases of %s: %w", from, err)
		}
		if past.Phase == PhaseDone && past.Version == from && past.Image != "" && !past.EndedAt.Before(last) {
			spec.Image, last = past.Image, past.EndedAt
		}
	}
	return spec, true, nil
}
