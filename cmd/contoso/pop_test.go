package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// `contoso pop` is one point of presence: it finds a `contoso stamp`
// through the registry and serves its region's clients there; its
// operations address, behind an admin token, lists that one POP.
func TestPopRunsAloneAndServesItsRegionsClients(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	dir := t.TempDir()
	env := map[string]string{envEdgeCredential: "a-long-random-credential"}
	var stamp struct{ Event, Region, URL string }
	startCommand(t, env, &stamp, "stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")
	var pop struct{ Event, Region, URL, Ops string }
	stop := startProcess(t, env, &pop, "pop", "--region", "eastus", "--nats", c.Nodes[0].ClientURL(),
		"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--data", dir)
	if pop.Event != "ready" || pop.Region != "eastus" || !strings.HasPrefix(pop.URL, "http://127.0.0.1:") || !strings.HasPrefix(pop.Ops, "http://127.0.0.1:") {
		t.Fatalf("pop ready line = %+v", pop)
	}
	get := func(url string, header ...string) (int, http.Header) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, h := get(pop.URL+"/api/products?limit=1", "X-Client-Region", "eastus")
		if status == http.StatusOK && h.Get("X-Served-Region") == "westeurope" && h.Get("X-Edge-Pop") == "eastus" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pop never served an eastus client from the westeurope stamp: last %d %v", status, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := iss.Mint("ops", true, time.Hour, time.Now())
	if status, _ := get(pop.Ops + "/ops/edge"); status != http.StatusUnauthorized {
		t.Fatalf("/ops/edge without a token = %d, want 401", status)
	}
	// The operations guard: a Host that is not the listener's own is
	// refused, whatever the token.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, pop.Ops+"/ops/edge", nil)
	req.Host = "evil.example"
	req.Header.Set("Authorization", "Bearer "+admin)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("/ops/edge with Host evil.example = %v, %v; want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	status, body := do(t, nil, http.MethodGet, pop.Ops+"/ops/edge", "", "Authorization", "Bearer "+admin)
	var st struct{ POPs []edge.POPStatus }
	if err := json.Unmarshal(body, &st); status != http.StatusOK || err != nil {
		t.Fatalf("/ops/edge = %d %s", status, body)
	}
	if len(st.POPs) != 1 || st.POPs[0].Region != "eastus" || len(st.POPs[0].Stamps) != 1 || st.POPs[0].Stamps[0].Region != "westeurope" {
		t.Fatalf("/ops/edge lists %+v, want the one eastus POP seeing the westeurope stamp", st.POPs)
	}
	wantRequestMetrics(t, pop.Ops+"/metrics", admin, "edge")
	if err := stop(); err != nil {
		t.Fatalf("pop returned %v on shutdown, want nil", err)
	}
	if status, _ := get(pop.URL + "/api/products?limit=1"); status != 0 {
		t.Fatalf("the pop still answers (%d) after it stopped", status)
	}
}

// `contoso pop` follows the traffic table in the store: with the stamp's
// release ("dev") at 0 % its only stamp is on standby, so the POP fails
// open to it and says so, in its answers and on /ops/edge; cleared, it
// routes as before.
func TestPopFollowsTheTrafficTable(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	dir := t.TempDir()
	env := map[string]string{envEdgeCredential: "a-long-random-credential"}
	var stamp struct{ Event, Region, URL string }
	startCommand(t, env, &stamp, "stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")
	var pop struct{ Event, Region, URL, Ops string }
	startCommand(t, env, &pop, "pop", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(),
		"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--data", dir)
	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := iss.Mint("ops", true, time.Hour, time.Now())
	// until polls the POP until an API answer and /ops/edge satisfy ok.
	until := func(what string, ok func(status int, failOpen string, p edge.POPStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get(pop.URL + "/api/products?limit=1")
			status, failOpen := 0, ""
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status, failOpen = resp.StatusCode, resp.Header.Get(edge.HeaderFailOpen)
			}
			code, body := do(t, nil, http.MethodGet, pop.Ops+"/ops/edge", "", "Authorization", "Bearer "+admin)
			var st struct{ POPs []edge.POPStatus }
			if code == http.StatusOK && json.Unmarshal(body, &st) == nil && len(st.POPs) == 1 && ok(status, failOpen, st.POPs[0]) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the pop never showed %s: last answer %d (fail open %q), /ops/edge %d %s", what, status, failOpen, code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stampOf := func(p edge.POPStatus) edge.StampStatus {
		if len(p.Stamps) != 1 {
			return edge.StampStatus{}
		}
		return p.Stamps[0]
	}
	until("the stamp serving in rotation", func(status int, failOpen string, p edge.POPStatus) bool {
		st := stampOf(p)
		return status == http.StatusOK && failOpen == "" && st.Release == "dev" && st.Weight == edge.DefaultWeight && !st.Standby
	})

	st, _ := c.MustOpen(t, 0)
	if err := st.PutTraffic(t.Context(), store.Traffic{Release: "r-2", Regions: map[string]map[string]int{"westeurope": {"dev": 0, "v2": 100}}}); err != nil {
		t.Fatal(err)
	}
	until("the stamp at 0 % on standby, failing open to it", func(status int, failOpen string, p edge.POPStatus) bool {
		st := stampOf(p)
		return status == http.StatusOK && failOpen == "true" && p.FailOpen && st.Standby && st.Weight == 0 && p.Split["westeurope"]["v2"] == 100
	})
	if err := st.ClearTraffic(t.Context()); err != nil {
		t.Fatal(err)
	}
	until("the stamp back in rotation", func(status int, failOpen string, p edge.POPStatus) bool {
		st := stampOf(p)
		return status == http.StatusOK && failOpen == "" && !p.FailOpen && !st.Standby && len(p.Split) == 0
	})
}

// With --via, the POP reaches the stamp at ADDR through VIA (a link on
// one machine): every connection to the stamp goes through it.
func TestPopReachesAStampThroughVia(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	dir := t.TempDir()
	env := map[string]string{envEdgeCredential: "a-long-random-credential"}
	var stamp struct{ Event, Region, URL string }
	startCommand(t, env, &stamp, "stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")
	stampAddr := strings.TrimPrefix(stamp.URL, "http://")
	// The link: a TCP forwarder to the stamp that counts its connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var carried atomic.Int64
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			carried.Add(1)
			out, err := net.Dial("tcp", stampAddr)
			if err != nil {
				in.Close()
				continue
			}
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	var pop struct{ URL string }
	startCommand(t, env, &pop, "pop", "--region", "eastus", "--nats", c.Nodes[0].ClientURL(),
		"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--data", dir, "--via", stampAddr+"="+ln.Addr().String())
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := do(t, nil, http.MethodGet, pop.URL+"/api/products?limit=1", "")
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pop never served through the link: last %d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if carried.Load() == 0 {
		t.Fatal("the pop reached the stamp without going through its --via address")
	}
}

func TestPopRefusesToStartWithoutWhatItNeeds(t *testing.T) {
	cred := map[string]string{envEdgeCredential: "a-long-random-credential"}
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"no region", cred, nil, []string{"-region is required"}},
		{"no edge credential", nil, []string{"--region", "eastus"}, []string{envEdgeCredential}},
		{"the old flag of the edge", cred, []string{"--pops", "eastus,westeurope"}, []string{"-pops"}},
		{"a certificate without its key", cred, []string{"--region", "eastus", "--tls-cert", dir + "/cert.pem"}, []string{"-tls-cert and -tls-key go together"}},
		{"a bad log level", cred, []string{"--region", "eastus", "--log-level", "loud"}, []string{"-log-level"}},
		{"an ops host with a scheme", cred, []string{"--region", "eastus", "--data", dir, "--ops-host", "https://ops.contoso.test/"}, []string{"-ops-host"}},
		{"an argument", cred, []string{"--region", "eastus", "westeurope"}, []string{"no arguments"}},
		{"a via without its address", cred, []string{"--region", "eastus", "--via", "127.0.0.1:9"}, []string{"-via", "ADDR=VIA"}},
		{"a via listed twice", cred, []string{"--region", "eastus", "--via", "127.0.0.1:9=127.0.0.1:10,127.0.0.1:9=127.0.0.1:11"}, []string{"-via", "twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var stdout strings.Builder
			args := append([]string{"pop", "--nats", "nats://127.0.0.1:1", "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"}, tc.args...)
			err := run(ctx, args, func(k string) string { return tc.env[k] }, &stdout, io.Discard)
			if err == nil {
				t.Fatal("the pop started")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q before refusing", stdout.String())
			}
		})
	}
}
