package edge_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/netsim"
)

// healthyStamp is a stamp's health endpoint: always healthy.
func healthyStamp(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"healthy"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// startEdge runs an edge with one POP in westeurope over real links to two
// healthy stamps: northeurope and eastus.
func startEdge(t *testing.T, net *netsim.Network, probe, timeout time.Duration) *edge.Edge {
	t.Helper()
	return runEdge(t, net, edge.Config{ProbeInterval: probe, ProbeTimeout: timeout},
		edge.StampInfo{ID: "northeurope.a", Region: "northeurope", URL: healthyStamp(t)},
		edge.StampInfo{ID: "eastus.a", Region: "eastus", URL: healthyStamp(t)})
}

// runEdge runs an edge with cfg, one POP in westeurope, reaching the given
// stamps (a fixed registry) across net's links (nil: directly on
// loopback), until the test ends.
func runEdge(t testing.TB, net *netsim.Network, cfg edge.Config, stamps ...edge.StampInfo) *edge.Edge {
	t.Helper()
	cfg.POPs = []string{"westeurope"}
	if net != nil {
		cfg.Dial = net.Route
	}
	cfg.Registry = func(ctx context.Context, fn func(string, *edge.StampInfo)) error {
		for _, s := range stamps {
			fn(s.ID, &s)
		}
		<-ctx.Done()
		return ctx.Err()
	}
	e, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func near(e *edge.Edge) (string, int) {
	p := e.Status()[0]
	return strings.Join(p.Near, ","), p.Changes
}

func waitNear(t testing.TB, e *edge.Edge, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, _ := near(e)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("POP routes to %q, want %q within %s (%+v)", got, want, within, e.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A link that keeps failing and recovering does not flap the routing: each
// failure takes the far side out at once, and every failure within the
// flap window doubles the good probes it needs to come back, so after a
// few rounds it stays out until the link is steady again.
func TestFlappingLinkDoesNotFlapRouting(t *testing.T) {
	net := netsim.New(netsim.Config{})
	t.Cleanup(func() { net.Close() })
	const probe = 50 * time.Millisecond
	e := startEdge(t, net, probe, 300*time.Millisecond)
	waitNear(t, e, "northeurope.a", 5*time.Second)
	link, ok := net.Link("westeurope", "northeurope")
	if !ok {
		t.Fatal("no link westeurope-northeurope")
	}
	_, before := near(e)
	// 10 rounds of 400 ms cut, 400 ms healed: each heal lasts 8 probes.
	for range 10 {
		link.Cut()
		waitNear(t, e, "eastus.a", 2*time.Second) // a failure moves traffic at once
		deadline := time.Now().Add(400 * time.Millisecond)
		for time.Now().Before(deadline) {
			time.Sleep(probe)
		}
		link.Heal()
		deadline = time.Now().Add(400 * time.Millisecond)
		for time.Now().Before(deadline) {
			time.Sleep(probe)
		}
	}
	_, after := near(e)
	flips := after - before
	t.Logf("the near set changed %d times in 10 rounds of cut and heal", flips)
	// Undamped it would change twice a round (20); damped, the stamp comes
	// back after the first rounds only (3, 6, 12 good probes needed).
	if flips > 8 {
		t.Fatalf("routing flapped %d times in 10 link flaps", flips)
	}
	// Once the link is steady, the near stamp comes back.
	waitNear(t, e, "northeurope.a", 48*probe+3*time.Second)
}

// Latency that wobbles around the sensitivity window does not flap the
// routing either: the smoothed RTT and the hysteresis keep the choice.
func TestNoisyLatencyDoesNotFlapRouting(t *testing.T) {
	net := netsim.New(netsim.Config{Latency: netsim.LatencyTable{
		netsim.NewPair("westeurope", "northeurope"): 3 * time.Millisecond,
		netsim.NewPair("westeurope", "eastus"):      5 * time.Millisecond,
	}})
	t.Cleanup(func() { net.Close() })
	const probe = 50 * time.Millisecond
	e := startEdge(t, net, probe, 300*time.Millisecond)
	waitNear(t, e, "eastus.a,northeurope.a", 5*time.Second) // round trips about 4 ms apart: equally near
	link, _ := net.Link("westeurope", "eastus")
	_, before := near(e)
	// eastus's one-way latency swings between 5 and 9 ms every probe: its
	// round trip, 4 or 12 ms behind northeurope's, crosses the 10 ms window
	// edge back and forth.
	for i := range 40 {
		lat := 5 * time.Millisecond
		if i%2 == 1 {
			lat = 9 * time.Millisecond
		}
		if err := link.SetLatency(lat, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(probe)
	}
	_, after := near(e)
	t.Logf("the near set changed %d times in 40 latency swings", after-before)
	if after-before > 2 {
		t.Fatalf("routing flapped %d times on a noisy link", after-before)
	}
}

// A stamp that vanishes (its link black-holed: no reset, no answer) while
// a GET is in flight: the POP's next failed probe aborts the attempt and
// the GET is retried on the next stamp, long before the attempt's own
// timeout.
func TestInFlightRequestToAVanishedStampIsRetriedElsewhere(t *testing.T) {
	net := netsim.New(netsim.Config{Latency: netsim.LatencyTable{
		netsim.NewPair("westeurope", "northeurope"): 2 * time.Millisecond,
		netsim.NewPair("westeurope", "eastus"):      20 * time.Millisecond,
	}})
	t.Cleanup(func() { net.Close() })
	stamp := func(region string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				time.Sleep(300 * time.Millisecond) // the request is in flight when the link goes
			}
			_, _ = w.Write([]byte(`{"status":"healthy","region":"` + region + `"}`))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	e := runEdge(t, net, edge.Config{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 200 * time.Millisecond, Timeout: 30 * time.Second},
		edge.StampInfo{ID: "northeurope.a", Region: "northeurope", URL: stamp("northeurope")},
		edge.StampInfo{ID: "eastus.a", Region: "eastus", URL: stamp("eastus")})
	waitNear(t, e, "northeurope.a", 5*time.Second)
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	link, _ := net.Link("westeurope", "northeurope")
	go func() {
		time.Sleep(100 * time.Millisecond) // while the GET waits for its answer
		link.Cut()
	}()
	start := time.Now()
	resp, err := http.Get(front.URL + "/api/products")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	took := time.Since(start)
	t.Logf("answered in %s: %d %s", took, resp.StatusCode, body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"eastus"`) {
		t.Fatalf("GET = %d %s, want 200 from eastus", resp.StatusCode, body)
	}
	if took > 5*time.Second {
		t.Fatalf("the retry came after %s: the attempt waited for its timeout instead of the failed probe", took)
	}
}
