package partner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/shop"
)

func TestNotifyDeliversASignedNotification(t *testing.T) {
	f := startPartner(t, &tap{record: true})
	c := f.client(t, ClientConfig{})
	n := notification("o-1")
	if err := c.Notify(t.Context(), n); err != nil {
		t.Fatalf("Notify: %v", err)
	}

	if got := f.standIn.Deliveries("o-1"); got != 1 {
		t.Fatalf("Deliveries = %d, want 1", got)
	}
	if got := f.standIn.Received(); len(got) != 1 || !reflect.DeepEqual(got[0], n) {
		t.Fatalf("Received = %+v, want [%+v]", got, n)
	}
	reqs := f.tap.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	h, body := reqs[0].header, reqs[0].body
	if want, _ := json.Marshal(n); string(body) != string(want) {
		t.Errorf("body = %s, want %s", body, want)
	}
	if h.Get("Content-Type") != "application/json" || h.Get(HeaderIdempotencyKey) != "o-1" || h.Get(HeaderAPIKey) != testAPIKey {
		t.Errorf("headers = %v", h)
	}
	if sig := h.Get(HeaderSignature); sig != Sign([]byte(testSigningKey), body) || !Verify([]byte(testSigningKey), body, sig) {
		t.Errorf("X-Signature %q does not verify", sig)
	}
	if s := c.BreakerState(); s != "closed" {
		t.Errorf("BreakerState = %q, want closed", s)
	}
}

func TestNotifyRepeatedIsReceivedOnce(t *testing.T) {
	f := startPartner(t, nil)
	c := f.client(t, ClientConfig{})
	for range 3 {
		if err := c.Notify(t.Context(), notification("o-1")); err != nil {
			t.Fatalf("Notify: %v", err)
		}
	}
	if got := f.standIn.Received(); len(got) != 1 {
		t.Fatalf("Received %d notifications, want 1", len(got))
	}
	if got := f.standIn.Deliveries("o-1"); got != 3 {
		t.Fatalf("Deliveries = %d, want 3", got)
	}
}

// The partner already has the order with another body (a redelivered
// message built anew): 409 counts as delivered, and the first version stays.
func TestNotifyConflictCountsAsDelivered(t *testing.T) {
	f := startPartner(t, nil)
	c := f.client(t, ClientConfig{})
	first := notification("o-1")
	if err := c.Notify(t.Context(), first); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	again := first
	again.At = first.At.Add(time.Minute)
	if err := c.Notify(t.Context(), again); err != nil {
		t.Fatalf("Notify with another body: %v", err)
	}
	if got := f.standIn.Received(); len(got) != 1 || !got[0].At.Equal(first.At) || f.tap.posts.Load() != 2 {
		t.Fatalf("Received = %+v after %d posts", got, f.tap.posts.Load())
	}
}

func TestNotifyWrongAPIKeyIsRejectedWithoutRetry(t *testing.T) {
	f := startPartner(t, nil)
	c := f.client(t, ClientConfig{Secrets: newKeys("api-key-WRONG", testSigningKey), BreakerFailures: 2})
	err := c.Notify(t.Context(), notification("o-1"))
	if !errors.Is(err, ErrRejected) || shop.KindOf(err) != shop.KindInvalid || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("Notify = %v (kind %s), want ErrRejected of kind invalid", err, shop.KindOf(err))
	}
	if !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), `"o-1"`) {
		t.Errorf("error %q names neither the status nor the order", err)
	}
	noSecrets(t, err, "api-key-WRONG")
	if d, r, p := f.standIn.Deliveries("o-1"), f.standIn.Rejected(), f.tap.posts.Load(); d != 0 || r != 1 || p != 1 {
		t.Fatalf("deliveries %d, rejected %d, posts %d; want 0, 1, 1", d, r, p)
	}
	// Rejections say the partner is up: they never open the breaker.
	for range 3 {
		if err := c.Notify(t.Context(), notification("o-1")); !errors.Is(err, ErrRejected) {
			t.Fatalf("Notify = %v, want ErrRejected", err)
		}
	}
	if s := c.BreakerState(); s != "closed" || f.tap.posts.Load() != 4 {
		t.Fatalf("after 4 rejections: breaker %q, %d posts; want closed, 4", s, f.tap.posts.Load())
	}
}

func TestNotifyStatusClassification(t *testing.T) {
	for _, tc := range []struct {
		status    int
		retried   bool
		permanent bool
	}{
		{http.StatusInternalServerError, true, false},
		{http.StatusBadGateway, true, false},
		{http.StatusServiceUnavailable, true, false},
		{http.StatusRequestTimeout, true, false},
		{http.StatusTooManyRequests, true, false},
		{http.StatusBadRequest, false, true},
		{http.StatusUnauthorized, false, true},
		{http.StatusForbidden, false, true},
		{http.StatusNotFound, false, true},
		{http.StatusUnprocessableEntity, false, true},
		{http.StatusFound, false, true}, // redirects are refused
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			f := startPartner(t, &tap{before: func(n int32, w http.ResponseWriter) bool {
				if n > 1 {
					return false
				}
				if tc.status == http.StatusFound {
					w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
				}
				w.WriteHeader(tc.status)
				return true
			}})
			c := f.client(t, ClientConfig{})
			err := c.Notify(t.Context(), notification("o-1"))
			switch {
			case tc.retried && (err != nil || f.tap.posts.Load() != 2 || f.standIn.Deliveries("o-1") != 1):
				t.Fatalf("Notify = %v after %d posts; want success on the retry", err, f.tap.posts.Load())
			case tc.permanent && (!errors.Is(err, ErrRejected) || f.tap.posts.Load() != 1):
				t.Fatalf("Notify = %v after %d posts; want ErrRejected after 1", err, f.tap.posts.Load())
			}
		})
	}
}

func TestNotifyRetriesThroughFailures(t *testing.T) {
	// The partner fails the first two attempts and then recovers: the tap
	// drives the stand-in's mode from the attempt count.
	var standIn atomic.Pointer[StandIn]
	f := startPartner(t, &tap{before: func(n int32, _ http.ResponseWriter) bool {
		if n <= 2 {
			standIn.Load().SetMode(Failing, 0)
		} else {
			standIn.Load().SetMode(Up, 0)
		}
		return false
	}})
	standIn.Store(f.standIn)
	c := f.client(t, ClientConfig{})
	if err := c.Notify(t.Context(), notification("o-1")); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if p, d := f.tap.posts.Load(), f.standIn.Deliveries("o-1"); p != 3 || d != 1 {
		t.Fatalf("posts %d, deliveries %d; want 3, 1", p, d)
	}
}

func TestNotifySlowPartnerTimesOutEveryAttempt(t *testing.T) {
	f := startPartner(t, nil)
	f.standIn.SetMode(Slow, 10*time.Second)
	c := f.client(t, ClientConfig{AttemptTimeout: 200 * time.Millisecond, MaxAttempts: 4})
	start := time.Now()
	err := c.Notify(t.Context(), notification("o-1"))
	elapsed := time.Since(start)
	if shop.KindOf(err) != shop.KindUnavailable || !strings.Contains(err.Error(), "timed out") || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("Notify = %v (kind %s), want an unavailable time-out", err, shop.KindOf(err))
	}
	// 4 × 200 ms plus back-off of at most 150 + 300 + 600 ms.
	if elapsed < 800*time.Millisecond || elapsed > 10*time.Second {
		t.Fatalf("Notify took %s; want 4 attempts of 200 ms and back-off, well under 10 s", elapsed)
	}
	if p, d := f.tap.posts.Load(), f.standIn.Deliveries("o-1"); p != 4 || d != 0 {
		t.Fatalf("posts %d, deliveries %d; want 4, 0", p, d)
	}
	noSecrets(t, err)
}

func TestNotifyCallerDeadlineStopsRetries(t *testing.T) {
	f := startPartner(t, nil)
	f.standIn.SetMode(Slow, 10*time.Second)
	c := f.client(t, ClientConfig{AttemptTimeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Notify(ctx, notification("o-1"))
	if !errors.Is(err, context.DeadlineExceeded) || shop.KindOf(err) != shop.KindUnavailable {
		t.Fatalf("Notify = %v, want the caller's deadline, kind unavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Notify took %s after a 200 ms deadline", elapsed)
	}
}

func TestNotifyRetriesAPartnerThatIsDown(t *testing.T) {
	f := startPartner(t, nil)
	f.standIn.SetMode(Down, 0)
	c := f.client(t, ClientConfig{MaxAttempts: 3})
	err := c.Notify(t.Context(), notification("o-1"))
	if shop.KindOf(err) != shop.KindUnavailable || errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "3 attempts made") {
		t.Fatalf("Notify = %v (kind %s), want unavailable after 3 attempts", err, shop.KindOf(err))
	}
	if p := f.tap.posts.Load(); p < 3 {
		t.Fatalf("%d posts reached the partner, want at least 3", p)
	}
	f.standIn.SetMode(Up, 0)
	if err := c.Notify(t.Context(), notification("o-1")); err != nil {
		t.Fatalf("Notify once up: %v", err)
	}
	if d := f.standIn.Deliveries("o-1"); d != 1 {
		t.Fatalf("Deliveries = %d, want 1", d)
	}
}

func TestBreakerOpensFailsFastAndRecovers(t *testing.T) {
	f := startPartner(t, nil)
	f.standIn.SetMode(Failing, 0)
	c := f.client(t, ClientConfig{MaxAttempts: 2, BreakerFailures: 3, BreakerDelay: 200 * time.Millisecond})
	posts := func() int32 { return f.tap.posts.Load() }

	// Two failed attempts: still closed.
	err := c.Notify(t.Context(), notification("o-1"))
	if shop.KindOf(err) != shop.KindUnavailable || errors.Is(err, ErrCircuitOpen) || posts() != 2 || c.BreakerState() != "closed" {
		t.Fatalf("first Notify = %v, %d posts, breaker %s", err, posts(), c.BreakerState())
	}
	// The third failure opens it; the retry then fails fast.
	err = c.Notify(t.Context(), notification("o-1"))
	if !errors.Is(err, ErrCircuitOpen) || shop.KindOf(err) != shop.KindUnavailable || posts() != 3 || c.BreakerState() != "open" {
		t.Fatalf("second Notify = %v, %d posts, breaker %s; want ErrCircuitOpen after 3 posts", err, posts(), c.BreakerState())
	}
	start := time.Now()
	err = c.Notify(t.Context(), notification("o-1"))
	if !errors.Is(err, ErrCircuitOpen) || posts() != 3 {
		t.Fatalf("Notify while open = %v after %d posts; want ErrCircuitOpen without a call", err, posts())
	}
	if elapsed := time.Since(start); elapsed > 100*time.Millisecond {
		t.Fatalf("Notify while open took %s; want fail-fast", elapsed)
	}

	// After the delay one trial goes through; its failure re-opens.
	waitFor(t, 2*time.Second, "half-open", func() bool { return c.BreakerState() == "half-open" })
	err = c.Notify(t.Context(), notification("o-1"))
	if !errors.Is(err, ErrCircuitOpen) || posts() != 4 || c.BreakerState() != "open" {
		t.Fatalf("failed trial: Notify = %v, %d posts, breaker %s; want ErrCircuitOpen, 4, open", err, posts(), c.BreakerState())
	}

	// A successful trial closes it.
	f.standIn.SetMode(Up, 0)
	waitFor(t, 2*time.Second, "half-open", func() bool { return c.BreakerState() == "half-open" })
	if err := c.Notify(t.Context(), notification("o-1")); err != nil {
		t.Fatalf("trial Notify: %v", err)
	}
	if s := c.BreakerState(); s != "closed" || posts() != 5 || f.standIn.Deliveries("o-1") != 1 {
		t.Fatalf("after the trial: breaker %s, %d posts", s, posts())
	}
}

// A breaker an outage opened closes on the first ping that succeeds after
// its delay, without waiting for an order to try the partner; a ping
// before the delay leaves it open.
//
// Mutation tried: Ping without its trial → "after a ping past the delay:
// breaker half-open, want closed".
func TestASuccessfulPingIsTheBreakersTrial(t *testing.T) {
	f := startPartner(t, nil)
	f.standIn.SetMode(Failing, 0)
	c := f.client(t, ClientConfig{MaxAttempts: 1, BreakerFailures: 1, BreakerDelay: 300 * time.Millisecond})
	if err := c.Notify(t.Context(), notification("o-1")); err == nil || c.BreakerState() != "open" {
		t.Fatalf("Notify = %v, breaker %s; want an error and open", err, c.BreakerState())
	}
	f.standIn.SetMode(Up, 0)
	if err := c.Ping(t.Context()); err != nil || c.BreakerState() != "open" {
		t.Fatalf("ping within the delay = %v, breaker %s; want nil and still open", err, c.BreakerState())
	}
	waitFor(t, 2*time.Second, "half-open", func() bool { return c.BreakerState() == "half-open" })
	posts := f.tap.posts.Load()
	if err := c.Ping(t.Context()); err != nil || c.BreakerState() != "closed" {
		t.Fatalf("after a ping past the delay: %v, breaker %s, want closed", err, c.BreakerState())
	}
	if f.tap.posts.Load() != posts {
		t.Fatal("the trial posted a notification")
	}
}

func TestBulkheadFailsFastWhenFull(t *testing.T) {
	f := startPartner(t, nil)
	f.standIn.SetMode(Slow, 10*time.Second)
	c := f.client(t, ClientConfig{MaxConcurrent: 2, MaxAttempts: 1, AttemptTimeout: 10 * time.Second})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() { errs <- c.Notify(ctx, notification(fmt.Sprintf("o-%d", i))) }()
	}
	waitFor(t, 2*time.Second, "2 calls in flight", func() bool { return f.tap.inFlight.Load() == 2 })

	start := time.Now()
	err := c.Notify(t.Context(), notification("o-3"))
	elapsed := time.Since(start)
	if !errors.Is(err, ErrBusy) || shop.KindOf(err) != shop.KindUnavailable {
		t.Fatalf("third Notify = %v (kind %s), want ErrBusy", err, shop.KindOf(err))
	}
	if elapsed > 1500*time.Millisecond {
		t.Fatalf("third Notify waited %s; want at most about 1 s", elapsed)
	}
	if p := f.tap.posts.Load(); p != 2 {
		t.Fatalf("%d posts, want 2: the third call must not reach the partner", p)
	}

	cancel()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled Notify = %v, want context.Canceled", err)
		}
	}
	f.standIn.SetMode(Up, 0)
	if err := c.Notify(t.Context(), notification("o-3")); err != nil {
		t.Fatalf("Notify after the slots freed: %v", err)
	}
}

func TestRotatedKeysApplyWithoutANewClient(t *testing.T) {
	f := startPartner(t, nil)
	secrets := newKeys(testAPIKey, testSigningKey)
	c := f.client(t, ClientConfig{Secrets: secrets})
	if err := c.Notify(t.Context(), notification("o-1")); err != nil {
		t.Fatalf("Notify: %v", err)
	}

	const api2, signing2 = "api-key-S3CRET-0002", "signing-key-S3CRET-0002"
	secrets.set(api2, signing2)
	f.keys.set(api2, signing2)
	if err := c.Notify(t.Context(), notification("o-2")); err != nil {
		t.Fatalf("Notify after rotation: %v", err)
	}

	// The partner moves on to a signing key the client has not got yet.
	const signing3 = "signing-key-S3CRET-0003"
	f.keys.set(api2, signing3)
	err := c.Notify(t.Context(), notification("o-3"))
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Notify with a stale signing key = %v, want ErrRejected", err)
	}
	noSecrets(t, err, api2, signing2, signing3)
	if got := len(f.standIn.Received()); got != 2 || f.standIn.Rejected() != 1 {
		t.Fatalf("received %d, rejected %d; want 2, 1", got, f.standIn.Rejected())
	}
}

// A partner that echoes credentials in its errors must not get them into
// ours.
func TestErrorsRedactSecrets(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusServiceUnavailable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"title":  "nope",
				"status": status,
				"detail": fmt.Sprintf("key %s, signature %s (signed with %s)", r.Header.Get(HeaderAPIKey), r.Header.Get(HeaderSignature), testSigningKey),
			})
		}))
		c, err := NewClient(ClientConfig{URL: srv.URL, Secrets: newKeys(testAPIKey, testSigningKey), MaxAttempts: 2})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Notify(t.Context(), notification("o-1"))
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "[redacted]") || !strings.Contains(err.Error(), "signature sha256=") {
			t.Fatalf("status %d: Notify = %v, want the partner's detail with the secrets redacted", status, err)
		}
		noSecrets(t, err)
	}
}

func TestNotifyRejectsAnUnusableOrderIDWithoutACall(t *testing.T) {
	f := startPartner(t, nil)
	c := f.client(t, ClientConfig{})
	for _, id := range []string{"", "has space", "line\nbreak", strings.Repeat("x", 129)} {
		err := c.Notify(t.Context(), notification(id))
		if shop.KindOf(err) != shop.KindInvalid || errors.Is(err, ErrRejected) {
			t.Errorf("Notify(%q) = %v, want kind invalid, not ErrRejected", id, err)
		}
	}
	if p := f.tap.posts.Load(); p != 0 {
		t.Fatalf("%d posts, want 0", p)
	}
}

type failingSecrets struct{}

func (failingSecrets) PartnerAPIKey() (string, error)     { return "", errors.New("secret store down") }
func (failingSecrets) PartnerSigningKey() (string, error) { return "", errors.New("secret store down") }

func TestNotifyWithoutCredentialsIsUnavailable(t *testing.T) {
	f := startPartner(t, nil)
	for _, s := range []Secrets{failingSecrets{}, newKeys("", "")} {
		err := f.client(t, ClientConfig{Secrets: s}).Notify(t.Context(), notification("o-1"))
		if shop.KindOf(err) != shop.KindUnavailable {
			t.Errorf("Notify = %v, want kind unavailable", err)
		}
	}
	if p := f.tap.posts.Load(); p != 0 {
		t.Fatalf("%d posts, want 0", p)
	}
}

func TestNewClientValidatesConfig(t *testing.T) {
	ok := ClientConfig{URL: "http://127.0.0.1:9000/v1/orders", Secrets: newKeys("a", "s")}
	for name, edit := range map[string]func(*ClientConfig){
		"no URL":            func(c *ClientConfig) { c.URL = "" },
		"relative URL":      func(c *ClientConfig) { c.URL = "/v1/orders" },
		"other scheme":      func(c *ClientConfig) { c.URL = "ftp://partner/v1/orders" },
		"bad URL":           func(c *ClientConfig) { c.URL = "http://[::1" },
		"no secrets":        func(c *ClientConfig) { c.Secrets = nil },
		"negative timeout":  func(c *ClientConfig) { c.AttemptTimeout = -1 },
		"negative attempts": func(c *ClientConfig) { c.MaxAttempts = -1 },
		"negative failures": func(c *ClientConfig) { c.BreakerFailures = -1 },
		"negative delay":    func(c *ClientConfig) { c.BreakerDelay = -1 },
		"negative bulkhead": func(c *ClientConfig) { c.MaxConcurrent = -1 },
	} {
		cfg := ok
		edit(&cfg)
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("%s: NewClient accepted %+v", name, cfg)
		}
	}
	if _, err := NewClient(ok); err != nil {
		t.Fatalf("NewClient(%+v): %v", ok, err)
	}
}
