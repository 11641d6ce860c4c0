package fleet_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/fleet"
)

// The autoscaler of a deployment of processes: the operations plane (its
// own process) decides, and the supervisor starts and drains stamp
// processes through the store's servers. A raised min starts a stamp
// process in westeurope that takes the region's traffic; a lowered min
// drains it (exit status 0) after the stabilisation window; reads from
// westeurope never fail meanwhile. The raise comes while the secret store
// is down: the new process starts from its region's last-known-good copy,
// as the old system's scale-out could not. Instance settings set with the raise
// reach every stamp process, the one started after them included, and a
// reset puts them back on their flags' capacity. (Mutations tried: the
// supervisor answering a drain without stopping the process; the test
// went red on the process still running. The stamp not following the
// settings: the region's capacity stayed at 2 × 256. A last-known-good
// file of each instance's own: the new process never started.)
func TestAutoscalerStartsAndDrainsStampProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet of processes")
	}
	const region = "westeurope"
	f := startFleet(t, region)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	scaling := &autoscale.Client{BaseURL: f.OpsURL(), Token: token(t, f, "ops", true), HTTP: client}
	before := runningIn(f, region)
	if len(before) != 1 {
		t.Fatalf("%s runs %v before, want one stamp process", region, before)
	}

	// Reads from westeurope until the end, every answer checked.
	var reads, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			reads.Add(1)
			if a := send(f, region, http.MethodGet, "/api/products?limit=2", "", "", nil); a.err != nil || a.status != http.StatusOK {
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, a.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	defer func() { close(stop); wg.Wait() }()

	// The secret store is down while the autoscaler adds the instance: a
	// stamp process it starts has only its region's last-known-good copy.
	f.SetSecretStore(false)
	two, five := 2, 5.0
	if _, err := scaling.Apply(ctx, autoscale.Update{ScaleInAfterSeconds: &five, Regions: map[string]autoscale.RegionUpdate{region: {Min: &two}},
		Instance: &autoscale.InstanceSettings{Capacity: 3, WorkMs: 1}}); err != nil {
		t.Fatal(err)
	}
	var added string
	eventually(t, 2*time.Minute, func() error {
		now := runningIn(f, region)
		if len(now) != 2 {
			return fmt.Errorf("%s runs %v", region, now)
		}
		for _, id := range now {
			if !slices.Contains(before, id) {
				added = id
			}
		}
		st, err := scaling.Status(ctx)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(st.Events, func(e autoscale.Event) bool { return e.Action == "serving" && e.Instance == added }) {
			return fmt.Errorf("the new instance %s has taken no request yet (events %v)", added, actions(st.Events))
		}
		return nil
	})
	f.SetSecretStore(true)
	t.Logf("raised min, the secret store down: %s started as a process and took traffic", added)
	regionCapacity := func(reporting, capacity int) {
		t.Helper()
		eventually(t, time.Minute, func() error {
			st, err := scaling.Status(ctx)
			if err != nil {
				return err
			}
			i := slices.IndexFunc(st.Regions, func(r autoscale.RegionStatus) bool { return r.Region == region })
			if i < 0 {
				return fmt.Errorf("no status of %s", region)
			}
			if in := st.Regions[i].Inputs; in.Reporting != reporting || in.Capacity != capacity {
				return fmt.Errorf("%s: %d instances reporting a capacity of %d in all, want %d and %d", region, in.Reporting, in.Capacity, reporting, capacity)
			}
			return nil
		})
	}
	regionCapacity(2, 2*3)

	one := 1
	if _, err := scaling.Apply(ctx, autoscale.Update{Regions: map[string]autoscale.RegionUpdate{region: {Min: &one}}, ResetInstance: true}); err != nil {
		t.Fatal(err)
	}
	var drained string
	eventually(t, 2*time.Minute, func() error {
		st, err := scaling.Status(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(st.Events, func(e autoscale.Event) bool { return e.Action == "stopped" })
		if i < 0 {
			return fmt.Errorf("no instance stopped yet (events %v)", actions(st.Events))
		}
		drained = st.Events[i].Instance
		for _, s := range f.Stamps() {
			if s.ID == drained && s.Running {
				return fmt.Errorf("%s is stopped by the scaler's account and still runs", drained)
			}
		}
		if now := runningIn(f, region); len(now) != 1 || slices.Contains(now, drained) {
			return fmt.Errorf("%s runs %v after the drain of %s", region, now, drained)
		}
		return nil
	})
	for _, s := range f.Stamps() {
		if s.ID == drained && s.Exit != "exit status 0" {
			t.Errorf("the drained stamp %s ended with %q, want exit status 0", drained, s.Exit)
		}
	}
	// Some reads after the drain, then none may have failed.
	n := reads.Load()
	eventually(t, 30*time.Second, func() error {
		if reads.Load() < n+50 {
			return fmt.Errorf("%d reads since the drain", reads.Load()-n)
		}
		return nil
	})
	if failed.Load() > 0 {
		t.Fatalf("%d of %d reads from %s failed, the first: %v", failed.Load(), reads.Load(), region, firstFailure.Load())
	}
	regionCapacity(1, 256)
	t.Logf("lowered min: %s drained and exited 0; %d reads from %s, none failed", drained, reads.Load(), region)
}

// runningIn lists the registry ids of the stamp processes running in
// region.
func runningIn(f *fleet.Fleet, region string) []string {
	var out []string
	for _, s := range f.Stamps() {
		if s.Region == region && s.Running && s.ID != "" {
			out = append(out, s.ID)
		}
	}
	slices.Sort(out)
	return out
}

func actions(events []autoscale.Event) []string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		out = append(out, e.Action+" "+e.Instance)
	}
	return out
}
