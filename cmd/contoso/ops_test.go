package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/artifact/artifacttest"
	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/store/storetest"
)

// poll calls check every 100 ms until it returns nil or the deadline
// passes, then fails the test naming what it waited for.
func poll(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deploytest.EventuallyEvery(t, within, 100*time.Millisecond, func() error {
		if err := check(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// `contoso ops` judges a deployment it reads only over the network: a
// `contoso stamp` and a `contoso pop` (each with its own telemetry,
// exporting OTLP to ops) are found through the registry and NATS, one
// request through the POP is one trace in ops with both parts' service
// names, and the stamp's end makes its region unhealthy.
func TestOpsJudgesPartsItReadsOverTheNetwork(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	dir := t.TempDir()
	// The plane evaluates the model it is given: the built-in one, its
	// root renamed.
	builtIn, err := os.ReadFile(filepath.Join("..", "..", "internal", "healthmodel", "model.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const rootName = "Contoso Shoes on launch day"
	model := filepath.Join(dir, "model.yaml")
	if err := os.WriteFile(model, bytes.Replace(builtIn, []byte("name: Contoso Shoes\n"), []byte("name: "+rootName+"\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	var opsLine struct{ Event, Ops, OTLP string }
	startCommand(t, nil, &opsLine, "ops", "--nats", c.Nodes[0].ClientURL(), "--listen", "127.0.0.1:0",
		"--otlp-listen", "127.0.0.1:0", "--data", dir, "--regions", "westeurope", "--health-model", model)
	if opsLine.Event != "ready" || !strings.HasPrefix(opsLine.Ops, "http://127.0.0.1:") || !strings.HasPrefix(opsLine.OTLP, "http://127.0.0.1:") {
		t.Fatalf("ops ready line = %+v", opsLine)
	}
	env := map[string]string{envEdgeCredential: "a-long-random-credential", "OTEL_EXPORTER_OTLP_ENDPOINT": opsLine.OTLP,
		"OTEL_METRIC_EXPORT_INTERVAL": "500"}
	var stamp struct{ Event, Region, URL string }
	stopStamp := startProcess(t, env, &stamp, "stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")
	var pop struct{ Event, Region, URL, Ops string }
	startCommand(t, env, &pop, "pop", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(),
		"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--data", dir)

	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := iss.Mint("ops", true, time.Hour, time.Now())
	bearer := []string{"Authorization", "Bearer " + admin}
	getJSON := func(path string, v any) error {
		status, body := do(t, nil, http.MethodGet, opsLine.Ops+path, "", bearer...)
		if status != http.StatusOK {
			return fmt.Errorf("GET %s = %d %s", path, status, body)
		}
		return json.Unmarshal(body, v)
	}
	if status, _ := do(t, nil, http.MethodGet, opsLine.Ops+"/ops/health", ""); status != http.StatusUnauthorized {
		t.Fatalf("/ops/health without a token = %d, want 401", status)
	}
	type node struct {
		ID, Name, State, Reason string
		Children                []*node
	}
	find := func(n *node, id string) *node {
		var walk func(*node) *node
		walk = func(n *node) *node {
			if n.ID == id {
				return n
			}
			for _, c := range n.Children {
				if f := walk(c); f != nil {
					return f
				}
			}
			return nil
		}
		return walk(n)
	}
	state := func(id string) (string, error) {
		var root node
		if err := getJSON("/ops/health", &root); err != nil {
			return "", err
		}
		r := find(&root, id)
		if r == nil {
			return "", fmt.Errorf("no %s in the model", id)
		}
		return r.State + ": " + r.Reason, nil
	}
	var root node
	if err := getJSON("/ops/health", &root); err != nil || root.Name != rootName {
		t.Fatalf("/ops/health's root is named %q (%v), want %q from --health-model", root.Name, err, rootName)
	}
	// Browsing needs the stamp, its API and its store reads, each judged
	// from what the stamp reports and the POP publishes. (This stamp has
	// no partner: its order processing is judged unknown, not healthy.)
	poll(t, 60*time.Second, "browsing in the stamp's region healthy in ops", func() error {
		st, err := state("region.westeurope.browse")
		if err == nil && !strings.HasPrefix(st, "healthy") {
			err = fmt.Errorf("region.westeurope.browse is %s", st)
		}
		return err
	})
	var front struct {
		POPs []struct{ Region string }
	}
	if err := getJSON("/ops/edge", &front); err != nil || len(front.POPs) != 1 || front.POPs[0].Region != "westeurope" {
		t.Fatalf("/ops/edge = %+v, %v; want the one westeurope POP", front, err)
	}
	var regions struct {
		Regions []struct {
			Name   string
			Stamps []string
			POP    bool
		}
	}
	if err := getJSON("/ops/regions", &regions); err != nil || len(regions.Regions) != 1 ||
		regions.Regions[0].Name != "westeurope" || len(regions.Regions[0].Stamps) != 1 || regions.Regions[0].Stamps[0] != stamp.URL || !regions.Regions[0].POP {
		t.Fatalf("/ops/regions = %+v, %v; want westeurope with %s and its POP", regions, err, stamp.URL)
	}
	var snap struct {
		Regions []struct{ Name, State string }
	}
	if err := getJSON("/ops/dashboard/snapshot", &snap); err != nil || len(snap.Regions) != 1 || snap.Regions[0].Name != "westeurope" {
		t.Fatalf("dashboard snapshot = %+v, %v", snap, err)
	}

	// One request through the POP: its trace, exported by two processes'
	// telemetry, is one trace in ops.
	traceID := "4bf92f3577b34da6a3ce929d0e0e4736"
	status, _ := do(t, nil, http.MethodGet, pop.URL+"/api/products?limit=1", "",
		"X-Client-Region", "westeurope", "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if status != http.StatusOK {
		t.Fatalf("GET through the POP = %d", status)
	}
	poll(t, 30*time.Second, "the request's trace in ops with the edge's and the stamp's spans", func() error {
		var tr struct {
			Spans []struct {
				Name       string
				Attributes map[string]string
			}
		}
		if err := getJSON("/ops/traces/"+traceID, &tr); err != nil {
			return err
		}
		services := map[string]bool{}
		for _, s := range tr.Spans {
			services[s.Attributes["service.name"]] = true
		}
		if !services["contoso-edge"] || !services["contoso-stamp"] {
			return fmt.Errorf("services in the trace: %v", services)
		}
		return nil
	})

	// The stamp stops: its region is judged unhealthy, not forgotten.
	if err := stopStamp(); err != nil {
		t.Fatalf("stamp stop: %v", err)
	}
	poll(t, 20*time.Second, "the stamp's region unhealthy in ops after the stamp stopped", func() error {
		st, err := state("region.westeurope")
		if err == nil && !strings.HasPrefix(st, "unhealthy") {
			err = fmt.Errorf("region.westeurope is %s", st)
		}
		return err
	})
}

// `contoso ops --env prod` releases an image only once it passed
// verification: an image without a passing attestation is refused (403),
// the same digest is accepted once Dev/Test attested it, and the release
// names the version the image's label gives.
func TestOpsReleasesInProdOnlyVerifiedImages(t *testing.T) {
	bin := artifacttest.MustBinary(t, "v-ops-prod")
	reg := artifacttest.NewRegistry(t)
	img, err := artifact.Build(artifact.BuildConfig{Binary: bin, Version: "v-ops-prod"})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := artifact.Push(t.Context(), img, reg+"/contoso/shoes:v-ops-prod", artifact.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}

	c := storetest.NewCluster(t, "westeurope")
	dir := t.TempDir()
	var opsLine struct{ Event, Ops string }
	startCommand(t, nil, &opsLine, "ops", "--env", "prod", "--registry-insecure", "--nats", c.Nodes[0].ClientURL(),
		"--listen", "127.0.0.1:0", "--otlp-listen", "127.0.0.1:0", "--data", dir, "--regions", "westeurope")
	// A stamp to release next to.
	var stamp struct{ Event, URL string }
	startProcess(t, map[string]string{envEdgeCredential: "a-long-random-credential"}, &stamp, "stamp", "--region", "westeurope",
		"--nats", c.Nodes[0].ClientURL(), "--replicas", "1", "--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")

	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := iss.Mint("release-manager", true, time.Hour, time.Now())
	start := func() (int, []byte) {
		return do(t, nil, http.MethodPost, opsLine.Ops+"/ops/releases", `{"image":"`+ref+`","steps":[100]}`, "Authorization", "Bearer "+admin)
	}
	// Refused for want of a verification, whether or not the stamp has
	// been heard yet: prod checks that first.
	if status, body := start(); status != http.StatusForbidden || !strings.Contains(string(body), "did not pass verification") {
		t.Fatalf("release of an unverified image in prod = %d %s; want 403, did not pass verification", status, body)
	}
	if err := artifact.Attest(t.Context(), ref, artifact.Attestation{Env: "dev", Profile: "ci", Passed: true, Experiments: 1, By: "ops test"},
		artifact.WithInsecure()); err != nil {
		t.Fatal(err)
	}
	var rec struct{ Version, Image, Env string }
	poll(t, 60*time.Second, "the attested image's release to start", func() error {
		status, body := start()
		switch {
		case status == http.StatusConflict && strings.Contains(string(body), "no running stamp"):
			return fmt.Errorf("the stamp is not heard yet: %s", body) // ops has not heard the stamp yet
		case status != http.StatusCreated:
			t.Fatalf("release of the attested image in prod = %d %s; want 201", status, body)
		}
		return json.Unmarshal(body, &rec)
	})
	if rec.Version != "v-ops-prod" || rec.Image != ref || rec.Env != "prod" {
		t.Fatalf("release record = %+v; want version v-ops-prod of %s in prod", rec, ref)
	}
}
