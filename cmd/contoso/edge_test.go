package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/store/storetest"
)

// startCommand runs one contoso command in process, decodes the JSON line
// it prints first into line, and stops it when the test ends, failing the
// test when the command does not return nil.
func startCommand(t *testing.T, env map[string]string, line any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, args, func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
	}()
	if err := json.NewDecoder(pr).Decode(line); err != nil {
		cancel()
		t.Fatalf("%s: first line: %v (run: %v)", args[0], err, <-errc)
	}
	go io.Copy(io.Discard, pr)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("%s returned %v on shutdown, want nil", args[0], err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30 s", args[0])
		}
	})
}

// `contoso edge` alone finds a `contoso stamp` through the registry in the
// store and routes every POP's clients to it; the stamp, given the same
// credential, refuses API requests that bypass the edge.
func TestEdgeRunsAloneAndFindsStampsInTheRegistry(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope", "northeurope", "eastus")
	dir := t.TempDir()
	env := map[string]string{envEdgeCredential: "a-long-random-credential"}
	var stamp struct{ Event, Region, URL string }
	startCommand(t, env, &stamp, "stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(),
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")
	urls := []string{}
	for _, n := range c.Nodes {
		urls = append(urls, n.ClientURL())
	}
	var edge struct{ Event, Edge, Ops string }
	startCommand(t, env, &edge, "edge", "--nats", strings.Join(urls, ","), "--pops", "westeurope,eastus",
		"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--ops-host", "ops.contoso.test", "--data", dir)
	if edge.Event != "listening" || !strings.HasPrefix(edge.Edge, "http://127.0.0.1:") || !strings.HasPrefix(edge.Ops, "http://127.0.0.1:") {
		t.Fatalf("edge listening line = %+v", edge)
	}
	get := func(url string, header ...string) (int, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, h := get(edge.Edge+"/api/products?limit=1", "X-Client-Region", "eastus")
		if status == http.StatusOK && h.Get("X-Served-Region") == "westeurope" && h.Get("X-Edge-Pop") == "eastus" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge never routed eastus clients to the westeurope stamp: last %d %v", status, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, _ := get(stamp.URL + "/api/products?limit=1"); status != http.StatusForbidden {
		t.Fatalf("straight to the stamp without the credential = %d, want 403", status)
	}
	// The edge fails open to its only stamp before the stamp reports
	// healthy (it is still seeding or warming up); it then does.
	poll(t, 30*time.Second, "the stamp's health report", func() error {
		if status, _ := get(stamp.URL + "/health/stamp"); status != http.StatusOK {
			return fmt.Errorf("stamp health = %d", status)
		}
		return nil
	})
	// The edge's operations endpoint wants an admin token, even on loopback.
	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := iss.Mint("ops", true, time.Hour, time.Now())
	user, _ := iss.Mint("shopper", false, time.Hour, time.Now())
	for _, c := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {user, http.StatusForbidden}, {admin, http.StatusOK}} {
		var h []string
		if c.token != "" {
			h = []string{"Authorization", "Bearer " + c.token}
		}
		if status, _ := get(edge.Ops+"/ops/edge", h...); status != c.want {
			t.Errorf("/ops/edge with token %.10q = %d, want %d", c.token, status, c.want)
		}
	}
	// A Host that is not the listener's own is refused before the token is
	// looked at; a name given with --ops-host is its own.
	for host, want := range map[string]int{"evil.example": http.StatusForbidden, "ops.contoso.test": http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, edge.Ops+"/ops/edge", nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("/ops/edge with Host %s = %d, want %d", host, resp.StatusCode, want)
		}
	}
	// Its metrics, behind the same token, count the requests it proxied.
	wantRequestMetrics(t, edge.Ops+"/metrics", admin, "edge")
}

func TestEdgeRefusesToStartWithoutWhatItNeeds(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		args []string
	}{
		{map[string]string{envEdgeCredential: "x"}, []string{"edge"}},
		{map[string]string{}, []string{"edge", "--pops", "westeurope"}},
		{map[string]string{envEdgeCredential: "x"}, []string{"edge", "--pops", "westeurope", "--log-format", "xml"}},
		{map[string]string{envEdgeCredential: "x"}, []string{"edge", "--pops", "westeurope", "--data", t.TempDir(), "--ops-host", "https://ops.contoso.test/"}},
	} {
		err := run(t.Context(), c.args, func(k string) string { return c.env[k] }, io.Discard, io.Discard)
		if err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("run(%q) = %v, want a configuration error", c.args, err)
		}
		_ = fmt.Sprint(err)
	}
}

// `contoso health rules` writes rules Prometheus accepts: promtool checks
// them when it is installed (CI installs Debian's prometheus package).
func TestHealthRulesPassPromtool(t *testing.T) {
	out := t.TempDir() + "/rules.yaml"
	if err := run(t.Context(), []string{"health", "rules", "--out", out}, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(b), "ErrorBudgetFastBurn") || !strings.Contains(string(b), "RedundancyLost") {
		t.Fatalf("rules file: %v\n%s", err, b)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CONTOSO_REQUIRE_PROMTOOL") == "1" {
			t.Fatal("promtool not installed (apt-get install prometheus)")
		}
		t.Skip("promtool not installed: apt-get install prometheus to check the rules")
	}
	if msg, err := exec.Command(promtool, "check", "rules", out).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, msg)
	}
	for _, args := range [][]string{{"health"}, {"health", "alerts"}, {"health", "rules", "--slos", "/nonexistent"}} {
		if err := run(t.Context(), args, nil, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}
