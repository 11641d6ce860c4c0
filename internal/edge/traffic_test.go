package edge_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
)

// releaseStamp is a healthy stamp of one release that counts every API
// request it receives. GET /api/fail answers 503 (a failure the edge
// retries elsewhere); any other API request 200 with the stamp's name. Its
// probes can be held (hold), so that a test knows no probe round finishes
// meanwhile.
type releaseStamp struct {
	name     string
	url      string
	received atomic.Int64 // API requests, failed ones included
	probed   atomic.Int64
	held     atomic.Int64 // probes waiting for the hold to end
	mu       sync.Mutex
	hold     chan struct{} // non-nil: probes wait until it is closed
}

func newReleaseStamp(t *testing.T, name string) *releaseStamp {
	t.Helper()
	s := &releaseStamp{name: name}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/health/stamp" {
			s.mu.Lock()
			hold := s.hold
			s.mu.Unlock()
			if hold != nil {
				s.held.Add(1)
				select {
				case <-hold:
				case <-r.Context().Done():
				}
				s.held.Add(-1)
			}
			s.probed.Add(1)
			_, _ = w.Write([]byte(`{"status":"healthy"}`))
			return
		}
		s.received.Add(1)
		if r.URL.Path == "/api/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"title":"failing on purpose"}`))
			return
		}
		_, _ = w.Write([]byte(name))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { s.release() }) // before the server closes: no probe left waiting
	s.url = srv.URL
	return s
}

func (s *releaseStamp) holdProbes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
}

func (s *releaseStamp) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		close(s.hold)
		s.hold = nil
	}
}

// withoutProbes runs fn while the POP's probe round cannot finish: every
// stamp holds its probes, and fn starts once one is held (a round ends
// only when all its probes have). What fn sees of routing changes is
// therefore not a probe's doing.
func withoutProbes(t *testing.T, fn func(), stamps ...*releaseStamp) {
	t.Helper()
	for _, s := range stamps {
		s.holdProbes()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(stamps, func(s *releaseStamp) bool { return s.held.Load() > 0 }) {
		if time.Now().After(deadline) {
			t.Fatal("no probe reached a stamp within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fn()
	for _, s := range stamps {
		s.release()
	}
}

// trafficFeed is a traffic table the test speaks for: set returns once the
// edge has taken the table.
type trafficFeed struct {
	ch chan func(fn func(edge.Weights))
}

func newTrafficFeed() *trafficFeed {
	return &trafficFeed{ch: make(chan func(func(edge.Weights)))}
}

func (f *trafficFeed) traffic(ctx context.Context, fn func(edge.Weights)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case say := <-f.ch:
			say(fn)
		}
	}
}

func (f *trafficFeed) set(t *testing.T, w edge.Weights) {
	t.Helper()
	done := make(chan struct{})
	select {
	case f.ch <- func(fn func(edge.Weights)) { fn(w); close(done) }:
	case <-time.After(10 * time.Second):
		t.Fatal("the edge does not follow the traffic table")
	}
	<-done
}

// sendMany sends n GETs of path through front, four at a time, and
// returns how many each stamp answered (by body) and the statuses seen.
func sendMany(t *testing.T, front, path string, n int) (map[string]int, map[int]int) {
	t.Helper()
	var mu sync.Mutex
	by, statuses := map[string]int{}, map[int]int{}
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range next {
				resp, err := http.Get(front + path)
				if err != nil {
					t.Error(err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				if resp.StatusCode == http.StatusOK {
					by[string(body)]++
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return by, statuses
}

// The edge follows a release's traffic split between two stamps of one
// region: without a table both share; at v1 100 % and v2 0 % the v2 stamp
// receives no request at all, not even the retry of a request v1 fails nor
// while v1 is ejected, yet it is still probed and shown; at 90/10 v2 gets
// about a tenth; a change applies to the very next request, with no probe
// in between; cleared, both share again. /ops/edge shows each stamp's
// release, weight and standby, and the split in force.
func TestEdgeFollowsTheTrafficTable(t *testing.T) {
	v1, v2 := newReleaseStamp(t, "v1"), newReleaseStamp(t, "v2")
	feed := newTrafficFeed()
	cfg := edge.Config{Traffic: feed.traffic, ClientRate: 1e9, ClientBurst: 1 << 30,
		Policy:       edge.Policy{Sensitivity: time.Hour}, // RTT noise never takes a stamp out of the near set
		ProbeTimeout: time.Minute,                         // a held probe does not fail
		EjectFor:     300 * time.Millisecond}
	e := runLocalEdge(t, cfg,
		edge.StampInfo{ID: "westeurope.v1", Region: "westeurope", URL: v1.url, Release: "v1"},
		edge.StampInfo{ID: "westeurope.v2", Region: "westeurope", URL: v2.url, Release: "v2"})
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	bothNear := func(_ map[string]edge.StampStatus, near []string) bool { return len(near) == 2 }
	waitStamps(t, e, 10*time.Second, bothNear)

	// No table: both share, each with the default weight.
	by, _ := sendMany(t, front.URL, "/api/products", 400)
	if by["v1"] < 100 || by["v2"] < 100 {
		t.Fatalf("without a table 400 requests went %v, want both sharing", by)
	}
	stamps, _ := waitStamps(t, e, time.Second, bothNear)
	for id, release := range map[string]string{"westeurope.v1": "v1", "westeurope.v2": "v2"} {
		if st := stamps[id]; st.Release != release || st.Weight != edge.DefaultWeight || st.Standby {
			t.Errorf("without a table %s shows %+v, want release %s, weight %d", id, st, release, edge.DefaultWeight)
		}
	}
	if p := e.Status()[0]; p.Split == nil || len(p.Split) != 0 {
		t.Errorf("without a table the POP shows split %v, want empty", p.Split)
	}

	// v1 100 %, v2 0 %: from the very next request, v2 receives nothing.
	onlyV1 := edge.Weights{"westeurope": {"v1": 100, "v2": 0}}
	before := v2.received.Load()
	withoutProbes(t, func() {
		feed.set(t, onlyV1)
		if by, _ := sendMany(t, front.URL, "/api/products", 50); by["v1"] != 50 {
			t.Fatalf("right after the table v1 100 %% the requests went %v, want all to v1", by)
		}
	}, v1, v2)
	p := e.Status()[0]
	if !reflect.DeepEqual(p.Split, map[string]map[string]int{"westeurope": {"v1": 100, "v2": 0}}) {
		t.Errorf("the POP shows split %v, want the table", p.Split)
	}
	for _, st := range p.Stamps {
		switch st.ID {
		case "westeurope.v1":
			if st.Weight != edge.DefaultWeight || st.Standby {
				t.Errorf("v1 at 100 %% shows %+v, want weight %d", st, edge.DefaultWeight)
			}
		case "westeurope.v2":
			if st.Release != "v2" || st.Weight != 0 || !st.Standby || !strings.HasPrefix(st.Routing, `standby: release "v2"`) {
				t.Errorf("v2 at 0 %% shows %+v, want it on standby with weight 0", st)
			}
		}
	}
	// Its failures are retried nowhere else (v2 is no retry), and v1's
	// ejection for them fails open to v1, never to v2.
	if by, _ := sendMany(t, front.URL, "/api/products", 300); by["v1"] != 300 {
		t.Fatalf("at v1 100 %% 300 requests went %v, want all to v1", by)
	}
	if _, statuses := sendMany(t, front.URL, "/api/fail", 20); statuses[http.StatusServiceUnavailable] != 20 {
		t.Fatalf("requests v1 fails answered %v, want 20 × 503 (no retry on v2)", statuses)
	}
	if by, _ := sendMany(t, front.URL, "/api/products", 100); by["v1"] != 100 {
		t.Fatalf("after v1's failures 100 requests went %v, want all to v1", by)
	}
	if got := v2.received.Load() - before; got != 0 {
		t.Fatalf("v2 at 0 %% received %d requests", got)
	}
	probed := v2.probed.Load()
	deadline := time.Now().Add(10 * time.Second)
	for v2.probed.Load() < probed+3 {
		if time.Now().After(deadline) {
			t.Fatal("v2 at 0 % is no longer probed")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// 90/10, once v1's ejection is over: v2 takes about a tenth.
	waitStamps(t, e, 10*time.Second, func(s map[string]edge.StampStatus, near []string) bool {
		return !s["westeurope.v1"].Ejected && slices.Equal(near, []string{"westeurope.v1"})
	})
	feed.set(t, edge.Weights{"westeurope": {"v1": 90, "v2": 10}})
	const n = 2000
	by, _ = sendMany(t, front.URL, "/api/products", n)
	if by["v1"]+by["v2"] != n || by["v2"] < n*5/100 || by["v2"] > n*15/100 {
		t.Fatalf("at 90/10 %d requests went %v, want v2 to take 5 %% to 15 %%", n, by)
	}

	// A change applies to the very next request, with no probe between.
	withoutProbes(t, func() {
		feed.set(t, edge.Weights{"westeurope": {"v1": 0, "v2": 100}})
		if by, _ := sendMany(t, front.URL, "/api/products", 50); by["v2"] != 50 {
			t.Fatalf("right after the table v2 100 %% the requests went %v, want all to v2", by)
		}
		feed.set(t, onlyV1)
		if by, _ := sendMany(t, front.URL, "/api/products", 50); by["v1"] != 50 {
			t.Fatalf("right after the table v1 100 %% again the requests went %v, want all to v1", by)
		}
	}, v1, v2)

	// Cleared: every stamp takes its default weight again.
	feed.set(t, nil)
	if by, _ := sendMany(t, front.URL, "/api/products", 400); by["v1"] < 100 || by["v2"] < 100 {
		t.Fatalf("after the table was cleared 400 requests went %v, want both sharing", by)
	}
	if p := e.Status()[0]; len(p.Split) != 0 || len(p.Near) != 2 {
		t.Fatalf("after the table was cleared the POP shows %+v, want no split and both near", p)
	}
}

// A stamp at 0 % whose release is the only one left (every stamp on
// standby) is still served from, failing open and saying so, rather than
// failing every request; a stamp that is not at 0 % takes it all back the
// moment it is.
func TestEveryStampOnStandbyFailsOpen(t *testing.T) {
	v1 := newReleaseStamp(t, "v1")
	feed := newTrafficFeed()
	e := runLocalEdge(t, edge.Config{Traffic: feed.traffic},
		edge.StampInfo{ID: "westeurope.v1", Region: "westeurope", URL: v1.url, Release: "v1"})
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	waitStamps(t, e, 10*time.Second, func(_ map[string]edge.StampStatus, near []string) bool { return len(near) == 1 })
	feed.set(t, edge.Weights{"westeurope": {"v2": 100}}) // names a release no stamp runs
	resp, err := http.Get(front.URL + "/api/products")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(edge.HeaderFailOpen) != "true" {
		t.Fatalf("with every stamp on standby: %d, %s %q; want 200 failing open", resp.StatusCode, edge.HeaderFailOpen, resp.Header.Get(edge.HeaderFailOpen))
	}
	if p := e.Status()[0]; !p.FailOpen || !strings.HasPrefix(p.Stamps[0].Routing, "fail open: every stamp is on standby") {
		t.Fatalf("the POP shows %+v, want it failing open to the stamp on standby", p)
	}
	feed.set(t, edge.Weights{"westeurope": {"v1": 100}})
	resp, err = http.Get(front.URL + "/api/products")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(edge.HeaderFailOpen) != "" {
		t.Fatalf("with v1 at 100 %%: %d, fail open %q; want 200 routed normally", resp.StatusCode, resp.Header.Get(edge.HeaderFailOpen))
	}
}

// A POP opened while a table arrives (AddPOP probes every stamp before it
// takes clients, and the table comes during those probes) follows the
// table from its first client on.
func TestAPOPOpenedDuringATableChangeFollowsIt(t *testing.T) {
	v1, v2 := newReleaseStamp(t, "v1"), newReleaseStamp(t, "v2")
	feed := newTrafficFeed()
	e := runLocalEdge(t, edge.Config{Traffic: feed.traffic, Policy: edge.Policy{Sensitivity: time.Hour}, ProbeTimeout: time.Minute},
		edge.StampInfo{ID: "westeurope.v1", Region: "westeurope", URL: v1.url, Release: "v1"},
		edge.StampInfo{ID: "westeurope.v2", Region: "westeurope", URL: v2.url, Release: "v2"})
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	waitStamps(t, e, 10*time.Second, func(_ map[string]edge.StampStatus, near []string) bool { return len(near) == 2 })

	v1.holdProbes()
	v2.holdProbes()
	added := make(chan struct{})
	go func() { e.AddPOP(t.Context(), "northeurope"); close(added) }()
	// The westeurope POP holds at most two probes: at least one more is
	// the new POP's, whose stamps it therefore knows already.
	deadline := time.Now().Add(10 * time.Second)
	for v1.held.Load()+v2.held.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the new POP's probes never reached the stamps")
		}
		time.Sleep(5 * time.Millisecond)
	}
	feed.set(t, edge.Weights{"westeurope": {"v1": 100, "v2": 0}})
	v1.release()
	v2.release()
	<-added

	for _, p := range e.Status() {
		for _, st := range p.Stamps {
			if st.ID == "westeurope.v2" && (!st.Standby || st.Weight != 0) {
				t.Errorf("POP %s shows v2 at 0 %% as %+v, want it on standby", p.Region, st)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, front.URL+"/api/products", nil)
	req.Header.Set(edge.HeaderClientRegion, "northeurope")
	for range 50 {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "v1" {
			t.Fatalf("the new POP sent a request to %q, want v1 only", body)
		}
	}
}
