package secrets_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/secrets"
	"github.com/contoso/shoes/internal/secrets/secretstore"
)

const storeToken = "store-admin-token-c0ffee"

// startStore runs a secret store on 127.0.0.1. Cleanup brings it back up
// first, releasing any request held by Hang, then closes it.
func startStore(t *testing.T, token string) (*secretstore.Server, *httptest.Server) {
	t.Helper()
	s := secretstore.New(secretstore.Config{Token: token})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.SetMode(secretstore.Up)
		ts.Close()
	})
	return s, ts
}

// storeVersion reads a secret's version straight from the store's API.
func storeVersion(t *testing.T, ts *httptest.Server, name string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/secrets/"+name, nil)
	req.Header.Set("Authorization", "Bearer "+storeToken)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Version int64 `json:"version"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Version
}

func TestHTTPProviderFetchAndRotate(t *testing.T) {
	store, ts := startStore(t, storeToken)
	store.Set("partner-api-key", "api-v1")
	store.Set("partner-signing-key", "sign-v1")
	p := secrets.HTTPProvider{BaseURL: ts.URL, Token: storeToken, Client: ts.Client()}

	got, err := p.Fetch(t.Context(), []string{"partner-api-key", "partner-signing-key"})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if got["partner-api-key"].Reveal() != "api-v1" || got["partner-signing-key"].Reveal() != "sign-v1" || len(got) != 2 {
		t.Fatalf("Fetch = %d secrets with wrong values", len(got))
	}
	if v := storeVersion(t, ts, "partner-api-key"); v != 1 {
		t.Fatalf("version before rotation = %d, want 1", v)
	}

	store.Set("partner-api-key", "api-v2")
	if v := storeVersion(t, ts, "partner-api-key"); v != 2 {
		t.Fatalf("version after rotation = %d, want 2", v)
	}
	got, err = p.Fetch(t.Context(), []string{"partner-api-key"})
	if err != nil || got["partner-api-key"].Reveal() != "api-v2" {
		t.Fatalf("Fetch after rotation: %v", err)
	}

	_, err = p.Fetch(t.Context(), []string{"partner-api-key", "no-such-secret"})
	if !errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), "no-such-secret") {
		t.Fatalf("Fetch of a missing secret = %v, want ErrNotFound naming it", err)
	}
}

func TestHTTPProviderUnavailableFailsFast(t *testing.T) {
	store, ts := startStore(t, "")
	store.Set("partner-api-key", "api-v1")
	store.SetAvailable(false)
	p := secrets.HTTPProvider{BaseURL: ts.URL, Client: ts.Client(), Timeout: 10 * time.Second}
	start := time.Now()
	_, err := p.Fetch(t.Context(), []string{"partner-api-key"})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Fetch from an unavailable store = %v, want a 503 error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Fetch from an unavailable store took %s; it must not wait for the timeout", d)
	}
	store.SetAvailable(true)
	if _, err := p.Fetch(t.Context(), []string{"partner-api-key"}); err != nil {
		t.Fatalf("Fetch after the store came back: %v", err)
	}
}

func TestHTTPProviderHangTimesOut(t *testing.T) {
	store, ts := startStore(t, "")
	store.Set("partner-api-key", "api-v1")
	store.SetMode(secretstore.Hang)
	const timeout = 150 * time.Millisecond
	p := secrets.HTTPProvider{BaseURL: ts.URL, Client: ts.Client(), Timeout: timeout}
	start := time.Now()
	_, err := p.Fetch(t.Context(), []string{"partner-api-key"})
	d := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch from a hanging store = %v, want a deadline error", err)
	}
	if d < timeout || d > timeout+5*time.Second {
		t.Fatalf("Fetch from a hanging store returned after %s, want about %s", d, timeout)
	}
	store.SetMode(secretstore.Up)
	if _, err := p.Fetch(t.Context(), []string{"partner-api-key"}); err != nil {
		t.Fatalf("Fetch after the store came back: %v", err)
	}
}

func TestHTTPProviderTokenRequired(t *testing.T) {
	store, ts := startStore(t, storeToken)
	store.Set("partner-api-key", "api-v1")
	for _, tok := range []string{"", "wrong-token"} {
		p := secrets.HTTPProvider{BaseURL: ts.URL, Token: tok, Client: ts.Client()}
		_, err := p.Fetch(t.Context(), []string{"partner-api-key"})
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("Fetch with token %q = %v, want 401", tok, err)
		}
	}
	p := secrets.HTTPProvider{BaseURL: ts.URL, Token: storeToken, Client: ts.Client()}
	if _, err := p.Fetch(t.Context(), []string{"partner-api-key"}); err != nil {
		t.Fatalf("Fetch with the token: %v", err)
	}
	for _, out := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", &p)} {
		if strings.Contains(out, storeToken) {
			t.Errorf("printing the provider leaks its token: %s", out)
		}
	}
}

func TestHTTPProviderStoreDownIsAnError(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close() // nothing listens there now
	p := secrets.HTTPProvider{BaseURL: url, Timeout: 2 * time.Second}
	if _, err := p.Fetch(t.Context(), []string{"partner-api-key"}); err == nil {
		t.Fatal("Fetch from a closed port succeeded")
	}
}
