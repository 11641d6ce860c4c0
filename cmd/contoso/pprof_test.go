package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/store/storetest"
)

// --pprof puts the Go runtime's profiles beside a part's operations
// routes, behind their admin check: on a pop's operations address (never
// on its public one, where the edge refuses the path) and beside a
// stamp's /ops/drain. Without the flag there are none.
func TestProfilesOnlyWithPprofAndOnlyForAdmins(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	dir := t.TempDir()
	env := map[string]string{envEdgeCredential: "a-long-random-credential"}
	var stamp struct{ Event, Region, URL string }
	startCommand(t, env, &stamp, "stamp", "--pprof", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")
	var profiled, plain struct{ Event, Region, URL, Ops string }
	startCommand(t, env, &profiled, "pop", "--pprof", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(),
		"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--data", dir)
	startCommand(t, env, &plain, "pop", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(),
		"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--data", dir)
	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := iss.Mint("ops", true, time.Hour, time.Now())
	user, _ := iss.Mint("shopper", false, time.Hour, time.Now())
	for _, tc := range []struct {
		name, url, token string
		want             int
	}{
		{"pop ops, no token", profiled.Ops + "/debug/pprof/", "", http.StatusUnauthorized},
		{"pop ops, user token", profiled.Ops + "/debug/pprof/", user, http.StatusForbidden},
		{"pop ops, admin token", profiled.Ops + "/debug/pprof/", admin, http.StatusOK},
		{"pop ops, admin token, goroutines", profiled.Ops + "/debug/pprof/goroutine?debug=1", admin, http.StatusOK},
		{"pop's public address", profiled.URL + "/debug/pprof/", admin, http.StatusNotFound},
		{"pop's public address, goroutines", profiled.URL + "/debug/pprof/goroutine?debug=1", admin, http.StatusNotFound},
		{"pop without --pprof", plain.Ops + "/debug/pprof/", admin, http.StatusNotFound},
		{"stamp, no token", stamp.URL + "/debug/pprof/", "", http.StatusUnauthorized},
		{"stamp, user token", stamp.URL + "/debug/pprof/", user, http.StatusForbidden},
		{"stamp, admin token", stamp.URL + "/debug/pprof/", admin, http.StatusOK},
	} {
		var header []string
		if tc.token != "" {
			header = []string{"Authorization", "Bearer " + tc.token}
		}
		status, body := do(t, nil, http.MethodGet, tc.url, "", header...)
		if status != tc.want {
			t.Errorf("%s: %d %.200s, want %d", tc.name, status, body, tc.want)
		}
		if status == http.StatusOK && !strings.Contains(string(body), "goroutine") {
			t.Errorf("%s: %.200s, want a profile", tc.name, body)
		}
	}
}
