package ratelimit_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/ratelimit"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// take calls Allow n times for key at now and counts the allowed calls.
func take(l *ratelimit.Limiter, key string, n int, now time.Time) int {
	ok := 0
	for range n {
		if l.Allow(key, now) {
			ok++
		}
	}
	return ok
}

func TestAKeyGetsItsBurstThenItsRate(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Rate: 2, Burst: 5})
	if got := take(l, "alice", 10, t0); got != 5 {
		t.Fatalf("%d of 10 calls at one instant allowed, want the burst of 5", got)
	}
	// Two tokens a second: half a second later, exactly one more.
	if got := take(l, "alice", 3, t0.Add(500*time.Millisecond)); got != 1 {
		t.Fatalf("%d calls allowed half a second later, want 1", got)
	}
	if !l.Allow("bob", t0) {
		t.Fatal("another key is limited by the first one's calls")
	}
}

func TestTheTableStaysBoundedUnderAFloodOfKeys(t *testing.T) {
	const maxKeys, burst = 100, 3
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: burst, MaxKeys: maxKeys})
	allowed := 0
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * time.Microsecond) // 0.1 s in all: nobody goes idle
		if l.Allow("flood-"+strconv.Itoa(i), now) {
			allowed++
		}
		if n := l.Len(); n > maxKeys {
			t.Fatalf("after %d keys the table holds %d, more than %d", i+1, n, maxKeys)
		}
	}
	// The first maxKeys keys got a bucket each; the rest shared one.
	if want := maxKeys + burst; allowed > want {
		t.Fatalf("%d of the flood's calls allowed, want at most %d (one each for the tracked keys, one burst for the rest)", allowed, want)
	}
}

func TestIdleKeysAreForgotten(t *testing.T) {
	// Burst 4 at 2/s: a bucket fills from empty in 2 s.
	l := ratelimit.New(ratelimit.Config{Rate: 2, Burst: 4, MaxKeys: 1000})
	for i := range 500 {
		l.Allow("early-"+strconv.Itoa(i), t0)
	}
	if got := take(l, "spent", 4, t0); got != 4 {
		t.Fatalf("spent's burst = %d, want 4", got)
	}
	if l.Len() != 501 {
		t.Fatalf("table holds %d keys, want 501", l.Len())
	}
	// Just before the buckets are full again nothing is dropped.
	l.Allow("late-0", t0.Add(1999*time.Millisecond))
	if l.Len() != 502 {
		t.Fatalf("table holds %d keys before anyone is idle, want 502", l.Len())
	}
	// Once they are, each call drops idle keys until none is left.
	for i := 1; i <= 300; i++ {
		l.Allow("late-"+strconv.Itoa(i), t0.Add(2*time.Second))
	}
	if n := l.Len(); n != 301 {
		t.Fatalf("table holds %d keys after 300 calls past the idle time, want only the 301 late ones", n)
	}
	// Forgetting changes no answer: the spent key has its full burst back,
	// as it would have had if it had been kept.
	if got := take(l, "spent", 10, t0.Add(2*time.Second)); got != 4 {
		t.Fatalf("spent's burst after being forgotten = %d, want 4", got)
	}
}

func TestAKnownKeyKeepsItsBucketWhenTheTableIsFull(t *testing.T) {
	const maxKeys = 10
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 2, MaxKeys: maxKeys})
	for i := range maxKeys {
		l.Allow("known-"+strconv.Itoa(i), t0)
	}
	// Newcomers empty the shared overflow bucket...
	if got := take(l, "newcomer", 1, t0) + take(l, "another-newcomer", 5, t0); got != 2 {
		t.Fatalf("newcomers got %d calls, want the overflow's burst of 2", got)
	}
	if l.Len() != maxKeys {
		t.Fatalf("table holds %d keys, want %d", l.Len(), maxKeys)
	}
	// ...while a known key still has its own bucket (one token left of its
	// burst of 2), and spends only its own.
	if got := take(l, "known-3", 5, t0); got != 1 {
		t.Fatalf("known key got %d calls with the table full, want its own remaining 1", got)
	}
	if got := take(l, "known-4", 5, t0); got != 1 {
		t.Fatalf("another known key got %d calls, want its own remaining 1", got)
	}
}

func TestNewKeysShareTheOverflowBucketUntilKeysGoIdle(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 3, MaxKeys: 4})
	for i := range 4 {
		l.Allow("known-"+strconv.Itoa(i), t0)
	}
	allowed := 0
	for i := range 20 {
		if l.Allow("new-"+strconv.Itoa(i), t0) {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("20 new keys got %d calls with the table full, want one shared burst of 3", allowed)
	}
	// The overflow bucket refills at the key rate: one more a second later.
	if !l.Allow("new-20", t0.Add(time.Second)) || l.Allow("new-21", t0.Add(time.Second)) {
		t.Fatal("the overflow bucket does not refill at one token a second")
	}
	// Three seconds after their last use the known keys are idle (burst 3
	// at 1/s): new keys get buckets of their own again, each a full burst.
	later := t0.Add(3 * time.Second)
	for i := range 4 {
		if got := take(l, "fresh-"+strconv.Itoa(i), 3, later); got != 3 {
			t.Fatalf("fresh key %d got %d calls after the table emptied, want its own burst of 3", i, got)
		}
	}
	if l.Len() != 4 {
		t.Fatalf("table holds %d keys, want 4", l.Len())
	}
}
