// Package deploy composes a whole multi-region deployment in one process:
// an embedded JetStream server per region clustered over simulated
// inter-region links, and a stamp per region. It is what `contoso up` runs;
// every part it starts is the same code a multi-host deployment runs as
// separate commands.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/buildinfo"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/healthmodel"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/secrets"
	"github.com/contoso/shoes/internal/secrets/secretstore"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/telemetry"
)

// DefaultRegions are the regions `contoso up` starts without --regions.
var DefaultRegions = []string{"westeurope", "northeurope", "eastus"}

// Config configures a Deployment.
type Config struct {
	Regions []string // nil: DefaultRegions; one region (R1, development) or three or more (R3)
	DataDir string   // required; holds the store and the development issuer key
	// Env is the environment this deployment is: "dev" (zero) or "prod".
	// A data directory belongs to one environment (its file "env" says
	// which), so the two never share data or credentials. In prod the
	// release controller refuses unverified releases and injected faults.
	Env string
	// Release is the version the stamps run; zero: buildinfo.Version().
	Release string
	// ReleaseGate overrides the release controller's default gate; zero:
	// release.Gate's defaults. ReleaseStartTimeout bounds the wait for a
	// release's new stamps to be ready; zero: release.Config's (90 s).
	ReleaseGate         release.Gate
	ReleaseStartTimeout time.Duration
	// EdgeAddr is where the global entry point listens; zero: a free
	// loopback port.
	EdgeAddr string
	// OpsAddr is where the operations endpoints (/ops/...) listen; zero: a
	// free loopback port.
	OpsAddr string
	// OpsTrustLoopback lets clients on the loopback interface use the
	// operations endpoints without an admin token (development mode);
	// everyone else needs one.
	OpsTrustLoopback bool
	// OpsHosts are names the operations address answers to besides its
	// own address and localhost (httpapi.OpsGuardConfig.Hosts), e.g. its
	// DNS name; nil: none.
	OpsHosts []string
	// Pprof mounts the Go runtime's profiles (httpapi.Profiling) at
	// /debug/pprof/ on the operations address, behind its guard and admin
	// check, never on the edge's; false: none.
	Pprof bool
	// EdgeClientRate and EdgeClientBurst are the edge's per-client limit;
	// zero: the edge's defaults (200/s, burst 400).
	EdgeClientRate  float64
	EdgeClientBurst int
	// EdgeNoRetry turns off the edge's retry of idempotent requests: a
	// broken guarantee on purpose, for experiments that must catch it.
	EdgeNoRetry bool
	// UnsafeBlindStockWrites makes every stamp's store write the inventory
	// blindly instead of with compare-and-set
	// (store.Config.UnsafeBlindStockWrites): a broken guarantee on
	// purpose, for experiments that must catch it.
	UnsafeBlindStockWrites bool
	// StampFault is a defect every stamp instance of the deployment's own
	// regions injects from its start (stamp.Config.Fault), such as a
	// latency that keeps requests in flight for experiments that crash a
	// stamp under them; a release's new stamps carry their release's fault
	// instead. Zero: none.
	StampFault stamp.Fault
	Network    netsim.Config
	// Instances is how many stamp instances each region runs, each in its
	// own zone (<region>-1, <region>-2, ...: a failure domain, as an
	// availability zone), so that losing one instance or one zone leaves
	// the region serving; zero: 1.
	Instances int
	// ScaleMax is the most instances the autoscaler runs in a region;
	// zero: three times Instances. The least is Instances: the
	// autoscaler adds instances on load and removes them down to it.
	// Both can be changed at run time (PUT /ops/scaling).
	ScaleMax int
	// Scaling is the autoscaler's damping; zero: autoscale.DefaultPolicy.
	Scaling autoscale.Policy
	// StampCapacity is how many API requests each stamp instance handles
	// at once (stamp.Config.Capacity); zero: 256.
	StampCapacity int
	// ProbeInterval is the stamps' health probe interval; zero: 1 s.
	ProbeInterval time.Duration
	// HealthModel is the operations plane's health model; nil:
	// healthmodel.Default().
	HealthModel *healthmodel.Model
	// SecretRefresh is how often stamps refresh their secrets; zero: 30 s.
	SecretRefresh time.Duration
	// NoSync turns off fsync on every write. Only for benchmarks that
	// measure the rest of the system; never for a system of record.
	NoSync bool
	// TLS encrypts every hop with a deployment CA kept in the data
	// directory (config/tls/ca.pem): client → edge and the operations
	// address, edge → stamp, stamps → secret store and partner, every
	// client → store server and store server → store server. False: plain
	// HTTP and TCP on loopback. The store servers require their users'
	// credentials either way.
	TLS bool
	// Getenv reads the standard OTEL_EXPORTER_OTLP_* variables: with them
	// set, traces also go to an OTLP collector. Nil: none.
	Getenv func(string) string
	Logger *slog.Logger // nil: discard
}

// Deployment is a running multi-region system.
type Deployment struct {
	cfg      Config
	log      *slog.Logger
	net      *netsim.Network
	issuer   *auth.Issuer
	services *services
	lkgKey   []byte
	edgeCred string
	access   *access    // the store users, the routes' password, the CA
	front    *frontDoor // the edge and the ops address; nil until started
	tel      *telemetry.Telemetry
	stopTel  func() error // ends the telemetry's collection and flushes it

	mu sync.Mutex // guards regions and their fields, and versions
	// reviving serializes ReviveRegion: a fault's expiry and an operator's
	// heal can revive the same region at once, and each would otherwise
	// see it empty and start an instance.
	reviving sync.Mutex
	regions  map[string]*region
	// versions is the release each region runs since a release ended
	// there; a region absent runs cfg.Release.
	versions map[string]string
	// regionOps serialises adding and removing regions (each takes
	// seconds; mu is not held meanwhile).
	regionOps sync.Mutex
	// close is Close, run once: a second call returns what the first did
	// (each instance reports its end once).
	close func() error
}

// region is what runs in one region: its store server and its stamp's
// instances (the first serves the region's URL; more can be added).
type region struct {
	name      string
	node      *store.Node // nil in a stamp-only region added at run time
	data      []string    // for a stamp-only region: the data regions its stamp uses, nearest first
	instances []*instance
}

// instanceSpec is what an instance runs beyond its region.
type instanceSpec struct {
	release string      // zero: the region's current release
	fault   stamp.Fault // an injected defect (release experiments)
	zone    string      // zero: the region's zone with the fewest instances of the release
}

// instance is one running instance of a region's stamp.
type instance struct {
	release string // the release it runs
	zone    string // its failure domain in the region
	stamp   *stamp.Stamp
	partner *partner.Client // nil when it processes no orders
	url     string
	cancel  context.CancelFunc
	done    chan error
}

func (r *region) primary() *instance {
	if len(r.instances) == 0 {
		return &instance{}
	}
	return r.instances[0]
}

// Start starts every region and returns once every stamp is ready, or ctx
// is done.
func Start(ctx context.Context, cfg Config) (*Deployment, error) {
	if len(cfg.Regions) == 0 {
		cfg.Regions = DefaultRegions
	}
	if n := len(cfg.Regions); n == 2 {
		return nil, errors.New("start deployment: use one region (development) or three or more; two cannot keep a quorum through the loss of one")
	}
	if len(slices.Compact(slices.Sorted(slices.Values(cfg.Regions)))) != len(cfg.Regions) {
		return nil, fmt.Errorf("start deployment: regions %v repeat a name", cfg.Regions)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("start deployment: a data directory is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Network.Logger == nil {
		cfg.Network.Logger = cfg.Logger.With("component", "netsim")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("start deployment: %w", err)
	}
	if cfg.Env == "" {
		cfg.Env = release.EnvDev
	}
	if err := claimEnv(cfg.DataDir, cfg.Env); err != nil {
		return nil, fmt.Errorf("start deployment: %w", err)
	}
	if cfg.Env == release.EnvProd && (cfg.EdgeNoRetry || cfg.UnsafeBlindStockWrites || !cfg.StampFault.Zero()) {
		return nil, errors.New("start deployment: broken guarantees and injected faults (EdgeNoRetry, UnsafeBlindStockWrites, StampFault) are refused in the prod environment")
	}
	if cfg.Release == "" {
		cfg.Release = buildinfo.Version()
	}
	issuer, err := auth.LoadOrCreateIssuer(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("start deployment: %w", err)
	}
	key, err := lkgKey(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("start deployment: %w", err)
	}
	cred, err := edgeCredential(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("start deployment: %w", err)
	}
	acc, err := loadAccess(cfg.DataDir, cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("start deployment: %w", err)
	}
	// The process's telemetry is the operations plane's; every other part
	// records as a part of it (Telemetry.Part), with its own identity.
	tel, stopTel, err := telemetry.Start(ctx, telemetry.Config{Service: telemetry.ServiceOps, Getenv: cfg.Getenv, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("start deployment: %w", err)
	}
	// Warnings and errors of every part also land in the in-process sink,
	// with the trace they happened in.
	cfg.Logger = slog.New(telemetry.LogHandler(cfg.Logger.Handler(), tel.Sink()))
	sv, err := startServices(cfg.DataDir, acc.serverTLS(), tel, cfg.Logger)
	if err != nil {
		_ = stopTel()
		return nil, fmt.Errorf("start deployment: %w", err)
	}
	d := &Deployment{tel: tel, stopTel: stopTel, cfg: cfg, log: cfg.Logger, net: netsim.New(cfg.Network), issuer: issuer, services: sv, lkgKey: key, edgeCred: cred, access: acc, regions: map[string]*region{}}
	d.close = sync.OnceValue(d.shutdown)
	if err := d.start(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Release is the version the deployment's stamps started with.
func (d *Deployment) Release() string { return d.cfg.Release }

// Telemetry is the deployment's telemetry: one sink for every part.
func (d *Deployment) Telemetry() *telemetry.Telemetry { return d.tel }

func (d *Deployment) replicas() int {
	if len(d.cfg.Regions) == 1 {
		return 1
	}
	return 3
}

func (d *Deployment) start(ctx context.Context) error {
	names := d.cfg.Regions
	// Every node's cluster port is chosen first, so that the links can
	// point at them before any node starts. Every node solicits a route to
	// every other node through the link of that pair (a clustered
	// JetStream server needs configured routes of its own).
	ports := make([]int, len(names))
	for i := range names {
		p, err := store.FreePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	nodeCfgs := make([]store.NodeConfig, len(names))
	for i, name := range names {
		nc := store.NodeConfig{
			Region:      name,
			StoreDir:    filepath.Join(d.cfg.DataDir, "store", name),
			ClusterPort: ports[i],
			SyncAlways:  !d.cfg.NoSync,
			Users:       d.access.seeds.Users(),
			RouteUser:   routeUser, RoutePassword: d.access.routePassword,
			TLS:    d.access.nodeTLS(),
			Logger: d.log,
		}
		if len(names) == 1 {
			nc.ClusterPort = 0
		}
		for j := range names {
			if j == i {
				continue
			}
			addr, err := d.net.Route(name, names[j], fmt.Sprintf("127.0.0.1:%d", ports[j]))
			if err != nil {
				return fmt.Errorf("link %s-%s: %w", name, names[j], err)
			}
			nc.Routes = append(nc.Routes, store.RouteURL(addr, routeUser, d.access.routePassword))
		}
		nodeCfgs[i] = nc
	}
	for i, nc := range nodeCfgs {
		// Ports are chosen below the kernel's ephemeral range, so no
		// outgoing connection holds one; another program can still bind
		// one between the choice and the start, if only briefly: try again.
		var node *store.Node
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			if node, err = store.StartNode(nc); err == nil {
				break
			}
			d.log.Warn("store server did not start; retrying", "region", nc.Region, "error", err)
		}
		if err != nil {
			return err
		}
		d.regions[names[i]] = &region{name: names[i], node: node}
	}
	nodes := make([]*store.Node, 0, len(names))
	for _, name := range names {
		nodes = append(nodes, d.regions[name].node)
	}
	if err := store.WaitForCluster(ctx, nodes); err != nil {
		return err
	}
	// The administrator declares the replicated assets; stamps, whose
	// users may not create or change them, only find them.
	if err := d.provision(ctx, nodes); err != nil {
		return err
	}
	d.log.Debug("store assets declared and seeded; starting the stamps")
	regions := make([]*region, 0, len(names))
	for _, name := range names {
		regions = append(regions, d.regions[name])
	}
	if err := d.startInZones(ctx, regions, d.zones(), false); err != nil {
		return err
	}
	if err := d.waitReady(ctx); err != nil {
		return err
	}
	d.log.Debug("every stamp ready; starting the edge")
	addr := d.cfg.EdgeAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := d.startEdge(ctx, addr); err != nil {
		return err
	}
	return d.waitEdge(ctx)
}

// waitEdge waits until every POP routes to a stamp of its own region and
// the operations plane has heard every stamp and POP.
func (d *Deployment) waitEdge(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	home := func(status []edge.POPStatus) int {
		n := 0
		for _, p := range status {
			if slices.ContainsFunc(p.Stamps, func(s edge.StampStatus) bool { return s.Region == p.Region && slices.Contains(p.Near, s.ID) }) {
				n++
			}
		}
		return n
	}
	for {
		// Ready means the edge routes every POP's clients home, and the
		// operations plane judges the whole deployment: it has read every
		// region's stamp report and heard every POP say so too, so the
		// first /ops/health and /ops/edge already know them.
		ready := min(home(d.front.edge.Status()), home(d.front.plane.POPs()))
		heard := d.front.plane.Heard(d.cfg.Regions, d.cfg.Regions)
		if ready == len(d.cfg.Regions) && heard == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the edge: %d of %d POPs route to their region (%v): %w", ready, len(d.cfg.Regions), heard, ctx.Err())
		case <-t.C:
		}
	}
}

// startInstance starts an instance of region r's stamp: its own store
// connection, secret cache (which starts from the region's last-known-good
// copy when the secret store is down), partner client and listener.
//
// spec names the instance's release and injected fault; its zero value is
// the region's current release without a fault.
func (d *Deployment) startInstance(ctx context.Context, r *region, sp instanceSpec) (*instance, error) {
	if sp.release == "" && sp.fault.Zero() {
		sp.fault = d.cfg.StampFault
	}
	d.mu.Lock()
	if sp.release == "" {
		sp.release = d.versionOf(r.name)
	}
	if sp.zone == "" {
		sp.zone = d.zoneFor(r, sp.release)
	}
	d.mu.Unlock()
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	natsURL, err := d.natsURL(r)
	if err != nil {
		return nil, err
	}
	tel, err := d.tel.Part(telemetry.Identity{Service: telemetry.ServiceStamp, Region: r.name})
	if err != nil {
		return nil, err
	}
	built, err := NewInstance(openCtx, InstanceConfig{
		Region:   r.name,
		Zone:     sp.zone,
		NATSURL:  natsURL,
		Replicas: d.replicas(),
		NATS:     d.access.store(store.RoleStamp),
		Verifier: d.issuer.VerifierConfig(),
		Secrets: &secrets.HTTPProvider{BaseURL: d.services.urls["secrets"], Token: d.services.token,
			Client: &http.Client{Transport: ServiceTransport(d.access.clientTLS())}},
		TLS:            d.access.serverTLS(),
		ClientTLS:      d.access.clientTLS(),
		SecretRefresh:  d.cfg.SecretRefresh,
		LKGPath:        filepath.Join(d.cfg.DataDir, "stamps", r.name, "secrets.lkg"),
		LKGKey:         d.lkgKey,
		PartnerURL:     d.services.urls["partner"] + "/v1/orders",
		ProbeInterval:  d.cfg.ProbeInterval,
		Seed:           true,
		EdgeCredential: d.edgeCred,
		Release:        sp.release,
		Fault:          sp.fault,
		BlindStock:     d.cfg.UnsafeBlindStockWrites,
		Capacity:       d.cfg.StampCapacity,
		Telemetry:      tel,
		Logger:         d.log,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		built.nc.Close()
		return nil, fmt.Errorf("listen stamp %s: %w", r.name, err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	in := &instance{stamp: built.Stamp, partner: built.Partner, release: sp.release, zone: sp.zone, url: httpapi.Scheme(d.access.ca != nil) + "://" + ln.Addr().String(), cancel: stop, done: make(chan error, 1)}
	go func() { in.done <- built.Serve(runCtx, ln) }()
	d.mu.Lock()
	r.instances = append(r.instances, in)
	d.mu.Unlock()
	return in, nil
}

// ZoneName names zone k (from 1) of a region: "westeurope-2".
func ZoneName(region string, k int) string { return fmt.Sprintf("%s-%d", region, k) }

// instances is how many instances each region runs.
func (d *Deployment) instances() int { return max(1, d.cfg.Instances) }

// FewestZone is the zone of region, among its first zones, where count
// finds the fewest instances, the first of them on a tie: where a new
// instance goes, so instances spread over the zones.
func FewestZone(region string, zones int, count func(zone string) int) string {
	best, fewest := ZoneName(region, 1), -1
	for k := 1; k <= zones; k++ {
		z := ZoneName(region, k)
		if n := count(z); fewest < 0 || n < fewest {
			best, fewest = z, n
		}
	}
	return best
}

// zoneFor is the zone of r where a new instance of release goes: the one
// with the fewest instances of that release, so a release's new instances
// spread over the zones as the old ones do. d.mu is held.
func (d *Deployment) zoneFor(r *region, release string) string {
	return FewestZone(r.name, d.instances(), func(zone string) int {
		n := 0
		for _, in := range r.instances {
			if in.zone == zone && in.release == release {
				n++
			}
		}
		return n
	})
}

// AddInstance starts one more instance of a region's stamp (a scale-out)
// and returns its URL once it is ready.
func (d *Deployment) AddInstance(ctx context.Context, name string) (string, error) {
	d.mu.Lock()
	r, ok := d.regions[name]
	d.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("add instance: unknown region %q", name)
	}
	in, err := d.startInstance(ctx, r, instanceSpec{})
	if err != nil {
		return "", err
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := in.stamp.Ready()
		if err == nil {
			return in.url, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("add instance to %s: %w (%w)", name, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Partner is the stand-in for the fulfilment partner.
func (d *Deployment) Partner() *partner.StandIn { return d.services.partner }

// SecretStore is the deployment's secret-store service.
func (d *Deployment) SecretStore() *secretstore.Server { return d.services.store }

// RotateSecret gives a secret a new value; stamps use it within one
// refresh interval.
func (d *Deployment) RotateSecret(name string) error { return d.services.rotate(name) }

// ServiceURLs maps "secrets" and "partner" to their URLs.
func (d *Deployment) ServiceURLs() map[string]string { return maps.Clone(d.services.urls) }

func (d *Deployment) waitReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		var notReady error
		for _, r := range d.regions {
			if err := r.primary().stamp.Ready(); err != nil {
				notReady = fmt.Errorf("stamp %s: %w", r.name, err)
				break
			}
		}
		if notReady == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for stamps: %w (%w)", ctx.Err(), notReady)
		case <-t.C:
		}
	}
}

// Regions maps each region to its stamp's URL.
func (d *Deployment) Regions() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]string, len(d.regions))
	for name, r := range d.regions {
		out[name] = r.primary().url
	}
	return out
}

// StampHosts lists the host:port of every running stamp instance.
func (d *Deployment) StampHosts() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, r := range d.regions {
		for _, in := range r.instances {
			out = append(out, hostOf(in.url))
		}
	}
	return out
}

// Issuer is the deployment's development token issuer.
func (d *Deployment) Issuer() *auth.Issuer { return d.issuer }

// Stamp returns the stamp of a region.
func (d *Deployment) Stamp(name string) (*stamp.Stamp, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.regions[name]
	if !ok {
		return nil, false
	}
	return r.primary().stamp, true
}

// StopServer stops a region's store server at once, as a crash would stop
// it (no lame-duck hand-over of leadership). The region's stamp keeps
// running and reconnects when the server returns.
func (d *Deployment) StopServer(name string) error {
	node, _ := d.storeNode(name)
	if node == nil {
		return fmt.Errorf("stop server: region %q has no store server", name)
	}
	node.Shutdown(false)
	return nil
}

// storeNode is a region's store server as it is now (StartServer replaces
// it): nil for a region without one; ok is false for an unknown region.
func (d *Deployment) storeNode(name string) (node *store.Node, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.regions[name]
	if !ok {
		return nil, false
	}
	return r.node, true
}

// StartServer restarts a stopped region's store server on its old ports and
// data, so it rejoins the cluster and catches up.
func (d *Deployment) StartServer(name string) error {
	old, _ := d.storeNode(name)
	if old == nil {
		return fmt.Errorf("start server: region %q has no store server", name)
	}
	node, err := store.StartNode(old.Config())
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.regions[name].node = node
	d.mu.Unlock()
	return nil
}

// Close shuts everything down gracefully: the edge stops taking requests
// and finishes in-flight ones, each stamp instance does the same and closes
// its store connection, then the servers, the links and the services stop.
// Closing again returns what the first Close did.
func (d *Deployment) Close() error { return d.close() }

func (d *Deployment) shutdown() error {
	d.mu.Lock()
	var instances []*instance
	var regions []*region
	for _, r := range d.regions {
		regions = append(regions, r)
		instances = append(instances, r.instances...)
	}
	d.mu.Unlock()
	if d.front != nil {
		d.front.close() // stop taking traffic first
	}
	errs := make([]error, len(instances)+1)
	var wg sync.WaitGroup
	for i, in := range instances {
		wg.Go(func() {
			in.cancel()
			errs[i] = <-in.done
		})
	}
	wg.Wait()
	for _, r := range regions {
		if r.node != nil && r.node.Server().Running() {
			r.node.Shutdown(false)
		}
	}
	errs[len(instances)] = d.net.Close()
	if d.services != nil {
		d.services.close()
	}
	errs = append(errs, d.stopTel())
	return errors.Join(errs...)
}

// ClientURL is the NATS client URL of a region's store server, for
// operators' tools and tests.
func (d *Deployment) ClientURL(name string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.regions[name]
	if !ok {
		return "", false
	}
	return r.node.ClientURL(), true
}

// SecretValue is the current value of a deployment secret, for tests that
// check it never leaks.
func (d *Deployment) SecretValue(name string) string { return d.services.value(name) }

// KillRegion takes a whole region out at once, as a crash would: its stamp
// instances drop every connection (requests in flight get no answer), its store
// server stops without handing over leadership, and its POP goes, so its
// clients reach the nearest other POP.
func (d *Deployment) KillRegion(name string) error {
	d.mu.Lock()
	r, ok := d.regions[name]
	var instances []*instance
	if ok {
		instances = r.instances
	}
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("kill region: unknown region %q", name)
	}
	if d.front != nil {
		if err := d.front.edge.RemovePOP(name, d.nearestServing(name), true); err != nil {
			d.log.Warn("kill region: POP", "region", name, "error", err)
		}
	}
	for _, in := range instances {
		in.stamp.Crash()
		<-in.done // Serve returns at once after a crash
	}
	d.mu.Lock()
	r.instances = slices.DeleteFunc(r.instances, func(in *instance) bool { return slices.Contains(instances, in) })
	node := r.node
	d.mu.Unlock()
	if node != nil {
		node.Shutdown(false)
	}
	return nil
}

// ReviveRegion brings a killed region back: its store server on its old
// ports and data (it rejoins and catches up), a new stamp instance in each
// zone unless one runs already, and its POP once one of the region's
// stamps is ready.
// A release agent may start and stop instances of the region meanwhile
// (it keeps each version's count): whichever instance is ready first
// brings the POP back, not necessarily the one started here.
func (d *Deployment) ReviveRegion(ctx context.Context, name string) error {
	d.reviving.Lock()
	defer d.reviving.Unlock()
	d.mu.Lock()
	r, ok := d.regions[name]
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("revive region: unknown region %q", name)
	}
	if node, _ := d.storeNode(name); node != nil && !node.Server().Running() {
		if err := d.StartServer(name); err != nil {
			return fmt.Errorf("revive region %s: %w", name, err)
		}
	}
	d.mu.Lock()
	serving := len(r.instances)
	d.mu.Unlock()
	if serving == 0 {
		if err := d.startInZones(ctx, []*region{r}, d.zones(), false); err != nil {
			return fmt.Errorf("revive region %s: %w", name, err)
		}
	}
	if err := waitFor(ctx, "a stamp of the region to be ready", func() error { return d.anyReady(r) }); err != nil {
		return fmt.Errorf("revive region %s: %w", name, err)
	}
	d.front.edge.AddPOP(ctx, name)
	return nil
}

// anyReady is nil once one of r's running instances is ready, else why
// none is.
func (d *Deployment) anyReady(r *region) error {
	d.mu.Lock()
	instances := slices.Clone(r.instances)
	d.mu.Unlock()
	err := errors.New("no stamp instance runs")
	for _, in := range instances {
		if err = in.stamp.Ready(); err == nil {
			return nil
		}
	}
	return err
}

// KillInstance crashes one stamp instance of a region (the newest), as a
// lost process would; the region's other instances, if any, carry on.
func (d *Deployment) KillInstance(name string) (string, error) {
	d.mu.Lock()
	r, ok := d.regions[name]
	var in *instance
	if ok && len(r.instances) > 0 {
		in = r.instances[len(r.instances)-1]
		r.instances = r.instances[:len(r.instances)-1]
	}
	d.mu.Unlock()
	if in == nil {
		return "", fmt.Errorf("kill instance: region %q has no running instance", name)
	}
	in.stamp.Crash()
	<-in.done
	return in.stamp.ID(), nil
}

// KillZone crashes every stamp instance in zone k of a region (of every
// region when region is empty), as the loss of an availability zone
// would, and returns their ids. The regions' other zones carry on.
func (d *Deployment) KillZone(region string, k int) ([]string, error) {
	d.mu.Lock()
	var killed []*instance
	for name, r := range d.regions {
		if region != "" && name != region {
			continue
		}
		zone := ZoneName(name, k)
		for _, in := range r.instances {
			if in.zone == zone {
				killed = append(killed, in)
			}
		}
		r.instances = slices.DeleteFunc(r.instances, func(in *instance) bool { return in.zone == zone })
	}
	d.mu.Unlock()
	if region != "" && !slices.Contains(d.regionNames(), region) {
		return nil, fmt.Errorf("kill zone: unknown region %q", region)
	}
	ids := make([]string, 0, len(killed))
	for _, in := range killed {
		in.stamp.Crash()
		<-in.done
		ids = append(ids, in.stamp.ID())
	}
	slices.Sort(ids)
	return ids, nil
}

// RestoreZone starts, in zone k of a region (of every region when region
// is empty), an instance of the region's release wherever the zone runs
// none, and returns once they are ready: the heal of a zone outage. A
// region whose store server is down (a region outage) is left to its own
// revive.
func (d *Deployment) RestoreZone(ctx context.Context, only string, k int) error {
	d.mu.Lock()
	var todo []*region
	for name, r := range d.regions {
		if (only == "" || name == only) && k <= d.instances() && (r.node == nil || r.node.Server().Running()) &&
			!slices.ContainsFunc(r.instances, func(in *instance) bool { return in.zone == ZoneName(name, k) }) {
			todo = append(todo, r)
		}
	}
	d.mu.Unlock()
	if err := d.startInZones(ctx, todo, []int{k}, true); err != nil {
		return fmt.Errorf("restore zone: %w", err)
	}
	return nil
}

// startInZones starts, together, an instance of its region's release in
// each of zones (indexes from 1) of each of regions, and returns once each
// started or, with ready, is ready.
func (d *Deployment) startInZones(ctx context.Context, regions []*region, zones []int, ready bool) error {
	errs := make([]error, len(regions)*len(zones))
	var wg sync.WaitGroup
	for i, r := range regions {
		for j, k := range zones {
			wg.Go(func() {
				zone := ZoneName(r.name, k)
				in, err := d.startInstance(ctx, r, instanceSpec{zone: zone})
				if err == nil && ready {
					err = waitFor(ctx, "the instance in "+zone+" to be ready", in.stamp.Ready)
				}
				if err != nil {
					errs[i*len(zones)+j] = fmt.Errorf("zone %s: %w", zone, err)
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// zones are the indexes of a region's zones, from 1.
func (d *Deployment) zones() []int {
	out := make([]int, d.instances())
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// SetDrained drains (or restores) every stamp instance of a region.
func (d *Deployment) SetDrained(name string, drained bool) error {
	d.mu.Lock()
	r, ok := d.regions[name]
	var instances []*instance
	if ok {
		instances = slices.Clone(r.instances)
	}
	d.mu.Unlock()
	if len(instances) == 0 {
		return fmt.Errorf("drain: region %q has no running instance", name)
	}
	for _, in := range instances {
		in.stamp.Prober().SetDrained(drained)
	}
	return nil
}

// Network is the simulated network between the regions, for fault
// injection: cut, slow or heal a link.
func (d *Deployment) Network() *netsim.Network { return d.net }

// claimEnv marks dir as env's data directory, or checks that it is: one
// data directory, one environment.
func claimEnv(dir, env string) error {
	if env != release.EnvDev && env != release.EnvProd {
		return fmt.Errorf("env %q: want dev or prod", env)
	}
	path := filepath.Join(dir, "env")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.WriteFile(path, []byte(env+"\n"), 0o600)
	case err != nil:
		return err
	}
	if got := strings.TrimSpace(string(b)); got != env {
		return fmt.Errorf("data directory %s holds the %s environment, not %s: each environment has its own data and credentials", dir, got, env)
	}
	return nil
}
