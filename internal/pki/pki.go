// Package pki is a deployment's own certificate authority: one CA key and
// certificate kept in the data directory, and short-lived server
// certificates issued from it in memory at every start. It is what `up
// --tls` encrypts every hop with (client → edge → stamp, stamp → NATS,
// NATS route to NATS route) without an operator's PKI; a multi-host
// deployment gives its parts certificates from its own CA instead.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/contoso/shoes/internal/keyfile"
)

// File names in a CA's directory.
const (
	CertFile = "ca.pem"     // the CA certificate: give it to clients (curl --cacert, --stamp-ca, nats RootCAs)
	KeyFile  = "ca-key.pem" // the CA's private key, mode 0600
)

// maxKeyBytes bounds a PEM private key file.
const maxKeyBytes = 64 << 10

// Validity of what the CA signs.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 90 * 24 * time.Hour
)

// CA is a certificate authority. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	dir     string
}

// LoadOrCreateCA returns the CA kept in dir (ca.pem and ca-key.pem),
// creating both on first use. The key file is written and read through
// package keyfile, so a key readable by group or others is refused.
func LoadOrCreateCA(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, KeyFile)
	keyPEM, err := keyfile.ReadOrCreate(keyPath, maxKeyBytes, newCAKey)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key %s: %w", keyPath, err)
	}
	certPath := filepath.Join(dir, CertFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		certPEM, err = selfSign(key)
		if err == nil {
			err = keyfile.WritePublic(certPath, certPEM)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate %s: %w", certPath, err)
	}
	if !cert.IsCA || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("pki: %s is not the CA certificate of %s", certPath, keyPath)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("pki: CA certificate %s expired on %s; remove both files to make a new CA", certPath, cert.NotAfter.Format(time.DateOnly))
	}
	return &CA{cert: cert, certPEM: certPEM, key: key, dir: dir}, nil
}

// CertPath is the file of the CA certificate, for clients to trust.
func (c *CA) CertPath() string { return filepath.Join(c.dir, CertFile) }

// CertPEM is the CA certificate in PEM.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Pool is a certificate pool holding only this CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// Issue signs a new server (and client) certificate for hosts: DNS names
// or IP addresses. The key never leaves memory.
func (c *CA) Issue(hosts ...string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("pki: issue: at least one host is required")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"Contoso Shoes"}, CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// LoopbackHosts are the names a part on this machine is reached by.
var LoopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// ServerConfig is a TLS server configuration presenting cert: TLS 1.2 at
// least, HTTP/1.1 only (the parts speak HTTP/1.1 to each other).
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
}

// ClientConfig is a TLS client configuration that trusts only roots.
func ClientConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
}

// LoadPool reads a PEM file of CA certificates (what --stamp-ca and
// --nats-ca name).
func LoadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: CA file: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("pki: CA file %s holds no PEM certificate", path)
	}
	return p, nil
}

// LoadKeyPair reads a certificate and its key (what --tls-cert and
// --tls-key name); the key file must not be readable by group or others.
func LoadKeyPair(certPath, keyPath string) (tls.Certificate, error) {
	keyPEM, err := keyfile.Read(keyPath, maxKeyBytes)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %w", err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %s and %s: %w", certPath, keyPath, err)
	}
	return cert, nil
}

// WriteKeyPair stores cert and its key as PEM files (the key 0600), so an
// operator's tools or a separate process can use them.
func WriteKeyPair(cert tls.Certificate, certPath, keyPath string) error {
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return errors.New("pki: only ECDSA keys are written")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := keyfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	var chain []byte
	for _, c := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return keyfile.WritePublic(certPath, chain)
}

func newCAKey() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PRIVATE KEY PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return key, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func selfSign(key *ecdsa.PrivateKey) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Contoso Shoes"}, CommonName: "Contoso Shoes deployment CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
