package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/fleet"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/release"
)

// envEnv names the environment variable that picks the environment (dev
// or prod) when -env is not given.
const envEnv = "CONTOSO_ENV"

func runUp(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logs     logFlags
		regions  = fs.String("regions", strings.Join(deploy.DefaultRegions, ","), "comma-separated regions: one (development, R1) or three or more (R3)")
		data     = fs.String("data", ".contoso", "data directory: the store and the development issuer key; survives restarts")
		latency  = fs.String("latency", "on", "simulated inter-region latency: on or off")
		table    = fs.String("latency-table", "", "one-way latencies that override the defaults, e.g. westeurope-northeurope=10ms,eastus-westeurope=40ms")
		interval = fs.Duration("probe-interval", time.Second, "health probe interval of every stamp")
		insts    = fs.Int("instances", 2, "stamp instances per region, each in its own zone (<region>-1, <region>-2, ...), so that losing one leaves the region serving; 1 for development")
		addr     = fs.String("addr", "127.0.0.1:8080", "address of the global entry point (the edge)")
		opsAddr  = fs.String("ops-addr", "127.0.0.1:8090", "address of the operations endpoints (/ops/...) and the dashboard")
		opsHosts = fs.String("ops-host", "", "comma-separated names (name or name:port) the operations address also answers to, e.g. its DNS name; its own address and localhost always")
		dev      = fs.Bool("dev", true, "development mode: loopback clients use the operations endpoints without an admin token")
		rate     = fs.Float64("client-rate", 200, "requests per second each client (by address) may send through the edge")
		burst    = fs.Int("client-burst", 400, "burst of each client's rate at the edge")
		withTLS  = fs.Bool("tls", false, "encrypt every hop (client → edge, edge → stamp, stamps → services and store, store → store) with a deployment CA kept in <data>/config/tls")
		procs    = fs.Bool("processes", false, "run every part as its own OS process: nats-server, contoso stamp and pop per region, the global parts, a toxiproxy-server per pair of regions")
		env      = fs.String("env", "", "environment: dev or prod; empty: $CONTOSO_ENV, else dev. Each has its own data directory (prod's default is .contoso-prod); prod refuses unverified releases and injected faults, and its operations address trusts no one without a token")
		bin      = fs.String("bin", "", "with --processes: directory of prebuilt nats-server and toxiproxy-server binaries; empty: build them into <data>/bin with the go command")
		insecure = fs.Bool("registry-insecure", false, "with --processes: speak plain HTTP to a release registry on loopback (a development registry)")
		gogc     = fs.String("gogc", strconv.Itoa(defaultUpGCPercent), "garbage collection target of the process, which holds every store server, as Go's GOGC (which wins over this default when set): a collection when the heap has grown by this percentage of what is live, 10 to 1000; not with --processes, whose parts each run in their own process")
		model    = fs.String("health-model", "", healthModelUsage)
		profile  = fs.Bool("pprof", false, "serve the Go runtime's profiles at /debug/pprof/ on the operations address (admin only; with --processes, on every stamp and POP's)")
	)
	logs.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *env == "" {
		*env = cmp.Or(getenv(envEnv), release.EnvDev)
	}
	switch *env {
	case release.EnvDev:
	case release.EnvProd:
		if !set["data"] {
			*data = ".contoso-prod"
		}
		if !set["dev"] {
			*dev = false
		}
	default:
		return fmt.Errorf("-env must be dev or prod, not %q", *env)
	}
	netCfg := netsim.Config{Latency: netsim.DefaultLatencies()}
	switch *latency {
	case "on":
	case "off":
		netCfg.Off = true
	default:
		return fmt.Errorf("-latency must be on or off, not %q", *latency)
	}
	if *table != "" {
		extra, err := netsim.ParseLatencyTable(*table)
		if err != nil {
			return fmt.Errorf("-latency-table: %w", err)
		}
		for p, d := range extra {
			netCfg.Latency[p] = d
		}
	}
	if *insts < 1 || *insts > 9 {
		return fmt.Errorf("-instances must be 1 to 9, not %d", *insts)
	}
	dir, err := filepath.Abs(*data)
	if err != nil {
		return fmt.Errorf("-data: %w", err)
	}
	// Read before anything starts, so that a bad file is refused at once
	// (with --processes, the operations plane's process reads it again).
	healthModel, err := loadHealthModel(*model)
	if err != nil {
		return err
	}
	if *model != "" {
		if *model, err = filepath.Abs(*model); err != nil {
			return fmt.Errorf("-health-model: %w", err)
		}
	}
	if *procs {
		if *withTLS {
			return errors.New("--tls is not supported with --processes yet")
		}
		if set["gogc"] {
			return errors.New("--gogc is the one process's target: not with --processes")
		}
		return runFleet(ctx, fleet.Config{
			Regions: splitList(*regions), DataDir: dir, BinDir: *bin, EdgeAddr: *addr, OpsAddr: *opsAddr,
			OpsTrustLoopback: *dev, OpsHosts: splitList(*opsHosts), Latency: netCfg.Latency, NoLatency: netCfg.Off,
			ProbeInterval: *interval, ClientRate: *rate, ClientBurst: *burst, Logger: log,
			Environment: *env, RegistryInsecure: *insecure, Pprof: *profile, Instances: *insts, HealthModel: *model,
		}, stdout)
	}
	restoreGC, err := applyGCPercent(*gogc, set["gogc"], getenv)
	if err != nil {
		return err
	}
	defer restoreGC()
	start := time.Now()
	d, err := deploy.Start(ctx, deploy.Config{
		Regions:          splitList(*regions),
		DataDir:          dir,
		Env:              *env,
		Network:          netCfg,
		ProbeInterval:    *interval,
		Instances:        *insts,
		EdgeAddr:         *addr,
		OpsAddr:          *opsAddr,
		OpsTrustLoopback: *dev,
		OpsHosts:         splitList(*opsHosts),
		Pprof:            *profile,
		HealthModel:      healthModel,
		EdgeClientRate:   *rate,
		EdgeClientBurst:  *burst,
		TLS:              *withTLS,
		Getenv:           getenv,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	services := d.ServiceURLs()
	printReady(stdout, upReady{Regions: d.Regions(), Instances: *insts, Data: dir, Env: *env, Release: d.Release(), Partner: services["partner"], Secrets: services["secrets"],
		Edge: d.EdgeURL(), Ops: d.OpsURL(), CA: d.CAPath()})
	log.Info("all stamps ready", "elapsed", time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	log.Info("shutting down")
	return d.Close()
}

// runFleet is up --processes: the fleet's ready line has up's fields,
// plus every region's process ids and POP URL.
func runFleet(ctx context.Context, cfg fleet.Config, stdout io.Writer) error {
	start := time.Now()
	f, err := fleet.Start(ctx, cfg)
	if err != nil {
		return err
	}
	services := f.ServiceURLs()
	printReady(stdout, upReady{Regions: f.Regions(), Instances: max(1, cfg.Instances), Data: f.DataDir(), Env: cfg.Environment, Partner: services["partner"], Secrets: services["secrets"],
		Edge: f.EdgeURL(), Ops: f.OpsURL(), Processes: f.Processes(), POPs: f.POPs()})
	cfg.Logger.Info("every process ready", "elapsed", time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	cfg.Logger.Info("shutting down: draining every process")
	return f.Close()
}

// upReady is up's ready line, in both shapes.
type upReady struct {
	Regions map[string]string `json:"regions"` // each region's stamp URL (its first instance's)
	// Instances is how many stamp instances each region runs, one per
	// zone.
	Instances int    `json:"instances"`
	Data      string `json:"data"`
	Env       string `json:"env,omitempty"`     // dev or prod
	Release   string `json:"release,omitempty"` // the version the stamps run
	Partner   string `json:"partner"`
	Secrets   string `json:"secrets"`
	Edge      string `json:"edge"`
	Ops       string `json:"ops"`
	CA        string `json:"ca,omitempty"` // with --tls: the CA certificate every URL above is signed by
	// With --processes: each region's process ids ("store", "stamp",
	// "pop") and POP URL.
	Processes map[string]map[string]int `json:"processes,omitempty"`
	POPs      map[string]string         `json:"pops,omitempty"`
}

// printReady prints the ready line: {"event":"ready", ...r}.
func printReady(stdout io.Writer, r upReady) {
	line, _ := json.Marshal(struct {
		Event string `json:"event"`
		upReady
	}{"ready", r})
	fmt.Fprintf(stdout, "%s\n", line)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
