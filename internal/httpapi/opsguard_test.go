package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// The guard in front of a real listener on loopback, so that the address
// a connection arrived on (http.LocalAddrContextKey) is the real one.
func TestOpsGuard(t *testing.T) {
	guard, err := OpsGuard(OpsGuardConfig{Hosts: []string{"ops.contoso.test", "Admin.Contoso.Test:9443"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int64
	ts := httptest.NewServer(Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}), RequestIDs, guard))
	t.Cleanup(ts.Close)
	own := ts.Listener.Addr().String() // 127.0.0.1:<port>
	port := own[strings.LastIndex(own, ":")+1:]
	const fault = `{"kind":"link-cut"}`

	for _, tc := range []struct {
		name, method, host string
		header             map[string]string
		body               string
		chunked            bool
		want               int
	}{
		{"foreign Origin on POST", "POST", "", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, fault, false, 403},
		{"Origin on another port", "POST", "", map[string]string{"Origin": "http://127.0.0.1:1", "Content-Type": "application/json"}, fault, false, 403},
		{"Origin with another scheme", "POST", "", map[string]string{"Origin": "https://" + own, "Content-Type": "application/json"}, fault, false, 403},
		{"Origin localhost for a Host by address", "POST", "", map[string]string{"Origin": "http://localhost:" + port, "Content-Type": "application/json"}, fault, false, 403},
		{"opaque Origin", "POST", "", map[string]string{"Origin": "null", "Content-Type": "application/json"}, fault, false, 403},
		{"foreign Origin on PUT", "PUT", "", map[string]string{"Origin": "http://evil.example"}, "", false, 403},
		{"foreign Origin on PATCH", "PATCH", "", map[string]string{"Origin": "http://evil.example"}, "", false, 403},
		{"foreign Origin on DELETE", "DELETE", "", map[string]string{"Origin": "http://evil.example"}, "", false, 403},
		{"same-origin Origin", "POST", "", map[string]string{"Origin": "http://" + own, "Content-Type": "application/json"}, fault, false, 204},
		{"same-origin Origin by localhost", "DELETE", "localhost:" + port, map[string]string{"Origin": "http://localhost:" + port}, "", false, 204},
		{"no Origin (curl)", "POST", "", map[string]string{"Content-Type": "application/json"}, fault, false, 204},
		{"no Origin, no body", "DELETE", "", nil, "", false, 204},
		{"Sec-Fetch-Site cross-site", "POST", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, fault, false, 403},
		{"Sec-Fetch-Site same-site", "DELETE", "", map[string]string{"Sec-Fetch-Site": "same-site"}, "", false, 403},
		{"Sec-Fetch-Site same-origin", "POST", "", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://" + own, "Content-Type": "application/json"}, fault, false, 204},
		{"Sec-Fetch-Site cross-site on a read", "GET", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", false, 204},
		{"foreign Host on GET", "GET", "evil.example:" + port, nil, "", false, 403},
		{"foreign Host on HEAD", "HEAD", "evil.example:" + port, nil, "", false, 403},
		{"foreign Host with same-origin Origin", "POST", "evil.example:" + port, map[string]string{"Origin": "http://evil.example:" + port, "Content-Type": "application/json"}, fault, false, 403},
		{"own address on another port", "GET", "127.0.0.1:1", nil, "", false, 403},
		{"another loopback address", "GET", "127.0.0.2:" + port, nil, "", false, 403},
		{"own address without its port", "GET", "127.0.0.1", nil, "", false, 403},
		{"localhost on a loopback listener", "GET", "localhost:" + port, nil, "", false, 204},
		{"LOCALHOST in capitals", "GET", "LOCALHOST:" + port, nil, "", false, 204},
		{"a subdomain of localhost", "GET", "evil.localhost:" + port, nil, "", false, 403},
		{"configured name", "GET", "ops.contoso.test:" + port, nil, "", false, 204},
		{"configured name without a port", "GET", "ops.contoso.test", nil, "", false, 204},
		{"configured name with its port", "GET", "admin.contoso.test:9443", nil, "", false, 204},
		{"configured name on another port", "GET", "admin.contoso.test:" + port, nil, "", false, 403},
		{"text/plain body", "POST", "", map[string]string{"Content-Type": "text/plain"}, fault, false, 415},
		{"form body", "POST", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "kind=link-cut", false, 415},
		{"missing Content-Type with a body", "POST", "", nil, fault, false, 415},
		{"missing Content-Type with a chunked body", "POST", "", nil, fault, true, 415},
		{"chunked JSON body", "POST", "", map[string]string{"Content-Type": "application/json"}, fault, true, 204},
		{"JSON with a charset", "POST", "", map[string]string{"Content-Type": "application/json; charset=utf-8"}, fault, false, 204},
		{"a body on a GET", "GET", "", map[string]string{"Content-Type": "text/plain"}, "x", false, 415},
		{"GET without body and without Content-Type", "GET", "", nil, "", false, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // no length known: sent chunked
				}
			}
			req, err := http.NewRequest(tc.method, ts.URL+"/ops/chaos", body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			before := reached.Load()
			res, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.want {
				t.Fatalf("%s Host %q: %d %s, want %d", tc.method, req.Host, res.StatusCode, b, tc.want)
			}
			if tc.want == 204 {
				return
			}
			if reached.Load() != before {
				t.Error("the refused request reached the handler")
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("refused as %q, want problem+json", ct)
			}
			if tc.method == "HEAD" {
				return
			}
			var p Problem
			if err := json.Unmarshal(b, &p); err != nil || p.Status != tc.want || p.Detail == "" || p.RequestID == "" {
				t.Fatalf("problem %s (%v), want status %d with a detail and a request id", b, err, tc.want)
			}
		})
	}
}

func TestOpsGuardConfiguredHosts(t *testing.T) {
	for _, s := range []string{"ops.contoso.test", "ops.contoso.test:8090", "10.0.0.5", "[::1]:8090", "fd00::1"} {
		if _, err := OpsGuard(OpsGuardConfig{Hosts: []string{s}}); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range []string{"", "http://ops.contoso.test", "ops.contoso.test/ops", "ops.contoso.test:0", "ops.contoso.test:http", "ops.contoso.test:", "a:b:c", "user@ops", "ops contoso"} {
		if _, err := OpsGuard(OpsGuardConfig{Hosts: []string{s}}); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
