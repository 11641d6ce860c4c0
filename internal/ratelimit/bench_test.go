package ratelimit_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/contoso/shoes/internal/ratelimit"
)

// BenchmarkAllowFull measures one call for a key never seen before while
// the table is full of active keys (a flood of new users or addresses),
// for tables of growing size: the Limiter's cost stays flat, while the
// per-user table the stamp's order admission used before (oldAdmission,
// kept below for the comparison) scanned every tracked user on each such
// call.
func BenchmarkAllowFull(b *testing.B) {
	newKeys := make([]string, 1<<16)
	for i := range newKeys {
		newKeys[i] = "new-user-" + strconv.Itoa(i)
	}
	for _, size := range []int{1_000, 10_000, 100_000} {
		b.Run("ratelimit/keys="+strconv.Itoa(size), func(b *testing.B) {
			l := ratelimit.New(ratelimit.Config{Rate: 5, Burst: 10, MaxKeys: size})
			now := time.Now()
			for i := range size {
				l.Allow("user-"+strconv.Itoa(i), now)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				l.Allow(newKeys[i&(len(newKeys)-1)], now)
				i++
			}
		})
		b.Run("old-admission/keys="+strconv.Itoa(size), func(b *testing.B) {
			a := &oldAdmission{perUser: 5, burst: 10, max: size, users: map[string]*oldUserLimit{}}
			for i := range size {
				a.allow("user-" + strconv.Itoa(i))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a.allow(newKeys[i&(len(newKeys)-1)])
				i++
			}
		})
	}
}

// oldAdmission is the per-user table of the stamp's order admission before
// this package: once it held max users, every call swept the whole map
// for idle users.
type oldAdmission struct {
	perUser rate.Limit
	burst   int
	max     int

	mu    sync.Mutex
	users map[string]*oldUserLimit
	swept time.Time
}

type oldUserLimit struct {
	lim  *rate.Limiter
	seen time.Time
}

func (a *oldAdmission) allow(user string) bool {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.users) >= a.max || now.Sub(a.swept) > time.Minute {
		for k, u := range a.users {
			if now.Sub(u.seen) > time.Minute {
				delete(a.users, k)
			}
		}
		a.swept = now
	}
	u := a.users[user]
	if u == nil && len(a.users) < a.max {
		u = &oldUserLimit{lim: rate.NewLimiter(a.perUser, a.burst)}
		a.users[user] = u
	}
	allowed := u != nil && u.lim.AllowN(now, 1)
	if u != nil {
		u.seen = now
	}
	return allowed
}
