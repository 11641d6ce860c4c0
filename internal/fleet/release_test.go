package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/artifact/artifacttest"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/fleet"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// A release of an image in the processes shape: the fleet's release agent
// extracts the image's binary and starts stamp processes of it next to the
// old ones; the gate passes every step under a little traffic; the old
// stamp processes drain and exit cleanly; no request fails meanwhile.
func testImageRelease(t *testing.T, f *fleet.Fleet) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	version := "v-proc-" + strconv.FormatInt(time.Now().Unix(), 10)
	reg := artifacttest.NewRegistry(t)
	img, err := artifact.Build(artifact.BuildConfig{Binary: filepath.Join(bins, "contoso"), Version: version})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := artifact.Push(ctx, img, reg+"/contoso/shoes:"+version, artifact.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	var old []fleet.Stamp
	for _, s := range f.Stamps() {
		if s.Running {
			old = append(old, s)
		}
	}
	if len(old) < len(regions) {
		t.Fatalf("%d stamp processes before the release, want at least one per region: %+v", len(old), old)
	}

	// A little traffic through every region's POP, all through the release.
	var (
		mu       sync.Mutex
		failures []string
		served   = map[string]int{} // X-Served-Release → answers
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	product := shop.SeedCatalog()[2].ID
	for _, region := range regions {
		wg.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				a := send(f, region, http.MethodGet, "/api/products/"+product, "", "", nil)
				mu.Lock()
				if a.err != nil || a.status != http.StatusOK {
					failures = append(failures, fmt.Sprintf("%s GET product: %s", region, a))
				} else {
					served[a.header.Get("X-Served-Release")]++
				}
				mu.Unlock()
			}
		})
	}
	stopTraffic := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopTraffic()

	body, _ := json.Marshal(map[string]any{"image": ref, "steps": []int{100},
		"gate": map[string]any{"minHold": time.Second, "minRequests": 5}, "by": "fleet test"})
	start := time.Now()
	resp, err := client.Post(f.OpsURL()+"/ops/releases", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var rec release.Record
	_ = json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || rec.Version != version || rec.Image != ref {
		t.Fatalf("POST /ops/releases = %d, version %q image %q; want 201, %s, %s", resp.StatusCode, rec.Version, rec.Image, version, ref)
	}
	var end release.Record
	eventually(t, 4*time.Minute, func() error {
		if err := getJSON(f.OpsURL()+"/ops/releases/current", "", &end); err != nil {
			return err
		}
		if !end.Phase.Final() {
			return fmt.Errorf("release %s: %s: %s", end.ID, end.Phase, end.Reason)
		}
		return nil
	})
	took := time.Since(start)
	stopTraffic()
	if end.Phase != release.PhaseDone {
		t.Fatalf("release ended %s: %s; steps %+v", end.Phase, end.Reason, end.Steps)
	}
	t.Logf("release of %s in the processes shape: %s from start to done (new stamps ready after %s)",
		version, took.Round(100*time.Millisecond), end.ReadyAt.Sub(end.StartedAt).Round(100*time.Millisecond))

	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("%d requests failed during the release, first: %s", len(failures), failures[0])
	}
	if served[version] == 0 {
		t.Errorf("no request was served by %s: %v", version, served)
	}
	t.Logf("answers by release: %v", served)
	mu.Unlock()

	// Every stamp process runs the binary extracted from the image, and
	// the old ones drained and exited with status 0. The release is done
	// once no old stamp announces itself; one that has left the registry
	// may still be finishing its requests in flight, so its exit is
	// waited for.
	releases := filepath.Join(f.DataDir(), "releases") + string(filepath.Separator)
	eventually(t, time.Minute, func() error { return replaced(f.Stamps(), old, version, releases) })
	// Every registry entry announces the new version.
	entries := registryEntries(t, f)
	if len(entries) < len(regions) {
		t.Errorf("%d registry entries after the release: %+v", len(entries), entries)
	}
	for id, e := range entries {
		if e.Release != version {
			t.Errorf("registry entry %s announces %q, want %s", id, e.Release, version)
		}
	}
}

// registryEntries reads every entry of the stamps registry, as the edge's
// user.
func registryEntries(t *testing.T, f *fleet.Fleet) map[string]store.StampEntry {
	t.Helper()
	seed, err := os.ReadFile(filepath.Join(deploy.StoreUsersDir(f.DataDir()), string(store.RoleEdge)+".nk"))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := store.Credentials{Seed: seed}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(f.ClientURLs(regions[0]), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := store.OpenRegistry(ctx, store.Config{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.StampEntry{}
	wctx, stop := context.WithCancel(ctx)
	err = reg.Watch(wctx, func(id string, e *store.StampEntry) {
		if e == nil {
			delete(out, id)
		} else {
			out[id] = *e
		}
	}, stop)
	if err != nil && wctx.Err() == nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the registry did not load within 30 s")
	}
	return out
}

// replaced is nil once every running stamp process runs version from a
// binary under releases, every region runs one, and every stamp of old
// has exited with status 0.
func replaced(stamps, old []fleet.Stamp, version, releases string) error {
	var errs []error
	perRegion := map[string]int{}
	byPID := map[int]fleet.Stamp{}
	for _, s := range stamps {
		byPID[s.PID] = s
		if !s.Running {
			continue
		}
		perRegion[s.Region]++
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.PID))
		if err != nil {
			errs = append(errs, fmt.Errorf("stamp %s (pid %d): %w", s.ID, s.PID, err))
			continue
		}
		if s.Release != version || !strings.HasPrefix(exe, releases) {
			errs = append(errs, fmt.Errorf("stamp %s (pid %d) runs %s of %s; want %s of a binary under %s", s.ID, s.PID, s.Release, exe, version, releases))
		}
	}
	for _, region := range regions {
		if perRegion[region] == 0 {
			errs = append(errs, fmt.Errorf("region %s runs no stamp process after the release", region))
		}
	}
	for _, o := range old {
		if s, ok := byPID[o.PID]; !ok || s.Running || s.Exit != "exit status 0" {
			errs = append(errs, fmt.Errorf("old stamp %s (pid %d): %+v; want it ended with exit status 0", o.ID, o.PID, s))
		}
	}
	return errors.Join(errs...)
}
