package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/contoso/shoes/internal/shop"
)

const (
	algRS256 = "RS256"
	algES256 = "ES256"

	// maxTokenSize is the longest token string Verify parses.
	maxTokenSize = 8 << 10

	defaultLeeway          = 30 * time.Second
	defaultRefreshInterval = 5 * time.Minute
	defaultFetchTimeout    = 5 * time.Second
)

// VerifierConfig configures a [Verifier].
type VerifierConfig struct {
	Issuer   string // required: the expected "iss" claim
	Audience string // required: the expected "aud" claim (one of its values)

	// Exactly one of JWKS and JWKSURL is required.
	//
	// JWKS is a static JWKS document. JWKSURL is where the JWKS is fetched
	// with HTTPClient: on the first verification, every RefreshInterval
	// afterwards, and when a token names an unknown kid (at most once per
	// 10 s). When a refresh fails the last good set is kept. It should be an
	// https URL.
	JWKS    []byte
	JWKSURL string

	RefreshInterval time.Duration // JWKSURL refresh period; zero: 5 min
	HTTPClient      *http.Client  // fetches JWKSURL; nil: a client with a 5 s timeout

	Now    func() time.Time // the current time; nil: time.Now
	Leeway time.Duration    // clock skew allowed on exp, nbf and iat; zero: 30 s

	// CacheSize bounds how many verified tokens are remembered, so that a
	// token seen again skips the signature check: zero, 10,000; negative,
	// none. CacheTTL is the longest a remembered token is trusted without
	// a new check (a key withdrawn from the JWKS, or a token's expiry, is
	// honoured within it; the expiry always is): zero, one minute.
	CacheSize int
	CacheTTL  time.Duration
}

// Verifier verifies bearer JWTs. It is safe for concurrent use.
type Verifier struct {
	static *keySet     // the keys of a static JWKS, or nil
	remote *remoteKeys // the keys of a JWKS URL, or nil
	parser *jwt.Parser // checks signatures, exp, nbf, iat, iss and aud
	cache  *tokenCache // tokens that verified; nil: none
}

// NewVerifier returns a Verifier for cfg, or an error when cfg is invalid
// or its static JWKS has no usable key. A JWKSURL is not fetched until the
// first verification.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("auth: verifier issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("auth: verifier audience is required")
	case (len(cfg.JWKS) > 0) == (cfg.JWKSURL != ""):
		return nil, errors.New("auth: exactly one of JWKS and JWKSURL is required")
	case cfg.Leeway < 0:
		return nil, errors.New("auth: negative leeway")
	case cfg.RefreshInterval < 0:
		return nil, errors.New("auth: negative JWKS refresh interval")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = defaultLeeway
	}
	// The algorithm is restricted by keyfunc, which maps each failure to
	// its own error; jwt.WithValidMethods would report it as a bad signature.
	v := &Verifier{cache: newTokenCache(cfg.CacheSize, cfg.CacheTTL, leeway, now), parser: jwt.NewParser(
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
		jwt.WithStrictDecoding(),
	)}
	if len(cfg.JWKS) > 0 {
		ks, err := parseJWKS(cfg.JWKS)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		v.static = ks
		return v, nil
	}
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("auth: JWKS URL %q is not an absolute http(s) URL", cfg.JWKSURL)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		// Keys fetched in the clear can be swapped by anyone on the path,
		// and with them every token.
		return nil, fmt.Errorf("auth: JWKS URL %q must be https:// (plain http is only accepted on loopback)", cfg.JWKSURL)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultFetchTimeout}
	}
	interval := cfg.RefreshInterval
	if interval == 0 {
		interval = defaultRefreshInterval
	}
	v.remote = newRemoteKeys(cfg.JWKSURL, client, now, interval)
	return v, nil
}

// tokenClaims are the claims Verify decodes. Roles is decoded separately so
// that a malformed "roles" claim only withholds the admin role.
type tokenClaims struct {
	jwt.RegisteredClaims
	Roles json.RawMessage `json:"roles,omitempty"`
}

// Verify checks token and returns its claims. It accepts only RS256 and
// ES256 tokens whose kid header selects a key of the matching type, that
// carry a valid signature, the expected iss and aud, an exp that has not
// passed, nbf and iat that have, and a sub of 1 to 128 characters without
// control characters. Failures are shop.KindUnauthorized errors, except when
// a JWKS URL has never been fetched successfully (shop.KindUnavailable).
// ctx bounds any JWKS fetch. A token verified within the cache's TTL is
// answered from the cache (VerifierConfig.CacheSize).
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if len(token) > maxTokenSize {
		return Claims{}, unauthorized("malformed token", fmt.Errorf("token is %d bytes; the limit is %d", len(token), maxTokenSize))
	}
	key := sha256.Sum256([]byte(token))
	if c, ok := v.cache.get(key); ok {
		return c, nil
	}
	c, err := v.verify(ctx, token)
	if err == nil {
		v.cache.put(key, c)
	}
	return c, err
}

// verify checks token in full: its signature and every claim.
func (v *Verifier) verify(ctx context.Context, token string) (Claims, error) {
	var tc tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &tc, v.keyfunc(ctx)); err != nil {
		return Claims{}, classify(err, &tc)
	}
	if err := checkSubject(tc.Subject); err != nil {
		detail := "invalid token subject"
		if errors.Is(err, errEmptySubject) {
			detail = "token subject missing"
		}
		return Claims{}, unauthorized(detail, err)
	}
	var roles []string
	_ = json.Unmarshal(tc.Roles, &roles) // not a list of strings: no roles
	return Claims{
		Subject:   tc.Subject,
		Admin:     slices.Contains(roles, "admin"),
		ExpiresAt: tc.ExpiresAt.UTC(),
	}, nil
}

// Authenticate verifies the bearer token in r's Authorization header with
// r's context.
func (v *Verifier) Authenticate(r *http.Request) (Claims, error) {
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return Claims{}, shop.Errorf(shop.KindUnauthorized, "", "multiple Authorization headers")
	}
	var token string
	if len(values) == 1 {
		// RFC 7235: the scheme is case-insensitive and followed by spaces.
		scheme, rest, _ := strings.Cut(values[0], " ")
		if strings.EqualFold(scheme, "Bearer") {
			token = strings.TrimSpace(rest)
		}
	}
	if token == "" {
		return Claims{}, shop.Errorf(shop.KindUnauthorized, "", "missing bearer token")
	}
	return v.Verify(r.Context(), token)
}

// keyfunc returns the jwt.Keyfunc that selects the verification key for a
// parsed but unverified token. Its errors are *shop.Error values.
func (v *Verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		// The only gate on the algorithm: no other method ever gets a key.
		var alg string
		switch t.Method {
		case jwt.SigningMethodRS256:
			alg = algRS256
		case jwt.SigningMethodES256:
			alg = algES256
		default:
			return nil, unauthorized("unsupported token algorithm", fmt.Errorf("alg %v", t.Header["alg"]))
		}
		if _, ok := t.Header["crit"]; ok {
			// RFC 7515 4.1.11: no extensions are understood here.
			return nil, unauthorized("unsupported token header", errors.New(`"crit" header present`))
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, unauthorized("invalid token signature", errors.New("token has no kid"))
		}
		return v.key(ctx, alg, kid)
	}
}

// key returns the key for alg and kid, refreshing a remote key set when the
// kid is unknown.
func (v *Verifier) key(ctx context.Context, alg, kid string) (any, error) {
	if v.remote == nil {
		if k := v.static.lookup(alg, kid); k != nil {
			return k, nil
		}
		return nil, unknownKey(alg, kid)
	}
	ks, err := v.remote.get(ctx, false)
	if err != nil {
		return nil, shop.Unavailable("token signing keys unavailable", err)
	}
	if k := ks.lookup(alg, kid); k != nil {
		return k, nil
	}
	if ks, err = v.remote.get(ctx, true); err == nil {
		if k := ks.lookup(alg, kid); k != nil {
			return k, nil
		}
	}
	return nil, unknownKey(alg, kid)
}

// unknownKey is the error for a kid that selects no key of alg's type.
func unknownKey(alg, kid string) error {
	return unauthorized("invalid token signature", fmt.Errorf("no %s key with kid %q", alg, kid))
}

// classify turns a jwt parse error into a client-safe *shop.Error.
func classify(err error, tc *tokenClaims) error {
	if se, ok := errors.AsType[*shop.Error](err); ok {
		return se // from keyfunc, already classified
	}
	var detail string
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		detail = "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// No or an unknown alg; keyfunc errors were handled above.
		detail = "unsupported token algorithm"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		detail = "invalid token signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		detail = "token expired"
	case tc.ExpiresAt == nil && errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		detail = "token expiry missing"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		detail = "token not yet valid"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		detail = "token issuer or audience mismatch"
	default:
		detail = "invalid token"
	}
	return unauthorized(detail, err)
}

// unauthorized returns a shop.KindUnauthorized error with a client-safe
// detail and its cause.
func unauthorized(detail string, cause error) *shop.Error {
	return &shop.Error{Kind: shop.KindUnauthorized, Detail: detail, Err: cause}
}

// loopbackHost reports whether host names this machine's loopback
// interface: "localhost" or a loopback IP address.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
