package pki_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/pki"
)

func TestCAIsKeptAndItsCertificatesVerify(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.CertPEM(), again.CertPEM()) {
		t.Fatal("a second load made a new CA")
	}
	if info, err := os.Stat(filepath.Join(dir, pki.KeyFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	cert, err := again.Issue("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool()}); err != nil {
			t.Errorf("certificate for %s: %v", host, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: ca.Pool()}); err == nil {
		t.Error("the certificate verifies for a host it was not issued for")
	}
	other, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: other.Pool()}); err == nil {
		t.Error("the certificate verifies against another CA")
	}

	// Written out and read back as an operator's files.
	certPath, keyPath := filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	if err := pki.WriteKeyPair(cert, certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadKeyPair(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadKeyPair(certPath, keyPath); !errors.Is(err, keyfile.ErrInsecure) {
		t.Fatalf("a key others can read: %v, want a refusal", err)
	}
	if err := os.Chmod(filepath.Join(dir, pki.KeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrCreateCA(dir); !errors.Is(err, keyfile.ErrInsecure) {
		t.Fatalf("a CA key others can read: %v, want a refusal", err)
	}
}
