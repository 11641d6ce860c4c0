package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/child"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// planOps plans the operations plane's process (`contoso ops`) and its
// ports. It reads every region's store server, so it keeps reading
// through the loss of one, and judges every region of the fleet from the
// start.
func (f *Fleet) planOps(port func() int) {
	listen, otlp := port(), port()
	args := []string{"ops", "--nats", f.clientURLs(f.order[0]), "--nats-nkey", f.seedPath(store.RoleOps), "--data", f.cfg.DataDir,
		"--regions", strings.Join(f.order, ","), "--instances", strconv.Itoa(f.instances()),
		"--listen", fmt.Sprintf("127.0.0.1:%d", listen), "--otlp-listen", fmt.Sprintf("127.0.0.1:%d", otlp)}
	if f.cfg.OpsTrustLoopback {
		args = append(args, "--dev")
	}
	args = append(args, "--env", f.cfg.Environment)
	if f.cfg.RegistryInsecure {
		args = append(args, "--registry-insecure")
	}
	if f.cfg.HealthModel != "" {
		args = append(args, "--health-model", f.cfg.HealthModel)
	}
	f.ops = f.newProc("ops", f.bin.contoso, args...)
	f.ops.Line = true
	f.ops.Env = f.childEnv()
	f.otlp = fmt.Sprintf("http://127.0.0.1:%d", otlp)
}

// opsHeardAll is ready when the operations plane has heard every region:
// a stamp announced with a health report, and its POP's status. Until
// then, /ops/health would judge regions it has not heard from.
func (f *Fleet) opsHeardAll(ctx context.Context) error {
	return child.Poll(ctx, "the operations plane to hear every region", func() error {
		var regions struct {
			Regions []struct {
				Name   string   `json:"name"`
				Stamps []string `json:"stamps"`
				POP    bool     `json:"pop"`
			} `json:"regions"`
		}
		if err := f.getJSON(ctx, f.ops.Field("ops")+"/ops/regions", &regions); err != nil {
			return err
		}
		heard := 0
		for _, r := range regions.Regions {
			if len(r.Stamps) > 0 && r.POP {
				heard++
			}
		}
		if heard < len(f.order) {
			return fmt.Errorf("%d of %d regions heard: %+v", heard, len(f.order), regions.Regions)
		}
		return nil
	})
}

// startOps starts the operations plane.
func (f *Fleet) startOps(ctx context.Context) error { return f.ops.Start(ctx) }

// frontDoor is the fleet's two addresses in the up process: the
// dispatcher and the operations address.
type frontDoor struct {
	dispatcher *Dispatcher
	chaos      *chaos.Chaos
	servers    []*http.Server
	edgeURL    string
	opsURL     string
}

// startFront serves the dispatcher and the operations address.
func (f *Fleet) startFront() error {
	d, err := NewDispatcher(DispatcherConfig{POPs: f.POPs(), Order: f.order, Latency: f.cfg.Latency, Logger: f.log.With("component", "dispatcher")})
	if err != nil {
		return err
	}
	faults, err := chaos.New(chaos.Config{Target: target{f}, Logger: f.log.With("component", "chaos")})
	if err != nil {
		return err
	}
	fd := &frontDoor{dispatcher: d, chaos: faults}
	f.front = fd
	ops, err := f.opsHandler(faults)
	if err != nil {
		return err
	}
	if fd.edgeURL, err = fd.serve(freeIfEmpty(f.cfg.EdgeAddr), d, f.log); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if fd.opsURL, err = fd.serve(freeIfEmpty(f.cfg.OpsAddr), ops, f.log); err != nil {
		return fmt.Errorf("ops: %w", err)
	}
	return nil
}

// freeIfEmpty is addr, or a free loopback port when it is empty.
func freeIfEmpty(addr string) string {
	if addr == "" {
		return "127.0.0.1:0"
	}
	return addr
}

func (fd *frontDoor) serve(addr string, h http.Handler, log *slog.Logger) (string, error) {
	ln, u, err := deploy.Listen(addr, nil)
	if err != nil {
		return "", err
	}
	srv := deploy.NewServer(h)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	fd.servers = append(fd.servers, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("listener stopped", "addr", addr, "error", err)
		}
	}()
	return u, nil
}

// close heals every fault still injected, then stops taking requests and
// finishes those in flight.
func (fd *frontDoor) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = fd.chaos.Close(ctx)
	for _, srv := range fd.servers {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
}

// opsHandler is the operations address: the chaos routes served here,
// with the fleet as their target, and every other /ops/ route and /metrics
// passed to the operations plane, behind the same guard and admin check
// as up's operations address.
func (f *Fleet) opsHandler(faults *chaos.Chaos) (http.Handler, error) {
	verifier, err := auth.NewVerifier(f.issuer.VerifierConfig())
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	faults.Routes(mux)
	target, err := url.Parse(f.ops.Field("ops"))
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("the operations plane's ready line names no ops URL: %q", f.ops.Field("ops"))
	}
	plane := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		FlushInterval: -1, // the dashboard's event streams
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			httpapi.WriteError(w, r, f.log, shop.Unavailable("the operations plane does not answer", err))
		},
	}
	mux.Handle("/ops/", plane)
	mux.Handle("/metrics", plane)
	guard, err := httpapi.OpsGuard(httpapi.OpsGuardConfig{Hosts: f.cfg.OpsHosts, Logger: f.log})
	if err != nil {
		return nil, err
	}
	return httpapi.Chain(mux, httpapi.RequestIDs, httpapi.Recover(f.log), guard, deploy.AdminOnly(verifier, f.cfg.OpsTrustLoopback, f.log)), nil
}

// EdgeURL is the dispatcher's URL: the one client-facing address.
func (f *Fleet) EdgeURL() string { return f.front.edgeURL }

// OpsURL is the operations address.
func (f *Fleet) OpsURL() string { return f.front.opsURL }

// Chaos is the fault library acting on the fleet, as the operations
// address serves it.
func (f *Fleet) Chaos() *chaos.Chaos { return f.front.chaos }

// withdraw takes region's POP out of the dispatcher's rotation, or puts
// it back; nothing before the front door starts.
func (f *Fleet) withdraw(region string, out bool) {
	if f.front != nil {
		f.front.dispatcher.Withdraw(region, out)
	}
}
