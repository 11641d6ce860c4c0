package stamp

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/contoso/shoes/internal/shop"
)

// admission protects the order path in a launch spike: each user gets a
// token bucket, and the stamp as a whole a bounded number of orders in
// flight. Over either limit the answer is 429 with Retry-After, never an
// unbounded queue.
type admission struct {
	perUser rate.Limit
	burst   int
	slots   chan struct{}

	mu    sync.Mutex // guards users and swept
	users map[string]*userLimit
	swept time.Time
}

type userLimit struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxTrackedUsers bounds the limiter table; idle users are swept first.
const maxTrackedUsers = 100_000

func newAdmission(perUser float64, burst, concurrent int) *admission {
	return &admission{
		perUser: rate.Limit(perUser),
		burst:   burst,
		slots:   make(chan struct{}, concurrent),
		users:   map[string]*userLimit{},
	}
}

// admit takes a slot for user's request, or refuses it. The caller must
// call release when the request is done.
func (a *admission) admit(user string) (release func(), err error) {
	now := time.Now()
	a.mu.Lock()
	if len(a.users) >= maxTrackedUsers || now.Sub(a.swept) > time.Minute {
		for k, u := range a.users {
			if now.Sub(u.seen) > time.Minute {
				delete(a.users, k)
			}
		}
		a.swept = now
	}
	u := a.users[user]
	if u == nil && len(a.users) < maxTrackedUsers {
		u = &userLimit{lim: rate.NewLimiter(a.perUser, a.burst)}
		a.users[user] = u
	}
	allowed := u != nil && u.lim.AllowN(now, 1)
	if u != nil {
		u.seen = now
	}
	a.mu.Unlock()
	if !allowed {
		return nil, shop.Errorf(shop.KindTooMany, "", "too many orders from this user; retry in a second")
	}
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	default:
		return nil, shop.Errorf(shop.KindTooMany, "", "the store is busy; retry in a second")
	}
}
