package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/store/storetest"
)

// `contoso token jwks` prints what `contoso stamp --jwks FILE` takes: a
// token minted by `contoso token` in one data directory is accepted by a
// stamp on another data directory, which never holds the private key.
func TestTokenJWKSLetsAnotherHostVerifyTheIssuersTokens(t *testing.T) {
	issuerDir, stampDir := t.TempDir(), t.TempDir()
	var jwks bytes.Buffer
	if err := run(t.Context(), []string{"token", "jwks", "--data", issuerDir}, nil, &jwks, io.Discard); err != nil {
		t.Fatal(err)
	}
	var doc struct{ Keys []map[string]any }
	if err := json.Unmarshal(jwks.Bytes(), &doc); err != nil || len(doc.Keys) != 1 {
		t.Fatalf("token jwks printed %q: %v", jwks.String(), err)
	}
	if _, private := doc.Keys[0]["d"]; private {
		t.Fatal("the JWKS holds the private key")
	}
	jwksFile := filepath.Join(stampDir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	mint := func(dir string, admin bool) string {
		t.Helper()
		args := []string{"token", "--data", dir, "--sub", "alice"}
		if admin {
			args = append(args, "--admin")
		}
		var out strings.Builder
		if err := run(t.Context(), args, nil, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	user, admin, stranger := mint(issuerDir, false), mint(issuerDir, true), mint(t.TempDir(), false)

	c := storetest.NewCluster(t, "westeurope")
	var stamp struct{ URL string }
	startCommand(t, nil, &stamp, "stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", "127.0.0.1:0", "--data", stampDir, "--jwks", jwksFile, "--probe-interval", "200ms")
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := do(t, nil, http.MethodGet, stamp.URL+"/api/cart", "", "Authorization", "Bearer "+user)
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/cart with the issuer's token = %d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, body := do(t, nil, http.MethodGet, stamp.URL+"/api/cart", "", "Authorization", "Bearer "+stranger); status != http.StatusUnauthorized {
		t.Fatalf("GET /api/cart with another issuer's token = %d %s, want 401", status, body)
	}
	if status, body := do(t, nil, http.MethodGet, stamp.URL+"/ops/drain", "", "Authorization", "Bearer "+admin); status != http.StatusOK {
		t.Fatalf("GET /ops/drain with the issuer's admin token = %d %s", status, body)
	}
	if _, err := os.Stat(filepath.Join(stampDir, "issuer-key.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the stamp's data directory holds an issuer key (%v)", err)
	}
	// The JWKS is the issuer's, the same on every call.
	iss, err := auth.LoadOrCreateIssuer(issuerDir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(jwks.Bytes()), iss.JWKS()) {
		t.Fatalf("token jwks printed %s, want %s", jwks.Bytes(), iss.JWKS())
	}
	for _, args := range [][]string{{"token", "jwks", "--sub", "alice"}, {"token", "jwks", "--data", issuerDir, "extra"}} {
		if err := run(t.Context(), args, nil, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}
