package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testStoreToken = "a-long-secret-store-token"

// writePrivate writes a file of mode 0600 in a directory of mode 0700 and
// returns its path.
func writePrivate(t *testing.T, dir, name, body string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// do makes one request with a deadline and returns its status and body.
func do(t *testing.T, client *http.Client, method, url, body string, header ...string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// `contoso secrets` serves the values file behind its token; a rotation
// through its own PUT is in the file, so the store started again on it
// serves the new value.
func TestSecretsRunsAloneAndKeepsARotationAcrossARestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	values := writePrivate(t, dir, "values.json", `{"partner-api-key":"api-key-1","partner-signing-key":"signing-key-1"}`)
	tokenFile := writePrivate(t, dir, "token", testStoreToken+"\n")
	auth := []string{"Authorization", "Bearer " + testStoreToken}

	var ready struct{ Event, URL string }
	stop := startProcess(t, map[string]string{envSecretsToken: testStoreToken}, &ready,
		"secrets", "--listen", "127.0.0.1:0", "--values", values)
	if ready.Event != "ready" || !strings.HasPrefix(ready.URL, "http://127.0.0.1:") {
		t.Fatalf("ready line = %+v", ready)
	}
	secret := ready.URL + "/v1/secrets/partner-signing-key"
	if status, _ := do(t, nil, http.MethodGet, secret, ""); status != http.StatusUnauthorized {
		t.Fatalf("GET without the token = %d, want 401", status)
	}
	if status, _ := do(t, nil, http.MethodGet, secret, "", "Authorization", "Bearer another-long-token-value"); status != http.StatusUnauthorized {
		t.Fatalf("GET with another token = %d, want 401", status)
	}
	var got struct {
		Value   string
		Version int
	}
	status, body := do(t, nil, http.MethodGet, secret, "", auth...)
	if err := json.Unmarshal(body, &got); status != http.StatusOK || err != nil || got.Value != "signing-key-1" {
		t.Fatalf("GET with the token = %d %s", status, body)
	}
	if status, body := do(t, nil, http.MethodPut, secret, `{"value":"signing-key-2"}`, auth...); status != http.StatusOK {
		t.Fatalf("PUT = %d %s", status, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("secrets returned %v on shutdown, want nil", err)
	}
	if info, err := os.Stat(values); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("values file after the rotation: %v, mode %v; want mode 0600", err, info.Mode().Perm())
	}

	// Started again on the same file, this time with its token from a file.
	stop = startProcess(t, nil, &ready, "secrets", "--listen", "127.0.0.1:0", "--values", values, "--token-file", tokenFile)
	status, body = do(t, nil, http.MethodGet, ready.URL+"/v1/secrets?names=partner-api-key,partner-signing-key", "", auth...)
	var batch struct {
		Secrets []struct{ Name, Value string }
	}
	if err := json.Unmarshal(body, &batch); status != http.StatusOK || err != nil || len(batch.Secrets) != 2 {
		t.Fatalf("GET after the restart = %d %s", status, body)
	}
	for _, s := range batch.Secrets {
		want := map[string]string{"partner-api-key": "api-key-1", "partner-signing-key": "signing-key-2"}[s.Name]
		if s.Value != want {
			t.Errorf("after the restart %s = %q, want %q", s.Name, s.Value, want)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("secrets returned %v on shutdown, want nil", err)
	}
}

func TestSecretsRefusesToStartWithoutWhatItNeeds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	values := writePrivate(t, dir, "values.json", `{}`)
	tokenFile := writePrivate(t, dir, "token", testStoreToken)
	readable := filepath.Join(dir, "readable.json")
	if err := os.WriteFile(readable, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(readable, 0o644)
	notJSON := writePrivate(t, dir, "values.txt", "partner-api-key=x")
	token := map[string]string{envSecretsToken: testStoreToken}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"no token", nil, []string{"--values", values}, []string{"bearer token is required", envSecretsToken, "-token-file"}},
		{"a short token", map[string]string{envSecretsToken: "short"}, []string{"--values", values}, []string{"at least 16"}},
		{"the token twice", token, []string{"--values", values, "--token-file", tokenFile}, []string{"given twice"}},
		{"a token file others can read", nil, []string{"--values", values, "--token-file", readable}, []string{"-token-file", "chmod 600 " + readable}},
		{"no values", token, nil, []string{"-values is required"}},
		{"a values file others can read", token, []string{"--values", readable}, []string{"-values", "chmod 600 " + readable}},
		{"a missing values file", token, []string{"--values", filepath.Join(dir, "none.json")}, []string{"-values", "no such file"}},
		{"a values file that is not JSON", token, []string{"--values", notJSON}, []string{"JSON object of name to value"}},
		{"a certificate without its key", token, []string{"--values", values, "--tls-cert", filepath.Join(dir, "cert.pem")}, []string{"-tls-cert and -tls-key go together"}},
		{"an unknown flag", token, []string{"--values", values, "--port", "8200"}, []string{"-port"}},
		{"an argument", token, []string{"--values", values, "serve"}, []string{"no arguments"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var stdout strings.Builder
			args := append([]string{"secrets", "--listen", "127.0.0.1:0"}, tc.args...)
			err := run(ctx, args, func(k string) string { return tc.env[k] }, &stdout, io.Discard)
			if err == nil {
				t.Fatal("the secret store started")
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

// Told to stop while in mode hang, the store answers the requests it holds
// (503) instead of holding its drain to the bound, and returns nil.
func TestSecretsStopsWhileHanging(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	values := writePrivate(t, dir, "values.json", `{"partner-api-key":"api-key-1"}`)
	auth := []string{"Authorization", "Bearer " + testStoreToken}
	var ready struct{ URL string }
	stop := startProcess(t, map[string]string{envSecretsToken: testStoreToken}, &ready,
		"secrets", "--listen", "127.0.0.1:0", "--values", values)
	if status, body := do(t, nil, http.MethodPut, ready.URL+"/v1/status", `{"mode":"hang"}`, auth...); status != http.StatusOK {
		t.Fatalf("PUT /v1/status = %d %s", status, body)
	}
	// A request the hang mode holds: the store counts it in its status
	// (a request only accepted, not yet read, would be dropped by the
	// shutdown instead, as net/http does).
	held := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, ready.URL+"/v1/secrets/partner-api-key", nil)
		req.Header.Set(auth[0], auth[1])
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	poll(t, 10*time.Second, "the store to hold the request", func() error {
		var st struct{ Held int }
		status, body := do(t, nil, http.MethodGet, ready.URL+"/v1/status", "", auth...)
		if err := json.Unmarshal(body, &st); status != http.StatusOK || err != nil || st.Held != 1 {
			return fmt.Errorf("GET /v1/status = %d %s", status, body)
		}
		return nil
	})
	select {
	case status := <-held:
		t.Fatalf("the request was answered (%d) while the store hangs", status)
	default:
	}
	if err := stop(); err != nil {
		t.Fatalf("secrets returned %v on shutdown, want nil", err)
	}
	if status := <-held; status != http.StatusServiceUnavailable {
		t.Fatalf("the held request got %d, want 503", status)
	}
}
