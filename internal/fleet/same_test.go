package fleet_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/fleet"
)

// deployment is what the comparison reads of one deployment: its
// operations address and an admin token for it.
type deployment struct {
	name, ops, admin string
}

// view is what the operations plane shows of a deployment: every health
// model entity's state, every dashboard region's state and every SLO.
type view struct {
	health  map[string]string
	regions map[string]string
	slos    []string
}

func (d deployment) look() (view, error) {
	type node struct {
		ID, State string
		Children  []*node
	}
	var root node
	if err := getJSON(d.ops+"/ops/health", d.admin, &root); err != nil {
		return view{}, err
	}
	v := view{health: map[string]string{}, regions: map[string]string{}}
	var walk func(*node)
	walk = func(n *node) {
		v.health[n.ID] = n.State
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(&root)
	var snap struct {
		Regions []struct{ Name, State string }
	}
	if err := getJSON(d.ops+"/ops/dashboard/snapshot", d.admin, &snap); err != nil {
		return view{}, err
	}
	for _, r := range snap.Regions {
		v.regions[r.Name] = r.State
	}
	var slo struct {
		SLOs []struct{ SLO string }
	}
	if err := getJSON(d.ops+"/ops/slo", d.admin, &slo); err != nil {
		return view{}, err
	}
	for _, s := range slo.SLOs {
		v.slos = append(v.slos, s.SLO)
	}
	slices.Sort(v.slos)
	return v, nil
}

// differences lists where two views disagree.
func differences(a, b view) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(a.health)) {
		if a.health[id] != b.health[id] {
			out = append(out, fmt.Sprintf("%s: %s / %s", id, a.health[id], b.health[id]))
		}
	}
	for id := range b.health {
		if _, ok := a.health[id]; !ok {
			out = append(out, fmt.Sprintf("%s: absent / %s", id, b.health[id]))
		}
	}
	if !maps.Equal(a.regions, b.regions) {
		out = append(out, fmt.Sprintf("dashboard regions: %v / %v", a.regions, b.regions))
	}
	if !slices.Equal(a.slos, b.slos) {
		out = append(out, fmt.Sprintf("SLOs: %v / %v", a.slos, b.slos))
	}
	return out
}

// testSameJudgement drains the same region of an `up` deployment (one
// process) and of the fleet (many), and compares what each one's
// operations plane shows: the same health model states, dashboard states
// and SLOs, during the fault and after its heal.
func testSameJudgement(t *testing.T, f *fleet.Fleet) {
	d := deploytest.MustStart(t, deploytest.Options{NoTLS: true}, regions...)
	one := deployment{"up", d.OpsURL(), deploytest.Token(t, d, "ops", true)}
	many := deployment{"up --processes", f.OpsURL(), token(t, f, "ops", true)}
	agree := func(what string, check func(view) error) {
		t.Helper()
		var last []string
		eventually(t, 45*time.Second, func() error {
			a, err := one.look()
			if err != nil {
				return fmt.Errorf("%s: %w", one.name, err)
			}
			b, err := many.look()
			if err != nil {
				return fmt.Errorf("%s: %w", many.name, err)
			}
			for _, v := range []view{a, b} {
				if err := check(v); err != nil {
					return err
				}
			}
			if last = differences(a, b); len(last) > 0 {
				return fmt.Errorf("%s: one process / many disagree on %s", what, strings.Join(last, "; "))
			}
			return nil
		})
	}
	healthy := func(v view) error {
		if v.health["system"] != "healthy" {
			return fmt.Errorf("system is %s", v.health["system"])
		}
		return nil
	}
	agree("steady state", healthy)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	heal := map[*chaos.Client]string{}
	for _, dep := range []deployment{one, many} {
		c := &chaos.Client{BaseURL: dep.ops, Token: dep.admin}
		a, err := c.Inject(ctx, chaos.Spec{Fault: chaos.FaultStampDrain, Target: "northeurope", Duration: chaos.Duration(2 * time.Minute)})
		if err != nil {
			t.Fatalf("%s: drain northeurope: %v", dep.name, err)
		}
		heal[c] = a.ID
	}
	agree("northeurope drained", func(v view) error {
		if v.health["component.stamp.northeurope"] != "unhealthy" || v.health["regions"] != "degraded" {
			return fmt.Errorf("component.stamp.northeurope %s, regions %s", v.health["component.stamp.northeurope"], v.health["regions"])
		}
		return nil
	})
	for c, id := range heal {
		if _, err := c.Heal(ctx, id); err != nil {
			t.Fatalf("heal: %v", err)
		}
	}
	agree("after the heal", healthy)
}
