// Package ratelimit keeps a token bucket per key (a client's address, a
// user) in a table of bounded size. The edge limits each client with it and
// a stamp each user's orders, comments and ratings.
//
// The table is a map and a list of its keys in order of last use. A key is
// forgotten once it has been unused for as long as its bucket takes to fill
// from empty (Burst/Rate): its bucket is full by then, so a fresh bucket for
// the same key answers exactly as the forgotten one would have. Each call
// looks only at the least recently used keys and drops at most two idle
// ones, so its cost does not depend on how many keys are tracked: O(1),
// with no sweep of the table.
//
// When the table holds MaxKeys keys and even the least recently used one
// is not idle, no key can be dropped without handing its owner a fresh
// burst. A key not in the table then shares one overflow bucket (with the
// same rate and burst) with every other such key, until tracked keys go
// idle and make room. The alternative, evicting the least recently used key
// anyway, would let a flood of new keys (many addresses, many tokens) evict
// the buckets of active keys and hand every flooder a full burst; the
// overflow bucket keeps each tracked key's limit exact and caps what all
// the newcomers get together, at the price of newcomers limiting one
// another while the flood lasts.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is how many keys a Limiter tracks at most when its
// Config names no bound.
const DefaultMaxKeys = 100_000

// Config configures a Limiter.
type Config struct {
	// Rate is how many requests per second a key may make in the long
	// run; zero or less: 1.
	Rate float64
	// Burst is how many requests a key with a full bucket may make at
	// once; zero or less: 1.
	Burst int
	// MaxKeys bounds the keys tracked at once; zero or less:
	// DefaultMaxKeys. Each costs about 200 bytes plus its key.
	MaxKeys int
}

// Limiter is a bounded table of token buckets, one per key. It is safe
// for concurrent use.
type Limiter struct {
	rate  rate.Limit
	burst int
	max   int
	fill  time.Duration // how long an unused bucket takes to fill from empty: a key unused that long is forgotten

	mu       sync.Mutex        // guards keys, lru and the entries' fields
	keys     map[string]*entry // the tracked keys
	lru      entry             // sentinel of a ring of the tracked keys: lru.next is the most recently used, lru.prev the least
	overflow *rate.Limiter     // shared by keys not tracked while the table is full
}

// entry is one tracked key, linked into the ring in order of last use.
type entry struct {
	key        string
	lim        *rate.Limiter
	used       time.Time
	prev, next *entry
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.Rate <= 0 {
		cfg.Rate = 1
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 1
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	l := &Limiter{
		rate:     rate.Limit(cfg.Rate),
		burst:    cfg.Burst,
		max:      cfg.MaxKeys,
		fill:     time.Duration(float64(cfg.Burst) / cfg.Rate * float64(time.Second)),
		keys:     make(map[string]*entry),
		overflow: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst),
	}
	l.lru.next, l.lru.prev = &l.lru, &l.lru
	return l
}

// Allow reports whether key may make a request at now, and takes a token
// from its bucket if so.
func (l *Limiter) Allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.keys[key]; ok {
		l.touch(e, now)
		return e.lim.AllowN(now, 1)
	}
	// Drop up to two idle keys: more than the one a call can add, so the
	// table shrinks back as keys go idle, at a bounded cost per call.
	var spare *entry
	for range 2 {
		oldest := l.lru.prev
		if oldest == &l.lru || now.Sub(oldest.used) < l.fill {
			break
		}
		l.unlink(oldest)
		delete(l.keys, oldest.key)
		spare = oldest
	}
	if len(l.keys) >= l.max {
		return l.overflow.AllowN(now, 1)
	}
	e := spare
	if e == nil {
		e = &entry{lim: rate.NewLimiter(l.rate, l.burst)}
	}
	// A dropped key's bucket has been filling for at least l.fill: it is
	// full, as good as a new one.
	e.key = key
	l.keys[key] = e
	l.touch(e, now)
	return e.lim.AllowN(now, 1)
}

// Len reports how many keys the table tracks.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// touch records a use of e at now and makes it the most recently used.
func (l *Limiter) touch(e *entry, now time.Time) {
	if now.After(e.used) {
		e.used = now
	}
	if e.prev != nil {
		l.unlink(e)
	}
	e.prev, e.next = &l.lru, l.lru.next
	l.lru.next.prev = e
	l.lru.next = e
}

func (l *Limiter) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}
