package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/shop"
)

// TestTheAutoscalerAddsInstancesOnLoadAndDrainsThemWithoutAFailedRequest
// gives every instance room for one request at a time with 50 ms of work,
// sends eastus's clients four requests at once (twice what its one
// instance holds), and waits for the autoscaler to add instances that
// take traffic; then the load falls to one request every 150 ms and the
// autoscaler drains them, one per window, back to min. Not one request
// fails, before, during or after (429s included).
// Mutation: with Launcher.Stop replaced by a crash (in.stamp.Crash()
// instead of the drain), requests in flight on the removed instance fail
// and the test goes red.
func TestTheAutoscalerAddsInstancesOnLoadAndDrainsThemWithoutAFailedRequest(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{ScaleMax: 4,
		Scaling: autoscale.Policy{Target: 0.6, Tolerance: 0.1, ScaleOutAfter: time.Second, ScaleInAfter: 3 * time.Second}},
		regions3...)
	admin := deploytest.Token(t, d, "ops", true)
	client := &autoscale.Client{BaseURL: d.OpsURL(), Token: admin, HTTP: deploytest.PlainClient(d)}
	one := 1
	if _, err := client.Apply(t.Context(), autoscale.Update{
		Regions:  map[string]autoscale.RegionUpdate{"eastus": {Min: &one}, "westeurope": {Min: &one}, "northeurope": {Min: &one}},
		Instance: &autoscale.InstanceSettings{Capacity: 1, WorkMs: 50},
	}); err != nil {
		t.Fatal(err)
	}

	var failed, sent atomic.Int64
	var mu sync.Mutex
	var failures []string
	// load runs workers that each send a request as soon as the last is
	// answered, or, with a pace, at most one per pace.
	load := func(ctx context.Context, workers int, pace time.Duration) *sync.WaitGroup {
		var wg sync.WaitGroup
		p := shop.SeedCatalog()[0]
		for range workers {
			wg.Go(func() {
				var tick <-chan time.Time
				if pace > 0 {
					t := time.NewTicker(pace)
					defer t.Stop()
					tick = t.C
				}
				for ctx.Err() == nil {
					if tick != nil {
						select {
						case <-ctx.Done():
							return
						case <-tick:
						}
					}
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.EdgeURL()+"/api/products/"+p.ID, nil)
					if err != nil {
						return
					}
					req.Header.Set(edge.HeaderClientRegion, "eastus")
					res, err := deploytest.Exchange(req)
					if ctx.Err() != nil {
						return
					}
					sent.Add(1)
					if err != nil || res.Status != http.StatusOK {
						failed.Add(1)
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%d %v %s", res.Status, err, res.Body))
						mu.Unlock()
					}
				}
			})
		}
		return &wg
	}
	status := func() autoscale.RegionStatus {
		st, err := client.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range st.Regions {
			if r.Region == "eastus" {
				return r
			}
		}
		t.Fatalf("no eastus in %+v", st.Regions)
		return autoscale.RegionStatus{}
	}

	heavy, stopHeavy := context.WithCancel(t.Context())
	wg := load(heavy, 4, 0)
	deploytest.EventuallyEvery(t, 45*time.Second, 250*time.Millisecond, func() error {
		st, err := client.Status(t.Context())
		if err != nil {
			return err
		}
		for _, e := range st.Events {
			if e.Region == "eastus" && e.Action == "serving" && e.ToTrafficMs > 0 {
				t.Logf("a new eastus instance took traffic %d ms after the target was exceeded", e.ToTrafficMs)
				return nil
			}
		}
		return fmt.Errorf("no new eastus instance serves yet: %+v", status())
	})
	stopHeavy()
	wg.Wait()

	light, stopLight := context.WithCancel(t.Context())
	wg = load(light, 1, 150*time.Millisecond)
	deploytest.EventuallyEvery(t, 60*time.Second, 250*time.Millisecond, func() error {
		if r := status(); r.Inputs.Instances != 1 || r.Want != 1 {
			return fmt.Errorf("eastus runs %d instances, want 1 (%s)", r.Inputs.Instances, r.Reason)
		}
		return nil
	})
	stopLight()
	wg.Wait()

	st, err := client.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The heavy load may go on adding instances after the first serves:
	// every instance started is counted, and each must have been removed
	// by its own scale-in, drained and stopped.
	started, ins, stopped := 0, 0, 0
	for _, e := range st.Events {
		if e.Region != "eastus" {
			continue
		}
		switch e.Action {
		case "started":
			started++
		case "scale-in":
			ins++
		case "stopped":
			stopped++
		}
	}
	if started < 1 || ins != started || stopped != ins {
		t.Fatalf("%d instances started, %d scale-ins, %d drained and stopped: want as many of each, at least one", started, ins, stopped)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed: %v", n, sent.Load(), failures[:min(len(failures), 5)])
	}
	t.Logf("%d requests, none failed; eastus added %d instances and removed them", sent.Load(), started)
}
