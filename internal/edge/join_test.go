package edge_test

import (
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
)

// A stamp that joins the registry is probed at once, not at the next probe
// tick, and the edge says its routing changed: a new instance (at start-up,
// or added by a scale-out) takes traffic after one probe. The probe
// interval here is an hour, so only the join's own probe can route it.
// Mutation tried: without the kick in apply, the POPs never route to the
// stamp (the loops probed an empty registry at start and wait an hour).
func TestAStampThatJoinsIsProbedAtOnce(t *testing.T) {
	f := newFeed()
	e, front := runFedEdge(t, edge.Config{
		POPs: []string{"westeurope", "northeurope"}, Registry: f.registry,
		ProbeInterval: time.Hour, Policy: edge.Policy{Sensitivity: time.Hour},
	})
	s := newCountingStamp(t, "a")
	f.announce(t, edge.StampInfo{ID: "westeurope.a", Region: "westeurope", URL: s.url})
	waitRouted(t, e, "westeurope.a")
	if got := get(t, front, "northeurope"); got != "a" {
		t.Fatalf("answered by %q, want a", got)
	}
	select {
	case <-e.Changed():
	default:
		t.Fatal("the POPs routed to a new stamp and Changed was not told")
	}
}
