package stamp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/telemetry"
)

func TestParseFault(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want stamp.Fault
		str  string // the canonical form; "" when it is in
	}{
		{"", stamp.Fault{}, ""},
		{"  ", stamp.Fault{}, ""},
		{"error=0.05,route=checkout", stamp.Fault{ErrorRatio: 0.05, Route: "checkout"}, ""},
		{"route=checkout,error=0.05", stamp.Fault{ErrorRatio: 0.05, Route: "checkout"}, "error=0.05,route=checkout"},
		{"error=1", stamp.Fault{ErrorRatio: 1}, ""},
		{"error=0", stamp.Fault{}, ""},
		{"latency=300ms", stamp.Fault{Latency: 300 * time.Millisecond}, ""},
		{"latency=1.5s,route=browse", stamp.Fault{Latency: 1500 * time.Millisecond, Route: "browse"}, "route=browse,latency=1.5s"},
		{"error=0.5,route=comment,latency=10ms", stamp.Fault{ErrorRatio: 0.5, Route: "comment", Latency: 10 * time.Millisecond}, ""},
		{"crash-on-start", stamp.Fault{CrashOnStart: true}, ""},
		{"never-ready", stamp.Fault{NeverReady: true}, ""},
		{" never-ready , crash-on-start ", stamp.Fault{CrashOnStart: true, NeverReady: true}, "crash-on-start,never-ready"},
		{"error = 0.25 , route = browse", stamp.Fault{ErrorRatio: 0.25, Route: "browse"}, "error=0.25,route=browse"},
	} {
		got, err := stamp.ParseFault(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		want := tc.str
		if want == "" && tc.want != (stamp.Fault{}) {
			want = tc.in
		}
		if s := got.String(); s != want {
			t.Errorf("ParseFault(%q).String() = %q, want %q", tc.in, s, want)
		}
		if got.Zero() != (tc.want == stamp.Fault{}) {
			t.Errorf("ParseFault(%q).Zero() = %v", tc.in, got.Zero())
		}
	}
	for _, tc := range []struct{ in, says string }{
		{"error=1.5", "not a share from 0 to 1"},
		{"error=-0.1", "not a share from 0 to 1"},
		{"error=NaN", "not a share from 0 to 1"},
		{"error=lots", "not a number"},
		{"error=", "needs a value"},
		{"error", "needs a value"},
		{"route=payments,error=0.1", "not a user flow"},
		{"route=checkout", "neither is given"},
		{"latency=fast", "not a duration"},
		{"latency=-1s", "negative"},
		{"crash-on-start=true", "takes no value"},
		{"explode", `unknown part "explode"`},
		{"error=0.1,error=0.2", "given twice"},
		{"error=0.1,,never-ready", "an empty part"},
		{",", "an empty part"},
	} {
		if f, err := stamp.ParseFault(tc.in); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ParseFault(%q) = %+v, %v; want an error saying %q", tc.in, f, err, tc.says)
		}
	}
}

// Whatever ParseFault accepts, String writes in a form it reads back to the
// same fault, which String writes the same again. The valid seeds are
// accepted and the invalid ones refused.
func FuzzParseFault(f *testing.F) {
	for _, s := range []string{"", "error=0.05,route=checkout", "latency=300ms", "crash-on-start", "never-ready",
		"error=1,route=browse,latency=1h2m3.000000004s,crash-on-start,never-ready", "error=1e-9", "latency=1µs", "error=0x1p-2"} {
		if _, err := stamp.ParseFault(s); err != nil {
			f.Fatalf("valid seed %q refused: %v", s, err)
		}
		f.Add(s)
	}
	for _, s := range []string{"error=1.5", "error=NaN", "latency=-1s", "route=checkout", "error=0.1,error=0.2", ",", "crash-on-start=true"} {
		if got, err := stamp.ParseFault(s); err == nil {
			f.Fatalf("invalid seed %q accepted as %+v", s, got)
		}
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fault, err := stamp.ParseFault(s)
		if err != nil {
			return
		}
		again, err := stamp.ParseFault(fault.String())
		if err != nil {
			t.Fatalf("ParseFault(%q) = %+v, whose String %q does not parse: %v", s, fault, fault.String(), err)
		}
		if again != fault || again.String() != fault.String() {
			t.Fatalf("ParseFault(%q) = %+v (%q), read back as %+v (%q)", s, fault, fault.String(), again, again.String())
		}
	})
}

// orderBody is an order of one pair of the first seed product.
func orderBody() string {
	p := shop.SeedCatalog()[0]
	return `{"items":[{"sku":"` + shop.SKU(p.ID, p.Sizes[0]) + `","quantity":1}]}`
}

// isInjected reports whether an answer is the fault's: 500 problem+json
// whose detail says it was injected.
func isInjected(t *testing.T, resp *http.Response, body []byte) bool {
	t.Helper()
	if resp.StatusCode != http.StatusInternalServerError {
		return false
	}
	var p httpapi.Problem
	if err := json.Unmarshal(body, &p); err != nil || resp.Header.Get("Content-Type") != "application/problem+json" ||
		p.Status != http.StatusInternalServerError || p.Detail != "injected fault" {
		t.Fatalf("a 500 that is not the injected fault: %v %s", resp.Header, body)
	}
	return true
}

// error=1,route=checkout: every checkout request is answered 500 by the
// fault, and recorded in the stamp's metrics as the 500 it is; browsing
// the catalog is not touched. The stamp warned at start which fault it
// injects.
func TestStampFaultFailsEveryCheckoutAndNoBrowsing(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	tel, err := telemetry.New(t.Context(), telemetry.Config{Service: telemetry.ServiceStamp, Region: "westeurope"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	fault, err := stamp.ParseFault("error=1,route=checkout")
	if err != nil {
		t.Fatal(err)
	}
	ts := serveStamp(t, c, stamp.Config{Fault: fault, Telemetry: tel})
	ts.waitReady(t)
	tok := ts.token(t, "buyer")
	const orders = 20
	for i := range orders {
		resp, body := ts.do(t, http.MethodPost, "/api/orders", tok, fmt.Sprintf("order-%d", i), orderBody())
		if !isInjected(t, resp, body) {
			t.Fatalf("checkout %d = %d %s, want the injected 500", i, resp.StatusCode, body)
		}
	}
	sku := shop.SKU(shop.SeedCatalog()[0].ID, shop.SeedCatalog()[0].Sizes[0])
	if resp, body := ts.do(t, http.MethodPut, "/api/cart/items/"+sku, tok, "", `{"quantity":1}`); !isInjected(t, resp, body) {
		t.Fatalf("PUT cart item = %d %s, want the injected 500", resp.StatusCode, body)
	}
	id := shop.SeedCatalog()[1].ID
	for _, path := range []string{"/api/products", "/api/products/" + id, "/api/products/" + id + "/comments"} {
		if resp, body := ts.do(t, http.MethodGet, path, "", "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200: browsing is not the fault's route", path, resp.StatusCode, body)
		}
	}

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	want := fmt.Sprintf(`http_server_request_duration_seconds_count{component="stamp",flow="checkout",http_request_method="POST",http_response_status_code="500",http_route="/api/orders",region="westeurope"} %d`, orders)
	if !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}

	warned := false
	for _, line := range ts.logs.lines() {
		var rec struct{ Level, Msg, Fault string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "WARN" && rec.Fault == "error=1,route=checkout" {
			warned = true
		}
	}
	if !warned {
		t.Error("no warning at start naming the injected fault")
	}
}

// error=0.05,route=checkout over 2000 checkouts: the share answered 500
// is within the binomial bound (mean 100, standard deviation 9.7; five
// deviations either side), every other checkout is accepted, and the
// stamp's metrics count exactly the injected 500s. The draw is
// math/rand/v2's, unseeded: a wrong ratio shows as a count far outside the
// bound, which a correct one leaves with odds below one in a million.
func TestStampFaultErrorRatioIsBinomial(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	tel, err := telemetry.New(t.Context(), telemetry.Config{Service: telemetry.ServiceStamp, Region: "westeurope"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	ts := serveStamp(t, c, stamp.Config{Fault: stamp.Fault{ErrorRatio: 0.05, Route: "checkout"}, Telemetry: tel,
		OrderRate: 1e9, OrderBurst: 1e9})
	ts.waitReady(t)
	tok := ts.token(t, "steady-buyer")
	const n, p = 2000, 0.05
	type answer struct {
		resp *http.Response
		body []byte
		err  error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				var a answer
				a.resp, a.body, a.err = ts.send(http.MethodPost, "/api/orders", tok, fmt.Sprintf("ratio-%d", i), orderBody())
				answers[i] = a
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	injected := 0
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Fatalf("checkout %d: %v", i, a.err)
		case isInjected(t, a.resp, a.body):
			injected++
		case a.resp.StatusCode != http.StatusAccepted:
			t.Fatalf("checkout %d = %d %s, want 202 or the injected 500", i, a.resp.StatusCode, a.body)
		}
	}
	mean, sd := n*p, math.Sqrt(n*p*(1-p))
	if lo, hi := mean-5*sd, mean+5*sd; float64(injected) < lo || float64(injected) > hi {
		t.Errorf("%d of %d checkouts answered the injected 500, want %.0f to %.0f", injected, n, lo, hi)
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	want := fmt.Sprintf(`http_server_request_duration_seconds_count{component="stamp",flow="checkout",http_request_method="POST",http_response_status_code="500",http_route="/api/orders",region="westeurope"} %d`, injected)
	if !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// latency=200ms,route=browse: real requests for products take at least
// 200 ms at the median, measured at the client.
func TestStampFaultLatencyDelaysMatchingRequests(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	const latency = 200 * time.Millisecond
	ts := serveStamp(t, c, stamp.Config{Fault: stamp.Fault{Latency: latency, Route: "browse"}})
	ts.waitReady(t)
	var took []time.Duration
	for i := range 9 {
		start := time.Now()
		resp, body := ts.do(t, http.MethodGet, "/api/products/"+shop.SeedCatalog()[i].ID, "", "", "")
		took = append(took, time.Since(start))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET product = %d %s", resp.StatusCode, body)
		}
	}
	slices.Sort(took)
	if p50 := took[len(took)/2]; p50 < latency {
		t.Fatalf("p50 of product reads = %s, want at least the injected %s (all: %v)", p50, latency, took)
	}
}

// never-ready: the stamp runs, warms up and heartbeats into the registry,
// its dependencies pass, but /health/ready answers 503 and /health/stamp
// reports unhealthy with reason "injected fault: never ready", and neither
// flips however long one watches (here ten probe intervals after the
// stamp would otherwise have been ready).
func TestStampFaultNeverReady(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	const interval = 100 * time.Millisecond
	ts := serveStamp(t, c, stamp.Config{Fault: stamp.Fault{NeverReady: true}, ProbeInterval: interval})
	const reason = "injected fault: never ready"
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, r := ts.ready(t); code != http.StatusServiceUnavailable || r != reason {
			t.Fatalf("/health/ready = %d %q, want 503 %q", code, r, reason)
		}
		code, rep := ts.report(t)
		n, _ := ts.Warmed()
		if code == http.StatusServiceUnavailable && rep.Reason == reason && n > 0 {
			break // everything but the fault says ready
		}
		if code != http.StatusServiceUnavailable {
			t.Fatalf("/health/stamp = %d %+v, want 503", code, rep)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health/stamp = %d %+v after 30 s (warmed: %d), want reason %q", code, rep, n, reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := ts.registered(t); !ok {
		t.Error("a never-ready stamp is not in the registry: it must run and heartbeat")
	}
	until := time.Now().Add(10 * interval)
	for time.Now().Before(until) {
		if code, r := ts.ready(t); code != http.StatusServiceUnavailable || r != reason {
			t.Fatalf("/health/ready flipped to %d %q", code, r)
		}
		if code, rep := ts.report(t); code != http.StatusServiceUnavailable || rep.Status != health.Unhealthy || rep.Reason != reason {
			t.Fatalf("/health/stamp flipped to %d %+v", code, rep)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// crash-on-start: Serve fails at once with ErrInjectedCrash, closes its
// listener and never announces the stamp. New refuses a fault no stamp can
// inject.
func TestStampFaultCrashOnStart(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	_, verifier := testIssuer(t)
	cfg := stamp.Config{Region: "westeurope", Store: st, Verifier: verifier}
	for _, bad := range []stamp.Fault{{ErrorRatio: 1.5}, {ErrorRatio: -1}, {ErrorRatio: 0.1, Route: "payments"}, {Latency: -time.Second}} {
		cfg.Fault = bad
		if _, err := stamp.New(cfg); err == nil || !strings.Contains(err.Error(), "fault") {
			t.Errorf("New with fault %+v = %v, want a refusal", bad, err)
		}
	}
	cfg.Fault = stamp.Fault{CrashOnStart: true}
	s, err := stamp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(t.Context(), ln) }()
	select {
	case err := <-served:
		if !errors.Is(err, stamp.ErrInjectedCrash) {
			t.Fatalf("Serve = %v, want ErrInjectedCrash", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve of a crash-on-start stamp still runs after 10 s")
	}
	if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		conn.Close()
		t.Error("the crashed stamp's listener still accepts connections")
	}
	if e, ok := registryEntry(t, st, s.ID()); ok {
		t.Errorf("the crashed stamp is in the registry: %+v", e)
	}
}
