package secretstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/secrets/secretstore"
)

const token = "store-token-5e1f"

func start(t *testing.T, cfg secretstore.Config) (*secretstore.Server, *httptest.Server) {
	t.Helper()
	s := secretstore.New(cfg)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.SetMode(secretstore.Up) // release requests held by Hang
		ts.Close()
	})
	return s, ts
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// call makes one request with a deadline. auth is the bearer token to send
// ("" for none); ct the Content-Type ("" for none).
func call(t *testing.T, ts *httptest.Server, method, path, body, ct, auth string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

type secretBody struct {
	Name      string    `json:"name"`
	Value     *string   `json:"value"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func TestSecretsLifecycle(t *testing.T) {
	var logs bytes.Buffer
	s, ts := start(t, secretstore.Config{Token: token, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	const v1, v2 = "first-value-a1b2c3", "second-value-d4e5f6"

	r := call(t, ts, http.MethodPut, "/v1/secrets/partner-api-key", `{"value":"`+v1+`"}`, "application/json", token)
	put := decode[secretBody](t, r)
	if r.status != 200 || put.Name != "partner-api-key" || put.Version != 1 || put.Value != nil || put.UpdatedAt.IsZero() {
		t.Fatalf("first PUT = %d %s", r.status, r.body)
	}
	r = call(t, ts, http.MethodPut, "/v1/secrets/partner-api-key", `{"value":"`+v2+`"}`, "", token)
	if put := decode[secretBody](t, r); r.status != 200 || put.Version != 2 {
		t.Fatalf("rotating PUT = %d %s", r.status, r.body)
	}

	r = call(t, ts, http.MethodGet, "/v1/secrets/partner-api-key", "", "", token)
	got := decode[secretBody](t, r)
	if r.status != 200 || got.Value == nil || *got.Value != v2 || got.Version != 2 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET = %d %s %v", r.status, r.body, r.header)
	}

	s.Set("partner-signing-key", "signing-value-0f0f")
	r = call(t, ts, http.MethodGet, "/v1/secrets?names=partner-signing-key,partner-api-key,nope,partner-api-key", "", "", token)
	batch := decode[struct {
		Secrets []secretBody `json:"secrets"`
		Missing []string     `json:"missing"`
	}](t, r)
	if r.status != 200 || len(batch.Secrets) != 2 || batch.Secrets[0].Name != "partner-signing-key" || *batch.Secrets[1].Value != v2 ||
		len(batch.Missing) != 1 || batch.Missing[0] != "nope" {
		t.Fatalf("batch GET = %d %s", r.status, r.body)
	}

	// Failed requests log, but never a value.
	call(t, ts, http.MethodPut, "/v1/secrets/partner-api-key", `{"value":"`+v1+`","extra":1}`, "application/json", token)
	call(t, ts, http.MethodPut, "/v1/secrets/partner-api-key", `{"value":"`+v1+`"}`, "application/json", "wrong")
	if !strings.Contains(logs.String(), "partner-api-key") {
		t.Fatalf("no change logged: %s", logs.String())
	}
	for _, v := range []string{v1, v2, "signing-value-0f0f", token} {
		if strings.Contains(logs.String(), v) {
			t.Fatalf("logs contain a secret: %s", logs.String())
		}
	}
}

func TestBadInputIsProblemJSON(t *testing.T) {
	s, ts := start(t, secretstore.Config{Token: token})
	s.Set("partner-api-key", "original-value")
	var hundredOne []string
	for i := range secretstore.MaxBatchNames + 1 {
		hundredOne = append(hundredOne, "n"+strconv.Itoa(i))
	}
	for _, tc := range []struct {
		name, method, path, body, ct, auth string
		status                             int
		field                              string
	}{
		{"bad name upper", "GET", "/v1/secrets/Partner", "", "", token, 400, "name"},
		{"bad name underscore", "GET", "/v1/secrets/partner_key", "", "", token, 400, "name"},
		{"bad name leading dash", "GET", "/v1/secrets/-partner", "", "", token, 400, "name"},
		{"bad name too long", "GET", "/v1/secrets/" + strings.Repeat("a", 64), "", "", token, 400, "name"},
		{"unknown secret", "GET", "/v1/secrets/no-such-secret", "", "", token, 404, ""},
		{"put bad name", "PUT", "/v1/secrets/Bad.Name", `{"value":"x"}`, "application/json", token, 400, "name"},
		{"oversized value", "PUT", "/v1/secrets/partner-api-key", `{"value":"` + strings.Repeat("v", secretstore.MaxValueBytes+1) + `"}`, "application/json", token, 413, "value"},
		{"malformed JSON", "PUT", "/v1/secrets/partner-api-key", `{"value":`, "application/json", token, 400, ""},
		{"not an object", "PUT", "/v1/secrets/partner-api-key", `["x"]`, "application/json", token, 400, ""},
		{"unknown field", "PUT", "/v1/secrets/partner-api-key", `{"valeu":"x"}`, "application/json", token, 400, "valeu"},
		{"missing value", "PUT", "/v1/secrets/partner-api-key", `{}`, "application/json", token, 400, "value"},
		{"empty value", "PUT", "/v1/secrets/partner-api-key", `{"value":""}`, "application/json", token, 400, "value"},
		{"value not a string", "PUT", "/v1/secrets/partner-api-key", `{"value":5}`, "application/json", token, 400, "value"},
		{"empty body", "PUT", "/v1/secrets/partner-api-key", ``, "application/json", token, 400, ""},
		{"wrong media type", "PUT", "/v1/secrets/partner-api-key", `{"value":"x"}`, "text/plain", token, 415, ""},
		{"put without token", "PUT", "/v1/secrets/partner-api-key", `{"value":"x"}`, "application/json", "", 401, ""},
		{"put with wrong token", "PUT", "/v1/secrets/partner-api-key", `{"value":"x"}`, "application/json", "nope", 401, ""},
		{"get without token", "GET", "/v1/secrets/partner-api-key", "", "", "", 401, ""},
		{"batch without token", "GET", "/v1/secrets?names=partner-api-key", "", "", "", 401, ""},
		{"batch without names", "GET", "/v1/secrets", "", "", token, 400, "names"},
		{"batch with empty names", "GET", "/v1/secrets?names=,", "", "", token, 400, "names"},
		{"batch with a bad name", "GET", "/v1/secrets?names=partner-api-key,Bad", "", "", token, 400, "names"},
		{"batch with too many names", "GET", "/v1/secrets?names=" + strings.Join(hundredOne, ","), "", "", token, 400, "names"},
		{"unknown mode", "PUT", "/v1/status", `{"mode":"down"}`, "application/json", token, 400, "mode"},
		{"missing mode", "PUT", "/v1/status", `{}`, "application/json", token, 400, "mode"},
		{"mode not a string", "PUT", "/v1/status", `{"mode":1}`, "application/json", token, 400, "mode"},
		{"status without token", "PUT", "/v1/status", `{"mode":"hang"}`, "application/json", "", 401, ""},
		{"delete secret", "DELETE", "/v1/secrets/partner-api-key", "", "", token, 405, ""},
		{"post batch", "POST", "/v1/secrets", `{}`, "application/json", token, 405, ""},
		{"unknown route", "GET", "/v2/secrets", "", "", token, 404, ""},
		{"nested path", "GET", "/v1/secrets/a/b", "", "", token, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, ts, tc.method, tc.path, tc.body, tc.ct, tc.auth)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
			p := decode[httpapi.Problem](t, r)
			if p.Status != tc.status || p.Field != tc.field || !strings.HasPrefix(p.Type, httpapi.ProblemTypeBase) {
				t.Fatalf("problem = %+v, want status %d field %q", p, tc.status, tc.field)
			}
		})
	}
	r := call(t, ts, http.MethodGet, "/v1/secrets/partner-api-key", "", "", token)
	if got := decode[secretBody](t, r); got.Version != 1 || *got.Value != "original-value" {
		t.Fatalf("bad requests changed the secret: %s", r.body)
	}
	if s.Mode() != secretstore.Up {
		t.Fatalf("bad requests changed the mode to %s", s.Mode())
	}
}

func TestModes(t *testing.T) {
	s, ts := start(t, secretstore.Config{})
	s.Set("partner-api-key", "value-1")

	r := call(t, ts, http.MethodPut, "/v1/status", `{"mode":"unavailable"}`, "application/json", "")
	if r.status != 200 || s.Mode() != secretstore.Unavailable {
		t.Fatalf("PUT /v1/status = %d %s, mode %s", r.status, r.body, s.Mode())
	}
	for _, path := range []string{"/v1/secrets/partner-api-key", "/v1/secrets?names=partner-api-key"} {
		r = call(t, ts, http.MethodGet, path, "", "", "")
		if r.status != 503 || r.header.Get("Content-Type") != "application/problem+json" || r.header.Get("Retry-After") == "" {
			t.Fatalf("GET %s while unavailable = %d %v %s", path, r.status, r.header, r.body)
		}
	}
	r = call(t, ts, http.MethodGet, "/v1/status", "", "", "")
	if st := decode[struct{ Mode string }](t, r); r.status != 200 || st.Mode != "unavailable" {
		t.Fatalf("GET /v1/status while unavailable = %d %s", r.status, r.body)
	}

	// Hang: the request is accepted and not answered before the client gives up.
	s.SetMode(secretstore.Hang)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/secrets/partner-api-key", nil)
	if resp, err := ts.Client().Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("GET while hanging = %v, want the client's deadline", err)
	}
	r = call(t, ts, http.MethodGet, "/v1/status", "", "", "")
	if st := decode[struct{ Mode string }](t, r); st.Mode != "hang" {
		t.Fatalf("GET /v1/status while hanging = %s", r.body)
	}

	// A held request counts in the status until the mode lets it go.
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/secrets/partner-api-key", nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	heldNow := func() int {
		r := call(t, ts, http.MethodGet, "/v1/status", "", "", "")
		return decode[struct{ Held int }](t, r).Held
	}
	for deadline := time.Now().Add(10 * time.Second); heldNow() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/status never counted the held request: held %d", heldNow())
		}
	}

	s.SetAvailable(true)
	if status := <-answered; status != 200 {
		t.Fatalf("the held request got %d once the store was up, want 200", status)
	}
	if n := heldNow(); n != 0 {
		t.Fatalf("GET /v1/status counts %d held requests after they were answered, want 0", n)
	}
	r = call(t, ts, http.MethodGet, "/v1/secrets/partner-api-key", "", "", "")
	if r.status != 200 {
		t.Fatalf("GET after SetAvailable(true) = %d", r.status)
	}
	s.SetAvailable(false)
	if s.Mode() != secretstore.Unavailable {
		t.Fatalf("SetAvailable(false) left mode %s", s.Mode())
	}
}

// A request held by Hang is answered as soon as the mode changes.
func TestHangReleasedByModeChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := secretstore.New(secretstore.Config{})
		s.Set("partner-api-key", "value-1")
		s.SetMode(secretstore.Hang)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/secrets/partner-api-key", nil))
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("a request was answered while the store hangs")
		default:
		}
		s.SetMode(secretstore.Up)
		<-done
		if rec.Code != 200 {
			t.Fatalf("released request answered %d", rec.Code)
		}
	})
}

func TestSetPanicsOnInvalidInput(t *testing.T) {
	s := secretstore.New(secretstore.Config{})
	for _, tc := range []struct{ name, value string }{
		{"Bad", "v"}, {"ok", ""}, {"ok", strings.Repeat("v", secretstore.MaxValueBytes+1)},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Set(%q, %d bytes) did not panic", tc.name, len(tc.value))
				}
			}()
			s.Set(tc.name, tc.value)
		}()
	}
}

func TestModeStringAndConfigHidesToken(t *testing.T) {
	for m, want := range map[secretstore.Mode]string{secretstore.Up: "up", secretstore.Unavailable: "unavailable", secretstore.Hang: "hang"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q", m, m.String())
		}
	}
	cfg := secretstore.Config{Token: token}
	for _, out := range []string{cfg.String(), cfg.GoString()} {
		if strings.Contains(out, token) {
			t.Errorf("config prints its token: %s", out)
		}
	}
}
