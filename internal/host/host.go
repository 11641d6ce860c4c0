// Package host supervises one region's stamp processes on one machine of a
// deployment on many hosts: what `contoso host` runs. It keeps a fixed
// number of `contoso stamp` processes running, each on its own port,
// restarts one that exits unexpectedly (with back-off), and runs a release
// agent (internal/release) that starts the stamps of a release next to the
// old ones, from the binary of the release's image, and drains the old
// ones by SIGTERM. The processes are run with internal/child, as `up
// --processes` runs its own.
package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/buildinfo"
	"github.com/contoso/shoes/internal/child"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/store"
)

// Config configures a Host.
type Config struct {
	// Region is the region whose stamps the host runs; required.
	Region string
	// Instances is how many stamp processes the host keeps and, while a
	// release runs, how many of each of its versions; zero: 1. Several
	// hosts may carry one region, each its own share.
	Instances int
	// DataDir holds the stamps' logs (<data>/logs/stamp-<region>-<n>.log)
	// and the binaries of the releases' images
	// (<data>/releases/<digest>/contoso); required.
	DataDir string
	// Contoso is the contoso binary the stamps run until a release brings
	// another; empty: this process's own executable.
	Contoso string
	// Release is the version the stamps of Contoso run and announce
	// (--release); empty: this binary's version (buildinfo.Version), which
	// is right when Contoso is this binary.
	Release string
	// Listen is the address of the host's first stamp (host:port): the
	// stamp in slot k listens on port+k, the lowest slot free when it
	// starts (a release runs up to twice Instances stamps at once). Port
	// 0: each stamp gets a free port of the host's own choosing. Required.
	Listen string
	// Advertise is the scheme and host name the edge reaches this host's
	// stamps at (https://stamp-weu-1.contoso.example), without a port:
	// each stamp announces it with its own listen port. Empty: each stamp
	// announces its listen address, which then must not be a wildcard.
	Advertise string
	// StampFlags are the flags of every stamp (`contoso stamp FLAGS`)
	// besides those the host sets for each one: --region, --listen,
	// --advertise, --release, --env and --fault, which StampFlags must not
	// hold.
	StampFlags []string
	// Env is the whole environment of every stamp; nil: none.
	Env []string
	// Environment is the deployment's environment, every stamp's --env:
	// release.EnvDev (zero) or release.EnvProd, in which a release's
	// injected fault is refused.
	Environment string
	// NATSURL (comma-separated, nearest first) and NATS reach the store as
	// a user that may read the stamps registry and the releases bucket and
	// take the autoscaler's starts and drains: the agents'
	// (store.RoleAgent). Required.
	NATSURL string
	NATS    store.Credentials
	// Registry are the options of every pull of a release's image; nil:
	// HTTPS and the default credentials.
	Registry []artifact.Option
	// StartTimeout bounds the start of one stamp, until it is in the
	// stamps registry; zero: 2 min.
	StartTimeout time.Duration
	// Backoff is the wait before the first restart of a stamp that exited
	// unexpectedly; it doubles with every restart that follows within a
	// minute, up to MaxBackoff. Zero: 1 s and 30 s.
	Backoff, MaxBackoff time.Duration
	Logger              *slog.Logger // nil: discard
}

// hostFlags are the stamp flags the host sets for each stamp.
var hostFlags = []string{"region", "listen", "advertise", "release", "env", "fault"}

// Host runs one region's stamps on this machine.
type Host struct {
	cfg      Config
	log      *slog.Logger
	listen   string // Listen's host
	basePort int    // Listen's port; 0: free ports
	nc       *nats.Conn
	index    *store.RegistryIndex
	releases *artifact.Cache
	// ctx bounds the restarts; cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the stamps' supervisors

	mu    sync.Mutex // guards the fields below and the fields of every stamp its comments name
	agent *agentRun  // the release agent; nil until started
	// stamps are the stamps the host runs: started by itself or by a
	// release, running, starting or waiting to be restarted.
	stamps []*stamp
	// retired are the stamps a release or Close drained, kept to report
	// how they ended.
	retired []*stamp
	// settled is what a stamp the host starts by itself runs: at first
	// what the last release left, then what each release leaves.
	settled target
	epoch   int               // counts the releases that ended while the host ran
	bins    map[string]string // version → the binary that runs it
	next    int               // numbers the stamps: stamp-<region>-<n>
	closing bool
}

// target is a version and the binary that runs it.
type target struct{ version, binary string }

// Start starts the host's stamps and returns once each is in the stamps
// registry; then it keeps them running and follows the releases until
// Close. On failure everything it started is stopped.
func Start(ctx context.Context, cfg Config) (*Host, error) {
	h, err := newHost(cfg)
	if err != nil {
		return nil, fmt.Errorf("start host: %w", err)
	}
	if err := h.start(ctx); err != nil {
		h.Close()
		return nil, fmt.Errorf("start host %s: %w", cfg.Region, err)
	}
	return h, nil
}

// newHost validates cfg and fills in its defaults; nothing runs yet.
func newHost(cfg Config) (*Host, error) {
	switch {
	case cfg.Region == "":
		return nil, errors.New("a region is required")
	case cfg.DataDir == "":
		return nil, errors.New("a data directory is required")
	case cfg.NATSURL == "":
		return nil, errors.New("the store's URLs are required")
	case cfg.Instances < 0:
		return nil, fmt.Errorf("instances %d: want 1 or more", cfg.Instances)
	}
	cfg.Instances = max(cfg.Instances, 1)
	cfg.Environment = cmp.Or(cfg.Environment, release.EnvDev)
	if cfg.Environment != release.EnvDev && cfg.Environment != release.EnvProd {
		return nil, fmt.Errorf("environment %q: want dev or prod", cfg.Environment)
	}
	if err := checkStampFlags(cfg.StampFlags); err != nil {
		return nil, err
	}
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	if err := checkAdvertise(cfg.Advertise, host); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dir
	if cfg.Contoso == "" {
		if cfg.Contoso, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("the contoso binary: %w", err)
		}
	}
	cfg.Release = cmp.Or(cfg.Release, buildinfo.Version())
	cfg.StartTimeout = cmp.Or(cfg.StartTimeout, 2*time.Minute)
	cfg.Backoff = cmp.Or(cfg.Backoff, time.Second)
	cfg.MaxBackoff = max(cmp.Or(cfg.MaxBackoff, 30*time.Second), cfg.Backoff)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	base := target{version: cfg.Release, binary: cfg.Contoso}
	h := &Host{cfg: cfg, log: cfg.Logger.With("component", "host", "region", cfg.Region), listen: host, basePort: port,
		releases: artifact.NewCache(filepath.Join(dir, "releases"), cfg.Registry...),
		settled:  base, bins: map[string]string{base.version: base.binary}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h, nil
}

// checkStampFlags refuses the flags the host sets for each stamp.
func checkStampFlags(flags []string) error {
	for _, a := range flags {
		if a == "--" || !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if slices.Contains(hostFlags, name) {
			return fmt.Errorf("stamp flag %s: the host sets --%s of each stamp itself", a, name)
		}
	}
	return nil
}

// splitListen is Listen's host and port.
func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("listen address %q: the port is not a number from 0 to 65535", listen)
	}
	return host, port, nil
}

// checkAdvertise refuses an advertised address an edge could not use: a
// URL other than http(s)://HOST, or none while the stamps listen on a
// wildcard address (which an edge on another host would dial as itself).
func checkAdvertise(advertise, listenHost string) error {
	if advertise == "" {
		if ip := net.ParseIP(listenHost); listenHost == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("the stamps listen on a wildcard address (%q): give the scheme and host the edge reaches them at (https://HOST)", listenHost)
		}
		return nil
	}
	u, err := url.Parse(advertise)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("advertise %q: want http://HOST or https://HOST", advertise)
	}
	if u.Port() != "" {
		return fmt.Errorf("advertise %q: give no port; each stamp announces its own listen port", advertise)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("advertise %q: a wildcard address, which an edge on another host would dial as itself", advertise)
	}
	return nil
}

// start connects to the store, learns what the region runs, starts the
// stamps and the release agent.
func (h *Host) start(ctx context.Context) error {
	for _, d := range []string{filepath.Join(h.cfg.DataDir, "logs"), filepath.Join(h.cfg.DataDir, "releases")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	opts, err := h.cfg.NATS.Options()
	if err != nil {
		return err
	}
	h.nc, err = nats.Connect(h.cfg.NATSURL, append(opts, nats.Name("host-"+h.cfg.Region), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.DontRandomize())...)
	if err != nil {
		return fmt.Errorf("connect to the store: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if h.index, err = store.FollowRegistry(openCtx, store.Config{Conn: h.nc, Logger: h.log}); err != nil {
		return err
	}
	records := store.NewReleases(store.Config{Conn: h.nc, Logger: h.log})
	if err := h.resume(openCtx, records); err != nil {
		return err
	}
	h.mu.Lock()
	first := h.settled
	h.mu.Unlock()
	errs := make([]error, h.cfg.Instances)
	var wg sync.WaitGroup
	for i := range h.cfg.Instances {
		wg.Go(func() { _, errs[i] = h.startStamp(ctx, first, "") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return h.startAgent(records)
}

// resume makes the stamps the host starts by itself run what the last
// release left in the region (a release may have ended while this host
// was down): with the binary of the image it came from.
func (h *Host) resume(ctx context.Context, records release.Records) error {
	left, ok, err := release.Left(ctx, records, h.cfg.Region)
	if err != nil {
		return fmt.Errorf("read the releases: %w", err)
	}
	if !ok || left.Version == h.cfg.Release {
		return nil
	}
	if left.Image == "" {
		h.log.Warn("the region runs a version no release image names; the stamps run this host's binary",
			"left", left.Version, "release", h.cfg.Release, "binary", h.cfg.Contoso)
		return nil
	}
	bin, err := h.binary(ctx, left.Image)
	if err != nil {
		return fmt.Errorf("the binary of %s, which the region runs: %w", left.Version, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settled = target{version: left.Version, binary: bin}
	h.bins[left.Version] = bin
	h.log.Info("stamps run what the last release left", "release", left.Version, "image", left.Image, "binary", bin)
	return nil
}

// binary is the binary of image, extracted once per digest.
func (h *Host) binary(ctx context.Context, image string) (string, error) {
	path, meta, err := h.releases.Binary(ctx, image)
	if err != nil {
		return "", err
	}
	h.log.Debug("release binary ready", "image", image, "version", meta.Version, "path", path)
	return path, nil
}

// Close stops the release agent, then drains every stamp (SIGTERM, and
// SIGKILL after child.StopGrace) and returns once they are gone.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return nil
	}
	h.closing = true
	agent := h.agent
	h.mu.Unlock()
	if agent != nil {
		agent.stop() // no release starts or stops a stamp from here on
	}
	h.cancel()
	h.mu.Lock()
	all := slices.Concat(h.stamps, h.retired)
	for _, s := range h.stamps {
		s.retire()
	}
	h.retired = append(h.retired, h.stamps...)
	h.stamps = nil
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(func() {
			s.runMu.Lock()
			defer s.runMu.Unlock()
			s.Stop(child.StopGrace)
		})
	}
	wg.Wait()
	h.wg.Wait()
	if h.index != nil {
		h.index.Close()
	}
	if h.nc != nil {
		h.nc.Close()
	}
	return nil
}

// Stamp is one stamp process of the host: running, waiting to be
// restarted, or ended.
type Stamp struct {
	Name    string `json:"name"`         // stamp-<region>-<n>, its log file's stem
	ID      string `json:"id,omitempty"` // its registry id, as last seen
	URL     string `json:"url"`          // what it announces
	Release string `json:"release"`      // the version it runs and announces
	Binary  string `json:"binary"`
	PID     int    `json:"pid"` // its process id (the last, once it ended)
	Running bool   `json:"running"`
	// Retired is set once a release or Close drained it: it is not
	// restarted.
	Retired  bool `json:"retired,omitempty"`
	Restarts int  `json:"restarts"`
	// Exit is how its last run ended, once it has: "exit status 0" when it
	// drained and exited cleanly, else the status or the signal.
	Exit string `json:"exit,omitempty"`
}

// Stamps lists the host's stamps: those it runs, then those it drained.
func (h *Host) Stamps() []Stamp {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Stamp
	for _, s := range slices.Concat(h.stamps, h.retired) {
		if !s.Ran() {
			continue
		}
		st := Stamp{Name: s.Name, ID: s.id, URL: s.url, Release: s.version, Binary: s.binary, PID: s.LastPID(),
			Running: s.Running(), Retired: s.stopping, Restarts: s.restarts}
		if !st.Running {
			st.Exit = "exit status 0"
			if err := s.ExitErr(); err != nil {
				st.Exit = err.Error()
			}
		}
		out = append(out, st)
	}
	return out
}
