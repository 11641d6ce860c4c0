package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/shop"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "shoes-api"
)

// t0 is the fake current time of every verifier in these tests.
var t0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

// clock is a fake time source that tests move forward instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// signer signs test tokens with a key announced under kid.
type signer struct {
	kid    string
	method jwt.SigningMethod
	key    crypto.Signer
}

func newECSigner(t testing.TB, kid string) signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, method: jwt.SigningMethodES256, key: key}
}

// testRSAKey is generated once: RSA key generation is slow.
var testRSAKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

func newRSASigner(t testing.TB, kid string) signer {
	t.Helper()
	key, err := testRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, method: jwt.SigningMethodRS256, key: key}
}

// sign returns a token with claims, signed by s and naming s.kid.
func (s signer) sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	return signWith(t, s.method, s.key, map[string]any{"kid": s.kid}, claims)
}

// signWith returns a token signed with method and key, with extra headers.
func signWith(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned returns a token with the given header and claims and an empty
// signature.
func unsigned(t testing.TB, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "."
}

// claims returns valid claims at t0, changed by edits.
func claims(edits ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": testIssuer,
		"aud": testAudience,
		"sub": "user-1",
		"iat": t0.Add(-time.Minute).Unix(),
		"nbf": t0.Add(-time.Minute).Unix(),
		"exp": t0.Add(time.Hour).Unix(),
	}
	for _, edit := range edits {
		edit(c)
	}
	return c
}

func set(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
func del(k string) func(jwt.MapClaims)        { return func(c jwt.MapClaims) { delete(c, k) } }

var b64 = base64.RawURLEncoding

// jwksOf builds a JWKS document for the signers' public keys, independently
// of the package's own encoder.
func jwksOf(t testing.TB, signers ...signer) []byte {
	t.Helper()
	keys := []map[string]any{}
	for _, s := range signers {
		switch pub := s.key.Public().(type) {
		case *ecdsa.PublicKey:
			point, err := pub.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, map[string]any{"kty": "EC", "crv": "P-256", "kid": s.kid, "use": "sig",
				"x": b64.EncodeToString(point[1:33]), "y": b64.EncodeToString(point[33:])})
		case *rsa.PublicKey:
			keys = append(keys, map[string]any{"kty": "RSA", "kid": s.kid, "alg": "RS256",
				"n": b64.EncodeToString(pub.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())})
		default:
			t.Fatalf("unexpected key type %T", pub)
		}
	}
	return mustJSON(t, map[string]any{"keys": keys})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newVerifier(t testing.TB, cfg auth.VerifierConfig) *auth.Verifier {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer, cfg.Audience = testIssuer, testAudience
	}
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// wantError fails t unless err is a *shop.Error of kind with detail.
func wantError(t testing.TB, err error, kind shop.Kind, detail string) {
	t.Helper()
	se, ok := errors.AsType[*shop.Error](err)
	if !ok {
		t.Fatalf("error = %v (%T), want a *shop.Error %s %q", err, err, kind, detail)
	}
	if se.Kind != kind || se.Detail != detail {
		t.Fatalf("error = %s %q (%v), want %s %q", se.Kind, se.Detail, err, kind, detail)
	}
}

func TestVerify(t *testing.T) {
	ecKey := newECSigner(t, "ec-1")
	rsaKey := newRSASigner(t, "rsa-1")
	v := newVerifier(t, auth.VerifierConfig{JWKS: jwksOf(t, ecKey, rsaKey)})

	ecPub, err := x509.MarshalPKIXPublicKey(ecKey.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := x509.MarshalPKIXPublicKey(rsaKey.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPub})
	valid := ecKey.sign(t, claims())
	parts := strings.Split(valid, ".")
	forged := parts[0] + "." + b64.EncodeToString(mustJSON(t, claims(set("sub", "someone-else")))) + "." + parts[2]
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 1
	flipped := parts[0] + "." + parts[1] + "." + b64.EncodeToString(sig)
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	const (
		malformed   = "malformed token"
		unsupported = "unsupported token algorithm"
		badSig      = "invalid token signature"
		expired     = "token expired"
		notYet      = "token not yet valid"
		mismatch    = "token issuer or audience mismatch"
	)
	tests := []struct {
		name      string
		token     string
		detail    string // wanted Unauthorized detail; empty: valid
		wantSub   string
		wantAdmin bool
	}{
		{name: "valid user token", token: valid, wantSub: "user-1"},
		{name: "admin token", token: ecKey.sign(t, claims(set("roles", []string{"admin"}))), wantSub: "user-1", wantAdmin: true},
		{name: "admin among roles", token: ecKey.sign(t, claims(set("roles", []string{"viewer", "admin"}))), wantSub: "user-1", wantAdmin: true},
		{name: "roles without admin", token: ecKey.sign(t, claims(set("roles", []string{"administrator"}))), wantSub: "user-1"},
		{name: "roles not a list", token: ecKey.sign(t, claims(set("roles", "admin"))), wantSub: "user-1"},
		{name: "admin as a separate claim", token: ecKey.sign(t, claims(set("admin", true))), wantSub: "user-1"},
		{name: "RS256 token against RSA key", token: rsaKey.sign(t, claims(set("roles", []string{"admin"}))), wantSub: "user-1", wantAdmin: true},
		{name: "audience list containing ours", token: ecKey.sign(t, claims(set("aud", []string{"other", testAudience}))), wantSub: "user-1"},
		{name: "expired within leeway", token: ecKey.sign(t, claims(set("exp", t0.Add(-10*time.Second).Unix()))), wantSub: "user-1"},
		{name: "nbf within leeway", token: ecKey.sign(t, claims(set("nbf", t0.Add(10*time.Second).Unix()))), wantSub: "user-1"},
		{name: "128-character subject", token: ecKey.sign(t, claims(set("sub", strings.Repeat("é", 128)))), wantSub: strings.Repeat("é", 128)},

		{name: "expired", token: ecKey.sign(t, claims(set("exp", t0.Add(-time.Minute).Unix()))), detail: expired},
		{name: "expiry missing", token: ecKey.sign(t, claims(del("exp"))), detail: "token expiry missing"},
		{name: "expiry not a number", token: ecKey.sign(t, claims(set("exp", "tomorrow"))), detail: malformed},
		{name: "not yet valid", token: ecKey.sign(t, claims(set("nbf", t0.Add(5*time.Minute).Unix()))), detail: notYet},
		{name: "issued in the future", token: ecKey.sign(t, claims(set("iat", t0.Add(5*time.Minute).Unix()))), detail: notYet},
		{name: "wrong issuer", token: ecKey.sign(t, claims(set("iss", "https://evil.example"))), detail: mismatch},
		{name: "issuer missing", token: ecKey.sign(t, claims(del("iss"))), detail: mismatch},
		{name: "wrong audience", token: ecKey.sign(t, claims(set("aud", "other-api"))), detail: mismatch},
		{name: "audience missing", token: ecKey.sign(t, claims(del("aud"))), detail: mismatch},
		{name: "subject missing", token: ecKey.sign(t, claims(del("sub"))), detail: "token subject missing"},
		{name: "subject too long", token: ecKey.sign(t, claims(set("sub", strings.Repeat("a", 129)))), detail: "invalid token subject"},
		{name: "subject with newline", token: ecKey.sign(t, claims(set("sub", "user\nadmin"))), detail: "invalid token subject"},
		{name: "subject with bidi override", token: ecKey.sign(t, claims(set("sub", "user\u202e1"))), detail: "invalid token subject"},

		{name: "other key with the same kid", token: newECSigner(t, "ec-1").sign(t, claims()), detail: badSig},
		{name: "unknown kid", token: newECSigner(t, "ec-2").sign(t, claims()), detail: badSig},
		{name: "no kid", token: signWith(t, jwt.SigningMethodES256, ecKey.key, nil, claims()), detail: badSig},
		{name: "kid not a string", token: signWith(t, jwt.SigningMethodES256, ecKey.key, map[string]any{"kid": 1}, claims()), detail: badSig},
		{name: "ES256 naming an RSA key", token: signer{"rsa-1", jwt.SigningMethodES256, ecKey.key}.sign(t, claims()), detail: badSig},
		{name: "RS256 naming an EC key", token: signer{"ec-1", jwt.SigningMethodRS256, rsaKey.key}.sign(t, claims()), detail: badSig},
		{name: "RS256 by another RSA key", token: signer{"rsa-1", jwt.SigningMethodRS256, otherRSA}.sign(t, claims()), detail: badSig},
		{name: "claims swapped under a valid signature", token: forged, detail: badSig},
		{name: "signature bit flipped", token: flipped, detail: badSig},
		{name: "signature missing", token: parts[0] + "." + parts[1] + ".", detail: badSig},

		{name: "alg none", token: unsigned(t, map[string]any{"alg": "none", "typ": "JWT", "kid": "ec-1"}, claims()), detail: unsupported},
		{name: "alg None", token: unsigned(t, map[string]any{"alg": "None", "kid": "ec-1"}, claims()), detail: unsupported},
		{name: "alg missing", token: unsigned(t, map[string]any{"kid": "ec-1"}, claims()), detail: unsupported},
		{name: "HS256 keyed with the EC public key DER", token: signWith(t, jwt.SigningMethodHS256, ecPub, map[string]any{"kid": "ec-1"}, claims()), detail: unsupported},
		{name: "HS256 keyed with the RSA public key PEM", token: signWith(t, jwt.SigningMethodHS256, rsaPEM, map[string]any{"kid": "rsa-1"}, claims()), detail: unsupported},
		{name: "RS384 by the RSA key", token: signWith(t, jwt.SigningMethodRS384, rsaKey.key, map[string]any{"kid": "rsa-1"}, claims()), detail: unsupported},
		{name: "PS256 by the RSA key", token: signWith(t, jwt.SigningMethodPS256, rsaKey.key, map[string]any{"kid": "rsa-1"}, claims()), detail: unsupported},
		{name: "crit header", token: signWith(t, jwt.SigningMethodES256, ecKey.key, map[string]any{"kid": "ec-1", "crit": []string{"exp"}}, claims()), detail: "unsupported token header"},

		{name: "empty", token: "", detail: malformed},
		{name: "one segment", token: "abc", detail: malformed},
		{name: "three junk segments", token: "a.b.c", detail: malformed},
		{name: "four segments", token: valid + ".x", detail: malformed},
		{name: "padded base64", token: parts[0] + "=." + parts[1] + "." + parts[2], detail: malformed},
		{name: "10 KiB of garbage", token: strings.Repeat("x.Y-z_", 10<<10/6), detail: malformed},
		{name: "valid token padded past 8 KiB", token: ecKey.sign(t, claims(set("pad", strings.Repeat("p", 8<<10)))), detail: malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), tt.token)
			if tt.detail != "" {
				wantError(t, err, shop.KindUnauthorized, tt.detail)
				if got != (auth.Claims{}) {
					t.Errorf("claims = %+v on failure, want zero", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := auth.Claims{Subject: tt.wantSub, Admin: tt.wantAdmin}
			if got.Subject != want.Subject || got.Admin != want.Admin || got.ExpiresAt.IsZero() {
				t.Errorf("claims = %+v, want %+v with an expiry", got, want)
			}
		})
	}
}

func TestVerifyExpiresAt(t *testing.T) {
	s := newECSigner(t, "k")
	v := newVerifier(t, auth.VerifierConfig{JWKS: jwksOf(t, s)})
	exp := t0.Add(42 * time.Minute)
	got, err := v.Verify(t.Context(), s.sign(t, claims(set("exp", exp.Unix()))))
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Equal(exp) {
		t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, exp)
	}
}

func TestLeeway(t *testing.T) {
	s := newECSigner(t, "k")
	tok := s.sign(t, claims(set("exp", t0.Add(-10*time.Second).Unix())))
	for _, tt := range []struct {
		leeway time.Duration
		ok     bool
	}{
		{0, true}, // the default, 30 s
		{5 * time.Second, false},
		{time.Minute, true},
	} {
		v := newVerifier(t, auth.VerifierConfig{JWKS: jwksOf(t, s), Leeway: tt.leeway})
		_, err := v.Verify(t.Context(), tok)
		if tt.ok && err != nil {
			t.Errorf("leeway %v: %v", tt.leeway, err)
		}
		if !tt.ok {
			wantError(t, err, shop.KindUnauthorized, "token expired")
		}
	}
}

func TestAuthenticate(t *testing.T) {
	s := newECSigner(t, "k")
	v := newVerifier(t, auth.VerifierConfig{JWKS: jwksOf(t, s)})
	tok := s.sign(t, claims())
	tests := []struct {
		name    string
		headers []string
		detail  string // empty: valid
	}{
		{name: "missing header", detail: "missing bearer token"},
		{name: "basic scheme", headers: []string{"Basic x"}, detail: "missing bearer token"},
		{name: "bearer without token", headers: []string{"Bearer "}, detail: "missing bearer token"},
		{name: "bearer alone", headers: []string{"Bearer"}, detail: "missing bearer token"},
		{name: "token without scheme", headers: []string{tok}, detail: "missing bearer token"},
		{name: "two headers", headers: []string{"Bearer " + tok, "Bearer " + tok}, detail: "multiple Authorization headers"},
		{name: "bad token", headers: []string{"Bearer abc"}, detail: "malformed token"},
		{name: "valid", headers: []string{"Bearer " + tok}},
		{name: "scheme in lower case", headers: []string{"bearer " + tok}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/orders", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := v.Authenticate(r)
			if tt.detail != "" {
				wantError(t, err, shop.KindUnauthorized, tt.detail)
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if got.Subject != "user-1" {
				t.Errorf("subject = %q, want user-1", got.Subject)
			}
		})
	}
}

func TestRequireAdmin(t *testing.T) {
	if err := auth.RequireAdmin(auth.Claims{Subject: "a", Admin: true}); err != nil {
		t.Errorf("admin: %v", err)
	}
	wantError(t, auth.RequireAdmin(auth.Claims{Subject: "u"}), shop.KindForbidden, "admin role required")
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	good := jwksOf(t, newECSigner(t, "k"))
	oct := mustJSON(t, map[string]any{"keys": []map[string]any{{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}}})
	tests := []struct {
		name string
		cfg  auth.VerifierConfig
	}{
		{"no issuer", auth.VerifierConfig{Audience: testAudience, JWKS: good}},
		{"no audience", auth.VerifierConfig{Issuer: testIssuer, JWKS: good}},
		{"no JWKS", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience}},
		{"both JWKS and URL", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKS: good, JWKSURL: "https://idp.example/jwks"}},
		{"URL with another scheme", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "file:///etc/jwks.json"}},
		{"relative URL", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "/jwks.json"}},
		{"plain http to another host", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "http://idp.example/jwks"}},
		{"plain http to a look-alike of localhost", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "http://localhost.idp.example/jwks"}},
		{"plain http to a private address", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "http://10.0.0.7/jwks"}},
		{"unparsable URL", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://[::1"}},
		{"negative leeway", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKS: good, Leeway: -time.Second}},
		{"negative refresh", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://idp.example/jwks", RefreshInterval: -time.Second}},
		{"JWKS not JSON", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKS: []byte("not json")}},
		{"JWKS without keys", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKS: []byte(`{"keys":[]}`)}},
		{"JWKS with only a symmetric key", auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKS: oct}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := auth.NewVerifier(tt.cfg); err == nil {
				t.Fatal("NewVerifier succeeded, want an error")
			}
		})
	}
}

// TestJWKSIgnoresUnusableKeys checks that keys the verifier cannot or must
// not use are skipped, so that their kids select nothing.
func TestJWKSIgnoresUnusableKeys(t *testing.T) {
	good := newECSigner(t, "good")
	ec := func(s signer) map[string]any {
		var doc struct{ Keys []map[string]any }
		if err := json.Unmarshal(jwksOf(t, s), &doc); err != nil {
			t.Fatal(err)
		}
		return doc.Keys[0]
	}
	with := func(m map[string]any, k string, v any) map[string]any {
		m[k] = v
		return m
	}
	rsaSigner := newRSASigner(t, "rsa-bad")
	smallN := make([]byte, 128) // a 1024-bit modulus
	smallN[0] = 0x80
	smallN[127] = 1
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	bad := map[string]signer{}
	var keys []map[string]any
	add := func(kid string, s signer, key map[string]any) {
		bad[kid] = s
		keys = append(keys, key)
	}
	s := newECSigner(t, "enc")
	add("enc", s, with(ec(s), "use", "enc"))
	s = newECSigner(t, "ops")
	add("ops", s, with(ec(s), "key_ops", []string{"sign"}))
	s = newECSigner(t, "alg")
	add("alg", s, with(ec(s), "alg", "ES384"))
	s = newECSigner(t, "padded")
	k := ec(s)
	add("padded", s, with(k, "x", k["x"].(string)+"="))
	s = newECSigner(t, "offcurve")
	k = ec(s)
	y, _ := b64.DecodeString(k["y"].(string))
	y[31] ^= 1
	add("offcurve", s, with(k, "y", b64.EncodeToString(y)))
	s = newECSigner(t, "badtype")
	add("badtype", s, with(ec(s), "x", 42))
	p384Point, err := p384.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	add("p384", signer{"p384", jwt.SigningMethodES384, p384}, map[string]any{"kty": "EC", "crv": "P-384", "kid": "p384",
		"x": b64.EncodeToString(p384Point[1:49]), "y": b64.EncodeToString(p384Point[49:])})
	add("rsa-bad", rsaSigner, map[string]any{"kty": "RSA", "kid": "rsa-bad", "alg": "RS512",
		"n": b64.EncodeToString(rsaSigner.key.Public().(*rsa.PublicKey).N.Bytes()), "e": "AQAB"})
	add("rsa-small", signer{"rsa-small", jwt.SigningMethodRS256, rsaSigner.key}, map[string]any{"kty": "RSA", "kid": "rsa-small", "n": b64.EncodeToString(smallN), "e": "AQAB"})
	add("rsa-even-e", signer{"rsa-even-e", jwt.SigningMethodRS256, rsaSigner.key}, map[string]any{"kty": "RSA", "kid": "rsa-even-e",
		"n": b64.EncodeToString(rsaSigner.key.Public().(*rsa.PublicKey).N.Bytes()), "e": "AAI"})
	s = newECSigner(t, "")
	keys = append(keys, ec(s)) // no kid
	keys = append(keys, map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"})
	keys = append(keys, ec(good))

	v := newVerifier(t, auth.VerifierConfig{JWKS: mustJSON(t, map[string]any{"keys": keys})})
	if _, err := v.Verify(t.Context(), good.sign(t, claims())); err != nil {
		t.Fatalf("the usable key: %v", err)
	}
	for kid, s := range bad {
		t.Run(kid, func(t *testing.T) {
			tok := s.sign(t, claims())
			_, err := v.Verify(t.Context(), tok)
			if kid == "p384" {
				wantError(t, err, shop.KindUnauthorized, "unsupported token algorithm")
				return
			}
			wantError(t, err, shop.KindUnauthorized, "invalid token signature")
		})
	}
}

func TestIssuer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "dev")
	first, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(filepath.Join(dir, "issuer-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %#o, want 0600", perm)
	}
	if info, err = os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode = %#o, want 0700", perm)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file", len(entries))
	}

	// The kid is derived from the key file independently of the package.
	pemBytes, err := os.ReadFile(filepath.Join(dir, "issuer-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PRIVATE KEY PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, ok := key.(*ecdsa.PrivateKey)
	if !ok || ecKey.Curve != elliptic.P256() {
		t.Fatalf("key is %T, want a P-256 ECDSA key", key)
	}
	der, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	wantKid := hex.EncodeToString(sum[:])[:16]

	jwk1, jwk2 := onlyJWK(t, first.JWKS()), onlyJWK(t, second.JWKS())
	if jwk1 != jwk2 {
		t.Errorf("JWKS differ between loads:\n%+v\n%+v", jwk1, jwk2)
	}
	point, err := ecKey.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := devJWK{Kty: "EC", Crv: "P-256", Use: "sig", Alg: "ES256", Kid: wantKid,
		X: b64.EncodeToString(point[1:33]), Y: b64.EncodeToString(point[33:])}
	if jwk1 != want {
		t.Errorf("JWK = %+v, want %+v", jwk1, want)
	}

	// Tokens from the first load verify with the second load's JWKS.
	cfg := second.VerifierConfig()
	if cfg.Issuer != auth.DevIssuer || cfg.Audience != auth.DevAudience {
		t.Errorf("VerifierConfig issuer, audience = %q, %q", cfg.Issuer, cfg.Audience)
	}
	cfg.Now = fixedNow
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, admin := range []bool{false, true} {
		tok, err := first.Mint("customer-7", admin, time.Hour, t0.Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(t.Context(), tok)
		if err != nil {
			t.Fatalf("admin=%v: %v", admin, err)
		}
		wantClaims := auth.Claims{Subject: "customer-7", Admin: admin, ExpiresAt: t0.Add(59 * time.Minute)}
		if got.Subject != wantClaims.Subject || got.Admin != wantClaims.Admin || !got.ExpiresAt.Equal(wantClaims.ExpiresAt) {
			t.Errorf("claims = %+v, want %+v", got, wantClaims)
		}
		header, payload := decodeToken(t, tok)
		if header["kid"] != wantKid || header["alg"] != "ES256" {
			t.Errorf("header = %v", header)
		}
		_, hasRoles := payload["roles"]
		if hasRoles != admin || payload["iss"] != auth.DevIssuer || payload["iat"] == nil || payload["nbf"] == nil {
			t.Errorf("payload = %v", payload)
		}
	}

	// Minted tokens carry their own validity period.
	expired, err := first.Mint("customer-7", false, time.Hour, t0.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(t.Context(), expired)
	wantError(t, err, shop.KindUnauthorized, "token expired")
	early, err := first.Mint("customer-7", false, time.Hour, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(t.Context(), early)
	wantError(t, err, shop.KindUnauthorized, "token not yet valid")

	// Another issuer's tokens do not verify.
	other, err := auth.LoadOrCreateIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := other.Mint("customer-7", true, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(t.Context(), tok)
	wantError(t, err, shop.KindUnauthorized, "invalid token signature")
}

func TestMintRejectsBadInput(t *testing.T) {
	iss, err := auth.LoadOrCreateIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		sub string
		ttl time.Duration
	}{
		{"", time.Hour},
		{strings.Repeat("a", 129), time.Hour},
		{"a\x00b", time.Hour},
		{"user", 0},
		{"user", -time.Hour},
	} {
		_, err := iss.Mint(tt.sub, false, tt.ttl, t0)
		if shop.KindOf(err) != shop.KindInvalid {
			t.Errorf("Mint(%q, %v) error = %v, want KindInvalid", tt.sub, tt.ttl, err)
		}
	}
}

func TestLoadOrCreateIssuerConcurrently(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	kids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			iss, err := auth.LoadOrCreateIssuer(dir)
			if err != nil {
				t.Error(err)
				return
			}
			k, err := parseOnlyJWK(iss.JWKS())
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = k.Kid
		})
	}
	wg.Wait()
	for _, kid := range kids[1:] {
		if kid != kids[0] {
			t.Fatalf("kids differ: %v", kids)
		}
	}
}

func TestLoadOrCreateIssuerRejectsBadKeyFile(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
	}{
		{"readable by others", func(t *testing.T, path string) {
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"not PEM", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"RSA key", func(t *testing.T, path string) {
			key, err := testRSAKey()
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := auth.LoadOrCreateIssuer(dir); err != nil {
				t.Fatal(err)
			}
			tt.write(t, filepath.Join(dir, "issuer-key.pem"))
			if _, err := auth.LoadOrCreateIssuer(dir); err == nil {
				t.Fatal("LoadOrCreateIssuer succeeded, want an error")
			}
		})
	}
}

type devJWK struct {
	Kty, Crv, X, Y, Use, Alg, Kid string
}

func onlyJWK(t testing.TB, doc []byte) devJWK {
	t.Helper()
	k, err := parseOnlyJWK(doc)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// parseOnlyJWK is onlyJWK returning its error, for goroutines.
func parseOnlyJWK(doc []byte) (devJWK, error) {
	var set struct{ Keys []devJWK }
	if err := json.Unmarshal(doc, &set); err != nil {
		return devJWK{}, fmt.Errorf("decode JWKS: %w", err)
	}
	if len(set.Keys) != 1 {
		return devJWK{}, fmt.Errorf("JWKS has %d keys, want 1: %s", len(set.Keys), doc)
	}
	return set.Keys[0], nil
}

func decodeToken(t testing.TB, tok string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		b, err := b64.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, payload
}

// jwksServer serves a JWKS document that tests can replace, counting the
// requests.
type jwksServer struct {
	*httptest.Server
	doc    atomic.Pointer[[]byte]
	status atomic.Int32 // 0: 200
	hits   atomic.Int32
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.serve(doc)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if code := s.status.Load(); code != 0 {
			http.Error(w, "unavailable", int(code))
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(*s.doc.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(doc []byte) { s.doc.Store(&doc) }

func (s *jwksServer) wantHits(t *testing.T, want int32) {
	t.Helper()
	if got := s.hits.Load(); got != want {
		t.Fatalf("JWKS fetched %d times, want %d", got, want)
	}
}

func TestJWKSURLKeyRotation(t *testing.T) {
	oldKey, newKey := newECSigner(t, "2030-05"), newRSASigner(t, "2030-06")
	srv := newJWKSServer(t, jwksOf(t, oldKey))
	clk := &clock{now: t0}
	v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL, Now: clk.Now})
	ctx := t.Context()

	if _, err := v.Verify(ctx, oldKey.sign(t, claims())); err != nil {
		t.Fatalf("old key: %v", err)
	}
	srv.wantHits(t, 1)

	// The issuer rotates. Within 10 s of the last fetch an unknown kid
	// does not trigger another one.
	srv.serve(jwksOf(t, newKey))
	newTok := newKey.sign(t, claims())
	clk.Advance(5 * time.Second)
	_, err := v.Verify(ctx, newTok)
	wantError(t, err, shop.KindUnauthorized, "invalid token signature")
	srv.wantHits(t, 1)

	// Later, the unknown kid triggers a refresh and verifies.
	clk.Advance(6 * time.Second)
	got, err := v.Verify(ctx, newTok)
	if err != nil {
		t.Fatalf("new key after refresh: %v", err)
	}
	if got.Subject != "user-1" {
		t.Errorf("subject = %q", got.Subject)
	}
	srv.wantHits(t, 2)

	// The old key is gone, and unknown kids do not cause a fetch storm.
	for range 20 {
		_, err = v.Verify(ctx, oldKey.sign(t, claims()))
		wantError(t, err, shop.KindUnauthorized, "invalid token signature")
	}
	srv.wantHits(t, 2)
}

func TestJWKSURLPeriodicRefresh(t *testing.T) {
	key := newECSigner(t, "k1")
	srv := newJWKSServer(t, jwksOf(t, key))
	clk := &clock{now: t0}
	v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL, Now: clk.Now, RefreshInterval: time.Minute})
	tok := key.sign(t, claims(set("exp", t0.Add(24*time.Hour).Unix())))
	for range 3 {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	srv.wantHits(t, 1)
	clk.Advance(59 * time.Second)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	srv.wantHits(t, 1)
	clk.Advance(2 * time.Second)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	srv.wantHits(t, 2)
}

func TestJWKSURLKeepsLastGoodSet(t *testing.T) {
	key := newECSigner(t, "k1")
	tok := key.sign(t, claims(set("exp", t0.Add(24*time.Hour).Unix())))
	tests := []struct {
		name string
		fail func(s *jwksServer)
	}{
		{"server down", func(s *jwksServer) { s.Close() }},
		{"server error", func(s *jwksServer) { s.status.Store(http.StatusInternalServerError) }},
		{"document without usable keys", func(s *jwksServer) { s.serve([]byte(`{"keys":[{"kty":"oct","kid":"k1","k":"AA"}]}`)) }},
		{"document not JSON", func(s *jwksServer) { s.serve([]byte(`<html>`)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, jwksOf(t, key))
			clk := &clock{now: t0}
			v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL, Now: clk.Now})
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			tt.fail(srv)
			clk.Advance(6 * time.Minute) // past the default refresh interval
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("after a failed refresh: %v", err)
			}
			clk.Advance(11 * time.Second) // an unknown kid may refresh again
			_, err := v.Verify(t.Context(), newECSigner(t, "k2").sign(t, claims()))
			wantError(t, err, shop.KindUnauthorized, "invalid token signature")
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("after two failed refreshes: %v", err)
			}
		})
	}
}

func TestJWKSURLFirstFetchFails(t *testing.T) {
	key := newECSigner(t, "k1")
	srv := newJWKSServer(t, jwksOf(t, key))
	srv.status.Store(http.StatusServiceUnavailable)
	clk := &clock{now: t0}
	v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL, Now: clk.Now})
	tok := key.sign(t, claims(set("exp", t0.Add(time.Hour).Unix())))

	_, err := v.Verify(t.Context(), tok)
	wantError(t, err, shop.KindUnavailable, "token signing keys unavailable")
	// Failures are not retried on every request.
	_, err = v.Verify(t.Context(), tok)
	wantError(t, err, shop.KindUnavailable, "token signing keys unavailable")
	srv.wantHits(t, 1)

	// Malformed tokens and foreign algorithms never reach the JWKS server.
	_, err = v.Verify(t.Context(), "a.b.c")
	wantError(t, err, shop.KindUnauthorized, "malformed token")
	clk.Advance(11 * time.Second)
	_, err = v.Verify(t.Context(), unsigned(t, map[string]any{"alg": "none", "kid": "k1"}, claims()))
	wantError(t, err, shop.KindUnauthorized, "unsupported token algorithm")
	srv.wantHits(t, 1)

	srv.status.Store(0)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("after the server recovered: %v", err)
	}
	srv.wantHits(t, 2)
}

func TestJWKSURLRespectsContextDeadline(t *testing.T) {
	key := newECSigner(t, "k1")
	doc := jwksOf(t, key)
	var slow atomic.Bool
	slow.Store(true)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL, HTTPClient: &http.Client{Timeout: time.Minute}})
	tok := key.sign(t, claims())

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, tok)
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Verify took %v despite a 100ms deadline", elapsed)
	}
	wantError(t, err, shop.KindUnavailable, "token signing keys unavailable")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want one wrapping context.DeadlineExceeded", err)
	}

	// A caller giving up says nothing about the server: the next caller
	// fetches at once (the fake clock has not moved).
	slow.Store(false)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("after a caller's deadline: %v", err)
	}
}

func TestJWKSURLConcurrentFirstUse(t *testing.T) {
	key := newECSigner(t, "k1")
	srv := newJWKSServer(t, jwksOf(t, key))
	v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL})
	tok := key.sign(t, claims())
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	srv.wantHits(t, 1)
}

// fuzzDetails are the details Verify may report for a token; none of them
// echoes the token.
var fuzzDetails = map[string]bool{
	"malformed token":                   true,
	"unsupported token algorithm":       true,
	"unsupported token header":          true,
	"invalid token signature":           true,
	"token expired":                     true,
	"token expiry missing":              true,
	"token not yet valid":               true,
	"token issuer or audience mismatch": true,
	"token subject missing":             true,
	"invalid token subject":             true,
	"invalid token":                     true,
}

// FuzzVerify: whatever Verify accepts carries the subject, expiry and
// admin role its payload, decoded here on its own, says, and expires after
// now; whatever it refuses is refused with one of the fixed client-safe
// details. The valid seeds verify and the broken ones do not.
func FuzzVerify(f *testing.F) {
	ecKey := newECSigner(f, "ec-1")
	rsaKey := newRSASigner(f, "rsa-1")
	v := newVerifier(f, auth.VerifierConfig{JWKS: jwksOf(f, ecKey, rsaKey)})

	valid := ecKey.sign(f, claims(set("roles", []string{"admin"})))
	good := map[string]auth.Claims{
		valid:                    {Subject: "user-1", Admin: true, ExpiresAt: t0.Add(time.Hour)},
		rsaKey.sign(f, claims()): {Subject: "user-1", ExpiresAt: t0.Add(time.Hour)},
		ecKey.sign(f, claims(set("roles", "admin"), set("sub", "ü"))): {Subject: "ü", ExpiresAt: t0.Add(time.Hour)},
	}
	bad := []string{
		ecKey.sign(f, claims(set("exp", t0.Add(-time.Hour).Unix()))),
		ecKey.sign(f, claims(del("sub"))),
		ecKey.sign(f, claims(set("exp", 1e300), set("nbf", -1e300))),
		unsigned(f, map[string]any{"alg": "none", "kid": "ec-1"}, claims()),
		signWith(f, jwt.SigningMethodHS256, []byte("secret"), map[string]any{"kid": "ec-1"}, claims()),
		valid[:len(valid)-3],
		strings.Replace(valid, ".", "..", 1),
		"", "abc", "a.b.c", "..", "e30.e30.", "eyJhbGciOiJFUzI1NiJ9.e30.AA",
		"Bearer " + valid,
		strings.Repeat("A", 9<<10),
	}
	for tok, want := range good {
		if got, err := v.Verify(context.Background(), tok); err != nil || got != want {
			f.Fatalf("valid seed %q: Verify = %+v, %v; want %+v", tok, got, err, want)
		}
		f.Add(tok)
	}
	for _, tok := range bad {
		if got, err := v.Verify(context.Background(), tok); err == nil {
			f.Fatalf("broken seed %q verified: %+v", tok, got)
		}
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, token string) {
		got, err := v.Verify(context.Background(), token)
		if err == nil {
			want, err := payloadClaims(token)
			if err != nil {
				t.Fatalf("Verify(%q) accepted a token whose payload does not decode: %v", token, err)
			}
			if got.Subject != want.Subject || got.Admin != want.Admin || got.ExpiresAt.Unix() != want.ExpiresAt.Unix() {
				t.Fatalf("Verify(%q) = %+v; its payload says %+v", token, got, want)
			}
			if got.Subject == "" || !got.ExpiresAt.After(t0) {
				t.Fatalf("Verify(%q) = %+v without an error", token, got)
			}
			return
		}
		se, ok := errors.AsType[*shop.Error](err)
		if !ok || se.Kind != shop.KindUnauthorized {
			t.Fatalf("Verify(%q) error = %v (%T), want a *shop.Error of kind unauthorized", token, err, err)
		}
		if !fuzzDetails[se.Detail] {
			t.Fatalf("Verify(%q) error detail %q is not one of the fixed, client-safe details", token, se.Detail)
		}
	})
}

// payloadClaims reads the claims Verify reports straight from a compact
// JWS's payload, without checking anything: sub, exp (whole seconds) and
// whether roles is a list of strings holding "admin".
func payloadClaims(token string) (auth.Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return auth.Claims{}, fmt.Errorf("%d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return auth.Claims{}, fmt.Errorf("payload: %w", err)
	}
	var p struct {
		Sub   string          `json:"sub"`
		Exp   json.Number     `json:"exp"`
		Roles json.RawMessage `json:"roles"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return auth.Claims{}, fmt.Errorf("payload: %w", err)
	}
	exp, err := p.Exp.Float64()
	if err != nil {
		return auth.Claims{}, fmt.Errorf("exp: %w", err)
	}
	var roles []string
	_ = json.Unmarshal(p.Roles, &roles)
	return auth.Claims{Subject: p.Sub, Admin: slices.Contains(roles, "admin"), ExpiresAt: time.Unix(int64(math.Floor(exp)), 0).UTC()}, nil
}

// Example output for a reader of the tests: a minted token and the claims
// a verifier sees.
func ExampleIssuer_Mint() {
	dir, err := os.MkdirTemp("", "issuer")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	iss, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := auth.NewVerifier(iss.VerifierConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, err := iss.Mint("customer-42", true, time.Hour, time.Now())
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Subject, c.Admin, auth.RequireAdmin(c) == nil)
	// Output: customer-42 true true
}
