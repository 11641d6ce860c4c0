package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"time"
)

const (
	// maxJWKSSize bounds a fetched JWKS document.
	maxJWKSSize = 1 << 20
	// minRefreshInterval is the least time between two fetches of a remote
	// JWKS, whatever triggers them (an unknown kid, a failed fetch).
	minRefreshInterval = 10 * time.Second
	// RSA moduli outside these sizes, in bits, are not used.
	minRSABits, maxRSABits = 2048, 8192
)

// keySet holds the usable verification keys of a JWKS by kid, one map per
// accepted algorithm so that a kid never selects a key of the wrong type.
type keySet struct {
	rs256 map[string]*rsa.PublicKey
	es256 map[string]*ecdsa.PublicKey
}

// lookup returns the key for alg with the given kid, or nil.
func (ks *keySet) lookup(alg, kid string) any {
	switch alg {
	case algRS256:
		if k, ok := ks.rs256[kid]; ok {
			return k
		}
	case algES256:
		if k, ok := ks.es256[kid]; ok {
			return k
		}
	}
	return nil
}

// jwk is the subset of an RFC 7517 JSON Web Key that the verifier uses.
type jwk struct {
	Kty    string   `json:"kty,omitempty"`
	Kid    string   `json:"kid,omitempty"`
	Use    string   `json:"use,omitempty"`
	Alg    string   `json:"alg,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
}

// parseJWKS parses a JWKS document, keeping the keys usable for RS256 or
// ES256 signature verification and ignoring the others. It fails when the
// document is not a JWKS or has no usable key.
func parseJWKS(doc []byte) (*keySet, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	ks := &keySet{rs256: map[string]*rsa.PublicKey{}, es256: map[string]*ecdsa.PublicKey{}}
	var ignored []error
	for i, raw := range set.Keys {
		if err := ks.add(raw); err != nil {
			ignored = append(ignored, fmt.Errorf("key %d: %w", i, err))
		}
	}
	if len(ks.rs256)+len(ks.es256) == 0 {
		return nil, fmt.Errorf("JWKS has no usable RS256 or ES256 key among %d: %w",
			len(set.Keys), errors.Join(ignored...))
	}
	return ks, nil
}

// add parses one JSON Web Key and adds it to ks, or reports why it cannot be
// used. The first key with a given kid and type wins.
func (ks *keySet) add(raw json.RawMessage) error {
	var k jwk
	if err := json.Unmarshal(raw, &k); err != nil {
		return err
	}
	switch {
	case k.Kid == "":
		return errors.New("no kid")
	case k.Use != "" && k.Use != "sig":
		return fmt.Errorf("use %q is not sig", k.Use)
	case k.KeyOps != nil && !slices.Contains(k.KeyOps, "verify"):
		return errors.New("key_ops lacks verify")
	}
	switch k.Kty {
	case "RSA":
		if k.Alg != "" && k.Alg != algRS256 {
			return fmt.Errorf("alg %q is not %s", k.Alg, algRS256)
		}
		pub, err := rsaKey(k.N, k.E)
		if err != nil {
			return err
		}
		if _, dup := ks.rs256[k.Kid]; !dup {
			ks.rs256[k.Kid] = pub
		}
	case "EC":
		if k.Alg != "" && k.Alg != algES256 {
			return fmt.Errorf("alg %q is not %s", k.Alg, algES256)
		}
		pub, err := p256Key(k.Crv, k.X, k.Y)
		if err != nil {
			return err
		}
		if _, dup := ks.es256[k.Kid]; !dup {
			ks.es256[k.Kid] = pub
		}
	default:
		return fmt.Errorf("unsupported kty %q", k.Kty)
	}
	return nil
}

// b64 decodes base64url without padding, rejecting non-canonical encodings.
var b64 = base64.RawURLEncoding.Strict()

// rsaKey builds an RSA public key from the base64url modulus and exponent.
func rsaKey(n64, e64 string) (*rsa.PublicKey, error) {
	nb, err := b64.DecodeString(n64)
	if err != nil {
		return nil, fmt.Errorf("RSA n: %w", err)
	}
	eb, err := b64.DecodeString(e64)
	if err != nil {
		return nil, fmt.Errorf("RSA e: %w", err)
	}
	n := new(big.Int).SetBytes(nb)
	if bits := n.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA modulus of %d bits is outside %d-%d", bits, minRSABits, maxRSABits)
	}
	if len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("RSA exponent has a bad length")
	}
	var e int64
	for _, b := range eb {
		e = e<<8 | int64(b)
	}
	if e < 3 || e%2 == 0 || e > 1<<31-1 {
		return nil, fmt.Errorf("RSA exponent %d is not usable", e)
	}
	return &rsa.PublicKey{N: n, E: int(e)}, nil
}

// p256Key builds a P-256 public key from the base64url coordinates,
// checking that the point is on the curve.
func p256Key(crv, x64, y64 string) (*ecdsa.PublicKey, error) {
	if crv != "P-256" {
		return nil, fmt.Errorf("unsupported crv %q", crv)
	}
	x, err := b64.DecodeString(x64)
	if err != nil {
		return nil, fmt.Errorf("EC x: %w", err)
	}
	y, err := b64.DecodeString(y64)
	if err != nil {
		return nil, fmt.Errorf("EC y: %w", err)
	}
	if len(x) != 32 || len(y) != 32 {
		return nil, errors.New("EC coordinates are not 32 bytes")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4}, x, y))
	if err != nil {
		return nil, fmt.Errorf("EC point: %w", err)
	}
	return pub, nil
}

// remoteKeys is a JWKS fetched from a URL and kept fresh. It is safe for
// concurrent use.
type remoteKeys struct {
	url      string
	client   *http.Client
	now      func() time.Time
	interval time.Duration // refresh period

	sem chan struct{} // holds a token while a fetch is in flight

	mu        sync.Mutex
	keys      *keySet   // last good set; nil until a fetch succeeds
	fetched   time.Time // when keys were fetched
	attempted time.Time // when the last completed fetch started
	lastErr   error     // why the last fetch failed; nil after a success
}

func newRemoteKeys(url string, client *http.Client, now func() time.Time, interval time.Duration) *remoteKeys {
	return &remoteKeys{url: url, client: client, now: now, interval: interval, sem: make(chan struct{}, 1)}
}

// get returns the current key set, fetching it first when it is due: never
// fetched, older than the refresh interval, or (with unknownKid) possibly
// lacking a key that a token asks for. Fetches are at least
// minRefreshInterval apart. When a refresh fails the last good set is
// returned; an error is returned only when no set has ever been fetched.
//
// Only one fetch runs at a time. A periodic refresh does not hold up other
// callers, which carry on with the current set; callers that need the
// fetch's outcome wait for it as long as ctx allows.
func (r *remoteKeys) get(ctx context.Context, unknownKid bool) (*keySet, error) {
	keys, due, lastErr := r.state(unknownKid)
	if !due {
		return result(keys, lastErr)
	}
	if keys != nil && !unknownKid {
		select {
		case r.sem <- struct{}{}:
		default:
			return keys, nil // another caller is refreshing
		}
	} else {
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			return result(keys, ctx.Err())
		}
	}
	defer func() { <-r.sem }()

	// Another caller may have fetched while this one waited.
	if keys, due, lastErr = r.state(unknownKid); !due {
		return result(keys, lastErr)
	}
	start := r.now()
	fresh, err := r.fetch(ctx)
	if err != nil && ctx.Err() != nil {
		// The caller gave up; that says nothing about the JWKS server, so
		// the attempt does not count against the refresh limit.
		return result(keys, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempted, r.lastErr = start, err
	if err == nil {
		r.keys, r.fetched = fresh, start
	}
	return result(r.keys, r.lastErr)
}

// state reports the current set, whether a fetch is due and the last
// fetch error.
func (r *remoteKeys) state(unknownKid bool) (keys *keySet, due bool, lastErr error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	switch {
	case r.attempted.IsZero():
		due = true
	case now.Sub(r.attempted) < minRefreshInterval:
		due = false
	case r.keys == nil || unknownKid:
		due = true
	default:
		due = now.Sub(r.fetched) >= r.interval
	}
	return r.keys, due, r.lastErr
}

// result returns keys when there are any, and otherwise err.
func result(keys *keySet, err error) (*keySet, error) {
	if keys != nil {
		return keys, nil
	}
	if err == nil {
		err = errors.New("JWKS not fetched yet")
	}
	return nil, err
}

// fetch downloads and parses the JWKS.
func (r *remoteKeys) fetch(ctx context.Context) (*keySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: status %s", r.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", r.url, err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("fetch JWKS %s: document exceeds %d bytes", r.url, maxJWKSSize)
	}
	ks, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", r.url, err)
	}
	return ks, nil
}
