package deploy

import (
	"net"
	"net/http"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/ops"
)

// opsHandler is the operations address: every /ops/... route, behind the
// operations guard (httpapi.OpsGuard) and the admin check.
func (d *Deployment) opsHandler() (http.Handler, error) {
	verifier, err := auth.NewVerifier(d.issuer.VerifierConfig())
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	faults, err := chaos.New(chaos.Config{Target: chaosTarget{d}, Meter: d.tel.Meter("github.com/contoso/shoes/internal/chaos"), Logger: d.log.With("component", "chaos")})
	if err != nil {
		return nil, err
	}
	d.front.chaos = faults
	dash, err := ops.NewDashboard(ops.Config{Snapshot: d.front.plane.Snapshot, Logger: d.log.With("component", "dashboard")})
	if err != nil {
		return nil, err
	}
	d.front.dashboard = dash
	dash.Routes(mux)
	d.opsRoutes(mux)
	// The guard runs before the admin check: a request from a browser
	// (another site's page, or a name rebound to loopback) is refused
	// before development mode's loopback trust is considered.
	guard, err := httpapi.OpsGuard(httpapi.OpsGuardConfig{Hosts: d.cfg.OpsHosts, Logger: d.log})
	if err != nil {
		return nil, err
	}
	return httpapi.Chain(mux, httpapi.RequestIDs, httpapi.Recover(d.log), guard, AdminOnly(verifier, d.cfg.OpsTrustLoopback, d.log)), nil
}

// opsRoutes registers every operations route.
func (d *Deployment) opsRoutes(mux *http.ServeMux) {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(d.log, f) }
	// What `contoso ops` serves, from the same plane: health, SLOs, POPs,
	// traces. Regions are this deployment's own: it adds and removes them.
	d.front.plane.Routes(mux, false)
	mux.Handle("GET /ops/regions", h(d.listRegions))
	mux.Handle("POST /ops/regions", h(d.postRegion))
	mux.Handle("DELETE /ops/regions/{name}", h(d.deleteRegion))
	mux.Handle("GET /metrics", d.tel.MetricsHandler())
	if d.cfg.Pprof {
		mux.Handle(httpapi.ProfilingPrefix, httpapi.Profiling())
	}
	d.front.chaos.Routes(mux)
	d.front.releases.Routes(mux, d.log)
	d.front.scaler.Routes(mux, d.log)
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (d *Deployment) listRegions(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"regions": d.RegionsInfo()})
	return nil
}

func (d *Deployment) postRegion(w http.ResponseWriter, r *http.Request) error {
	var spec RegionSpec
	if err := httpapi.DecodeJSON(r, &spec); err != nil {
		return err
	}
	info, err := d.AddRegion(r.Context(), spec)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/ops/regions/"+info.Name)
	httpapi.WriteJSON(w, http.StatusCreated, info)
	return nil
}

func (d *Deployment) deleteRegion(w http.ResponseWriter, r *http.Request) error {
	info, err := d.RemoveRegion(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, info)
	return nil
}
