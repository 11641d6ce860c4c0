package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/pki"
)

// `contoso partner` over HTTPS takes a notification with its API key and
// signature, refuses one badly signed or with another key, and has the
// stand-in's chaos switch.
func TestPartnerRunsAloneAndChecksSignatures(t *testing.T) {
	dir := t.TempDir()
	var certs struct{ CA, Cert, Key string }
	var out bytes.Buffer
	if err := run(t.Context(), []string{"certs", "--dir", filepath.Join(dir, "tls"), "--host", "127.0.0.1", "--name", "partner"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &certs); err != nil {
		t.Fatalf("certs printed %q: %v", out.String(), err)
	}
	roots, err := pki.LoadPool(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(roots)}}
	signingFile := writePrivate(t, filepath.Join(dir, "keys"), "signing.key", "signing-key-1\n")

	var ready struct{ Event, URL string }
	stop := startProcess(t, map[string]string{envPartnerAPIKey: "api-key-1"}, &ready,
		"partner", "--listen", "127.0.0.1:0", "--signing-key-file", signingFile, "--tls-cert", certs.Cert, "--tls-key", certs.Key)
	if ready.Event != "ready" || !strings.HasPrefix(ready.URL, "https://127.0.0.1:") {
		t.Fatalf("ready line = %+v, want an https URL", ready)
	}
	notify := func(id, apiKey, signingKey string) int {
		t.Helper()
		body := `{"orderId":"` + id + `","user":"alice","lines":[{"sku":"s-42","quantity":1}],"region":"westeurope","at":"2026-01-02T03:04:05Z"}`
		status, _ := do(t, client, http.MethodPost, ready.URL+"/v1/orders", body,
			partner.HeaderAPIKey, apiKey, partner.HeaderIdempotencyKey, id,
			partner.HeaderSignature, partner.Sign([]byte(signingKey), []byte(body)))
		return status
	}
	if status := notify("order-1", "api-key-1", "signing-key-1"); status != http.StatusCreated {
		t.Fatalf("a signed order = %d, want 201", status)
	}
	if status := notify("order-2", "api-key-1", "another-signing-key"); status != http.StatusUnauthorized {
		t.Fatalf("a badly signed order = %d, want 401", status)
	}
	if status := notify("order-3", "another-api-key", "signing-key-1"); status != http.StatusUnauthorized {
		t.Fatalf("an order with another API key = %d, want 401", status)
	}
	status, body := do(t, client, http.MethodGet, ready.URL+"/v1/orders", "")
	var orders struct {
		Orders   []partner.Notification
		Rejected int
	}
	if err := json.Unmarshal(body, &orders); status != http.StatusOK || err != nil || len(orders.Orders) != 1 || orders.Orders[0].OrderID != "order-1" || orders.Rejected != 2 {
		t.Fatalf("GET /v1/orders = %d %s", status, body)
	}
	// The chaos switch, as on the stand-in of up.
	if status, body := do(t, client, http.MethodPut, ready.URL+"/v1/mode", `{"mode":"failing"}`); status != http.StatusOK {
		t.Fatalf("PUT /v1/mode = %d %s", status, body)
	}
	if status := notify("order-4", "api-key-1", "signing-key-1"); status != http.StatusServiceUnavailable {
		t.Fatalf("an order while failing = %d, want 503", status)
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + strings.TrimPrefix(ready.URL, "https://") + "/v1/mode"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP = %d, want 400", resp.StatusCode)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("partner returned %v on shutdown, want nil", err)
	}
}

func TestPartnerRefusesToStartWithoutItsKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	keyFile := writePrivate(t, dir, "signing.key", "signing-key-1")
	empty := writePrivate(t, dir, "empty.key", "\n")
	readable := filepath.Join(dir, "readable.key")
	if err := os.WriteFile(readable, []byte("signing-key-1"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(readable, 0o644)
	both := map[string]string{envPartnerAPIKey: "api-key-1", envPartnerSigningKey: "signing-key-1"}
	apiOnly := map[string]string{envPartnerAPIKey: "api-key-1"}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"no keys", nil, nil, []string{"the partner API key is required", envPartnerAPIKey, "-api-key-file"}},
		{"no signing key", apiOnly, nil, []string{"the partner signing key is required", envPartnerSigningKey, "-signing-key-file"}},
		{"an empty signing key", map[string]string{envPartnerAPIKey: "api-key-1", envPartnerSigningKey: "  "}, nil, []string{"the partner signing key is required"}},
		{"the signing key twice", both, []string{"--signing-key-file", keyFile}, []string{"given twice"}},
		{"a key file others can read", apiOnly, []string{"--signing-key-file", readable}, []string{"-signing-key-file", "chmod 600 " + readable}},
		{"an empty key file", apiOnly, []string{"--signing-key-file", empty}, []string{"-signing-key-file", "is empty"}},
		{"a missing key file", map[string]string{envPartnerSigningKey: "k"}, []string{"--api-key-file", filepath.Join(dir, "none")}, []string{"-api-key-file", "no such file"}},
		{"a key without its certificate", both, []string{"--tls-key", keyFile}, []string{"-tls-cert and -tls-key go together"}},
		{"a bad log format", both, []string{"--log-format", "xml"}, []string{"-log-format"}},
		{"an unknown flag", both, []string{"--api-key", "x"}, []string{"-api-key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var stdout strings.Builder
			args := append([]string{"partner", "--listen", "127.0.0.1:0"}, tc.args...)
			err := run(ctx, args, func(k string) string { return tc.env[k] }, &stdout, io.Discard)
			if err == nil {
				t.Fatal("the partner stand-in started")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q before refusing", stdout.String())
			}
		})
	}
}
