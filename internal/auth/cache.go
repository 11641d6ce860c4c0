package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

const (
	defaultCacheSize = 10_000
	defaultCacheTTL  = time.Minute
)

// tokenCache remembers tokens that verified, so that a shopper's next
// requests cost a hash and a map read instead of a signature check. A token
// is found by the SHA-256 of its whole text: a changed byte anywhere (the
// signature included) misses and is verified in full. An entry serves for
// at most ttl, and never once the token's own expiry (plus the verifier's
// leeway) has passed, so a key withdrawn from the JWKS stops being honoured
// within ttl. Only successes are kept.
type tokenCache struct {
	now    func() time.Time
	ttl    time.Duration
	leeway time.Duration
	max    int

	mu      sync.Mutex // guards entries
	entries map[[sha256.Size]byte]cachedClaims
}

type cachedClaims struct {
	claims   Claims
	verified time.Time
}

// newTokenCache returns a cache of at most size tokens; nil when size is
// negative (no cache).
func newTokenCache(size int, ttl, leeway time.Duration, now func() time.Time) *tokenCache {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = defaultCacheSize
	}
	if ttl <= 0 {
		ttl = defaultCacheTTL
	}
	return &tokenCache{now: now, ttl: ttl, leeway: leeway, max: size, entries: make(map[[sha256.Size]byte]cachedClaims, min(size, 1024))}
}

// get returns the claims of a token verified within ttl that has not
// expired yet.
func (c *tokenCache) get(key [sha256.Size]byte) (Claims, bool) {
	if c == nil {
		return Claims{}, false
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && !c.fresh(e, now) {
		delete(c.entries, key)
		ok = false
	}
	c.mu.Unlock()
	return e.claims, ok
}

func (c *tokenCache) fresh(e cachedClaims, now time.Time) bool {
	return now.Sub(e.verified) < c.ttl && now.Before(e.claims.ExpiresAt.Add(c.leeway))
}

// put remembers a verified token. A full cache first drops what is stale,
// then, if it is still full, an arbitrary quarter of its entries: bounded
// memory matters more here than which shopper pays one more verification.
func (c *tokenCache) put(key [sha256.Size]byte, claims Claims) {
	if c == nil {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !c.fresh(e, now) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max-c.max/4 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = cachedClaims{claims: claims, verified: now}
}

// len is the number of tokens held.
func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
