package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/chaos/chaostest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// chaosAPI serves the chaos routes over a recording target behind a bearer
// token check, as the operations address of `contoso up` does.
func chaosAPI(t *testing.T, token string) (*httptest.Server, *chaostest.Target) {
	t.Helper()
	return chaosAPIWith(t, token, false)
}

// chaosAPIWith is chaosAPI, over TLS with withTLS.
func chaosAPIWith(t *testing.T, token string, withTLS bool) (*httptest.Server, *chaostest.Target) {
	t.Helper()
	target := chaostest.NewTarget("westeurope", "eastus", "southeastasia")
	c, err := chaos.New(chaos.Config{Target: target, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	mux := http.NewServeMux()
	c.Routes(mux)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			httpapi.WriteError(w, r, nil, shop.Errorf(shop.KindUnauthorized, "", "an admin token is required"))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	if withTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, target
}

// An operations address over TLS (up --tls) is reached with its CA given
// by --ca, and refused without it.
func TestChaosCommandTrustsTheGivenCA(t *testing.T) {
	srv, _ := chaosAPIWith(t, "admin-token", true)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "CONTOSO_ADMIN_TOKEN" {
			return "admin-token"
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"chaos", "list", "--ops", srv.URL, "--ca", ca}, env, &out, io.Discard); err != nil {
		t.Fatalf("chaos list with the CA: %v", err)
	}
	if strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("chaos list printed %q, want no fault", out.String())
	}
	if err := run(t.Context(), []string{"chaos", "list", "--ops", srv.URL}, env, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("chaos list without the CA: %v, want a certificate error", err)
	}
}

func TestChaosCommand(t *testing.T) {
	srv, target := chaosAPI(t, "admin-token")
	env := func(k string) string {
		if k == "CONTOSO_ADMIN_TOKEN" {
			return "admin-token"
		}
		return ""
	}
	chaosRun := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"chaos"}, args...), env, &out, io.Discard)
		return out.String(), err
	}
	injected := func(args ...string) chaos.Active {
		t.Helper()
		out, err := chaosRun(args...)
		var a chaos.Active
		if err != nil || json.Unmarshal([]byte(out), &a) != nil || a.ID == "" {
			t.Fatalf("chaos %q = %q, %v", args, out, err)
		}
		return a
	}

	p := injected("partition", "westeurope-eastus", "--duration", "30s", "--ops", srv.URL)
	if p.Fault != "partition" || p.Target != "westeurope-eastus" || p.HealsAt.Sub(p.InjectedAt) != 30*time.Second {
		t.Fatalf("partition = %+v", p)
	}
	l := injected("--ops", srv.URL, "link-latency", "-duration=1m", "eastus-southeastasia", "--latency", "300ms", "--jitter", "0")
	if l.Params["latency"] != "300ms" || l.Params["jitter"] != "0s" {
		t.Fatalf("link-latency params = %v", l.Params)
	}
	s := injected("partner-slow", "--duration", "10s", "--delay", "5s", "--ops", srv.URL)
	if s.Target != "global" || s.Params["delay"] != "5s" {
		t.Fatalf("partner-slow = %+v", s)
	}
	if calls := target.Take(); !slices.Equal(calls, []string{"Cut westeurope-eastus", "SetLatency eastus-southeastasia 300ms 0s", "SetPartner slow 5s"}) {
		t.Fatalf("calls %q", calls)
	}

	out, err := chaosRun("list", "--ops", srv.URL)
	var list []chaos.Active
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 || list[0].ID != s.ID || list[2].ID != p.ID {
		t.Fatalf("chaos list = %q, %v", out, err)
	}

	out, err = chaosRun("heal", p.ID, "--ops", srv.URL)
	var healed chaos.Active
	if err != nil || json.Unmarshal([]byte(out), &healed) != nil || healed.ID != p.ID || healed.HealedAt == nil {
		t.Fatalf("chaos heal = %q, %v", out, err)
	}
	if calls := target.Take(); !slices.Equal(calls, []string{"Heal westeurope-eastus"}) {
		t.Fatalf("heal calls %q", calls)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string // a part of the error
	}{
		{"conflict", []string{"partner-outage", "--duration", "30s", "--ops", srv.URL}, "would fight the active " + s.ID},
		{"bad target", []string{"store-node-loss", "mars", "--duration", "30s", "--ops", srv.URL}, `unknown region "mars"`},
		{"bad duration", []string{"stamp-drain", "eastus", "--duration", "2h", "--ops", srv.URL}, "must be between 1s and 1h"},
		{"unknown fault", []string{"meteor", "eastus", "--duration", "30s", "--ops", srv.URL}, `unknown fault "meteor"`},
		{"unknown id", []string{"heal", "partition-42", "--ops", srv.URL}, `fault "partition-42" not found`},
		{"wrong token", []string{"list", "--token", "guess", "--ops", srv.URL}, "an admin token is required"},
		{"no duration", []string{"stamp-drain", "eastus", "--ops", srv.URL}, "-duration is required"},
		{"nothing", nil, "a fault, list or heal is required"},
		{"heal without id", []string{"heal", "--ops", srv.URL}, "heal takes one fault id"},
		{"too many arguments", []string{"partition", "westeurope", "eastus", "--duration", "30s", "--ops", srv.URL}, "want FAULT [TARGET]"},
		{"bad flag", []string{"list", "--latency", "fast"}, "invalid value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := chaosRun(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("chaos %q = %v, want an error with %q", tc.args, err, tc.want)
			}
			if out != "" {
				t.Fatalf("chaos %q printed %q on failure", tc.args, out)
			}
		})
	}
	if calls := target.Take(); len(calls) != 0 {
		t.Fatalf("failed commands reached the deployment: %q", calls)
	}
}
