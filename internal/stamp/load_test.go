package stamp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
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
	// One-second windows: the burst (about 600 ms) spans one to three.
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
	// A window ends at every probe round: once a second, and when the
	// stamp kicks its prober (at the end of its warm-up), so one window
	// may be shorter than the interval, never longer than a few.
	for i, c := range capacities {
		if c != 2 || windowMs[i] <= 0 || windowMs[i] > 3000 {
			t.Errorf("window %d: capacity %d over %d ms, want capacity 2 over at most about a second", i, c, windowMs[i])
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

// Reads and writes have a bulkhead each: with capacity 1, a write that
// holds its slot (an injected second of latency on the checkout flow, as a
// slow quorum write would) leaves the read slot free, so a read sent
// meanwhile is answered at once, while a second write waits for the
// first's slot and is refused 429 when its 500 ms are up.
// The load report shows each bulkhead, and the busier one, the writes',
// at the top. (Mutation tried: admit taking every request into the reads'
// pool, one limit for both kinds: no report shows a write in its
// bulkhead, and the read would wait behind the write.)
func TestAWriteHoldingItsSlotLeavesReadsTheirs(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	const hold = time.Second
	ts := serveStamp(t, c, stamp.Config{Capacity: 1, ProbeInterval: 500 * time.Millisecond,
		Fault: stamp.Fault{Route: httpapi.FlowCheckout, Latency: hold}})
	ts.waitReady(t)
	_, before := ts.report(t)

	writes := make(chan answer, 2)
	for range 2 {
		go func() {
			t0 := time.Now()
			// Unauthenticated: the answer is 401, once the write has held
			// its slot through the injected latency.
			resp, body, err := ts.send(http.MethodPost, "/api/orders", "", "k1", `{"fromCart":true}`)
			if err != nil {
				writes <- answer{err: err}
				return
			}
			writes <- answer{status: resp.StatusCode, body: body, took: time.Since(t0)}
		}()
	}
	// Once a report shows a write holding the write slot (the two hold it
	// for two seconds in all; a report is at most half a second old), a
	// read is answered at once.
	var busy health.Report
	deploytest.Eventually(t, 5*time.Second, func() error {
		_, rep := ts.report(t)
		if rep.CheckedAt.After(before.CheckedAt) && rep.Load != nil && rep.Load.Writes != nil && rep.Load.Writes.Peak > 0 {
			busy = rep
			return nil
		}
		return errors.New("no report shows a write holding its slot")
	})
	t0 := time.Now()
	resp, body, err := ts.send(http.MethodGet, "/api/products", "", "", "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a read while a write holds its slot: %v %v %s", resp, err, body)
	}
	read := time.Since(t0)
	statuses := map[int]time.Duration{}
	for range 2 {
		a := <-writes
		if a.err != nil {
			t.Fatal(a.err)
		}
		statuses[a.status] = a.took
	}
	first, ok1 := statuses[http.StatusUnauthorized]
	_, ok2 := statuses[http.StatusTooManyRequests]
	if read >= hold/2 || !ok1 || !ok2 || first < hold {
		t.Fatalf("the read took %s, the writes %v (status: took); want the read at once (< %s), one write 401 after %s, the other 429",
			read, statuses, hold/2, hold)
	}
	l := busy.Load
	if l.Reads == nil || l.Reads.Capacity != 1 || l.Writes.Capacity != 1 || l.Bulkhead != *l.Writes {
		t.Fatalf("load while a write holds its slot = %+v (reads %+v, writes %+v); want capacity 1 each, the writes' at the top",
			l, l.Reads, l.Writes)
	}
}

// The load report carries the orders accepted and not yet processed: while
// the partner answers late, the stamp's processor holds the orders (in
// process, out of its concurrency) and the shared order queue shows them
// as its backlog with the oldest one's wait; once the partner answers,
// both go back to zero. (Mutation tried: Take without its in-process
// count: "no report shows orders in process".)
func TestTheLoadReportCarriesTheOrdersNotYetProcessed(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	standIn := partner.NewStandIn(partner.StandInConfig{APIKey: func() string { return "api-key" }, SigningKey: func() string { return "signing-key" }})
	standIn.SetMode(partner.Slow, 3*time.Second)
	srv := httptest.NewServer(standIn.Handler())
	t.Cleanup(srv.Close)
	client, err := partner.NewClient(partner.ClientConfig{URL: srv.URL + "/v1/orders", Secrets: partnerKeys{}})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveStamp(t, c, stamp.Config{Partner: client, ProbeInterval: 250 * time.Millisecond})
	ts.waitReady(t)
	tok := ts.token(t, "olivia")
	p := shop.SeedCatalog()[3]
	for i := range 2 {
		body := fmt.Sprintf(`{"items":[{"sku":%q,"quantity":1}]}`, shop.SKU(p.ID, p.Sizes[i]))
		if resp, raw := ts.do(t, http.MethodPost, "/api/orders", tok, fmt.Sprintf("load-%d", i), body); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /api/orders = %d %s", resp.StatusCode, raw)
		}
	}
	orders := func(ok func(health.OrderLoad) bool, want string) {
		t.Helper()
		deploytest.Eventually(t, 20*time.Second, func() error {
			_, rep := ts.report(t)
			if rep.Load == nil || rep.Load.Orders == nil {
				return errors.New("no report carries orders")
			}
			if o := *rep.Load.Orders; !ok(o) {
				return fmt.Errorf("orders %+v: %s", o, want)
			}
			return nil
		})
	}
	orders(func(o health.OrderLoad) bool {
		return o.InProcess >= 1 && o.Queued >= 1 && o.OldestMs > 0 && o.Concurrency == 16 && o.ReadAgoMs < 5000
	}, "no report shows orders in process and queued, with the oldest's wait, a concurrency of 16 and a fresh reading")
	standIn.SetMode(partner.Up, 0)
	orders(func(o health.OrderLoad) bool { return o.InProcess == 0 && o.Queued == 0 && o.OldestMs == 0 },
		"orders still in process or queued once the partner answers")
}

// A stamp follows the deployment's instance settings as the operations
// plane sets them in the store: their capacity and work at once, and its
// own configuration's again once they are deleted. (Mutation tried: Run
// without followInstanceSettings: the capacity stays 5.)
func TestAStampFollowsTheInstanceSettings(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	ts := serveStamp(t, c, stamp.Config{Capacity: 5, Work: 2 * time.Millisecond})
	ts.waitReady(t)
	_, nc := c.MustOpen(t, 0)
	records := store.NewReleases(store.Config{Conn: nc})
	want := func(capacity int, work time.Duration) {
		t.Helper()
		deploytest.Eventually(t, 10*time.Second, func() error {
			if got, w := ts.Capacity(), ts.Work(); got != capacity || w != work {
				return fmt.Errorf("capacity %d, work %s; want %d, %s", got, w, capacity, work)
			}
			return nil
		})
	}
	if err := records.SetInstance(t.Context(), &store.InstanceSettings{Capacity: 1, WorkMs: 30}); err != nil {
		t.Fatal(err)
	}
	want(1, 30*time.Millisecond)
	if err := records.SetInstance(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	want(5, 2*time.Millisecond)
}
