package deploy

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/secrets"
	"github.com/contoso/shoes/internal/secrets/secretstore"
)

// Names of the secrets the stamps need.
const (
	SecretPartnerAPIKey     = "partner-api-key"
	SecretPartnerSigningKey = "partner-signing-key"
)

var secretNames = []string{SecretPartnerAPIKey, SecretPartnerSigningKey}

// services are the global resources a deployment runs beside its regions:
// the secret store and the stand-in for the fulfilment partner.
type services struct {
	log     *slog.Logger
	path    string // where the secret store keeps its values between runs
	store   *secretstore.Server
	partner *partner.StandIn

	mu     sync.Mutex // guards values
	values map[string]string

	listeners
	urls map[string]string // "secrets", "partner"
}

// startServices starts the secret store and the partner stand-in, over
// TLS when tlsCfg is set.
func startServices(dataDir string, tlsCfg *tls.Config, log *slog.Logger) (*services, error) {
	sv := &services{log: log, listeners: listeners{log: log}, path: filepath.Join(dataDir, "secretstore", "secrets.json"), urls: map[string]string{}}
	if err := sv.loadOrCreate(); err != nil {
		return nil, err
	}
	sv.store = secretstore.New(secretstore.Config{Logger: log.With("component", "secretstore")})
	for name, v := range sv.values {
		sv.store.Set(name, v)
	}
	sv.partner = partner.NewStandIn(partner.StandInConfig{
		APIKey:     func() string { return sv.value(SecretPartnerAPIKey) },
		SigningKey: func() string { return sv.value(SecretPartnerSigningKey) },
		Logger:     log.With("component", "partner"),
	})
	for name, h := range map[string]http.Handler{"secrets": sv.store.Handler(), "partner": sv.partner.Handler()} {
		url, err := sv.serve(name, "127.0.0.1:0", h, tlsCfg)
		if err != nil {
			sv.close()
			return nil, err
		}
		sv.urls[name] = url
	}
	return sv, nil
}

// loadOrCreate reads the secret values of an earlier run, or makes new ones.
func (sv *services) loadOrCreate() error {
	b, err := os.ReadFile(sv.path)
	if err == nil {
		if err := json.Unmarshal(b, &sv.values); err != nil {
			return fmt.Errorf("read %s: %w", sv.path, err)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read secrets: %w", err)
	}
	sv.values = map[string]string{}
	for _, name := range secretNames {
		sv.values[name] = randomHex(32)
	}
	return sv.save()
}

func (sv *services) save() error {
	if err := os.MkdirAll(filepath.Dir(sv.path), 0o700); err != nil {
		return fmt.Errorf("save secrets: %w", err)
	}
	b, _ := json.Marshal(sv.values)
	tmp := sv.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save secrets: %w", err)
	}
	if err := os.Rename(tmp, sv.path); err != nil {
		return fmt.Errorf("save secrets: %w", err)
	}
	return nil
}

func (sv *services) value(name string) string {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.values[name]
}

// rotate gives a secret a new value in the secret store, and tells the
// partner to expect it.
func (sv *services) rotate(name string) error {
	sv.mu.Lock()
	if _, ok := sv.values[name]; !ok {
		sv.mu.Unlock()
		return fmt.Errorf("rotate: unknown secret %q", name)
	}
	v := randomHex(32)
	sv.values[name] = v
	err := sv.save()
	sv.mu.Unlock()
	sv.store.Set(name, v)
	return err
}

func (sv *services) close() { sv.shutdown() }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lkgKey is the key that encrypts the stamps' last-known-good copies of
// their secrets. A production stamp takes it from its own configuration;
// `up` keeps one per deployment under config/, apart from the stamps' data.
func lkgKey(dataDir string) ([]byte, error) {
	return loadOrCreateKey(filepath.Join(dataDir, "config", "lkg.key"))
}

// edgeCredential is the deployment's edge credential, made on the first
// start and kept in the data directory like the other development keys.
func edgeCredential(dataDir string) (string, error) {
	key, err := loadOrCreateKey(filepath.Join(dataDir, "config", "edge.key"))
	return hex.EncodeToString(key), err
}

// loadOrCreateKey reads a 32-byte hex key from path, or makes one there.
func loadOrCreateKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		key, err := hex.DecodeString(string(b))
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("read %s: not a 32-byte hex key", path)
		}
		return key, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return key, nil
}

// partnerSecrets gives the partner client its credentials from a stamp's
// secret cache, at call time, so a rotation needs no restart.
type partnerSecrets struct{ cache *secrets.Cache }

func (p partnerSecrets) PartnerAPIKey() (string, error) {
	v, err := p.cache.Get(SecretPartnerAPIKey)
	return v.Reveal(), err
}

func (p partnerSecrets) PartnerSigningKey() (string, error) {
	v, err := p.cache.Get(SecretPartnerSigningKey)
	return v.Reveal(), err
}
