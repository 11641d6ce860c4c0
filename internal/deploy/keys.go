package deploy

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
)

// RouteUser is the user the store servers' routes authenticate as, with
// Keys.RoutePassword.
const RouteUser = routeUser

// Keys are the development keys the parts of a deployment share, kept under
// <data>/config and made on the first start: the same files `up` uses, so
// that the parts run as processes (fleet) and in one process agree.
type Keys struct {
	EdgeCredential   string // what the edge adds to every request and stamps expect (CONTOSO_EDGE_CREDENTIAL)
	SecretStoreToken string // the secret store's bearer token, also in SecretStoreTokenPath
	LKGKey           []byte // encrypts the stamps' last-known-good copies of their secrets
	RoutePassword    string // the store servers' routes authenticate as RouteUser with it
}

// LoadKeys reads the deployment's keys from dataDir, making whatever is
// missing.
func LoadKeys(dataDir string) (Keys, error) {
	var k Keys
	var err error
	if k.EdgeCredential, err = edgeCredential(dataDir); err != nil {
		return k, err
	}
	if k.SecretStoreToken, err = secretStoreToken(dataDir); err != nil {
		return k, err
	}
	if k.LKGKey, err = lkgKey(dataDir); err != nil {
		return k, err
	}
	if k.RoutePassword, err = routePassword(filepath.Join(dataDir, "config")); err != nil {
		return k, fmt.Errorf("keys: %w", err)
	}
	return k, nil
}

// LKGKeyHex is the last-known-good key as CONTOSO_LKG_KEY takes it.
func (k Keys) LKGKeyHex() string { return hex.EncodeToString(k.LKGKey) }

// SecretStoreTokenPath is the file of the secret store's bearer token in a
// deployment's data directory (mode 0600; what -secrets-token-file takes).
func SecretStoreTokenPath(dataDir string) string {
	return filepath.Join(dataDir, "config", "secretstore.token")
}

// StoreUsersDir is the directory of the store users' seeds (<role>.nk) in
// a deployment's data directory, as LoadStoreUsers reads it.
func StoreUsersDir(dataDir string) string { return filepath.Join(dataDir, "config", "nats") }
