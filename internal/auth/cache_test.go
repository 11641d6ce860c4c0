package auth_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/shop"
)

// A token that verified is answered from the cache within its TTL: the
// key it was signed with can leave the JWKS meanwhile and it still passes,
// until the TTL ends and the full check refuses it.
// Mutation tried: get always missing → the withdrawn key refuses the token
// at +30 s.
func TestVerifiedTokensAreRememberedForTheirTTL(t *testing.T) {
	oldKey, newKey := newECSigner(t, "old"), newECSigner(t, "new")
	srv := newJWKSServer(t, jwksOf(t, oldKey))
	clk := &clock{now: t0}
	v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL, Now: clk.Now, RefreshInterval: 10 * time.Second, CacheTTL: time.Minute})
	tok := oldKey.sign(t, claims())
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	srv.serve(jwksOf(t, newKey)) // the old key is withdrawn
	clk.Advance(30 * time.Second)
	c, err := v.Verify(t.Context(), tok)
	if err != nil || c.Subject != "user-1" {
		t.Fatalf("within the TTL: %+v, %v; want the remembered claims", c, err)
	}
	srv.wantHits(t, 1)
	// Another token of the withdrawn key is checked in full, and refused.
	_, err = v.Verify(t.Context(), oldKey.sign(t, claims(set("sub", "user-2"))))
	wantError(t, err, shop.KindUnauthorized, "invalid token signature")
	clk.Advance(31 * time.Second)
	_, err = v.Verify(t.Context(), tok)
	wantError(t, err, shop.KindUnauthorized, "invalid token signature")
}

// A remembered token still expires on time: the cache honours exp plus the
// leeway, however long its TTL.
// Mutation tried: fresh ignoring ExpiresAt → the expired token passes.
func TestRememberedTokensExpireOnTime(t *testing.T) {
	key := newECSigner(t, "k")
	clk := &clock{now: t0}
	v := newVerifier(t, auth.VerifierConfig{JWKS: jwksOf(t, key), Now: clk.Now, CacheTTL: time.Hour, Leeway: 5 * time.Second})
	tok := key.sign(t, claims(set("exp", t0.Add(time.Minute).Unix())))
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute + 4*time.Second) // within the leeway
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	clk.Advance(2 * time.Second)
	_, err := v.Verify(t.Context(), tok)
	wantError(t, err, shop.KindUnauthorized, "token expired")
}

// The cache is found by the whole token: a token that differs in one byte
// of its signature is checked, and refused, even right after the original
// verified.
func TestAChangedTokenIsNotTheRememberedOne(t *testing.T) {
	key := newECSigner(t, "k")
	v := newVerifier(t, auth.VerifierConfig{JWKS: jwksOf(t, key)})
	tok := key.sign(t, claims())
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	b := []byte(tok)
	i := len(b) - 5
	b[i] ^= 0x01
	if b[i] == tok[i] || !isB64URL(b[i]) {
		b[i] = 'A' + (tok[i]-'A'+1)%26
	}
	_, err := v.Verify(t.Context(), string(b))
	wantError(t, err, shop.KindUnauthorized, "invalid token signature")
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("the original after a forgery: %v", err)
	}
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// The cache holds at most CacheSize tokens, whatever the number of
// shoppers; a negative size keeps none.
// Mutation tried: put without eviction → 200 tokens held for a size of 16.
func TestTheTokenCacheIsBounded(t *testing.T) {
	key := newECSigner(t, "k")
	for _, tc := range []struct{ size, max int }{{16, 16}, {-1, 0}} {
		v := newVerifier(t, auth.VerifierConfig{JWKS: jwksOf(t, key), CacheSize: tc.size})
		for i := range 200 {
			if _, err := v.Verify(t.Context(), key.sign(t, claims(set("sub", fmt.Sprintf("user-%d", i))))); err != nil {
				t.Fatal(err)
			}
		}
		if n := auth.CachedTokens(v); n > tc.max || (tc.max > 0 && n == 0) {
			t.Errorf("size %d: %d tokens held, want 1..%d", tc.size, n, tc.max)
		}
	}
}

// BenchmarkVerify compares a token verified in full (ES256 signature and
// claims) with one answered from the cache, in one run.
func BenchmarkVerify(b *testing.B) {
	key := newECSigner(b, "k")
	tok := key.sign(b, claims(set("exp", time.Now().Add(time.Hour).Unix()), set("iat", time.Now().Unix()), set("nbf", time.Now().Unix())))
	for _, bc := range []struct {
		name string
		size int
	}{{"full", -1}, {"cached", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: testIssuer, Audience: testAudience, JWKS: jwksOf(b, key), CacheSize: bc.size})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.Verify(b.Context(), tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
