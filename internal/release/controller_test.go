package release_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/poll"
	. "github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// seenDeployment stands for the operations plane's reading of a
// deployment (its reading of real stamps is proven in deploy and verify):
// the instances and flows a test sets.
type seenDeployment struct {
	mu    sync.Mutex
	insts []Instance
	flows map[string]map[string]FlowReading // by version, then flow
	reads atomic.Int64                      // of Instances: one per look of the controller, and per action
}

func (s *seenDeployment) Instances() []Instance {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Instance(nil), s.insts...)
}

func (s *seenDeployment) Flows(region, version string, since time.Time) map[string]FlowReading {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.flows[version])
}

func (s *seenDeployment) set(insts []Instance, flows map[string]map[string]FlowReading) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insts, s.flows = insts, flows
}

// cutOff is a controller whose records are on node 0 of a three-region
// cluster routed over simulated links, with a release of v2 over v1 in
// westeurope shifting its first step (50 %), held there by its gate until
// the test's readings fail or pass it. cut isolates node 0: the releases
// bucket then has no quorum there, and every write retries for the
// store's write budget (3 s here) before it fails. heal joins it again.
func cutOff(t *testing.T, gate Gate) (c *Controller, seen *seenDeployment, failed *atomic.Int64, cut, heal func()) {
	t.Helper()
	net := netsim.New(netsim.Config{Off: true})
	t.Cleanup(func() { _ = net.Close() })
	cluster := storetest.NewClusterWith(t, storetest.Options{Net: net}, "a", "b", "c")
	_, nc := cluster.MustOpen(t, 0)
	records := store.NewReleases(store.Config{Conn: nc, WriteBudget: 3 * time.Second})
	links := func(do func(*netsim.Link)) {
		for _, peer := range []string{"b", "c"} {
			l, ok := net.Link("a", peer)
			if !ok {
				t.Fatalf("no link a-%s", peer)
			}
			do(l)
		}
	}
	seen, failed = &seenDeployment{}, &atomic.Int64{}
	seen.set([]Instance{{ID: "w1", Region: "westeurope", Release: "v1", Health: health.Healthy}}, nil)
	c, err := NewController(Config{Records: records, Observer: seen, Regions: func() []string { return []string{"westeurope"} },
		Steps: []int{50, 100}, Gate: gate, Tick: 50 * time.Millisecond, Logger: slog.New(&failedLooks{n: failed})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(t.Context(), Request{Version: "v2"}); err != nil {
		t.Fatal(err)
	}
	seen.set([]Instance{
		{ID: "w1", Region: "westeurope", Release: "v1", Health: health.Healthy},
		{ID: "w2", Region: "westeurope", Release: "v2", Health: health.Healthy},
	}, nil)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	poll.Until(t, 30*time.Second, 20*time.Millisecond, func() error {
		r := current(t, c)
		if r.Phase != PhaseShifting || len(r.Steps) != 1 {
			return fmt.Errorf("phase %s, %d steps: %s", r.Phase, len(r.Steps), r.Reason)
		}
		return nil
	})
	return c, seen, failed, func() { links((*netsim.Link).Cut) }, func() { links((*netsim.Link).Heal) }
}

// failedLooks counts the controller's looks that failed (its warning
// "release controller", with the error).
type failedLooks struct{ n *atomic.Int64 }

func (f *failedLooks) Enabled(context.Context, slog.Level) bool { return true }
func (f *failedLooks) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "release controller" {
		f.n.Add(1)
	}
	return nil
}
func (f *failedLooks) WithAttrs([]slog.Attr) slog.Handler { return f }
func (f *failedLooks) WithGroup(string) slog.Handler      { return f }

func current(t *testing.T, c *Controller) *Record {
	t.Helper()
	r, err := c.Current(t.Context())
	if err != nil || r == nil {
		t.Fatalf("current release: %v, %v", r, err)
	}
	return r
}

// A step whose gate fails while the store cannot write the rollback stays
// failing, not passed: once the store writes again, the release rolls
// back from that step, and no other step is started. (Mutation tried: the
// step ended before its rollback was written: the next look took it for
// passed and started the 100 % step: "2 steps, the last 100 % (failed:
// checkout errors ...); want only the first, failed".)
func TestAFailedStepWhoseRollbackWasNotWrittenIsNotTakenForPassed(t *testing.T) {
	c, seen, failed, cut, heal := cutOff(t, Gate{MinHold: 100 * time.Millisecond, MinRequests: 1})
	cut()
	insts := seen.Instances()
	seen.set(insts, map[string]map[string]FlowReading{
		"v1": {"checkout": {Requests: 100}},
		"v2": {"checkout": {Requests: 100, Errors: 50}},
	})
	poll.Until(t, 30*time.Second, 20*time.Millisecond, func() error {
		if st := current(t, c).Steps[0]; st.Verdict != Fail.String() {
			return fmt.Errorf("first step %s: %s", st.Verdict, st.Reason)
		}
		return nil
	})
	// Two more looks fail to write meanwhile: the rollback again, or
	// (broken) the next step.
	then := failed.Load()
	poll.Until(t, time.Minute, 20*time.Millisecond, func() error {
		if n := failed.Load() - then; n < 2 {
			return fmt.Errorf("%d looks failed since the verdict", n)
		}
		return nil
	})
	heal()
	poll.Until(t, time.Minute, 50*time.Millisecond, func() error {
		if r := current(t, c); r.Phase != PhaseRollingBack && r.Phase != PhaseRolledBack {
			return fmt.Errorf("phase %s: %s", r.Phase, r.Reason)
		}
		return nil
	})
	r := current(t, c)
	if len(r.Steps) != 1 || r.Steps[0].Verdict != Fail.String() {
		last := r.Steps[len(r.Steps)-1]
		t.Fatalf("%d steps, the last %d %% (%s: %s); want only the first, failed", len(r.Steps), last.Percent, last.Verdict, last.Reason)
	}
	if !strings.HasPrefix(r.Reason, "gate failed at westeurope 50 %") {
		t.Fatalf("rolled back: %q; want the gate's failure at 50 %%", r.Reason)
	}
}

// A region counts as lost, and pauses the release under way, only once
// the operations plane has failed to read every stamp of it for a while
// (silentGrace, 5 s), not when a stamp's report is stale while it answers
// its reads, nor after a read or two unanswered: on a starved machine
// both happen to a region that runs, and a release paused for a lost
// region waits for an operator. A resume waits for a fresh report.
// (Mutation tried: the old rule, a region lost when no stamp has a fresh
// report: "a stale report, its reads answered" paused the release.)
func TestARegionIsLostOnlyOnceItsStampsHaveBeenSilentAWhile(t *testing.T) {
	c, seen, _, _, _ := cutOff(t, Gate{MinHold: time.Hour, MinRequests: 1 << 20})
	stamps := func(h health.Status, silentFor time.Duration) []Instance {
		insts := []Instance{
			{ID: "w1", Region: "westeurope", Release: "v1", Health: h},
			{ID: "w2", Region: "westeurope", Release: "v2", Health: h},
		}
		if silentFor > 0 {
			for i := range insts {
				insts[i].Silent, insts[i].SilentSince = true, time.Now().Add(-silentFor)
			}
		}
		return insts
	}
	looks := func(n int64) {
		t.Helper()
		from := seen.reads.Load()
		poll.Until(t, 30*time.Second, 20*time.Millisecond, func() error {
			if got := seen.reads.Load() - from; got < n {
				return fmt.Errorf("%d looks of %d", got, n)
			}
			return nil
		})
	}
	for _, tc := range []struct {
		name      string
		silentFor time.Duration
	}{
		{"a stale report, its reads answered", 0},
		{"a stale report, its reads unanswered for a second", time.Second},
	} {
		seen.set(stamps(health.Unknown, tc.silentFor), nil)
		looks(5)
		if r := current(t, c); r.Paused {
			t.Fatalf("%s: paused (%s); want the release going on", tc.name, r.Reason)
		}
	}
	seen.set(stamps(health.Unknown, time.Minute), nil)
	poll.Until(t, 30*time.Second, 20*time.Millisecond, func() error {
		if r := current(t, c); !r.Paused || !strings.HasPrefix(r.Reason, "region lost: no stamp of westeurope") {
			return fmt.Errorf("paused %v (%s); want paused, westeurope lost", r.Paused, r.Reason)
		}
		return nil
	})
	// Answering its reads again is not back yet: a resume waits for a
	// fresh report.
	seen.set(stamps(health.Unknown, 0), nil)
	if _, err := c.Do(t.Context(), ActionResume, "test"); err == nil || !strings.Contains(err.Error(), "bring the region back first") {
		t.Fatalf("resume with no fresh report: %v; want refused", err)
	}
	seen.set(stamps(health.Healthy, 0), nil)
	if r, err := c.Do(t.Context(), ActionResume, "test"); err != nil || r.Paused {
		t.Fatalf("resume with the region back: %+v, %v; want resumed", r, err)
	}
}

// A release paused because a region reads unhealthy on both versions (an
// outage, not the release) resumes by itself once both read routable
// again, its step's hold started over; a pause of an operator's does not.
// (Mutation tried: outageOver never ending a pause: "still paused (region
// westeurope unhealthy on both versions ...)".)
func TestAnOutagePauseEndsOnceTheRegionIsHealthyAgain(t *testing.T) {
	c, seen, _, _, _ := cutOff(t, Gate{MinHold: time.Hour, MinRequests: 1 << 20})
	both := func(h health.Status) []Instance {
		return []Instance{
			{ID: "w1", Region: "westeurope", Release: "v1", Health: h},
			{ID: "w2", Region: "westeurope", Release: "v2", Health: h},
		}
	}
	held := current(t, c).Steps[0].StartedAt
	seen.set(both(health.Unhealthy), nil)
	poll.Until(t, 30*time.Second, 20*time.Millisecond, func() error {
		if r := current(t, c); !r.Paused || r.Outage != "westeurope" || !strings.Contains(r.Reason, "unhealthy on both versions") {
			return fmt.Errorf("paused %v, outage %q (%s); want paused for westeurope's outage", r.Paused, r.Outage, r.Reason)
		}
		return nil
	})
	seen.set(both(health.Healthy), nil)
	poll.Until(t, 30*time.Second, 20*time.Millisecond, func() error {
		if r := current(t, c); r.Paused || r.Outage != "" {
			return fmt.Errorf("still paused %v, outage %q (%s)", r.Paused, r.Outage, r.Reason)
		}
		return nil
	})
	if r := current(t, c); r.Phase != PhaseShifting || !r.Steps[0].StartedAt.After(held) {
		t.Fatalf("phase %s, the step held since %v (before the outage %v); want shifting, held again since the resume", r.Phase, r.Steps[0].StartedAt, held)
	}

	if _, err := c.Do(t.Context(), ActionPause, "test"); err != nil {
		t.Fatal(err)
	}
	from := seen.reads.Load()
	poll.Until(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := seen.reads.Load() - from; n < 5 {
			return fmt.Errorf("%d looks", n)
		}
		return nil
	})
	if r := current(t, c); !r.Paused || r.Reason != "paused by test" {
		t.Fatalf("an operator's pause: paused %v (%s); want it held", r.Paused, r.Reason)
	}
}

// Promoting a paused release ends the pause: the operator decided, and the
// next step starts and is judged at once. (Mutation tried: the pause kept
// through the promotion: "after promote: paused true (paused by test)".)
func TestPromotingAPausedReleaseEndsThePause(t *testing.T) {
	c, _, _, _, _ := cutOff(t, Gate{MinHold: time.Hour, MinRequests: 1 << 20})
	if r, err := c.Do(t.Context(), ActionPause, "test"); err != nil || !r.Paused {
		t.Fatalf("pause = paused %v, %v", r != nil && r.Paused, err)
	}
	r, err := c.Do(t.Context(), ActionPromote, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if r.Paused || r.Outage != "" || r.Reason != "" {
		t.Fatalf("after promote: paused %v (%s), outage %q; want the pause over", r.Paused, r.Reason, r.Outage)
	}
	if r.Stage != 1 || len(r.Steps) != 2 || r.Steps[0].Verdict != "promoted" || r.Steps[0].Reason != "promoted by alice" ||
		r.Steps[1].StartedAt.IsZero() || !r.Steps[1].EndedAt.IsZero() {
		t.Fatalf("after promote: stage %d, steps %+v; want the first promoted and the second under way", r.Stage, r.Steps)
	}
	if got := current(t, c); got.Paused || got.Stage != 1 {
		t.Fatalf("the stored release: paused %v, stage %d; want the promotion kept", got.Paused, got.Stage)
	}
}
