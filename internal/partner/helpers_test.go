package partner

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keys holds an API key and a signing key that a test can rotate. It is
// the client's Secrets and, through API and Signing, what a stand-in
// expects.
type keys struct {
	mu           sync.Mutex
	api, signing string
}

func newKeys(api, signing string) *keys { return &keys{api: api, signing: signing} }

func (k *keys) set(api, signing string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.api, k.signing = api, signing
}

func (k *keys) API() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.api
}

func (k *keys) Signing() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.signing
}

func (k *keys) PartnerAPIKey() (string, error)     { return k.API(), nil }
func (k *keys) PartnerSigningKey() (string, error) { return k.Signing(), nil }

// Distinctive secrets, so that a leak into an error is easy to spot.
const (
	testAPIKey     = "api-key-S3CRET-0001"
	testSigningKey = "signing-key-S3CRET-0001"
)

// tap counts the notification POSTs that reach the server and how many are
// in flight, records them when asked to, and runs before (when set) ahead
// of each with its number.
type tap struct {
	posts    atomic.Int32
	inFlight atomic.Int32
	before   func(n int32, w http.ResponseWriter) bool // true: answered, do not pass on
	record   bool

	mu   sync.Mutex
	seen []seenRequest // when record
}

// seenRequest is a notification POST as it went over the wire.
type seenRequest struct {
	header http.Header
	body   []byte
}

func (tp *tap) requests() []seenRequest {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.seen)
}

func (tp *tap) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/orders" {
			if tp.record {
				body, _ := io.ReadAll(r.Body)
				tp.mu.Lock()
				tp.seen = append(tp.seen, seenRequest{r.Header.Clone(), body})
				tp.mu.Unlock()
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			n := tp.posts.Add(1)
			tp.inFlight.Add(1)
			defer tp.inFlight.Add(-1)
			if tp.before != nil && tp.before(n, w) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// partnerFixture is a stand-in on a real HTTP server, behind a tap.
type partnerFixture struct {
	standIn *StandIn
	keys    *keys // what the stand-in expects
	tap     *tap
	srv     *httptest.Server
}

// startPartner serves a stand-in that expects testAPIKey and
// testSigningKey, behind tp (nil: a plain tap).
func startPartner(t *testing.T, tp *tap) *partnerFixture {
	t.Helper()
	if tp == nil {
		tp = &tap{}
	}
	f := &partnerFixture{keys: newKeys(testAPIKey, testSigningKey), tap: tp}
	f.standIn = NewStandIn(StandInConfig{APIKey: f.keys.API, SigningKey: f.keys.Signing})
	f.srv = httptest.NewServer(f.tap.wrap(f.standIn.Handler()))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *partnerFixture) ordersURL() string { return f.srv.URL + "/v1/orders" }

// client returns a client of f with cfg (URL and Secrets filled in when
// empty); the secrets are testAPIKey and testSigningKey unless cfg has some.
func (f *partnerFixture) client(t *testing.T, cfg ClientConfig) *Client {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = f.ordersURL()
	}
	if cfg.Secrets == nil {
		cfg.Secrets = newKeys(testAPIKey, testSigningKey)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func notification(id string) Notification {
	return Notification{
		OrderID: id,
		User:    "alice",
		Lines:   []Line{{SKU: "contoso-skyline-1-42_5", Quantity: 2}},
		Region:  "westeurope",
		At:      time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noSecrets fails when err's text holds any of the secrets.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range append(secrets, testAPIKey, testSigningKey) {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error %q contains the secret %q", err, s)
		}
	}
}
