// Package fleet runs the whole system as separate OS processes on one
// machine: per region an ordinary nats-server, a `contoso stamp` and a
// `contoso pop`; once, `contoso secrets`, `contoso partner` and the
// operations plane (`contoso ops`); and between every two regions a
// toxiproxy-server whose proxies carry the store servers' routes and the
// POPs' traffic to the other region's stamps, with the inter-region
// latency. It is what `contoso up --processes` runs.
//
// A Dispatcher stands in for geo-DNS in front of the POPs, and the fleet
// is a chaos.Target whose faults act on the real processes: SIGKILL,
// restarts on the same ports and data, and link cuts through
// toxiproxy-server's API.
package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/buildinfo"
	"github.com/contoso/shoes/internal/child"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/store"
)

// Config configures a Fleet.
type Config struct {
	// Regions are the data regions, each with a store server, a stamp and
	// a POP; nil: deploy.DefaultRegions. One (R1, development) or three or
	// more (R3).
	Regions []string
	// DataDir holds the store servers' data, the keys, the logs
	// (<data>/logs/<process>.log) and the built binaries; required. The
	// keys and the store users are those `up` uses in one process.
	DataDir string
	// BinDir holds prebuilt nats-server and toxiproxy-server binaries;
	// empty: they are built into <data>/bin from ModuleDir.
	BinDir string
	// ModuleDir is a directory of this module, where the go command
	// builds the binaries; empty: the current directory.
	ModuleDir string
	// Contoso is the contoso binary the parts run; empty: this process's
	// own executable.
	Contoso string
	// EdgeAddr is where the dispatcher (the one client-facing URL)
	// listens, OpsAddr the operations address; zero: a free loopback port.
	EdgeAddr string
	OpsAddr  string
	// OpsTrustLoopback lets loopback clients use the operations address
	// without an admin token (development mode), as for up.
	OpsTrustLoopback bool
	// OpsHosts are names the operations address answers to besides its
	// own address and localhost; nil: none.
	OpsHosts []string
	// Latency is the one-way latency of every link; nil:
	// netsim.DefaultLatencies. NoLatency keeps the links without latency.
	Latency   netsim.LatencyTable
	NoLatency bool
	// Instances is how many stamp processes each region runs, each in its
	// own zone (<region>-1, <region>-2, ...); zero: 1.
	Instances int
	// ProbeInterval is the stamps' health probe interval; zero: 1 s.
	ProbeInterval time.Duration
	// ClientRate and ClientBurst are each POP's per-client limit; zero:
	// the POP's defaults (200/s, burst 400). Every client reaches the POPs
	// through the dispatcher, from one address.
	ClientRate  float64
	ClientBurst int
	// StartTimeout bounds the start of one process, its ready line and
	// ready check included; zero: 2 min.
	StartTimeout time.Duration
	// Env is the environment every child starts with (e.g. OTEL_*
	// settings); the fleet adds the variables each part needs. Nil: none.
	Env []string
	// Environment is the deployment's environment, given to the
	// operations plane and every stamp (--env): release.EnvDev (zero) or
	// release.EnvProd.
	Environment string
	// Release is the version the stamps the fleet starts by itself run
	// and announce (--release); zero: buildinfo.Version(). A release
	// changes it region by region once it ends.
	Release string
	// RegistryInsecure lets the operations plane and the release launcher
	// speak plain HTTP to a registry on loopback (a development
	// registry); false: HTTPS only.
	RegistryInsecure bool
	// Pprof gives every POP and every stamp the fleet's own binary runs
	// --pprof: the Go runtime's profiles on their operations routes (a
	// stamp of a released image keeps the flags its version knows).
	Pprof bool
	// HealthModel is the file of the health model the operations plane
	// evaluates (contoso ops --health-model); empty: the built-in one.
	HealthModel string
	Logger      *slog.Logger // nil: discard
}

// Fleet is a running multi-region system of separate processes.
type Fleet struct {
	cfg    Config
	log    *slog.Logger
	bin    binaries
	keys   deploy.Keys
	users  deploy.StoreUsers
	issuer *auth.Issuer
	ports  *portSet
	order  []string // the regions as configured; the first serves clients without a region
	repl   int      // replicas of every asset

	secrets, partner *child.Process
	// secretsURL and partnerURL are where the secret store and the partner
	// stand-in listen, chosen once at start.
	secretsURL, partnerURL string
	ops                    *child.Process // the operations plane (contoso ops)
	otlp                   string
	links                  map[netsim.Pair]*link
	registry               *registryView
	front                  *frontDoor // the dispatcher and the operations address; nil until started
	agent                  *agentRun  // the release agent; nil until started

	mu      sync.Mutex // guards each region's stamps, release and binary, and the fields below
	regions map[string]*region
	nextID  int // numbers added stamp instances
	// retired are the stamp processes a release stopped, kept to report
	// how they ended (Stamps) and to be stopped by Close if one still
	// drains.
	retired []*stampProc
	// releaseBins maps a version a release started to the binary it runs;
	// a version absent runs the fleet's contoso binary.
	releaseBins map[string]string

	// releases holds the binaries of the images releases run, each
	// extracted once per digest into <data>/releases/<digest>/.
	releases *artifact.Cache
}

// region is one region's processes.
type region struct {
	name    string
	nats    *child.Process
	natsCfg natsServer
	// stamps are the region's stamp instances; stamps[0], its first, is
	// kept (stopped or running) for the life of the fleet: its address is
	// the one every other region's POP reaches through the link.
	stamps []*stampProc
	pop    *child.Process
	popURL string
	popOps string
	// release is the version the region's stamps started by the fleet
	// itself (the first one, a revived one) run, and binary the program
	// that runs it.
	release, binary string
	// handedOver is set once another supervisor carries the region's
	// stamps (HandOver).
	handedOver bool
}

// stampProc is one stamp instance's process and URL.
type stampProc struct {
	*child.Process
	url     string
	region  string
	release string // the version it runs and announces
	binary  string // the program it runs
	zone    string // its failure domain in the region
	id      string // its registry id once a release started or stopped it; else read from the registry
	// starting is set while a release starts it: not yet one of the
	// region's running stamps.
	starting bool
}

// Start starts every process, the dispatcher and the operations address,
// and returns once every POP routes to its own region's stamp, or ctx is
// done. On failure everything it started is stopped.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if len(cfg.Regions) == 0 {
		cfg.Regions = deploy.DefaultRegions
	}
	if n := len(cfg.Regions); n == 2 {
		return nil, errors.New("start fleet: use one region (development) or three or more; two cannot keep a quorum through the loss of one")
	}
	if len(slices.Compact(slices.Sorted(slices.Values(cfg.Regions)))) != len(cfg.Regions) {
		return nil, fmt.Errorf("start fleet: regions %v repeat a name", cfg.Regions)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("start fleet: a data directory is required")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	cfg.DataDir = dir
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Latency == nil {
		cfg.Latency = netsim.DefaultLatencies()
	}
	cfg.ProbeInterval = cmp.Or(cfg.ProbeInterval, time.Second)
	cfg.StartTimeout = cmp.Or(cfg.StartTimeout, 2*time.Minute)
	for _, d := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "logs"), filepath.Join(cfg.DataDir, "fleet")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("start fleet: %w", err)
		}
	}
	if cfg.Environment == "" {
		cfg.Environment = release.EnvDev
	}
	if cfg.Environment != release.EnvDev && cfg.Environment != release.EnvProd {
		return nil, fmt.Errorf("start fleet: environment %q: want dev or prod", cfg.Environment)
	}
	cfg.Release = cmp.Or(cfg.Release, buildinfo.Version())
	f := &Fleet{cfg: cfg, log: cfg.Logger, order: cfg.Regions, ports: newPortSet(), regions: map[string]*region{}, links: map[netsim.Pair]*link{}, repl: 3,
		releaseBins: map[string]string{}}
	var pull []artifact.Option
	if cfg.RegistryInsecure {
		pull = append(pull, artifact.WithInsecure())
	}
	f.releases = artifact.NewCache(filepath.Join(cfg.DataDir, "releases"), pull...)
	if len(cfg.Regions) == 1 {
		f.repl = 1
	}
	if f.bin, err = resolveBinaries(ctx, cfg); err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	if f.issuer, err = auth.LoadOrCreateIssuer(dir); err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	if f.keys, err = deploy.LoadKeys(dir); err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	if f.users, err = deploy.LoadStoreUsers(deploy.StoreUsersDir(dir)); err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	if err := f.start(ctx); err != nil {
		f.Close()
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	return f, nil
}

// start plans every process's ports and starts the processes in order of
// dependence: links, store servers, the assets, the operations plane, the
// services, the stamps, the POPs, then the front door.
func (f *Fleet) start(ctx context.Context) error {
	if err := f.plan(); err != nil {
		return err
	}
	if err := each(slices.Collect(maps.Values(f.links)), func(l *link) error {
		if err := l.server.Start(ctx); err != nil {
			return err
		}
		return l.setup()
	}); err != nil {
		return err
	}
	if err := each(f.regionList(), func(r *region) error { return r.nats.Start(ctx) }); err != nil {
		return err
	}
	if err := f.provision(ctx); err != nil {
		return err
	}
	if err := f.startOps(ctx); err != nil {
		return err
	}
	if err := each([]*child.Process{f.secrets, f.partner}, func(p *child.Process) error { return p.Start(ctx) }); err != nil {
		return err
	}
	var planned []*stampProc
	for _, r := range f.regionList() {
		planned = append(planned, r.stamps...)
	}
	if err := each(planned, func(s *stampProc) error { return s.Start(ctx) }); err != nil {
		return err
	}
	reg, err := watchRegistry(ctx, f.clientURLs(f.order[0]), f.users[store.RoleAgent], f.log)
	if err != nil {
		return err
	}
	f.registry = reg
	if err := f.startAgent(); err != nil {
		return err
	}
	if err := each(f.regionList(), func(r *region) error { return r.pop.Start(ctx) }); err != nil {
		return err
	}
	if err := f.startFront(); err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, f.cfg.StartTimeout)
	defer cancel()
	return f.opsHeardAll(waitCtx)
}

// regionList is the regions in configured order.
func (f *Fleet) regionList() []*region {
	out := make([]*region, 0, len(f.order))
	for _, name := range f.order {
		out = append(out, f.regions[name])
	}
	return out
}

// nearest lists the regions nearest to name first (name itself first).
func (f *Fleet) nearest(name string) []string {
	out := slices.Clone(f.order)
	slices.SortStableFunc(out, func(a, b string) int {
		return cmp.Compare(f.cfg.Latency.Between(name, a), f.cfg.Latency.Between(name, b))
	})
	return out
}

// clientURLs are the store servers' client URLs, nearest to name first.
func (f *Fleet) clientURLs(name string) string {
	var urls []string
	for _, r := range f.nearest(name) {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", f.regions[r].natsCfg.client))
	}
	return strings.Join(urls, ",")
}

func (f *Fleet) seedPath(r store.Role) string {
	return filepath.Join(deploy.StoreUsersDir(f.cfg.DataDir), string(r)+".nk")
}

// newProc is a child process of the fleet with the common settings.
func (f *Fleet) newProc(name, path string, args ...string) *child.Process {
	return &child.Process{Name: name, Path: path, Args: args, LogDir: filepath.Join(f.cfg.DataDir, "logs"), StartTimeout: f.cfg.StartTimeout}
}

// plan chooses every port and writes every process's command line and
// configuration; nothing runs yet. The ports stay for the fleet's life, so
// a restarted process comes back on its own.
func (f *Fleet) plan() error {
	var err error
	port := func() int {
		if err != nil {
			return 0
		}
		var p int
		p, err = f.ports.take()
		return p
	}
	for _, name := range f.order {
		r := &region{name: name, release: f.cfg.Release, binary: f.bin.contoso}
		r.natsCfg = natsServer{region: name, storeDir: filepath.Join(f.cfg.DataDir, "store", name),
			client: port(), cluster: port(), monitor: port(), routePassword: f.keys.RoutePassword, users: f.users.Users()}
		for range f.instances() {
			r.stamps = append(r.stamps, &stampProc{url: fmt.Sprintf("http://127.0.0.1:%d", port())})
		}
		r.popURL = fmt.Sprintf("http://127.0.0.1:%d", port())
		r.popOps = fmt.Sprintf("http://127.0.0.1:%d", port())
		f.regions[name] = r
	}
	f.nextID = f.instances() - 1 // stamps 1 to instances-1 of each region are its stamps of the start
	// One link per pair of regions: a route each way between the store
	// servers, and each region's POP to each of the other's stamps (one
	// per zone).
	for i, a := range f.order {
		for _, b := range f.order[i+1:] {
			pair := netsim.NewPair(a, b)
			l := &link{pair: pair, base: f.cfg.Latency.Between(a, b), off: f.cfg.NoLatency, log: f.log}
			l.latency = l.baseLatency()
			api := port()
			l.api = fmt.Sprintf("http://127.0.0.1:%d", api)
			l.server = f.newProc("link-"+pair.String(), f.bin.toxiproxy, "-host", "127.0.0.1", "-port", strconv.Itoa(api))
			l.server.Env = slices.Clone(f.cfg.Env)
			l.server.Check = httpOK(l.api+"/version", nil)
			for _, ends := range [][2]*region{{f.regions[a], f.regions[b]}, {f.regions[b], f.regions[a]}} {
				near, far := ends[0], ends[1]
				l.channels = append(l.channels,
					channel{name: "route-" + near.name + "-" + far.name, listen: fmt.Sprintf("127.0.0.1:%d", port()), upstream: fmt.Sprintf("127.0.0.1:%d", far.natsCfg.cluster)})
				for k, s := range far.stamps {
					l.channels = append(l.channels,
						channel{name: "pop-" + near.name + "-" + stampChannel(far.name, k), listen: fmt.Sprintf("127.0.0.1:%d", port()), upstream: hostOf(s.url)})
				}
			}
			f.links[pair] = l
		}
	}
	secretsPort, partnerPort := port(), port()
	if err != nil {
		return err
	}
	f.planOps(port)
	for _, name := range f.order {
		r := f.regions[name]
		for _, other := range f.order {
			if other != name {
				r.natsCfg.routes = append(r.natsCfg.routes, f.link(name, other).addr("route-"+name+"-"+other))
			}
		}
		confPath := filepath.Join(f.cfg.DataDir, "fleet", "nats-"+name+".conf")
		if err := os.WriteFile(confPath, []byte(r.natsCfg.config()), 0o600); err != nil {
			return fmt.Errorf("nats-server %s: %w", name, err)
		}
		r.nats = f.newProc("nats-"+name, f.bin.nats, "-c", confPath)
		r.nats.Env = slices.Clone(f.cfg.Env)
		r.nats.Check = httpOK(fmt.Sprintf("http://127.0.0.1:%d/varz", r.natsCfg.monitor), nil)
	}
	values, err := deploy.LoadSecretValues(f.cfg.DataDir)
	if err != nil {
		return err
	}
	f.secrets = f.newProc("secrets", f.bin.contoso, "secrets", "--listen", fmt.Sprintf("127.0.0.1:%d", secretsPort),
		"--values", values.Path(), "--token-file", deploy.SecretStoreTokenPath(f.cfg.DataDir))
	f.secrets.Line = true
	f.partner = f.newProc("partner", f.bin.contoso, "partner", "--listen", fmt.Sprintf("127.0.0.1:%d", partnerPort))
	f.partner.Line = true
	apiKey, _ := values.Get(deploy.SecretPartnerAPIKey)
	signingKey, _ := values.Get(deploy.SecretPartnerSigningKey)
	f.partner.Env = f.childEnv("CONTOSO_PARTNER_API_KEY="+apiKey, "CONTOSO_PARTNER_SIGNING_KEY="+signingKey)
	f.secrets.Env = f.childEnv()
	f.secretsURL = fmt.Sprintf("http://127.0.0.1:%d", secretsPort)
	f.partnerURL = fmt.Sprintf("http://127.0.0.1:%d", partnerPort)
	for _, name := range f.order {
		r := f.regions[name]
		for k, s := range r.stamps {
			s.region, s.release, s.binary, s.zone = name, r.release, r.binary, deploy.ZoneName(name, k+1)
			s.Process = f.stampProc(s, k, "")
		}
		r.pop = f.popProc(r)
	}
	return nil
}

// stampChannel names the link channel to a region's stamp instance i.
func stampChannel(region string, i int) string { return "stamp-" + region + "-" + strconv.Itoa(i) }

// stampProc is the process of s, its region's stamp instance i: s's
// binary, running and announcing s's release, with an injected fault
// (experiments only) when fault is not empty.
func (f *Fleet) stampProc(s *stampProc, i int, fault string) *child.Process {
	region := s.region
	// Every instance of a region shares its last-known-good file (each
	// write replaces it whole, atomically), so that one started while the
	// secret store is down, by the autoscaler or a restore, starts from
	// what the others kept.
	name, lkg := "stamp-"+region, filepath.Join(f.cfg.DataDir, "stamps", region, "secrets.lkg")
	if i > 0 {
		name = fmt.Sprintf("stamp-%s-%d", region, i)
	}
	args := []string{"stamp", "--region", region, "--zone", s.zone, "--listen", hostOf(s.url), "--env", f.cfg.Environment, "--release", s.release}
	if fault != "" {
		args = append(args, "--fault", fault)
	}
	if f.cfg.Pprof && s.binary == f.bin.contoso {
		args = append(args, "--pprof")
	}
	p := f.newProc(name, s.binary, append(args, f.stampFlags(region, lkg)...)...)
	p.Line = true
	p.Env = f.stampEnv()
	p.Check = httpOK(s.url+"/health/ready", nil)
	return p
}

// stampFlags are the flags of every stamp of region besides those of the
// instance itself (--region, --listen, --env, --release, --fault), with
// lkg its last-known-good file.
func (f *Fleet) stampFlags(region, lkg string) []string {
	return []string{"--nats", fmt.Sprintf("nats://127.0.0.1:%d", f.regions[region].natsCfg.client), "--nats-nkey", f.seedPath(store.RoleStamp),
		"--replicas", strconv.Itoa(f.repl), "--probe-interval", f.cfg.ProbeInterval.String(),
		"--data", f.cfg.DataDir, "--secrets", f.secretsURL, "--secrets-token-file", deploy.SecretStoreTokenPath(f.cfg.DataDir),
		"--lkg", lkg, "--partner", f.partnerURL + "/v1/orders"}
}

// stampEnv is the environment of every stamp.
func (f *Fleet) stampEnv() []string {
	return f.childEnv("CONTOSO_LKG_KEY="+f.keys.LKGKeyHex(), "CONTOSO_EDGE_CREDENTIAL="+f.keys.EdgeCredential)
}

// popProc is region r's POP: it reaches its own region's stamps directly
// and every other region's stamps of the start (one per zone) through the
// link (--via).
func (f *Fleet) popProc(r *region) *child.Process {
	var via []string
	for _, other := range f.order {
		if other == r.name {
			continue
		}
		for k, s := range f.regions[other].stamps[:f.instances()] {
			addr := f.link(r.name, other).addr("pop-" + r.name + "-" + stampChannel(other, k))
			via = append(via, hostOf(s.url)+"="+addr)
		}
	}
	args := []string{"pop", "--region", r.name, "--nats", f.clientURLs(r.name), "--nats-nkey", f.seedPath(store.RoleEdge),
		"--listen", hostOf(r.popURL), "--ops-listen", hostOf(r.popOps), "--data", f.cfg.DataDir}
	if len(via) > 0 {
		args = append(args, "--via", strings.Join(via, ","))
	}
	if f.cfg.ClientRate > 0 {
		args = append(args, "--client-rate", strconv.FormatFloat(f.cfg.ClientRate, 'f', -1, 64))
	}
	if f.cfg.ClientBurst > 0 {
		args = append(args, "--client-burst", strconv.Itoa(f.cfg.ClientBurst))
	}
	if f.cfg.Pprof {
		args = append(args, "--pprof")
	}
	p := f.newProc("pop-"+r.name, f.bin.contoso, args...)
	p.Line = true
	p.Env = f.childEnv("CONTOSO_EDGE_CREDENTIAL=" + f.keys.EdgeCredential)
	p.Check = f.popRoutesHome(r)
	return p
}

// popRoutesHome is region r's POP's ready check: it routes its clients to
// a stamp of its own region.
func (f *Fleet) popRoutesHome(r *region) func(context.Context) error {
	return func(ctx context.Context) error {
		var status struct {
			POPs []struct {
				Region string   `json:"region"`
				Near   []string `json:"near"`
				Stamps []struct {
					ID     string `json:"id"`
					Region string `json:"region"`
				} `json:"stamps"`
			} `json:"pops"`
		}
		if err := f.getJSON(ctx, r.popOps+"/ops/edge", &status); err != nil {
			return err
		}
		for _, p := range status.POPs {
			for _, s := range p.Stamps {
				if s.Region == r.name && slices.Contains(p.Near, s.ID) {
					return nil
				}
			}
		}
		return fmt.Errorf("POP %s routes to no stamp of its region yet", r.name)
	}
}

// link is the link between regions a and b.
func (f *Fleet) link(a, b string) *link { return f.links[netsim.NewPair(a, b)] }

// childEnv is the environment of a contoso part: the fleet's base
// environment, the operations plane's OTLP endpoint when it runs, and
// extra.
func (f *Fleet) childEnv(extra ...string) []string {
	env := slices.Clone(f.cfg.Env)
	if f.otlp != "" {
		env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+f.otlp)
	}
	return append(env, extra...)
}

// provision declares every replicated asset as the store's administrator
// (`contoso store provision`), with an intake stream per region, once
// every server is up.
func (f *Fleet) provision(ctx context.Context) error {
	p := f.newProc("provision", f.bin.contoso, "store", "provision", "--nats", f.clientURLs(f.order[0]),
		"--nats-nkey", f.seedPath(store.RoleAdmin), "--replicas", strconv.Itoa(f.repl), "--timeout", f.cfg.StartTimeout.String(),
		"--regions", strings.Join(f.order, ","))
	p.Line = true
	p.Env = slices.Clone(f.cfg.Env)
	if err := p.Start(ctx); err != nil {
		return err
	}
	p.Stop(child.StopGrace) // it exits by itself after its line
	return nil
}

// Close stops everything, draining first: the dispatcher and the
// operations address stop taking requests, then the POPs, the stamps and
// the global parts drain (SIGTERM, then SIGKILL after a bound), then the
// store servers and the links stop.
func (f *Fleet) Close() error {
	if f.front != nil {
		f.front.close()
	}
	if f.agent != nil {
		f.agent.stop() // no release starts or stops a stamp from here on
	}
	var pops, stamps []*child.Process
	var servers []*child.Process
	f.mu.Lock()
	for _, r := range f.regions {
		if r.pop != nil {
			pops = append(pops, r.pop)
		}
		for _, s := range r.stamps {
			if s.Process != nil {
				stamps = append(stamps, s.Process)
			}
		}
		if r.nats != nil {
			servers = append(servers, r.nats)
		}
	}
	for _, s := range f.retired {
		stamps = append(stamps, s.Process)
	}
	f.mu.Unlock()
	stopAll(pops)
	stopAll(stamps)
	stopAll(slices.DeleteFunc([]*child.Process{f.secrets, f.partner, f.ops}, func(p *child.Process) bool { return p == nil }))
	if f.registry != nil {
		f.registry.close()
	}
	stopAll(servers)
	var links []*child.Process
	for _, l := range f.links {
		if l.server != nil {
			links = append(links, l.server)
		}
	}
	stopAll(links)
	return nil
}

func stopAll(ps []*child.Process) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.Stop(child.StopGrace) })
	}
	wg.Wait()
}

// each runs fn on every item at once and joins the errors.
func each[T any](items []T, fn func(T) error) error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Go(func() { errs[i] = fn(it) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hostOf is the host:port of an http:// URL.
func hostOf(url string) string {
	_, host, _ := strings.Cut(url, "://")
	return host
}

// httpOK is a ready check: GET url answers 200 (with header set).
func httpOK(url string, header http.Header) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := localClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// localClient talks to the fleet's own processes, on loopback.
var localClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext, MaxIdleConnsPerHost: 4}}

// getJSON GETs url with an admin token and decodes the answer.
func (f *Fleet) getJSON(ctx context.Context, url string, v any) error {
	tok, err := f.adminToken()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := localClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// adminToken is a short-lived admin token of the deployment's issuer, for
// the fleet's own calls to its parts' operations routes.
func (f *Fleet) adminToken() (string, error) {
	return f.issuer.Mint("fleet", true, 5*time.Minute, time.Now())
}

// Issuer is the deployment's development token issuer.
func (f *Fleet) Issuer() *auth.Issuer { return f.issuer }

// DataDir is the fleet's data directory (absolute).
func (f *Fleet) DataDir() string { return f.cfg.DataDir }

// Regions maps each region to its first stamp's URL.
func (f *Fleet) Regions() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for _, r := range f.regionList() {
		out[r.name] = r.stamps[0].url
	}
	return out
}

// POPs maps each region to its POP's URL.
func (f *Fleet) POPs() map[string]string {
	out := map[string]string{}
	for _, r := range f.regionList() {
		out[r.name] = r.popURL
	}
	return out
}

// POPOps maps each region to its POP's operations URL (/ops/edge).
func (f *Fleet) POPOps() map[string]string {
	out := map[string]string{}
	for _, r := range f.regionList() {
		out[r.name] = r.popOps
	}
	return out
}

// MonitorURL is the monitoring address of a region's store server
// (/varz, /routez, /jsz); empty for an unknown region.
func (f *Fleet) MonitorURL(region string) string {
	r, ok := f.regions[region]
	if !ok {
		return ""
	}
	return fmt.Sprintf("http://127.0.0.1:%d", r.natsCfg.monitor)
}

// ClientURLs are the store servers' client URLs, nearest to region first.
func (f *Fleet) ClientURLs(region string) string { return f.clientURLs(region) }

// ServiceURLs maps "secrets" and "partner" (and "otlp" when the
// operations plane runs) to their URLs.
func (f *Fleet) ServiceURLs() map[string]string {
	out := map[string]string{"secrets": f.secretsURL, "partner": f.partnerURL}
	if f.otlp != "" {
		out["otlp"] = f.otlp
	}
	return out
}

// Processes maps each region to the process ids of its parts ("store",
// "stamp", "pop"; 0 for one that is not running); a region's added stamp
// instances are "stamp-1", "stamp-2", ...
func (f *Fleet) Processes() map[string]map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[string]int{}
	for _, r := range f.regions {
		m := map[string]int{"store": r.nats.PID(), "stamp": r.stamps[0].PID(), "pop": r.pop.PID()}
		for i, s := range r.stamps[1:] {
			m[fmt.Sprintf("stamp-%d", i+1)] = s.PID()
		}
		out[r.name] = m
	}
	return out
}

// AllProcesses maps every running child's name (as its log file is
// named) to its process id.
func (f *Fleet) AllProcesses() map[string]int {
	out := map[string]int{}
	add := func(p *child.Process) {
		if p != nil && p.Running() {
			out[p.Name] = p.PID()
		}
	}
	add(f.secrets)
	add(f.partner)
	add(f.ops)
	for _, l := range f.links {
		add(l.server)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.regions {
		add(r.nats)
		add(r.pop)
		for _, s := range r.stamps {
			add(s.Process)
		}
	}
	return out
}
