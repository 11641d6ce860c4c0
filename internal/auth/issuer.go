package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/shop"
)

const (
	// DevIssuer is the "iss" of tokens minted by an [Issuer].
	DevIssuer = "contoso-dev"
	// DevAudience is the "aud" of tokens minted by an [Issuer].
	DevAudience = "contoso-shoes"

	// issuerKeyFile is the name of the issuer's key file in its directory.
	issuerKeyFile = "issuer-key.pem"
)

// Issuer is the deployment's own development token issuer: an ES256 key
// that mints tokens a [Verifier] built from [Issuer.VerifierConfig] accepts.
// It is safe for concurrent use.
type Issuer struct {
	key  *ecdsa.PrivateKey
	kid  string
	jwks []byte
}

// LoadOrCreateIssuer returns the issuer whose P-256 key is stored in
// dir/issuer-key.pem (PKCS#8 PEM), creating dir (mode 0700) and the key
// (mode 0600) if they do not exist. Concurrent callers, in this process or
// others, agree on one key. The file is handled by package keyfile like
// every other key: a key file readable by group or others, or in a
// directory writable by them, is refused.
func LoadOrCreateIssuer(dir string) (*Issuer, error) {
	if dir == "" {
		return nil, errors.New("auth: issuer directory is required")
	}
	path := filepath.Join(dir, issuerKeyFile)
	data, err := keyfile.ReadOrCreate(path, maxIssuerKeyBytes, newIssuerKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("auth: issuer key: %w", err)
	}
	key, err := parseIssuerKey(path, data)
	if err != nil {
		return nil, err
	}
	return newIssuer(key)
}

// maxIssuerKeyBytes bounds the issuer key file: a P-256 PKCS#8 PEM is
// about 240 bytes.
const maxIssuerKeyBytes = 64 << 10

// newIssuerKeyPEM generates a P-256 key, PKCS#8 PEM-encoded.
func newIssuerKeyPEM() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate issuer key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode issuer key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseIssuerKey decodes the PEM-encoded PKCS#8 P-256 key read from path.
func parseIssuerKey(path string, data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("auth: issuer key %s: no PRIVATE KEY PEM block", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: issuer key %s: %w", path, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("auth: issuer key %s is not a P-256 ECDSA key", path)
	}
	return key, nil
}

// newIssuer derives the kid and the JWKS of key.
func newIssuer(key *ecdsa.PrivateKey) (*Issuer, error) {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("auth: encode issuer public key: %w", err)
	}
	sum := sha256.Sum256(der)
	kid := hex.EncodeToString(sum[:])[:16]
	point, err := key.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		return nil, fmt.Errorf("auth: encode issuer public key: %w", err)
	}
	jwks, err := json.Marshal(struct {
		Keys []jwk `json:"keys"`
	}{[]jwk{{
		Kty: "EC",
		Crv: "P-256",
		X:   b64.EncodeToString(point[1:33]),
		Y:   b64.EncodeToString(point[33:]),
		Use: "sig",
		Alg: algES256,
		Kid: kid,
	}}})
	if err != nil {
		return nil, fmt.Errorf("auth: encode issuer JWKS: %w", err)
	}
	return &Issuer{key: key, kid: kid, jwks: jwks}, nil
}

// JWKS returns a JWKS document holding the issuer's public key.
func (i *Issuer) JWKS() []byte {
	return slices.Clone(i.jwks)
}

// VerifierConfig returns a configuration for a [Verifier] that accepts the
// issuer's tokens, with a static JWKS and default settings otherwise.
func (i *Issuer) VerifierConfig() VerifierConfig {
	return VerifierConfig{Issuer: DevIssuer, Audience: DevAudience, JWKS: i.JWKS()}
}

// mintClaims are the claims of a minted token.
type mintClaims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles,omitempty"`
}

// Mint returns an ES256 token for sub issued at now and valid for ttl, with
// the admin role if admin is set. sub must be a valid subject (1 to 128
// characters, no control characters) and ttl positive; otherwise the error
// is a shop.KindInvalid error.
func (i *Issuer) Mint(sub string, admin bool, ttl time.Duration, now time.Time) (string, error) {
	if err := checkSubject(sub); err != nil {
		return "", shop.Invalid("sub", "%s", err)
	}
	if ttl <= 0 {
		return "", shop.Invalid("ttl", "must be positive")
	}
	claims := mintClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    DevIssuer,
		Subject:   sub,
		Audience:  jwt.ClaimStrings{DevAudience},
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
	}}
	if admin {
		claims.Roles = []string{"admin"}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = i.kid
	s, err := t.SignedString(i.key)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}
