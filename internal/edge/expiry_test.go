package edge_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
)

// fakeClock is the edge's registry clock, moved only by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// feed is a registry the test speaks for: each announcement is applied by
// the edge before announce returns.
type feed struct {
	ch chan func(fn func(string, *edge.StampInfo))
}

func newFeed() *feed { return &feed{ch: make(chan func(func(string, *edge.StampInfo)))} }

func (f *feed) registry(ctx context.Context, fn func(string, *edge.StampInfo)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case say := <-f.ch:
			say(fn)
		}
	}
}

// announce has the registry announce s (a heartbeat), and waits until the
// edge has taken it.
func (f *feed) announce(t *testing.T, s edge.StampInfo) {
	t.Helper()
	done := make(chan struct{})
	select {
	case f.ch <- func(fn func(string, *edge.StampInfo)) { fn(s.ID, &s); close(done) }:
	case <-time.After(10 * time.Second):
		t.Fatal("the edge does not follow the registry")
	}
	<-done
}

// countingStamp is a healthy stamp that counts the API requests and the
// probes it gets.
type countingStamp struct {
	url            string
	served, probed atomic.Int64
}

func newCountingStamp(t *testing.T, name string) *countingStamp {
	t.Helper()
	s := &countingStamp{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/health/stamp" {
			s.probed.Add(1)
			_, _ = w.Write([]byte(`{"status":"healthy"}`))
			return
		}
		s.served.Add(1)
		_, _ = w.Write([]byte(name))
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// startFedEdge runs an edge with POPs in westeurope and northeurope that
// follows f, with registry expiry on clk; every stamp is equally near.
func startFedEdge(t *testing.T, f *feed, clk *fakeClock, ttl time.Duration) (*edge.Edge, string) {
	t.Helper()
	return runFedEdge(t, edge.Config{
		POPs: []string{"westeurope", "northeurope"}, Registry: f.registry, RegistryTTL: ttl, Now: clk.Now,
		ProbeInterval: 20 * time.Millisecond, Policy: edge.Policy{Sensitivity: time.Hour},
	})
}

// runFedEdge runs an edge of cfg until the test ends, behind a front
// server whose URL it returns.
func runFedEdge(t *testing.T, cfg edge.Config) (*edge.Edge, string) {
	t.Helper()
	e, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	return e, front.URL
}

// get sends one request through the edge's POP in pop and returns who
// answered it.
func get(t *testing.T, front, pop string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, front+"/api/products", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(edge.HeaderClientRegion, pop)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET through %s = %d %s", pop, resp.StatusCode, body)
	}
	return string(body)
}

// known lists, per POP, the stamps it knows (in /ops/edge's Status), and
// the stamps of the registry as the edge holds it (Heartbeats).
func known(e *edge.Edge) (map[string][]string, []string) {
	pops := map[string][]string{}
	for _, p := range e.Status() {
		ids := []string{}
		for _, s := range p.Stamps {
			ids = append(ids, s.ID)
		}
		pops[p.Region] = ids
	}
	var reg []string
	for id := range e.Heartbeats() {
		reg = append(reg, id)
	}
	slices.Sort(reg)
	return pops, reg
}

// waitRouted waits until every POP routes to exactly ids (its near set).
func waitRouted(t *testing.T, e *edge.Edge, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, p := range e.Status() {
			ok = ok && slices.Equal(p.Near, ids)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the POPs route to %+v, want %v", e.Status(), ids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendUntilServed sends requests through every POP until s has served one.
func sendUntilServed(t *testing.T, front string, s *countingStamp) {
	t.Helper()
	before := s.served.Load()
	for range 100 {
		for _, pop := range []string{"westeurope", "northeurope"} {
			get(t, front, pop)
		}
		if s.served.Load() > before {
			return
		}
	}
	t.Fatal("100 rounds of requests never reached the stamp")
}

// A stamp whose registry entry stops being announced, with no delete ever
// delivered (the edge's watch missed the registry's expiry), leaves every
// POP once RegistryTTL has passed on the edge's clock: it is gone from
// /ops/edge and takes no request, while the other stamp of its region,
// still heartbeating, serves everything. Announced again, it is back.
func TestAStampTheRegistryStopsAnnouncingExpires(t *testing.T) {
	const ttl = 5 * time.Second
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newFeed()
	e, front := startFedEdge(t, f, clk, ttl)
	ghost, live := newCountingStamp(t, "ghost"), newCountingStamp(t, "live")
	ghostInfo := edge.StampInfo{ID: "westeurope.ghost", Region: "westeurope", URL: ghost.url}
	liveInfo := edge.StampInfo{ID: "westeurope.live", Region: "westeurope", URL: live.url}
	f.announce(t, ghostInfo)
	f.announce(t, liveInfo)
	waitRouted(t, e, "westeurope.ghost", "westeurope.live")
	sendUntilServed(t, front, ghost) // both are in rotation
	sendUntilServed(t, front, live)

	// The live stamp heartbeats every second; the ghost's last heartbeat
	// was at 0 s. Up to the TTL, the ghost stays.
	for range 5 {
		clk.Advance(time.Second)
		f.announce(t, liveInfo)
		if pops, reg := known(e); !slices.Contains(reg, "westeurope.ghost") || !slices.Contains(pops["westeurope"], "westeurope.ghost") {
			t.Fatalf("at %s the ghost is gone: POPs %v, registry %v", clk.Now().Format(time.TimeOnly), pops, reg)
		}
	}
	// Past it, on the edge's clock alone: nothing from the registry.
	clk.Advance(500 * time.Millisecond)
	pops, reg := known(e)
	for pop, ids := range pops {
		if !slices.Equal(ids, []string{"westeurope.live"}) {
			t.Errorf("POP %s still knows %v past the ghost's TTL", pop, ids)
		}
	}
	if !slices.Equal(reg, []string{"westeurope.live"}) {
		t.Errorf("the edge's registry still holds %v past the ghost's TTL", reg)
	}
	for _, p := range e.Status() {
		if !slices.Equal(p.Near, []string{"westeurope.live"}) {
			t.Errorf("POP %s routes to %v, want the live stamp alone", p.Region, p.Near)
		}
	}

	// The ghost gets no request any more, and no probe after the round in
	// flight when it expired; its region's other stamp serves everything.
	served, probed := ghost.served.Load(), ghost.probed.Load()
	liveProbed := live.probed.Load()
	for range 50 {
		for _, pop := range []string{"westeurope", "northeurope"} {
			if got := get(t, front, pop); got != "live" {
				t.Fatalf("a request through %s was served by %q", pop, got)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for live.probed.Load() < liveProbed+10 { // five more rounds from each POP
		if time.Now().After(deadline) {
			t.Fatal("the live stamp is not probed any more")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := ghost.served.Load() - served; n != 0 {
		t.Errorf("the ghost served %d requests after it expired", n)
	}
	if n := ghost.probed.Load() - probed; n > 2 {
		t.Errorf("the ghost was probed %d times after it expired, want at most the round in flight per POP", n)
	}
	if pops, _ := known(e); !slices.Equal(pops["westeurope"], []string{"westeurope.live"}) || !slices.Equal(pops["northeurope"], []string{"westeurope.live"}) {
		t.Errorf("the ghost came back without being announced: %v", pops)
	}

	// Announced again, it is back at once in the registry, and in
	// rotation after its first probe.
	f.announce(t, ghostInfo)
	if _, reg := known(e); !slices.Equal(reg, []string{"westeurope.ghost", "westeurope.live"}) {
		t.Fatalf("after its announcement the edge holds %v", reg)
	}
	waitRouted(t, e, "westeurope.ghost", "westeurope.live")
	sendUntilServed(t, front, ghost)
}

// An edge that hears nothing from the registry at all (its watch lost, or
// every stamp gone at once) does not expire what it knows: it keeps
// routing on its probes. Once the registry speaks again, a stamp still not
// announced expires within the TTL.
func TestAQuietRegistryExpiresNobody(t *testing.T) {
	const ttl = 5 * time.Second
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newFeed()
	e, front := startFedEdge(t, f, clk, ttl)
	gone, live := newCountingStamp(t, "gone"), newCountingStamp(t, "live")
	goneInfo := edge.StampInfo{ID: "westeurope.gone", Region: "westeurope", URL: gone.url}
	liveInfo := edge.StampInfo{ID: "westeurope.live", Region: "westeurope", URL: live.url}
	f.announce(t, goneInfo)
	f.announce(t, liveInfo)
	waitRouted(t, e, "westeurope.gone", "westeurope.live")

	clk.Advance(time.Minute)
	if _, reg := known(e); !slices.Equal(reg, []string{"westeurope.gone", "westeurope.live"}) {
		t.Fatalf("after a minute of silence the edge holds %v, want both stamps", reg)
	}
	sendUntilServed(t, front, gone)
	sendUntilServed(t, front, live)

	// The registry speaks again, for one stamp only.
	f.announce(t, liveInfo)
	if _, reg := known(e); !slices.Equal(reg, []string{"westeurope.gone", "westeurope.live"}) {
		t.Fatalf("the silence counted: when the registry spoke again, the edge held %v", reg)
	}
	for range 5 {
		clk.Advance(time.Second)
		f.announce(t, liveInfo)
	}
	if _, reg := known(e); !slices.Equal(reg, []string{"westeurope.live"}) {
		t.Fatalf("a TTL after the registry spoke again, the edge holds %v", reg)
	}
	waitRouted(t, e, "westeurope.live")
}
