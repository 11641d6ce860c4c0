package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

var regions3 = []string{"westeurope", "northeurope", "eastus"}

type product struct {
	ID     string `json:"id"`
	Model  string `json:"model"`
	Rating struct {
		Average float64 `json:"average"`
		Count   int     `json:"count"`
	} `json:"rating"`
}

type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor"`
}

func newProduct(model string) map[string]any {
	return map[string]any{
		"brand": "Contoso", "model": model, "category": "running",
		"price": map[string]any{"amountCents": 12999, "currency": "EUR"},
		"sizes": []string{"41", "42", "42.5"}, "colour": "black", "description": "A test shoe.",
	}
}

func TestReadModelsConvergeInEveryRegionAndServeLocally(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	admin := deploytest.Token(t, d, "ops", true)
	urls := d.Regions()

	res := deploytest.Do(t, http.MethodPut, urls["westeurope"]+"/api/products/test-runner-1", admin, newProduct("Runner 1"))
	if res.Status != http.StatusCreated {
		t.Fatalf("PUT new product = %d %s", res.Status, res.Body)
	}
	res = deploytest.Do(t, http.MethodPut, urls["westeurope"]+"/api/products/test-runner-1", admin, newProduct("Runner 1 v2"))
	if res.Status != http.StatusOK && res.Status != http.StatusCreated {
		t.Fatalf("PUT replace = %d %s", res.Status, res.Body)
	}
	for _, region := range regions3 {
		deploytest.Eventually(t, 5*time.Second, func() error {
			res := deploytest.Do(t, http.MethodGet, urls[region]+"/api/products/test-runner-1", "", nil)
			if res.Status != http.StatusOK {
				return fmt.Errorf("%s: %d", region, res.Status)
			}
			var p product
			res.JSON(t, &p)
			if p.Model != "Runner 1 v2" {
				return fmt.Errorf("%s still shows %q", region, p.Model)
			}
			if got := res.Header.Get("X-Served-Region"); got != region {
				t.Fatalf("%s answered with X-Served-Region %q", region, got)
			}
			return nil
		})
	}
	// The read is answered from memory: with every store server gone, the
	// region still serves its catalog.
	for _, r := range regions3 {
		if err := d.StopServer(r); err != nil {
			t.Fatal(err)
		}
	}
	res = deploytest.Do(t, http.MethodGet, urls["eastus"]+"/api/products?category=running&limit=100", "", nil)
	var page list[product]
	res.JSON(t, &page)
	if res.Status != http.StatusOK || len(page.Items) == 0 {
		t.Fatalf("catalog with the store down = %d, %d items", res.Status, len(page.Items))
	}
}

// pauseProcessors stops the shared background processing consumer until
// the returned function resumes it, using the engine's consumer pause.
func pauseProcessors(t *testing.T, d *deploy.Deployment) func() {
	t.Helper()
	nc := deploytest.StoreConn(t, d, "westeurope")
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	if _, err := js.PauseConsumer(ctx, store.StreamWrites, store.ConsumerWrites, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("pause: %v", err)
	}
	// The engine answers the pause once the meta group has it; the
	// consumer's leader applies it a moment later. Until it reports
	// itself paused, a message could still be delivered.
	deploytest.Eventually(t, 10*time.Second, func() error {
		c, err := js.Consumer(ctx, store.StreamWrites, store.ConsumerWrites)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if !info.Paused {
			return fmt.Errorf("consumer %s not paused yet", store.ConsumerWrites)
		}
		return nil
	})
	return func() {
		if _, err := js.ResumeConsumer(ctx, store.StreamWrites, store.ConsumerWrites); err != nil {
			t.Fatalf("resume: %v", err)
		}
	}
}

func TestCommentIsAsyncAndVisibleInEveryRegion(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	urls := d.Regions()
	alice := deploytest.Token(t, d, "alice", false)
	id := shop.SeedCatalog()[0].ID

	resume := pauseProcessors(t, d)
	res := deploytest.Do(t, http.MethodPost, urls["northeurope"]+"/api/products/"+id+"/comments", alice, map[string]string{"text": "Great grip on wet roads."})
	if res.Status != http.StatusAccepted {
		t.Fatalf("POST comment = %d %s", res.Status, res.Body)
	}
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, "/api/products/"+id+"/comments/") {
		t.Fatalf("Location = %q", loc)
	}
	// Not processed yet: 404 everywhere.
	for _, region := range regions3 {
		if res := deploytest.Do(t, http.MethodGet, urls[region]+loc, "", nil); res.Status != http.StatusNotFound {
			t.Fatalf("%s: GET %s before processing = %d, want 404", region, loc, res.Status)
		}
	}
	resume()
	for _, region := range regions3 {
		deploytest.Eventually(t, 10*time.Second, func() error {
			if res := deploytest.Do(t, http.MethodGet, urls[region]+loc, "", nil); res.Status != http.StatusOK {
				return fmt.Errorf("%s: GET %s = %d", region, loc, res.Status)
			}
			return nil
		})
		res := deploytest.Do(t, http.MethodGet, urls[region]+"/api/products/"+id+"/comments", "", nil)
		var page list[shop.Comment]
		res.JSON(t, &page)
		if len(page.Items) != 1 || page.Items[0].Text != "Great grip on wet roads." || page.Items[0].User != "alice" {
			t.Fatalf("%s: comments = %+v", region, page.Items)
		}
	}

	// Ratings take the same path and show on the product everywhere.
	for i, stars := range []int{5, 4} {
		tok := deploytest.Token(t, d, fmt.Sprintf("rater%d", i), false)
		res := deploytest.Do(t, http.MethodPost, urls["eastus"]+"/api/products/"+id+"/ratings", tok, map[string]int{"stars": stars})
		if res.Status != http.StatusAccepted || res.Header.Get("Location") == "" {
			t.Fatalf("POST rating = %d %s", res.Status, res.Body)
		}
	}
	for _, region := range regions3 {
		deploytest.Eventually(t, 10*time.Second, func() error {
			var p product
			deploytest.Do(t, http.MethodGet, urls[region]+"/api/products/"+id, "", nil).JSON(t, &p)
			if p.Rating.Count != 2 || p.Rating.Average != 4.5 {
				return fmt.Errorf("%s: rating %+v", region, p.Rating)
			}
			return nil
		})
	}
}

func TestDrainAndHealthAPI(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{Probe: 200 * time.Millisecond}, regions3...)
	url := d.Regions()["eastus"]
	admin := deploytest.Token(t, d, "ops", true)

	if res := deploytest.Do(t, http.MethodGet, url+"/health/live", "", nil); res.Status != http.StatusOK {
		t.Fatalf("live = %d", res.Status)
	}
	if res := deploytest.Do(t, http.MethodGet, url+"/health/ready", "", nil); res.Status != http.StatusOK {
		t.Fatalf("ready = %d %s", res.Status, res.Body)
	}
	var rep health.Report
	deploytest.Eventually(t, 5*time.Second, func() error {
		res := deploytest.Do(t, http.MethodGet, url+"/health/stamp", "", nil)
		res.JSON(t, &rep)
		if res.Status != http.StatusOK || rep.Status != health.Healthy {
			return fmt.Errorf("stamp health %d %+v", res.Status, rep)
		}
		return nil
	})
	names := map[string]bool{}
	for _, c := range rep.Checks {
		names[c.Name] = true
	}
	for _, want := range []string{"store-read", "store-write", "stream-publish", "async-path", "read-model"} {
		if !names[want] {
			t.Errorf("check %s missing from %+v", want, rep.Checks)
		}
	}
	if rep.Region != "eastus" || rep.CheckedAt.IsZero() {
		t.Errorf("report region %q checkedAt %v", rep.Region, rep.CheckedAt)
	}

	user := deploytest.Token(t, d, "alice", false)
	if res := deploytest.Do(t, http.MethodPost, url+"/ops/drain", user, nil); res.Status != http.StatusForbidden {
		t.Fatalf("drain by a non-admin = %d", res.Status)
	}
	if res := deploytest.Do(t, http.MethodPost, url+"/ops/drain", "", nil); res.Status != http.StatusUnauthorized {
		t.Fatalf("drain without a token = %d", res.Status)
	}
	if res := deploytest.Do(t, http.MethodPost, url+"/ops/drain", admin, nil); res.Status != http.StatusOK {
		t.Fatalf("drain = %d %s", res.Status, res.Body)
	}
	drainedAt := time.Now()
	deploytest.Eventually(t, 200*time.Millisecond, func() error {
		res := deploytest.Do(t, http.MethodGet, url+"/health/stamp", "", nil)
		res.JSON(t, &rep)
		if res.Status != http.StatusServiceUnavailable || !rep.Drained {
			return fmt.Errorf("drained stamp answered %d %q, drained %v", res.Status, rep.Reason, rep.Drained)
		}
		return nil
	})
	t.Logf("drain visible after %s", time.Since(drainedAt))
	if res := deploytest.Do(t, http.MethodDelete, url+"/ops/drain", admin, nil); res.Status != http.StatusOK {
		t.Fatalf("undrain = %d", res.Status)
	}
	if res := deploytest.Do(t, http.MethodHead, url+"/health/stamp", "", nil); res.Status != http.StatusOK {
		t.Fatalf("HEAD after undrain = %d", res.Status)
	}
}

func TestBrokenStoreWriteFailsWriteCheckOnly(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{Probe: 200 * time.Millisecond}, regions3...)
	st, _ := d.Stamp("westeurope")
	nc := deploytest.StoreConn(t, d, "westeurope")
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// Break writes the way a full disk or a reached quota does: the
	// health bucket's stream refuses every new message, reads still work.
	s, err := js.Stream(t.Context(), "KV_"+store.BucketHealth)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = 1
	cfg.Discard = jetstream.DiscardNew
	cfg.DiscardNewPerSubject = false
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatalf("update stream: %v", err)
	}
	status := func(name string) health.Status {
		for _, c := range st.Prober().Report().Checks {
			if c.Name == name {
				return c.Status
			}
		}
		return health.Unknown
	}
	// Failing replicated writes are tolerated first (a leader election
	// looks the same for a while, and writes ride it out), saying so,
	// then degraded, then unhealthy once they outlast the write budget.
	deploytest.Eventually(t, 5*time.Second, func() error {
		for _, c := range st.Prober().Report().Checks {
			if c.Name == "store-write" && c.Status == health.Healthy && strings.Contains(c.Detail, "tolerated") {
				return nil
			}
		}
		return fmt.Errorf("store-write is %s, not a tolerated failure", status("store-write"))
	})
	if rep := st.Prober().Report(); rep.Status == health.Unhealthy {
		t.Fatalf("a stamp whose writes just started failing is already unhealthy: %s", rep.Reason)
	}
	deploytest.Eventually(t, 20*time.Second, func() error {
		if got := status("store-write"); got != health.Degraded {
			return fmt.Errorf("store-write is %s", got)
		}
		return nil
	})
	deploytest.Eventually(t, 25*time.Second, func() error {
		if got := status("store-write"); got != health.Unhealthy {
			return fmt.Errorf("store-write is %s", got)
		}
		return nil
	})
	if got := status("store-read"); got != health.Healthy {
		t.Fatalf("store-read is %s while only writes are broken", got)
	}
	if rep := st.Prober().Report(); rep.Status != health.Unhealthy {
		t.Fatalf("stamp with broken writes is %s", rep.Status)
	}
}

func TestRestartKeepsDataAndSeedsOnce(t *testing.T) {
	dir := t.TempDir()
	d, err := deploytest.Start(t, deploytest.Options{DataDir: dir}, regions3...)
	if err != nil {
		t.Fatal(err)
	}
	urls := d.Regions()
	alice := deploytest.Token(t, d, "alice", false)
	seeded := shop.SeedCatalog()
	res := deploytest.Do(t, http.MethodPost, urls["westeurope"]+"/api/products/"+seeded[1].ID+"/comments", alice, map[string]string{"text": "Survives restarts."})
	if res.Status != http.StatusAccepted {
		t.Fatalf("POST comment = %d", res.Status)
	}
	loc := res.Header.Get("Location")
	deploytest.Eventually(t, 10*time.Second, func() error {
		if res := deploytest.Do(t, http.MethodGet, urls["westeurope"]+loc, "", nil); res.Status != http.StatusOK {
			return fmt.Errorf("comment not processed: %d", res.Status)
		}
		return nil
	})
	// An operator removes a seeded product; a restart must not bring it back.
	nc := deploytest.StoreConn(t, d, "westeurope")
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(t.Context(), store.BucketCatalog)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), seeded[0].ID); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// Closing again answers at once, with what the first Close did.
	// (Mutation tried: Close run every time: the second waits for
	// instances that reported their end already, for ever.)
	again := make(chan error, 1)
	go func() { again <- d.Close() }()
	select {
	case err := <-again:
		if err != nil {
			t.Fatalf("close again: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second Close has not returned after 10 s")
	}

	d2 := deploytest.MustStart(t, deploytest.Options{DataDir: dir}, regions3...)
	urls = d2.Regions()
	if d2.Issuer().VerifierConfig().Issuer == "" {
		t.Fatal("no issuer after restart")
	}
	// Tokens of the first run still verify: the issuer key persisted.
	if res := deploytest.Do(t, http.MethodPost, urls["eastus"]+"/api/products/"+seeded[1].ID+"/ratings", alice, map[string]int{"stars": 3}); res.Status != http.StatusAccepted {
		t.Fatalf("old token after restart: %d %s", res.Status, res.Body)
	}
	for _, region := range regions3 {
		var page list[product]
		deploytest.Do(t, http.MethodGet, urls[region]+"/api/products?limit=100", "", nil).JSON(t, &page)
		if len(page.Items) != len(seeded)-1 {
			t.Fatalf("%s: %d products after restart, want %d (seeded once, one deleted)", region, len(page.Items), len(seeded)-1)
		}
		if res := deploytest.Do(t, http.MethodGet, urls[region]+"/api/products/"+seeded[0].ID, "", nil); res.Status != http.StatusNotFound {
			t.Fatalf("%s: deleted seed product came back: %d", region, res.Status)
		}
		if res := deploytest.Do(t, http.MethodGet, urls[region]+loc, "", nil); res.Status != http.StatusOK {
			t.Fatalf("%s: comment lost across restart: %d", region, res.Status)
		}
	}
}

func TestRegionServerLossLosesNoAcknowledgedComment(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	urls := d.Regions()
	id := shop.SeedCatalog()[2].ID

	if err := d.StopServer("westeurope"); err != nil {
		t.Fatal(err)
	}
	var accepted []string
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; len(accepted) < 20 && time.Now().Before(deadline); i++ {
		region := []string{"northeurope", "eastus"}[i%2]
		shopper := deploytest.Token(t, d, fmt.Sprint("shopper-", i), false) // one user would meet its comment limit
		res := deploytest.Do(t, http.MethodPost, urls[region]+"/api/products/"+id+"/comments", shopper, map[string]string{"text": fmt.Sprintf("comment %d during the outage", i)})
		switch res.Status {
		case http.StatusAccepted:
			accepted = append(accepted, res.Header.Get("Location"))
		case http.StatusServiceUnavailable:
			// The write budget ran out during the election: not
			// acknowledged, so not owed.
		default:
			t.Fatalf("POST in %s during the outage = %d %s", region, res.Status, res.Body)
		}
		if res := deploytest.Do(t, http.MethodGet, urls[region]+"/api/products/"+id, "", nil); res.Status != http.StatusOK {
			t.Fatalf("read in %s during the outage = %d", region, res.Status)
		}
	}
	if len(accepted) < 20 {
		t.Fatalf("only %d comments accepted in 30 s with two of three regions up", len(accepted))
	}
	if err := d.StartServer("westeurope"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, region := range regions3 {
		for _, loc := range accepted {
			deploytest.Eventually(t, time.Until(deadlineOf(ctx)), func() error {
				if res := deploytest.Do(t, http.MethodGet, urls[region]+loc, "", nil); res.Status != http.StatusOK {
					return fmt.Errorf("%s: acknowledged comment %s missing (%d)", region, loc, res.Status)
				}
				return nil
			})
		}
	}
}

func deadlineOf(ctx context.Context) time.Time {
	dl, _ := ctx.Deadline()
	return dl
}

func TestStampsAnnounceThemselvesInTheRegistry(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	nc := deploytest.StoreConn(t, d, "northeurope")
	defer nc.Close()
	st, err := store.Open(t.Context(), store.Config{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]store.StampEntry{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go st.WatchRegistry(ctx, func(id string, e *store.StampEntry) {
		mu.Lock()
		defer mu.Unlock()
		if e == nil {
			delete(seen, id)
			return
		}
		seen[id] = *e
	}, nil)
	byRegion := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		n := map[string]int{}
		for _, e := range seen {
			n[e.Region]++
		}
		return n
	}
	deploytest.Eventually(t, 5*time.Second, func() error {
		if n := byRegion(); n["westeurope"] != 1 || n["northeurope"] != 1 || n["eastus"] != 1 {
			return fmt.Errorf("registry by region = %v", n)
		}
		return nil
	})
	mu.Lock()
	for _, e := range seen {
		if e.URL != d.Regions()[e.Region] {
			t.Errorf("%s announced %s, serves %s", e.ID, e.URL, d.Regions()[e.Region])
		}
	}
	mu.Unlock()
	if _, err := d.AddInstance(ctx, "eastus"); err != nil {
		t.Fatal(err)
	}
	deploytest.Eventually(t, 5*time.Second, func() error {
		if n := byRegion(); n["eastus"] != 2 {
			return fmt.Errorf("registry by region = %v after adding an eastus instance", n)
		}
		return nil
	})
}
