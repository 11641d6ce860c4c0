package partner

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
)

// send makes one request to the stand-in and returns the status and body.
// A transport error fails the test.
func send(t *testing.T, method, url string, header http.Header, body []byte) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// signed returns the headers of a good notification POST of body for id.
func signed(id string, body []byte) http.Header {
	return http.Header{
		"Content-Type":       {"application/json"},
		HeaderAPIKey:         {testAPIKey},
		HeaderSignature:      {Sign([]byte(testSigningKey), body)},
		HeaderIdempotencyKey: {id},
	}
}

func body(t *testing.T, n Notification) []byte {
	t.Helper()
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problem checks that an answer is a problem document of status and
// returns it.
func problem(t *testing.T, status int, b []byte, h http.Header, wantStatus int) httpapi.Problem {
	t.Helper()
	var p httpapi.Problem
	if status != wantStatus || h.Get("Content-Type") != "application/problem+json" || json.Unmarshal(b, &p) != nil ||
		p.Status != wantStatus || !strings.HasPrefix(p.Type, httpapi.ProblemTypeBase) || p.Title == "" {
		t.Fatalf("answer %d %s %s, want a %d problem", status, h.Get("Content-Type"), b, wantStatus)
	}
	return p
}

func TestStandInRejectsBadNotifications(t *testing.T) {
	good := body(t, notification("o-1"))
	for _, tc := range []struct {
		name     string
		body     []byte
		edit     func(h http.Header, body []byte)
		status   int
		field    string
		rejected bool // counts in Rejected
	}{
		{name: "missing API key", edit: func(h http.Header, _ []byte) { h.Del(HeaderAPIKey) }, status: 401, field: HeaderAPIKey, rejected: true},
		{name: "wrong API key", edit: func(h http.Header, _ []byte) { h.Set(HeaderAPIKey, "api-key-WRONG") }, status: 401, field: HeaderAPIKey, rejected: true},
		{name: "API key with a suffix", edit: func(h http.Header, _ []byte) { h.Set(HeaderAPIKey, testAPIKey+"x") }, status: 401, field: HeaderAPIKey, rejected: true},
		{name: "missing signature", edit: func(h http.Header, _ []byte) { h.Del(HeaderSignature) }, status: 401, field: HeaderSignature, rejected: true},
		{name: "signature with another key", edit: func(h http.Header, b []byte) { h.Set(HeaderSignature, Sign([]byte("other"), b)) }, status: 401, field: HeaderSignature, rejected: true},
		{name: "signature of another body", edit: func(h http.Header, b []byte) { h.Set(HeaderSignature, Sign([]byte(testSigningKey), append(b, ' '))) }, status: 401, field: HeaderSignature, rejected: true},
		{name: "malformed signature", edit: func(h http.Header, _ []byte) { h.Set(HeaderSignature, "sha256=xyz") }, status: 401, field: HeaderSignature, rejected: true},
		{name: "missing Idempotency-Key", edit: func(h http.Header, _ []byte) { h.Del(HeaderIdempotencyKey) }, status: 400, field: HeaderIdempotencyKey},
		{name: "malformed Idempotency-Key", edit: func(h http.Header, _ []byte) { h.Set(HeaderIdempotencyKey, "o 1") }, status: 400, field: HeaderIdempotencyKey},
		{name: "Idempotency-Key is not the orderId", edit: func(h http.Header, _ []byte) { h.Set(HeaderIdempotencyKey, "o-2") }, status: 400, field: "orderId"},
		{name: "malformed JSON", body: []byte(`{"orderId":`), status: 400},
		{name: "empty body", body: []byte{}, status: 400},
		{name: "JSON array", body: []byte(`[{"orderId":"o-1"}]`), status: 400},
		{name: "unknown field", body: []byte(`{"orderId":"o-1","secretMenu":true}`), status: 400, field: "secretMenu"},
		{name: "wrong type", body: []byte(`{"orderId":"o-1","lines":[{"sku":"s","quantity":"2"}]}`), status: 400, field: "lines.quantity"},
		{name: "not JSON", edit: func(h http.Header, _ []byte) { h.Set("Content-Type", "text/plain") }, status: 415},
		{name: "over 64 KiB", body: []byte(`{"orderId":"o-1","user":"` + strings.Repeat("a", 64<<10) + `"}`), status: 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startPartner(t, nil)
			b := good
			if tc.body != nil {
				b = tc.body
			}
			h := signed("o-1", b)
			if tc.edit != nil {
				tc.edit(h, b)
			}
			status, answer, rh := send(t, http.MethodPost, f.ordersURL(), h, b)
			p := problem(t, status, answer, rh, tc.status)
			if tc.field != "" && p.Field != tc.field {
				t.Errorf("problem field %q, want %q (%+v)", p.Field, tc.field, p)
			}
			if strings.Contains(string(answer), testAPIKey) || strings.Contains(string(answer), testSigningKey) {
				t.Errorf("answer %s holds a secret", answer)
			}
			wantRejected := 0
			if tc.rejected {
				wantRejected = 1
			}
			if got := f.standIn.Rejected(); got != wantRejected {
				t.Errorf("Rejected = %d, want %d", got, wantRejected)
			}
			if got := f.standIn.Received(); len(got) != 0 || f.standIn.Deliveries("o-1") != 0 {
				t.Errorf("recorded %+v", got)
			}
		})
	}
}

func TestStandInRejectsEverythingWithoutExpectedKeys(t *testing.T) {
	for name, cfg := range map[string]StandInConfig{
		"nil keys":   {},
		"empty keys": {APIKey: func() string { return "" }, SigningKey: func() string { return "" }},
	} {
		s := NewStandIn(cfg)
		b := body(t, notification("o-1"))
		h := signed("o-1", b)
		h.Set(HeaderAPIKey, "")
		req, _ := http.NewRequest(http.MethodPost, "/v1/orders", bytes.NewReader(b))
		req.Header = h
		rec := newRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.status != http.StatusUnauthorized || s.Rejected() != 1 {
			t.Errorf("%s: status %d, rejected %d; want 401, 1", name, rec.status, s.Rejected())
		}
	}
}

// recorder is a minimal http.ResponseWriter for calls that never hijack.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func TestStandInDeduplicatesByIdempotencyKey(t *testing.T) {
	f := startPartner(t, nil)
	b := body(t, notification("o-1"))
	status, answer, _ := send(t, http.MethodPost, f.ordersURL(), signed("o-1", b), b)
	if status != http.StatusCreated || !strings.Contains(string(answer), `"received"`) {
		t.Fatalf("first delivery: %d %s, want 201 received", status, answer)
	}
	status, answer, _ = send(t, http.MethodPost, f.ordersURL(), signed("o-1", b), b)
	if status != http.StatusOK || !strings.Contains(string(answer), `"duplicate"`) {
		t.Fatalf("repeat: %d %s, want 200 duplicate", status, answer)
	}
	other := notification("o-1")
	other.User = "mallory"
	ob := body(t, other)
	status, answer, h := send(t, http.MethodPost, f.ordersURL(), signed("o-1", ob), ob)
	problem(t, status, answer, h, http.StatusConflict)

	if got := f.standIn.Received(); len(got) != 1 || got[0].User != "alice" {
		t.Fatalf("Received = %+v, want the first version once", got)
	}
	if got := f.standIn.Deliveries("o-1"); got != 2 {
		t.Fatalf("Deliveries = %d, want 2 (the conflict is not accepted)", got)
	}

	// The list endpoint shows the same.
	send(t, http.MethodPost, f.ordersURL(), http.Header{}, b) // one rejection
	status, answer, _ = send(t, http.MethodGet, f.ordersURL(), nil, nil)
	var list struct {
		Orders   []Notification `json:"orders"`
		Rejected int            `json:"rejected"`
	}
	if status != http.StatusOK || json.Unmarshal(answer, &list) != nil || len(list.Orders) != 1 || list.Orders[0].OrderID != "o-1" || list.Rejected != 1 {
		t.Fatalf("GET /v1/orders = %d %s", status, answer)
	}
}

func TestStandInBoundsMemory(t *testing.T) {
	s := NewStandIn(StandInConfig{APIKey: func() string { return testAPIKey }, SigningKey: func() string { return testSigningKey }})
	s.maxOrders = 2
	for i, want := range []int{201, 201, 507} {
		b := body(t, notification(string(rune('a'+i))))
		req, _ := http.NewRequest(http.MethodPost, "/v1/orders", bytes.NewReader(b))
		req.Header = signed(string(rune('a'+i)), b)
		rec := newRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.status != want {
			t.Fatalf("order %d: status %d, want %d", i, rec.status, want)
		}
		if want == 507 {
			problem(t, rec.status, rec.body.Bytes(), rec.header, 507)
		}
	}
	// Repeats of recorded orders are still answered.
	b := body(t, notification("a"))
	req, _ := http.NewRequest(http.MethodPost, "/v1/orders", bytes.NewReader(b))
	req.Header = signed("a", b)
	rec := newRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.status != http.StatusOK || len(s.Received()) != 2 {
		t.Fatalf("repeat when full: %d, %d received", rec.status, len(s.Received()))
	}
}

func TestStandInModesOverHTTP(t *testing.T) {
	f := startPartner(t, nil)
	modeURL := f.srv.URL + "/v1/mode"
	put := func(doc string) (int, []byte, http.Header) {
		return send(t, http.MethodPut, modeURL, http.Header{"Content-Type": {"application/json"}}, []byte(doc))
	}
	b := body(t, notification("o-1"))

	status, answer, _ := put(`{"mode":"failing"}`)
	if status != http.StatusOK || string(bytes.TrimSpace(answer)) != `{"mode":"failing","delayMs":0}` {
		t.Fatalf("PUT failing: %d %s", status, answer)
	}
	status, answer, h := send(t, http.MethodPost, f.ordersURL(), signed("o-1", b), b)
	problem(t, status, answer, h, http.StatusServiceUnavailable)
	status, answer, h = send(t, http.MethodGet, f.ordersURL(), nil, nil)
	problem(t, status, answer, h, http.StatusServiceUnavailable)

	if status, _, _ := put(`{"mode":"down"}`); status != http.StatusOK {
		t.Fatalf("PUT down: %d", status)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.ordersURL(), bytes.NewReader(b))
	req.Header = signed("o-1", b)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("POST while down answered %d, want a connection error", resp.StatusCode)
	}
	status, answer, _ = send(t, http.MethodGet, modeURL, nil, nil)
	if status != http.StatusOK || !strings.Contains(string(answer), `"down"`) {
		t.Fatalf("GET /v1/mode while down: %d %s", status, answer)
	}

	if status, _, _ := put(`{"mode":"slow","delayMs":100}`); status != http.StatusOK {
		t.Fatalf("PUT slow: %d", status)
	}
	if m, d := f.standIn.Mode(); m != Slow || d != 100*time.Millisecond {
		t.Fatalf("Mode() = %s %s", m, d)
	}
	start := time.Now()
	status, _, _ = send(t, http.MethodPost, f.ordersURL(), signed("o-1", b), b)
	if status != http.StatusCreated || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("POST while slow: %d after %s", status, time.Since(start))
	}

	for _, doc := range []string{`{"mode":"sideways"}`, `{"mode":"slow","delayMs":-1}`, `{"mode":"slow","delayMs":600001}`, `{"mode":"up","extra":1}`, `{`, ``} {
		status, answer, h := put(doc)
		problem(t, status, answer, h, http.StatusBadRequest)
	}
	if status, _, _ := put(`{"mode":"up"}`); status != http.StatusOK {
		t.Fatalf("PUT up: %d", status)
	}
	if m, _ := f.standIn.Mode(); m != Up {
		t.Fatalf("Mode() = %s, want up", m)
	}
}

func TestSetModePanicsOnUnknownMode(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("SetMode(sideways) did not panic")
		}
	}()
	NewStandIn(StandInConfig{}).SetMode("sideways", 0)
}

// A slow stand-in stops waiting when the client gives up, so abandoned
// requests do not pile up in it.
func TestStandInSlowStopsWhenTheClientGoesAway(t *testing.T) {
	f := startPartner(t, nil)
	f.standIn.SetMode(Slow, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	b := body(t, notification("o-1"))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.ordersURL(), bytes.NewReader(b))
	req.Header = signed("o-1", b)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("POST answered %d before the delay", resp.StatusCode)
	}
	waitFor(t, 2*time.Second, "the slow handler returned", func() bool { return f.tap.inFlight.Load() == 0 })
	if f.tap.posts.Load() != 1 || f.standIn.Deliveries("o-1") != 0 {
		t.Fatalf("posts %d, deliveries %d; want 1, 0", f.tap.posts.Load(), f.standIn.Deliveries("o-1"))
	}
}
