package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/pki"
	"github.com/contoso/shoes/internal/store"
)

// partFlags are how a long-running part (stamp, edge) meets the others:
// its store connection, its own certificate, and the CA it trusts for the
// parts it calls over HTTPS.
type partFlags struct {
	nats  natsFlags
	serve tlsFlags
	ca    string
}

// part is what partFlags resolve to.
type part struct {
	store     store.Credentials
	serverTLS *tls.Config // nil: plain HTTP
	clientTLS *tls.Config // nil: the system's roots
}

// register adds the flags; caFlag names the CA flag and caUse says what it
// is trusted for.
func (f *partFlags) register(fs *flag.FlagSet, natsWho, serveWhat, caFlag, caUse string) {
	f.nats.register(fs, "nats://127.0.0.1:4222", natsWho)
	f.serve.register(fs, serveWhat)
	fs.StringVar(&f.ca, caFlag, "", "PEM file of the CA "+caUse+"; empty: the system's roots")
}

// resolve reads every file the flags name; caFlag is the CA flag's name,
// for errors.
func (f *partFlags) resolve(caFlag string) (part, error) {
	var p part
	var err error
	if p.store, err = f.nats.credentials(); err != nil {
		return p, err
	}
	if p.serverTLS, err = f.serve.config(); err != nil {
		return p, err
	}
	p.clientTLS, err = clientTLS(caFlag, f.ca)
	return p, err
}

// natsFlags say where the store servers are and how a command proves who
// it is to them: its user's nkey seed and the CA of their certificates.
type natsFlags struct {
	url, nkey, ca string
}

func (f *natsFlags) register(fs *flag.FlagSet, defaultURL, who string) {
	fs.StringVar(&f.url, "nats", defaultURL, "comma-separated URLs of "+who+" (tls://host:4222 for TLS)")
	fs.StringVar(&f.nkey, "nats-nkey", "", "file holding this part's store user nkey seed (mode 0600); empty: no credentials")
	fs.StringVar(&f.ca, "nats-ca", "", "PEM file of the CA that signed the store servers' certificates; empty: the system's roots for tls:// URLs")
}

// credentials reads the nkey seed and the CA the flags name.
func (f *natsFlags) credentials() (store.Credentials, error) {
	var c store.Credentials
	if f.nkey != "" {
		seed, err := keyfile.Read(f.nkey, 4<<10)
		if err != nil {
			return c, fmt.Errorf("-nats-nkey: %w", err)
		}
		c.Seed = []byte(strings.TrimSpace(string(seed)))
		if _, err := store.PublicKey(c.Seed); err != nil {
			return c, fmt.Errorf("-nats-nkey %s: %w", f.nkey, err)
		}
	}
	var err error
	c.TLS, err = clientTLS("nats-ca", f.ca)
	return c, err
}

// tlsFlags are a server's certificate and key.
type tlsFlags struct {
	cert, key string
}

func (f *tlsFlags) register(fs *flag.FlagSet, what string) {
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate (chain) "+what+" presents; with -tls-key, it serves HTTPS")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key of -tls-cert (mode 0600)")
}

// config is the server TLS configuration the flags name; nil without them.
func (f *tlsFlags) config() (*tls.Config, error) {
	if f.cert == "" && f.key == "" {
		return nil, nil
	}
	if f.cert == "" || f.key == "" {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	cert, err := pki.LoadKeyPair(f.cert, f.key)
	if err != nil {
		return nil, err
	}
	return pki.ServerConfig(cert), nil
}

// deploymentTLS trusts the CA of the deployment whose data directory is
// dir, when it runs with TLS (up --tls keeps its CA certificate in
// <dir>/config/tls/ca.pem); nil when there is none (the system's roots).
func deploymentTLS(dir string) (*tls.Config, error) {
	path := filepath.Join(dir, "config", "tls", pki.CertFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return clientTLS("data", path)
}

// clientTLS trusts the CA in the PEM file at path; nil for an empty path
// (the system's roots).
func clientTLS(flagName, path string) (*tls.Config, error) {
	if path == "" {
		return nil, nil
	}
	pool, err := pki.LoadPool(path)
	if err != nil {
		return nil, fmt.Errorf("-%s: %w", flagName, err)
	}
	return pki.ClientConfig(pool), nil
}
