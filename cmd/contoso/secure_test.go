package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/pki"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// The multi-host recipe on one machine: `contoso store users` makes the
// store users and the servers' authorization, `contoso certs` a CA and a
// certificate, `contoso store provision` declares the assets as the
// administrator; then a stamp (stamp user, HTTPS) and an edge (edge user,
// HTTPS, trusting the CA for the stamp) serve a client over TLS end to end.
func TestStandalonePartsRunWithLeastPrivilegeOverTLS(t *testing.T) {
	dir := t.TempDir()
	var authz bytes.Buffer
	if err := run(t.Context(), []string{"store", "users", "--dir", filepath.Join(dir, "nats")}, nil, &authz, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(authz.String(), "authorization {") || strings.Count(authz.String(), "nkey:") != len(store.Roles) {
		t.Fatalf("store users printed:\n%s", authz.String())
	}
	var certs struct{ CA, Cert, Key string }
	var out bytes.Buffer
	if err := run(t.Context(), []string{"certs", "--dir", filepath.Join(dir, "tls"), "--host", "localhost,127.0.0.1,::1", "--name", "node"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &certs); err != nil {
		t.Fatalf("certs printed %q: %v", out.String(), err)
	}
	if info, err := os.Stat(certs.Key); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("certificate key %s: %v (mode %v), want mode 0600", certs.Key, err, info.Mode().Perm())
	}

	// The servers accept exactly the users `store users` made.
	var users []store.User
	for _, r := range store.Roles {
		seed, err := os.ReadFile(filepath.Join(dir, "nats", string(r)+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := store.PublicKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, store.User{Role: r, PublicKey: pub})
	}
	cert, err := pki.LoadKeyPair(certs.Cert, certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.LoadPool(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	c := storetest.NewClusterWith(t, storetest.Options{Users: users, TLS: &store.NodeTLS{Cert: cert, Roots: roots}}, "westeurope")
	natsURL := c.Nodes[0].ClientURL()
	nkey := func(r store.Role) string { return filepath.Join(dir, "nats", string(r)+".nk") }

	// A stamp's user may not declare the assets; the administrator does.
	out.Reset()
	if err := run(t.Context(), []string{"store", "provision", "--nats", natsURL, "--nats-nkey", nkey(store.RoleAdmin),
		"--nats-ca", certs.CA, "--replicas", "1"}, nil, &out, io.Discard); err != nil {
		t.Fatalf("provision: %v", err)
	}

	env := map[string]string{envEdgeCredential: "a-long-random-credential"}
	var stamp struct{ Event, Region, URL string }
	startCommand(t, env, &stamp, "stamp", "--region", "westeurope", "--nats", natsURL, "--replicas", "1",
		"--nats-nkey", nkey(store.RoleStamp), "--nats-ca", certs.CA, "--tls-cert", certs.Cert, "--tls-key", certs.Key,
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")
	if !strings.HasPrefix(stamp.URL, "https://127.0.0.1:") {
		t.Fatalf("stamp URL %q, want https://", stamp.URL)
	}
	var edge struct{ Event, Edge, Ops string }
	startCommand(t, env, &edge, "edge", "--nats", natsURL, "--pops", "westeurope",
		"--nats-nkey", nkey(store.RoleEdge), "--nats-ca", certs.CA, "--stamp-ca", certs.CA,
		"--tls-cert", certs.Cert, "--tls-key", certs.Key,
		"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--data", dir)
	if !strings.HasPrefix(edge.Edge, "https://") || !strings.HasPrefix(edge.Ops, "https://") {
		t.Fatalf("edge listening line = %+v, want https URLs", edge)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(roots)}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(edge.Edge + "/api/products?limit=1")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Served-Region") == "westeurope" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge never served a client over TLS: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Plain HTTP to the stamp is refused.
	resp, err := http.Get("http://" + strings.TrimPrefix(stamp.URL, "https://") + "/health/live")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the stamp = %d, want 400", resp.StatusCode)
		}
	}
}

// A command given a key file that others can read refuses to start.
func TestPartsRefuseKeyFilesOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	if err := run(t.Context(), []string{"store", "users", "--dir", dir}, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(dir, "stamp.nk")
	if err := os.Chmod(seed, 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(t.Context(), []string{"stamp", "--region", "westeurope", "--nats-nkey", seed}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("stamp with a world-readable nkey: %v, want a refusal naming the fix", err)
	}
}
