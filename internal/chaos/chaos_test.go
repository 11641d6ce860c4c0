package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"go/build"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/chaos/chaostest"
	"github.com/contoso/shoes/internal/shop"
)

var regions = []string{"westeurope", "eastus", "southeastasia"}

// newChaos returns a Chaos over target that is closed when the test ends.
func newChaos(t *testing.T, target chaos.Target) *chaos.Chaos {
	t.Helper()
	c, err := chaos.New(chaos.Config{Target: target, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func mustInject(t *testing.T, c *chaos.Chaos, s chaos.Spec) chaos.Active {
	t.Helper()
	a, err := c.Inject(context.Background(), s)
	if err != nil {
		t.Fatalf("Inject(%+v): %v", s, err)
	}
	return a
}

func spec(fault, target string, d time.Duration, params ...string) chaos.Spec {
	s := chaos.Spec{Fault: fault, Target: target, Duration: chaos.Duration(d)}
	for i := 0; i+1 < len(params); i += 2 {
		if s.Params == nil {
			s.Params = map[string]string{}
		}
		s.Params[params[i]] = params[i+1]
	}
	return s
}

func wantCalls(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: calls\n  %q\nwant\n  %q", what, got, want)
	}
}

func TestNewNeedsTarget(t *testing.T) {
	if _, err := chaos.New(chaos.Config{}); err == nil {
		t.Fatal("New without a Target succeeded")
	}
}

func TestEveryFaultInjectsAndHealsAtItsDuration(t *testing.T) {
	cases := []struct {
		name         string
		spec         chaos.Spec
		target       string // the canonical target
		params       map[string]string
		inject, heal []string
	}{
		{"region-outage", spec(chaos.FaultRegionOutage, "eastus", 30*time.Second), "eastus", nil,
			[]string{"Cut eastus-westeurope", "Cut eastus-southeastasia", "KillRegion eastus"},
			[]string{"Heal eastus-westeurope", "Heal eastus-southeastasia", "ReviveRegion eastus"}},
		{"store-node-loss", spec(chaos.FaultStoreNodeLoss, "westeurope", time.Minute), "westeurope", nil,
			[]string{"StopServer westeurope"}, []string{"StartServer westeurope"}},
		{"link-latency defaults", spec(chaos.FaultLinkLatency, "westeurope-eastus", 10*time.Second), "westeurope-eastus",
			map[string]string{"latency": "200ms", "jitter": "0s"},
			[]string{"SetLatency westeurope-eastus 200ms 0s"}, []string{"ResetLatency westeurope-eastus"}},
		{"link-latency params", spec(chaos.FaultLinkLatency, "southeastasia-eastus", time.Second, "latency", "300ms", "jitter", "50ms"), "southeastasia-eastus",
			map[string]string{"latency": "300ms", "jitter": "50ms"},
			[]string{"SetLatency southeastasia-eastus 300ms 50ms"}, []string{"ResetLatency southeastasia-eastus"}},
		{"partition", spec(chaos.FaultPartition, "eastus-westeurope", time.Hour), "eastus-westeurope", nil,
			[]string{"Cut eastus-westeurope"}, []string{"Heal eastus-westeurope"}},
		{"secret-store-outage", spec(chaos.FaultSecretStoreOutage, "", 45*time.Second), "global", nil,
			[]string{"SetSecretStore false"}, []string{"SetSecretStore true"}},
		{"partner-outage", spec(chaos.FaultPartnerOutage, "global", 30*time.Second), "global", nil,
			[]string{"SetPartner down 0s"}, []string{"SetPartner up 0s"}},
		{"partner-slow default", spec(chaos.FaultPartnerSlow, "global", 30*time.Second), "global",
			map[string]string{"delay": "3s"},
			[]string{"SetPartner slow 3s"}, []string{"SetPartner up 0s"}},
		{"partner-slow delay", spec(chaos.FaultPartnerSlow, "", 30*time.Second, "delay", "5s"), "global",
			map[string]string{"delay": "5s"},
			[]string{"SetPartner slow 5s"}, []string{"SetPartner up 0s"}},
		{"stamp-drain", spec(chaos.FaultStampDrain, "southeastasia", 2*time.Minute), "southeastasia", nil,
			[]string{"SetDrained southeastasia true"}, []string{"SetDrained southeastasia false"}},
		{"instance-kill", spec(chaos.FaultInstanceKill, "eastus", 20*time.Second), "eastus",
			map[string]string{"instance": "eastus-1"},
			[]string{"KillInstance eastus"}, []string{"AddInstance eastus"}},
		{"zone-outage of one region", spec(chaos.FaultZoneOutage, "eastus-2", 20*time.Second), "eastus-2",
			map[string]string{"instances": "eastus.z2"},
			[]string{"KillZone eastus 2"}, []string{"RestoreZone eastus 2"}},
		{"zone-outage of every region", spec(chaos.FaultZoneOutage, "*-1", 20*time.Second), "*-1",
			map[string]string{"instances": strings.Join(func() []string {
				var ids []string
				for _, r := range regions {
					ids = append(ids, r+".z1")
				}
				return ids
			}(), ",")},
			[]string{"KillZone * 1"}, []string{"RestoreZone * 1"}},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.spec.Fault] = true
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				target := chaostest.NewTarget(regions...)
				c := newChaos(t, target)
				start := time.Now()
				dur := time.Duration(tc.spec.Duration)
				a := mustInject(t, c, tc.spec)
				wantCalls(t, "inject", target.Take(), tc.inject)
				if a.Fault != tc.spec.Fault || a.Target != tc.target || !maps.Equal(a.Params, tc.params) ||
					!a.InjectedAt.Equal(start) || !a.HealsAt.Equal(start.Add(dur)) || a.HealedAt != nil || a.Error != "" {
					t.Fatalf("Inject = %+v", a)
				}

				time.Sleep(dur - time.Nanosecond)
				synctest.Wait()
				wantCalls(t, "a nanosecond before the duration", target.Take(), nil)
				if l := c.List(); len(l) != 1 || l[0].HealedAt != nil {
					t.Fatalf("List before expiry = %+v", l)
				}

				time.Sleep(time.Nanosecond)
				synctest.Wait()
				wantCalls(t, "heal at the duration", target.Take(), tc.heal)
				got, err := c.Get(a.ID)
				if err != nil || got.HealedAt == nil || !got.HealedAt.Equal(start.Add(dur)) || got.Error != "" {
					t.Fatalf("Get after expiry = %+v, %v", got, err)
				}
				if l := c.List(); len(l) != 1 || l[0].ID != a.ID || l[0].HealedAt == nil {
					t.Fatalf("List after expiry = %+v", l)
				}
			})
		})
	}
	for _, f := range chaos.Faults() {
		if !covered[f] {
			t.Errorf("fault %s has no case", f)
		}
	}
}

func TestEarlyHealCancelsTheTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		target := chaostest.NewTarget(regions...)
		c := newChaos(t, target)
		start := time.Now()
		a := mustInject(t, c, spec(chaos.FaultPartition, "westeurope-eastus", time.Minute))
		target.Take()

		time.Sleep(10 * time.Second)
		healed, err := c.Heal(context.Background(), a.ID)
		if err != nil || healed.HealedAt == nil || !healed.HealedAt.Equal(start.Add(10*time.Second)) {
			t.Fatalf("Heal = %+v, %v", healed, err)
		}
		wantCalls(t, "early heal", target.Take(), []string{"Heal westeurope-eastus"})

		time.Sleep(2 * time.Minute)
		synctest.Wait()
		wantCalls(t, "after the duration", target.Take(), nil)

		again, err := c.Heal(context.Background(), a.ID)
		if err != nil || again.HealedAt == nil || !again.HealedAt.Equal(*healed.HealedAt) {
			t.Fatalf("second Heal = %+v, %v", again, err)
		}
		wantCalls(t, "second heal", target.Take(), nil)
	})
}

func TestHealAtTheExpiryHealsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		target := chaostest.NewTarget(regions...)
		c := newChaos(t, target)
		a := mustInject(t, c, spec(chaos.FaultStoreNodeLoss, "eastus", 30*time.Second))
		target.Take()
		time.Sleep(30 * time.Second) // the timer fires now too
		if _, err := c.Heal(context.Background(), a.ID); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		wantCalls(t, "heal racing the expiry", target.Take(), []string{"StartServer eastus"})
	})
}

func TestHealUnknownIsNotFound(t *testing.T) {
	c := newChaos(t, chaostest.NewTarget(regions...))
	if _, err := c.Heal(context.Background(), "partition-7"); shop.KindOf(err) != shop.KindNotFound {
		t.Fatalf("Heal(unknown) = %v, want not found", err)
	}
	if _, err := c.Get("partition-7"); shop.KindOf(err) != shop.KindNotFound {
		t.Fatalf("Get(unknown) = %v, want not found", err)
	}
}

func TestCloseHealsEverythingNewestFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		target := chaostest.NewTarget(regions...)
		c := newChaos(t, target)
		mustInject(t, c, spec(chaos.FaultPartition, "westeurope-eastus", time.Minute))
		mustInject(t, c, spec(chaos.FaultStoreNodeLoss, "southeastasia", time.Minute))
		mustInject(t, c, spec(chaos.FaultPartnerSlow, "", time.Minute))
		target.Take()

		if err := c.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantCalls(t, "close", target.Take(), []string{"SetPartner up 0s", "StartServer southeastasia", "Heal westeurope-eastus"})
		for _, a := range c.List() {
			if a.HealedAt == nil {
				t.Errorf("after Close %s is still active", a.ID)
			}
		}
		if _, err := c.Inject(context.Background(), spec(chaos.FaultSecretStoreOutage, "", time.Minute)); shop.KindOf(err) != shop.KindUnavailable {
			t.Fatalf("Inject after Close = %v, want unavailable", err)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if err := c.Close(context.Background()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		wantCalls(t, "after close", target.Take(), nil)
	})
}

func TestCloseReportsFailedHeals(t *testing.T) {
	target := chaostest.NewTarget(regions...)
	c := newChaos(t, target)
	mustInject(t, c, spec(chaos.FaultStampDrain, "eastus", time.Minute))
	target.FailOn("SetDrained eastus false", errors.New("stamp unreachable"))
	if err := c.Close(context.Background()); err == nil || !strings.Contains(err.Error(), "stamp unreachable") {
		t.Fatalf("Close = %v, want the failed heal", err)
	}
}

func TestConflicts(t *testing.T) {
	const d = time.Minute
	for _, tc := range []struct {
		name     string
		existing []chaos.Spec
		spec     chaos.Spec
		conflict bool
	}{
		{"same partition", []chaos.Spec{spec(chaos.FaultPartition, "westeurope-eastus", d)}, spec(chaos.FaultPartition, "westeurope-eastus", d), true},
		{"same partition reversed", []chaos.Spec{spec(chaos.FaultPartition, "westeurope-eastus", d)}, spec(chaos.FaultPartition, "eastus-westeurope", d), true},
		{"partition elsewhere", []chaos.Spec{spec(chaos.FaultPartition, "westeurope-eastus", d)}, spec(chaos.FaultPartition, "westeurope-southeastasia", d), false},
		{"latency twice on a link", []chaos.Spec{spec(chaos.FaultLinkLatency, "westeurope-eastus", d)}, spec(chaos.FaultLinkLatency, "eastus-westeurope", d, "latency", "1s"), true},
		{"latency and partition on a link", []chaos.Spec{spec(chaos.FaultLinkLatency, "westeurope-eastus", d)}, spec(chaos.FaultPartition, "westeurope-eastus", d), false},
		{"region outage twice", []chaos.Spec{spec(chaos.FaultRegionOutage, "eastus", d)}, spec(chaos.FaultRegionOutage, "eastus", d), true},
		{"region outages of two regions", []chaos.Spec{spec(chaos.FaultRegionOutage, "eastus", d)}, spec(chaos.FaultRegionOutage, "westeurope", d), false},
		{"store loss in a region out", []chaos.Spec{spec(chaos.FaultRegionOutage, "eastus", d)}, spec(chaos.FaultStoreNodeLoss, "eastus", d), true},
		{"region out with its store lost", []chaos.Spec{spec(chaos.FaultStoreNodeLoss, "eastus", d)}, spec(chaos.FaultRegionOutage, "eastus", d), true},
		{"store loss in another region", []chaos.Spec{spec(chaos.FaultRegionOutage, "eastus", d)}, spec(chaos.FaultStoreNodeLoss, "westeurope", d), false},
		{"drain a region out", []chaos.Spec{spec(chaos.FaultRegionOutage, "eastus", d)}, spec(chaos.FaultStampDrain, "eastus", d), true},
		{"kill an instance of a region out", []chaos.Spec{spec(chaos.FaultRegionOutage, "eastus", d)}, spec(chaos.FaultInstanceKill, "eastus", d), true},
		{"kill an instance of a drained region", []chaos.Spec{spec(chaos.FaultStampDrain, "eastus", d)}, spec(chaos.FaultInstanceKill, "eastus", d), true},
		{"instance kill twice", []chaos.Spec{spec(chaos.FaultInstanceKill, "eastus", d)}, spec(chaos.FaultInstanceKill, "eastus", d), true},
		{"drain with the store lost", []chaos.Spec{spec(chaos.FaultStoreNodeLoss, "eastus", d)}, spec(chaos.FaultStampDrain, "eastus", d), false},
		{"partition of a region out", []chaos.Spec{spec(chaos.FaultRegionOutage, "eastus", d)}, spec(chaos.FaultPartition, "eastus-westeurope", d), false},
		{"partner down and slow", []chaos.Spec{spec(chaos.FaultPartnerOutage, "", d)}, spec(chaos.FaultPartnerSlow, "global", d), true},
		{"partner slow and down", []chaos.Spec{spec(chaos.FaultPartnerSlow, "", d)}, spec(chaos.FaultPartnerOutage, "", d), true},
		{"partner down twice", []chaos.Spec{spec(chaos.FaultPartnerOutage, "global", d)}, spec(chaos.FaultPartnerOutage, "", d), true},
		{"secret store twice", []chaos.Spec{spec(chaos.FaultSecretStoreOutage, "", d)}, spec(chaos.FaultSecretStoreOutage, "global", d), true},
		{"secret store and partner", []chaos.Spec{spec(chaos.FaultSecretStoreOutage, "", d)}, spec(chaos.FaultPartnerOutage, "", d), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := chaostest.NewTarget(regions...)
			c := newChaos(t, target)
			for _, s := range tc.existing {
				mustInject(t, c, s)
			}
			target.Take()
			_, err := c.Inject(context.Background(), tc.spec)
			if !tc.conflict {
				if err != nil {
					t.Fatalf("Inject = %v, want success", err)
				}
				return
			}
			if shop.KindOf(err) != shop.KindConflict {
				t.Fatalf("Inject = %v, want a conflict", err)
			}
			wantCalls(t, "refused inject", target.Take(), nil)
			if n := len(c.List()); n != len(tc.existing) {
				t.Errorf("List has %d faults, want %d", n, len(tc.existing))
			}
		})
	}
}

// TestConflictsAreSymmetric checks every pair of faults aimed at the same
// thing: if B is refused while A is active, A is refused while B is.
func TestConflictsAreSymmetric(t *testing.T) {
	targetOf := func(f string) string {
		switch f {
		case chaos.FaultLinkLatency, chaos.FaultPartition:
			return "westeurope-eastus"
		case chaos.FaultSecretStoreOutage, chaos.FaultPartnerOutage, chaos.FaultPartnerSlow:
			return chaos.GlobalTarget
		case chaos.FaultZoneOutage:
			return "eastus-2"
		}
		return "eastus"
	}
	refused := func(first, second string) bool {
		c := newChaos(t, chaostest.NewTarget(regions...))
		mustInject(t, c, spec(first, targetOf(first), time.Minute))
		_, err := c.Inject(context.Background(), spec(second, targetOf(second), time.Minute))
		if err != nil && shop.KindOf(err) != shop.KindConflict {
			t.Fatalf("%s then %s: %v", first, second, err)
		}
		return err != nil
	}
	for _, a := range chaos.Faults() {
		if !refused(a, a) {
			t.Errorf("%s twice on one target is accepted", a)
		}
		for _, b := range chaos.Faults() {
			if a < b && refused(a, b) != refused(b, a) {
				t.Errorf("%s then %s refused: %t; the other way round: %t", a, b, refused(a, b), refused(b, a))
			}
		}
	}
}

func TestSharedCutsHealWithTheLastHolder(t *testing.T) {
	target := chaostest.NewTarget(regions...)
	c := newChaos(t, target)
	ctx := context.Background()

	p := mustInject(t, c, spec(chaos.FaultPartition, "westeurope-eastus", time.Minute))
	w := mustInject(t, c, spec(chaos.FaultRegionOutage, "westeurope", time.Minute))
	e := mustInject(t, c, spec(chaos.FaultRegionOutage, "eastus", time.Minute))
	wantCalls(t, "injects", target.Take(), []string{
		"Cut westeurope-eastus",
		"Cut westeurope-southeastasia", "KillRegion westeurope",
		"Cut eastus-southeastasia", "KillRegion eastus",
	})
	for _, step := range []struct {
		id   string
		want []string
	}{
		{p.ID, nil},
		{w.ID, []string{"Heal westeurope-southeastasia", "ReviveRegion westeurope"}},
		{e.ID, []string{"Heal eastus-westeurope", "Heal eastus-southeastasia", "ReviveRegion eastus"}},
	} {
		if _, err := c.Heal(ctx, step.id); err != nil {
			t.Fatal(err)
		}
		wantCalls(t, "heal "+step.id, target.Take(), step.want)
	}
}

func TestFailedInjectRollsBack(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		before []chaos.Spec // injected first, successfully
		failOn string
		err    error
		spec   chaos.Spec
		kind   shop.Kind
		calls  []string
	}{
		{"region outage: the kill fails", nil, "KillRegion eastus", boom, spec(chaos.FaultRegionOutage, "eastus", time.Minute), shop.KindInternal,
			[]string{"Cut eastus-westeurope", "Cut eastus-southeastasia", "KillRegion eastus", "Heal eastus-westeurope", "Heal eastus-southeastasia"}},
		{"region outage: a link is missing", nil, "Link eastus-southeastasia", boom, spec(chaos.FaultRegionOutage, "eastus", time.Minute), shop.KindInternal,
			[]string{"Cut eastus-westeurope", "Heal eastus-westeurope"}},
		{"region outage: a partition keeps its cut", []chaos.Spec{spec(chaos.FaultPartition, "westeurope-eastus", time.Minute)},
			"KillRegion eastus", boom, spec(chaos.FaultRegionOutage, "eastus", time.Minute), shop.KindInternal,
			[]string{"Cut eastus-southeastasia", "KillRegion eastus", "Heal eastus-southeastasia"}},
		{"store server", nil, "StopServer westeurope", boom, spec(chaos.FaultStoreNodeLoss, "westeurope", time.Minute), shop.KindInternal,
			[]string{"StopServer westeurope"}},
		{"latency", nil, "SetLatency", boom, spec(chaos.FaultLinkLatency, "westeurope-eastus", time.Minute), shop.KindInternal,
			[]string{"SetLatency westeurope-eastus 200ms 0s"}},
		{"partition: no link", nil, "Link westeurope-eastus", boom, spec(chaos.FaultPartition, "westeurope-eastus", time.Minute), shop.KindInternal, nil},
		{"partner keeps the kind of its error", nil, "SetPartner", shop.Unavailable("partner stand-in is down", boom), spec(chaos.FaultPartnerOutage, "", time.Minute), shop.KindUnavailable,
			[]string{"SetPartner down 0s"}},
		{"instance kill", nil, "KillInstance eastus", boom, spec(chaos.FaultInstanceKill, "eastus", time.Minute), shop.KindInternal,
			[]string{"KillInstance eastus"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := chaostest.NewTarget(regions...)
			c := newChaos(t, target)
			for _, s := range tc.before {
				mustInject(t, c, s)
			}
			target.Take()
			target.FailOn(tc.failOn, tc.err)
			_, err := c.Inject(context.Background(), tc.spec)
			if !errors.Is(err, boom) || shop.KindOf(err) != tc.kind {
				t.Fatalf("Inject = %v, want boom of kind %s", err, tc.kind)
			}
			wantCalls(t, "failed inject", target.Take(), tc.calls)
			if n := len(c.List()); n != len(tc.before) {
				t.Fatalf("List has %d faults after a failed inject, want %d", n, len(tc.before))
			}
			// Nothing was left registered: the same fault goes in now.
			target.FailOn(tc.failOn, nil)
			mustInject(t, c, tc.spec)
		})
	}
}

func TestFailedHealIsRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		target := chaostest.NewTarget(regions...)
		c := newChaos(t, target)
		early := mustInject(t, c, spec(chaos.FaultStoreNodeLoss, "eastus", time.Minute))
		expiring := mustInject(t, c, spec(chaos.FaultInstanceKill, "westeurope", 30*time.Second))
		target.FailOn("StartServer eastus", errors.New("data directory locked"))
		target.FailOn("AddInstance westeurope", errors.New("no free port"))

		a, err := c.Heal(context.Background(), early.ID)
		if err == nil || a.HealedAt == nil || !strings.Contains(a.Error, "data directory locked") {
			t.Fatalf("Heal = %+v, %v; want the failure recorded and returned", a, err)
		}
		again, err := c.Heal(context.Background(), early.ID)
		if err != nil || again.Error != a.Error {
			t.Fatalf("second Heal = %+v, %v; want the record", again, err)
		}

		time.Sleep(30 * time.Second)
		synctest.Wait()
		got, err := c.Get(expiring.ID)
		if err != nil || got.HealedAt == nil || !strings.Contains(got.Error, "no free port") || got.Params["instance"] != "westeurope-1" {
			t.Fatalf("Get after a failed expiry heal = %+v, %v", got, err)
		}
		l := c.List()
		if len(l) != 2 || l[0].ID != expiring.ID || l[1].ID != early.ID || l[0].Error == "" || l[1].Error == "" {
			t.Fatalf("List = %+v", l)
		}
		wantCalls(t, "heals", target.Take(), []string{"StopServer eastus", "KillInstance westeurope", "StartServer eastus", "AddInstance westeurope"})
	})
}

func TestInjectChecksRegions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		regions []string
		spec    chaos.Spec
		ok      bool
	}{
		{"known region", regions, spec(chaos.FaultStampDrain, "eastus", time.Minute), true},
		{"unknown region", regions, spec(chaos.FaultStampDrain, "mars", time.Minute), false},
		{"region of another fault kind", regions, spec(chaos.FaultStampDrain, "westeurope-eastus", time.Minute), false},
		{"link to an unknown region", regions, spec(chaos.FaultPartition, "westeurope-mars", time.Minute), false},
		{"link to itself", regions, spec(chaos.FaultPartition, "eastus-eastus", time.Minute), false},
		{"link between dashed names", []string{"us-east", "eu-west"}, spec(chaos.FaultPartition, "us-east-eu-west", time.Minute), true},
		{"ambiguous link", []string{"a1", "a1-b2", "b2", "b2-c3", "c3"}, spec(chaos.FaultPartition, "a1-b2-c3", time.Minute), false},
		{"global target for a region fault", regions, spec(chaos.FaultStoreNodeLoss, "global", time.Minute), false},
		{"region for a global fault", regions, spec(chaos.FaultPartnerOutage, "eastus", time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := chaostest.NewTarget(tc.regions...)
			c := newChaos(t, target)
			_, err := c.Inject(context.Background(), tc.spec)
			if tc.ok {
				if err != nil {
					t.Fatalf("Inject = %v", err)
				}
				return
			}
			if e, ok := errors.AsType[*shop.Error](err); !ok || e.Kind != shop.KindInvalid || e.Field != "target" {
				t.Fatalf("Inject = %v, want invalid target", err)
			}
			wantCalls(t, "refused inject", target.Take(), nil)
		})
	}
}

func TestListShowsActiveThenRecentHealedNewestFirst(t *testing.T) {
	target := chaostest.NewTarget(regions...)
	c := newChaos(t, target)
	ctx := context.Background()
	var first chaos.Active
	for i := range 60 {
		a := mustInject(t, c, spec(chaos.FaultSecretStoreOutage, "", time.Minute))
		if i == 0 {
			first = a
		}
		if _, err := c.Heal(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
	}
	older := mustInject(t, c, spec(chaos.FaultPartition, "westeurope-eastus", time.Minute))
	newer := mustInject(t, c, spec(chaos.FaultStampDrain, "eastus", time.Minute))

	l := c.List()
	if len(l) != 52 || l[0].ID != newer.ID || l[1].ID != older.ID {
		t.Fatalf("List has %d faults, first %v", len(l), l[:min(2, len(l))])
	}
	for i, a := range l[2:] {
		if want := fmt.Sprintf("%s-%d", chaos.FaultSecretStoreOutage, 60-i); a.ID != want || a.HealedAt == nil {
			t.Fatalf("List[%d] = %s, want healed %s", i+2, a.ID, want)
		}
	}
	if _, err := c.Heal(ctx, first.ID); shop.KindOf(err) != shop.KindNotFound {
		t.Fatalf("Heal of a fault healed long ago = %v, want not found", err)
	}
	// What List returns is a copy.
	l[0].Params = map[string]string{"x": "y"}
	if c.List()[0].Params != nil {
		t.Fatal("List shares its maps")
	}
}

func TestConcurrentInjectsOfOneFault(t *testing.T) {
	target := chaostest.NewTarget(regions...)
	c := newChaos(t, target)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok, clash int
	)
	for range 16 {
		wg.Go(func() {
			_, err := c.Inject(context.Background(), spec(chaos.FaultPartition, "westeurope-eastus", time.Minute))
			_ = c.List()
			mu.Lock()
			defer mu.Unlock()
			switch shop.KindOf(err) {
			case shop.KindConflict:
				clash++
			default:
				if err == nil {
					ok++
				}
			}
		})
	}
	wg.Wait()
	if ok != 1 || clash != 15 {
		t.Fatalf("%d injected, %d conflicts; want 1 and 15", ok, clash)
	}
	wantCalls(t, "concurrent injects", target.Take(), []string{"Cut westeurope-eastus"})
}

// TestImports keeps the package free of the deployment: it may use the
// shared HTTP helpers and the error kinds, nothing else of ours.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{"github.com/contoso/shoes/internal/httpapi", "github.com/contoso/shoes/internal/shop"}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/contoso/shoes/") && !slices.Contains(allowed, imp) {
			t.Errorf("package chaos imports %s", imp)
		}
	}
}
