package deploy

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/secrets"
	"github.com/contoso/shoes/internal/secrets/secretstore"
	"github.com/contoso/shoes/internal/telemetry"
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
	values  *secretstore.Values // where the secret store keeps its values between runs
	token   string              // the secret store's bearer token
	store   *secretstore.Server
	partner *partner.StandIn

	listeners
	urls map[string]string // "secrets", "partner"
}

// startServices starts the secret store and the partner stand-in, over
// TLS when tlsCfg is set, each recording as a part of tel.
func startServices(dataDir string, tlsCfg *tls.Config, tel *telemetry.Telemetry, log *slog.Logger) (*services, error) {
	sv := &services{log: log, listeners: listeners{log: log}, urls: map[string]string{}}
	values, err := LoadSecretValues(dataDir)
	if err != nil {
		return nil, err
	}
	sv.values = values
	token, err := secretStoreToken(dataDir)
	if err != nil {
		return nil, err
	}
	sv.token = token
	sv.store = secretstore.New(secretstore.Config{Token: token, Logger: log.With("component", "secretstore")})
	for name, v := range sv.values.All() {
		sv.store.Set(name, v)
	}
	sv.partner = partner.NewStandIn(partner.StandInConfig{
		APIKey:     func() string { return sv.value(SecretPartnerAPIKey) },
		SigningKey: func() string { return sv.value(SecretPartnerSigningKey) },
		Logger:     log.With("component", "partner"),
	})
	secretsTel, err := tel.Part(telemetry.Identity{Service: telemetry.ServiceSecrets})
	if err != nil {
		return nil, err
	}
	partnerTel, err := tel.Part(telemetry.Identity{Service: telemetry.ServicePartner})
	if err != nil {
		return nil, err
	}
	for name, h := range map[string]http.Handler{
		"secrets": secretsTel.Middleware("secrets", "global", nil)(sv.store.Handler()),
		"partner": partnerTel.Middleware("partner", "global", nil)(sv.partner.Handler()),
	} {
		url, err := sv.serve(name, "127.0.0.1:0", h, tlsCfg)
		if err != nil {
			sv.close()
			return nil, err
		}
		sv.urls[name] = url
	}
	return sv, nil
}

// LoadSecretValues reads the secret store's values of the deployment
// whose data directory is dataDir (<data>/secretstore/secrets.json), making
// them on the first start: a random value for every secret the stamps need.
func LoadSecretValues(dataDir string) (*secretstore.Values, error) {
	values, err := secretstore.LoadOrCreateValues(filepath.Join(dataDir, "secretstore", "secrets.json"), func() map[string]string {
		values := map[string]string{}
		for _, name := range secretNames {
			values[name] = randomHex(32)
		}
		return values
	})
	if err != nil {
		return nil, fmt.Errorf("secret store: %w", err)
	}
	return values, nil
}

func (sv *services) value(name string) string {
	v, _ := sv.values.Get(name)
	return v
}

// rotate gives a secret a new value in the secret store, and tells the
// partner to expect it.
func (sv *services) rotate(name string) error {
	if _, ok := sv.values.Get(name); !ok {
		return fmt.Errorf("rotate: unknown secret %q", name)
	}
	v := randomHex(32)
	if err := sv.values.Set(name, v); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	sv.store.Set(name, v)
	return nil
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

// secretStoreToken is the bearer token of the deployment's secret store,
// made on the first start and kept beside the other keys: every stamp of
// the deployment sends it, and so must an operator's curl.
func secretStoreToken(dataDir string) (string, error) {
	key, err := loadOrCreateKey(SecretStoreTokenPath(dataDir))
	return hex.EncodeToString(key), err
}

// loadOrCreateKey reads a 32-byte hex key from path (surrounding white
// space ignored), or makes one there, through keyfile: mode 0600 in a
// directory of mode 0700, refused when others can read it.
func loadOrCreateKey(path string) ([]byte, error) {
	b, err := keyfile.ReadOrCreate(path, 4<<10, func() ([]byte, error) {
		key := make([]byte, 32)
		rand.Read(key)
		return []byte(hex.EncodeToString(key)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("read %s: not a 32-byte hex key", path)
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
