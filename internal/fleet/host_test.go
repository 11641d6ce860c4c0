package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/artifact/artifacttest"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/host"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// A region carried by `contoso host`: a fleet of one region hands its
// stamps over to a host (run in process; its stamps are processes), an
// image is released under a little traffic, and the host's stamp is
// replaced by one of the image's binary while no request fails; the host
// restarts that stamp when it dies, and a host started again runs what
// the release left.
func TestHostCarriesARegionThroughARelease(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet and a host of processes")
	}
	const region = "westeurope"
	f := startFleet(t, region)
	flags, env, err := f.StampFlags(region)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(deploy.StoreUsersDir(f.DataDir()), string(store.RoleAgent)+".nk"))
	if err != nil {
		t.Fatal(err)
	}
	hostDir := t.TempDir()
	cfg := host.Config{
		Region: region, Instances: 1, DataDir: hostDir, Contoso: filepath.Join(bins, "contoso"), Listen: "127.0.0.1:0",
		StampFlags: flags, Env: env, NATSURL: f.ClientURLs(region), NATS: store.Credentials{Seed: seed},
		Registry: []artifact.Option{artifact.WithInsecure()}, Backoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	h := startHost(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := f.HandOver(ctx, region); err != nil {
		t.Fatal(err)
	}
	old := running(h)
	if len(old) != 1 {
		t.Fatalf("the host runs %d stamps, want 1: %+v", len(old), h.Stamps())
	}
	eventually(t, time.Minute, func() error { // the region's only stamp is the host's
		entries := registryEntries(t, f)
		if _, ok := entries[old[0].ID]; !ok || len(entries) != 1 {
			return fmt.Errorf("registry %v, want only the host's stamp %s", entries, old[0].ID)
		}
		a := send(f, region, http.MethodGet, "/api/products", "", "", nil)
		if a.err != nil || a.status != http.StatusOK {
			return fmt.Errorf("GET products: %s", a)
		}
		return nil
	})

	version := "v-host-" + strconv.FormatInt(time.Now().Unix(), 10)
	reg := artifacttest.NewRegistry(t)
	img, err := artifact.Build(artifact.BuildConfig{Binary: filepath.Join(bins, "contoso"), Version: version})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := artifact.Push(ctx, img, reg+"/contoso/shoes:"+version, artifact.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}

	// A little traffic through the region's POP: reads, and orders each
	// sent once with its own Idempotency-Key.
	p := shop.SeedCatalog()[3]
	sku := shop.SKU(p.ID, p.Sizes[0])
	admin := token(t, f, "ops", true)
	if a := send(f, "", http.MethodPut, "/api/inventory/"+sku, admin, "", map[string]int{"stock": 1000}); a.err != nil || a.status != http.StatusOK {
		t.Fatalf("set stock: %s", a)
	}
	var (
		mu       sync.Mutex
		failures []string
		orders   []placed
		served   = map[string]int{} // X-Served-Release → answers
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if i%4 == 3 {
				user := fmt.Sprintf("host-buyer-%d", i)
				// Not token(t, …): a goroutine reports, it does not stop the test.
				tok, err := f.Issuer().Mint(user, false, time.Hour, time.Now())
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("token for %s: %v", user, err))
					mu.Unlock()
					continue
				}
				a, o := placeOrder(f, region, tok, "order-"+user, sku)
				mu.Lock()
				if a.err != nil || (a.status != http.StatusAccepted && a.status != http.StatusOK) || o.ID == "" {
					failures = append(failures, fmt.Sprintf("POST order: %s", a))
				} else {
					orders = append(orders, placed{o.ID, tok})
				}
				mu.Unlock()
				continue
			}
			a := send(f, region, http.MethodGet, "/api/products/"+p.ID, "", "", nil)
			mu.Lock()
			if a.err != nil || a.status != http.StatusOK {
				failures = append(failures, fmt.Sprintf("GET product: %s", a))
			} else {
				served[a.header.Get("X-Served-Release")]++
			}
			mu.Unlock()
		}
	})
	stopTraffic := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopTraffic()

	body, _ := json.Marshal(map[string]any{"image": ref, "steps": []int{100},
		"gate": map[string]any{"minHold": time.Second, "minRequests": 5}, "by": "host test"})
	resp, err := client.Post(f.OpsURL()+"/ops/releases", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var rec release.Record
	_ = json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || rec.Version != version {
		t.Fatalf("POST /ops/releases = %d, version %q; want 201, %s", resp.StatusCode, rec.Version, version)
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
	// A few more requests once the old stamp is gone.
	eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if served[version] < 10 {
			return fmt.Errorf("%d answers of %s", served[version], version)
		}
		return nil
	})
	stopTraffic()
	if end.Phase != release.PhaseDone {
		t.Fatalf("release ended %s: %s; steps %+v", end.Phase, end.Reason, end.Steps)
	}
	mu.Lock()
	t.Logf("answers by release: %v; %d orders", served, len(orders))
	if len(failures) > 0 {
		t.Errorf("%d requests failed during the release, e.g.:\n%s", len(failures), strings.Join(failures[:min(len(failures), 5)], "\n"))
	}
	mu.Unlock()
	for id, o := range waitFinal(t, f, orders, 2*time.Minute) {
		if o.Status != shop.OrderConfirmed {
			t.Errorf("order %s ended %s %q", id, o.Status, o.Reason)
		}
	}

	// The host runs one stamp, of the image's binary; the old one drained
	// and exited with status 0.
	releases := filepath.Join(hostDir, "releases") + string(filepath.Separator)
	now := running(h)
	if len(now) != 1 {
		t.Fatalf("the host runs %d stamps after the release, want 1: %+v", len(now), h.Stamps())
	}
	checkRuns(t, now[0], version, releases)
	drained := false
	for _, s := range h.Stamps() {
		drained = drained || (s.PID == old[0].PID && !s.Running && s.Retired && s.Exit == "exit status 0")
	}
	if !drained {
		t.Errorf("old stamp %s (pid %d) is not drained with exit status 0: %+v", old[0].Name, old[0].PID, h.Stamps())
	}
	entries := registryEntries(t, f)
	if e, ok := entries[now[0].ID]; !ok || len(entries) != 1 || e.Release != version {
		t.Errorf("registry %+v, want only %s announcing %s", entries, now[0].ID, version)
	}

	// A stamp that dies is restarted, of the version the release left.
	if err := syscall.Kill(now[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var again host.Stamp
	eventually(t, time.Minute, func() error {
		back := running(h)
		if len(back) != 1 || back[0].PID == now[0].PID || back[0].Name != now[0].Name || back[0].Restarts == 0 {
			return fmt.Errorf("stamps %+v, want %s restarted", h.Stamps(), now[0].Name)
		}
		again = back[0]
		return nil
	})
	checkRuns(t, again, version, releases)

	// A host started again (with the flags it started with) runs what the
	// release left, from the image, not the binary it was given.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if alive(again.PID) {
		t.Errorf("stamp %d runs after the host closed", again.PID)
	}
	h2 := startHost(t, cfg)
	after := running(h2)
	if len(after) != 1 {
		t.Fatalf("the host started again runs %d stamps, want 1: %+v", len(after), h2.Stamps())
	}
	checkRuns(t, after[0], version, releases)
	eventually(t, 30*time.Second, func() error {
		a := send(f, region, http.MethodGet, "/api/products/"+p.ID, "", "", nil)
		if a.err != nil || a.status != http.StatusOK || a.header.Get("X-Served-Release") != version {
			return fmt.Errorf("GET product: %s (release %q)", a, a.header.Get("X-Served-Release"))
		}
		return nil
	})
}

// startHost starts a host for a test and closes it when the test ends.
func startHost(t *testing.T, cfg host.Config) *host.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h, err := host.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Close()
		if t.Failed() {
			dumpLogs(t, cfg.DataDir)
		}
	})
	return h
}

// running lists the host's stamps that run and are not retired.
func running(h *host.Host) []host.Stamp {
	var out []host.Stamp
	for _, s := range h.Stamps() {
		if s.Running && !s.Retired {
			out = append(out, s)
		}
	}
	return out
}

// checkRuns checks that s runs version from a binary under dir, as its
// process's executable says.
func checkRuns(t *testing.T, s host.Stamp, version, dir string) {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.PID))
	if err != nil {
		t.Errorf("stamp %s (pid %d): %v", s.Name, s.PID, err)
		return
	}
	if s.Release != version || !strings.HasPrefix(exe, dir) || !strings.HasPrefix(s.Binary, dir) {
		t.Errorf("stamp %s (pid %d) runs %s of %s (%s); want %s of a binary under %s", s.Name, s.PID, s.Release, exe, s.Binary, version, dir)
	}
}
