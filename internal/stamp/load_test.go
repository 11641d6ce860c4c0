package stamp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store/storetest"
)

// answer is one API request's answer, as a goroutine sends it back.
type answer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
	err    error
}

// A stamp of capacity 2 whose requests each hold their slot 300 ms (Work),
// sent 6 requests at once, serves 2 at a time: 2 more wait for a slot
// (at most 2 may wait, at most 500 ms) and the rest are refused 429
// problem+json with Retry-After. The health reports' load over the
// windows of the burst shows it: capacity 2, peak 2, the 429s as shed,
// the 200s as requests, a mean in flight above 0.
//
// Without the slot (admit's acquire removed) all 6 are served at once:
// no 429, peak 6, and this test fails.
func TestStampCapacityShedsAndReportsTheLoad(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	const work = 300 * time.Millisecond
	// One-second windows: the burst (about 600 ms) spans one or two.
	ts := serveStamp(t, c, stamp.Config{Capacity: 2, Work: work, ProbeInterval: time.Second})
	ts.waitReady(t)
	if ts.Capacity() != 2 || ts.Work() != work {
		t.Fatalf("Capacity, Work = %d, %s; want 2, %s", ts.Capacity(), ts.Work(), work)
	}
	_, before := ts.report(t)
	seen := map[time.Time]bool{before.CheckedAt: true}

	const n = 6
	start := make(chan struct{})
	answers := make(chan answer, n)
	for range n {
		go func() {
			<-start
			t0 := time.Now()
			resp, body, err := ts.send(http.MethodGet, "/api/products", "", "", "")
			if err != nil {
				answers <- answer{err: err}
				return
			}
			answers <- answer{status: resp.StatusCode, header: resp.Header, body: body, took: time.Since(t0)}
		}()
	}
	close(start)

	var (
		got             []answer
		served, refused int64
		requests, shed  int64
		peak            int
		inFlight        float64
		capacities      []int
		windowMs        []int64
	)
	deploytest.Eventually(t, 15*time.Second, func() error {
	drain:
		for len(got) < n {
			select {
			case a := <-answers:
				got = append(got, a)
			default:
				break drain
			}
		}
		code, rep := ts.report(t)
		if code != http.StatusOK {
			return fmt.Errorf("/health/stamp = %d %+v", code, rep)
		}
		if l := rep.Load; l != nil && !seen[rep.CheckedAt] {
			seen[rep.CheckedAt] = true
			requests += l.Requests
			shed += l.Shed
			peak = max(peak, l.Peak)
			inFlight = max(inFlight, l.InFlight)
			capacities = append(capacities, l.Capacity)
			windowMs = append(windowMs, l.WindowMs)
		}
		if len(got) < n {
			return fmt.Errorf("%d of %d requests answered", len(got), n)
		}
		served, refused = 0, 0
		for _, a := range got {
			switch a.status {
			case http.StatusOK:
				served++
			case http.StatusTooManyRequests:
				refused++
			}
		}
		if requests < served || shed < refused {
			return fmt.Errorf("the load reports so far count %d requests and %d shed; the clients saw %d served and %d refused",
				requests, shed, served, refused)
		}
		return nil
	})

	for _, a := range got {
		switch {
		case a.err != nil:
			t.Fatalf("GET /api/products: %v", a.err)
		case a.status == http.StatusOK:
			if a.took < work {
				t.Errorf("a 200 came in %s, before the %s of work it holds its slot for", a.took, work)
			}
		case a.status == http.StatusTooManyRequests:
			var p httpapi.Problem
			if err := json.Unmarshal(a.body, &p); err != nil || a.header.Get("Content-Type") != "application/problem+json" ||
				a.header.Get("Retry-After") != "1" || p.Status != http.StatusTooManyRequests ||
				p.Detail != "the stamp is at capacity; retry in a second" || !strings.HasSuffix(p.Type, "/too-many-requests") {
				t.Errorf("429 = %v %s (%v), want problem+json, Retry-After: 1, detail: the stamp is at capacity", a.header, a.body, err)
			}
		default:
			t.Errorf("GET /api/products = %d %s", a.status, a.body)
		}
	}
	if served < 2 || refused < 1 || served+refused != n {
		t.Fatalf("%d served and %d refused of %d, want at least 2 served (the capacity), at least 1 refused, none else", served, refused, n)
	}
	t.Logf("%d served, %d refused; over %d windows (ms %v): peak %d, most in flight %.3f, %d requests, %d shed",
		served, refused, len(windowMs), windowMs, peak, inFlight, requests, shed)
	if peak != 2 || inFlight <= 0 || requests != served || shed != refused {
		t.Fatalf("load over the burst: peak %d, most in flight %.3f, %d requests, %d shed; want peak 2, above 0, %d requests, %d shed",
			peak, inFlight, requests, shed, served, refused)
	}
	for i, c := range capacities {
		if c != 2 || windowMs[i] < 500 || windowMs[i] > 3000 {
			t.Errorf("window %d: capacity %d over %d ms, want capacity 2 over about a second", i, c, windowMs[i])
		}
	}
}

// New, SetCapacity and SetWork refuse a capacity below 1 and work below 0
// or above 10 s, and leave the stamp as it was; good values take effect.
func TestStampRefusesBadCapacityAndWork(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	_, verifier := testIssuer(t)
	base := stamp.Config{Region: "westeurope", Store: st, Verifier: verifier}
	for _, tc := range []struct {
		name     string
		capacity int
		work     time.Duration
		says     string
	}{
		{"negative capacity", -1, 0, "capacity -1 is below 1"},
		{"negative work", 0, -time.Millisecond, "work -1ms is not from 0 to 10s"},
		{"too much work", 0, 10*time.Second + 1, "is not from 0 to 10s"},
	} {
		cfg := base
		cfg.Capacity, cfg.Work = tc.capacity, tc.work
		if _, err := stamp.New(cfg); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: New = %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
	s, err := stamp.New(base)
	if err != nil {
		t.Fatal(err)
	}
	if s.Capacity() != 256 || s.Work() != 0 {
		t.Fatalf("zero Config: Capacity, Work = %d, %s; want 256, 0", s.Capacity(), s.Work())
	}
	for _, tc := range []struct {
		capacity int
		says     string
	}{{0, "capacity 0 is below 1"}, {-5, "capacity -5 is below 1"}} {
		if err := s.SetCapacity(tc.capacity); err == nil || !strings.Contains(err.Error(), tc.says) || s.Capacity() != 256 {
			t.Errorf("SetCapacity(%d) = %v, capacity now %d; want an error saying %q and 256 kept", tc.capacity, err, s.Capacity(), tc.says)
		}
	}
	for _, tc := range []struct {
		work time.Duration
		says string
	}{{-time.Nanosecond, "work -1ns is not from 0 to 10s"}, {11 * time.Second, "work 11s is not from 0 to 10s"}} {
		if err := s.SetWork(tc.work); err == nil || !strings.Contains(err.Error(), tc.says) || s.Work() != 0 {
			t.Errorf("SetWork(%s) = %v, work now %s; want an error saying %q and 0 kept", tc.work, err, s.Work(), tc.says)
		}
	}
	if err := s.SetCapacity(1); err != nil || s.Capacity() != 1 {
		t.Errorf("SetCapacity(1) = %v, capacity now %d", err, s.Capacity())
	}
	if err := s.SetWork(10 * time.Second); err != nil || s.Work() != 10*time.Second {
		t.Errorf("SetWork(10s) = %v, work now %s", err, s.Work())
	}
}
